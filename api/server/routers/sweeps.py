"""/sweeps: submit, list, describe, cancel and resume sweeps."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import status as http
from fastapi.concurrency import run_in_threadpool

from api.server.body import read_json
from api.server.deps import ReadAccess, ServiceDep, WriteAccess
from api.server.responses import json_response
from api.server.schemas import (
    ErrorResponse,
    SuggestionPublic,
    SuggestionsPublic,
    SweepDetail,
    SweepPublic,
    SweepsPublic,
    SweepState,
)

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    404: {"model": ErrorResponse, "description": "no such sweep"},
    422: {"model": ErrorResponse, "description": "every problem of the request, each naming its field"},
}

BODY_ERRORS: dict[int | str, dict[str, Any]] = {  # of the routes that read a JSON body and reach the cluster
    413: {"model": ErrorResponse, "description": "the body is larger than the service accepts"},
    415: {"model": ErrorResponse, "description": "the body is not sent as application/json"},
    503: {"model": ErrorResponse, "description": "the cluster could not be reached"},
    **ERRORS,
}

SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "description": "a full sweep spec, or a preset with top-level overrides",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/SweepSpec"},
                        {"$ref": "#/components/schemas/PresetSubmission"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=SweepDetail,
    status_code=http.HTTP_201_CREATED,
    dependencies=[WriteAccess],
    openapi_extra=SUBMIT_BODY,
    responses={
        200: {"model": SweepDetail, "description": "a retry with the same Idempotency-Key: the first sweep"},
        409: {"model": ErrorResponse, "description": "the Idempotency-Key was used for a different request"},
        **BODY_ERRORS,
    },
)
async def submit_sweep(
    request: Request,
    response: Response,
    service: ServiceDep,
    idempotency_key: Annotated[
        str | None, Header(description="resubmitting with the same key returns the first")
    ] = None,
) -> SweepDetail:
    """Validate a sweep and start it as a Ray Job."""
    body = await read_json(request, max_bytes=service.settings.max_body_bytes)
    record, created = await run_in_threadpool(service.submit, body, idempotency_key=idempotency_key)
    if not created:
        response.status_code = http.HTTP_200_OK
    record, job_status = await run_in_threadpool(service.reconcile, record)
    return await run_in_threadpool(service.detail, record, job_status)


@router.get("", response_model=SweepsPublic, dependencies=[ReadAccess], responses=ERRORS)
def list_sweeps(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    status: Annotated[SweepState | None, Query(description="only sweeps in this state")] = None,
) -> SweepsPublic:
    """Sweeps, newest first."""
    records, count = service.page(limit=limit, offset=offset, status=status)
    return SweepsPublic(data=[SweepPublic.model_validate(r, from_attributes=True) for r in records], count=count)


@router.get("/{sweep_id}", response_model=SweepDetail, dependencies=[ReadAccess], responses=ERRORS)
def get_sweep(sweep_id: str, service: ServiceDep) -> Response:
    """State, trial counts, percent done, time left and the job's dashboard link."""
    record, job_status = service.get(sweep_id)
    return json_response(service.detail(record, job_status))


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepDetail,
    status_code=http.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    responses={409: {"model": ErrorResponse, "description": "the sweep has ended already"}, **ERRORS},
)
def cancel_sweep(sweep_id: str, service: ServiceDep) -> SweepDetail:
    """Stop the sweep's job; the driver saves its state, so the sweep can be resumed later."""
    record, job_status = service.cancel(sweep_id)
    return service.detail(record, job_status)


@router.post(
    "/{sweep_id}/resume",
    response_model=SweepDetail,
    status_code=http.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    responses={409: {"model": ErrorResponse, "description": "the sweep is still running"}, **ERRORS},
)
def resume_sweep(sweep_id: str, service: ServiceDep) -> SweepDetail:
    """Continue an ended sweep as a new job `<id>-r<N>`: finished trials stay, the rest run."""
    record, job_status = service.resume(sweep_id)
    return service.detail(record, job_status)


EXTEND_BODY = {
    "requestBody": {
        "required": True,
        "description": "top-level spec fields to replace in the sweep's spec; lists and maps are replaced whole, so "
        "give the old seeds, LRs, models, datasets and methods too",
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {"seeds": [0, 1, 2], "lrs": {"sgd": [3e-5, 1e-4, 3e-4, 1e-3]}},
            }
        },
    }
}


@router.post(
    "/{sweep_id}/extend",
    response_model=SweepDetail,
    status_code=http.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    openapi_extra=EXTEND_BODY,
    responses={
        409: {"model": ErrorResponse, "description": "the sweep is still running"},
        **BODY_ERRORS,
    },
)
async def extend_sweep(request: Request, sweep_id: str, service: ServiceDep) -> SweepDetail:
    """Grow an ended sweep: more seeds, LRs, models, datasets or methods. Only trials not yet done run, into the
    same Parquet files; a grid that drops trials or changes what they mean (epochs, batch, subsets, precision,
    data, weights) is refused with 422 naming the field."""
    body = await read_json(request, max_bytes=service.settings.max_body_bytes)
    record, job_status = await run_in_threadpool(service.extend, sweep_id, body)
    return await run_in_threadpool(service.detail, record, job_status)


@router.get("/{sweep_id}/suggestions", response_model=SuggestionsPublic, dependencies=[ReadAccess], responses=ERRORS)
def sweep_suggestions(sweep_id: str, service: ServiceDep) -> SuggestionsPublic:
    """The extension the tables call for: LRs beyond the grid's edge where a cell chose it, seeds where the best
    method's interval overlaps the runner-up's, a rerun of cells with failed trials. `extension` is a body for
    POST /sweeps/{id}/extend as it is."""
    found = service.suggestions(sweep_id)
    return SuggestionsPublic(
        sweep_id=sweep_id,
        data=[SuggestionPublic(kind=i.kind, cells=i.cells, reason=i.reason, changes=i.changes) for i in found.items],
        extension=found.extension,
        trials_added=found.trials_added,
    )
