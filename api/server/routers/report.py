"""/sweeps/{id}/report and /sweeps/{id}/plots: the HTML report (live while the sweep runs) and its plots as files."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

import analysis as report
from api.server.deps import ReadAccess, ServiceDep
from api.server.errors import NotFound, quoted
from api.server.routers.sweeps import ERRORS

router = APIRouter(prefix="/sweeps/{sweep_id}", tags=["report"], dependencies=[ReadAccess])


@router.get("/report", response_class=HTMLResponse, responses=ERRORS)
async def get_report(sweep_id: str, service: ServiceDep) -> HTMLResponse:
    """The sweep's report: progress, Tables 1 and 2 beside the paper's, LR curves, ID vs OOD, training curves,
    layer gradients, memory. It refreshes itself while the sweep is active; once it has ended the final page is
    also saved as report.html beside the Parquet files."""
    record, job_status = await run_in_threadpool(service.get, sweep_id)
    sweep_dir = service.files.checked_dir(sweep_id)
    detail = await run_in_threadpool(service.detail, record, job_status)
    if not record.active:
        return HTMLResponse(await run_in_threadpool(service.final_report, record, detail.dashboard_url))
    kwargs = dict(sweep_id=sweep_id, state=record.status, dashboard_url=detail.dashboard_url, live=True)
    page = await run_in_threadpool(lambda: report.render_report(sweep_dir, **kwargs))
    return HTMLResponse(page)


@router.get("/plots", responses=ERRORS)
def list_sweep_plots(sweep_id: str, service: ServiceDep) -> dict[str, list[str]]:
    """The plots any sweep can be drawn as, and their file formats."""
    service.record(sweep_id)
    return {"data": report.list_plots(), "formats": report.list_plot_formats()}


@router.get(
    "/plots/{filename}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the plot"}, **ERRORS},
)
async def get_plot(sweep_id: str, filename: str, service: ServiceDep) -> Response:
    """A plot as a file for papers and slides: `<name>.png` or `<name>.svg`."""
    name, _, fmt = filename.rpartition(".")
    if name not in report.list_plots() or fmt not in report.list_plot_formats():
        raise NotFound(
            f"no plot {quoted(filename)}; valid: <name>.<format> with name in {', '.join(report.list_plots())} "
            f"and format in {', '.join(report.list_plot_formats())}"
        )
    await run_in_threadpool(service.record, sweep_id)
    sweep_dir = service.files.checked_dir(sweep_id)
    content, media_type = await run_in_threadpool(report.render_plot, sweep_dir, name, fmt)
    return Response(content, media_type=media_type)
