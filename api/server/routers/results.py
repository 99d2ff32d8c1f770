"""/sweeps/{id}/results and /sweeps/{id}/tables: the sweep's Parquet files and its comparison tables."""

from __future__ import annotations

import io
from typing import Annotated

import pyarrow.parquet as pq
from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

import analysis as tables
from api.server.deps import ReadAccess, ServiceDep
from api.server.errors import Invalid, NotFound, quoted
from api.server.routers.sweeps import ERRORS
from api.server.schemas import TablesPublic
from api.server.sweep_files import RESULT_FILES

router = APIRouter(prefix="/sweeps/{sweep_id}", tags=["results"], dependencies=[ReadAccess])

PARQUET = "application/vnd.apache.parquet"
_FILES = ", ".join(f"{k}.parquet" for k in RESULT_FILES)


@router.get(
    "/results/{filename}",
    response_class=Response,
    responses={200: {"content": {PARQUET: {}}, "description": "the Parquet file"}, **ERRORS},
)
def download_results(sweep_id: str, filename: str, service: ServiceDep) -> Response:
    """trials.parquet, epochs.parquet or probe.parquet; before the driver writes one, an empty file with its schema."""
    which = filename.removesuffix(".parquet")
    if not filename.endswith(".parquet") or which not in RESULT_FILES:
        raise NotFound(f"no result file {quoted(filename)}; valid: {_FILES}")
    service.record(sweep_id)
    path = service.files.file(sweep_id, RESULT_FILES[which])
    download = f"{sweep_id}-{which}.parquet"
    if path.is_file():
        return FileResponse(path, media_type=PARQUET, filename=download)
    empty = {"trials": service.files.trials, "epochs": service.files.epochs, "probe": service.files.probe}[which]
    buf = io.BytesIO()
    pq.write_table(empty(sweep_id), buf)
    headers = {"Content-Disposition": f'attachment; filename="{download}"'}
    return Response(buf.getvalue(), media_type=PARQUET, headers=headers)


@router.get("/tables", response_model=TablesPublic, responses=ERRORS)
def list_sweep_tables(sweep_id: str, service: ServiceDep) -> TablesPublic:
    """The tables any sweep can be shown as, and their formats."""
    service.record(sweep_id)
    return TablesPublic(data=tables.list_tables(), formats=tables.list_formats())


@router.get(
    "/tables/{name}",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/markdown": {},
                "text/plain": {},
                "text/csv": {},
                "application/x-latex": {},
                "application/json": {},
                PARQUET: {},
            },
            "description": "the table in the asked format",
        },
        **ERRORS,
    },
)
async def get_table(
    sweep_id: str,
    name: str,
    service: ServiceDep,
    fmt: Annotated[str, Query(alias="format", description="markdown, csv, latex, json, parquet or text")] = "markdown",
) -> Response:
    """A comparison table (e.g. Table 1 `ood`, Table 2 `id`) built from the sweep's results as they are now."""
    valid = tables.list_tables()
    if name not in valid:
        raise NotFound(f"no table {quoted(name)}; valid tables: {', '.join(valid)}")
    formats = tables.list_formats()
    if fmt not in formats:
        raise Invalid.one("query.format", f"unknown format {quoted(fmt)}; valid formats: {', '.join(formats)}")
    await run_in_threadpool(service.record, sweep_id)
    sweep_dir = service.files.checked_dir(sweep_id)
    content, media_type = await run_in_threadpool(tables.render_table, name, sweep_dir, fmt)
    return Response(content, media_type=media_type)
