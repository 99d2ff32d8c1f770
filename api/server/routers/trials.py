"""/sweeps/{id}/trials: the trials of a sweep, one trial, and one trial's epoch history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.server.deps import ReadAccess, ServiceDep
from api.server.errors import Invalid, NotFound, quoted
from api.server.responses import json_response
from api.server.routers.sweeps import ERRORS
from api.server.schemas import EpochPublic, EpochsPublic, TrialDetail, TrialPublic, TrialsPublic
from api.server.trial_queries import page_trials, trial_epochs, trial_row
from worker import catalog
from worker.records import TrialStatusName

router = APIRouter(prefix="/sweeps/{sweep_id}/trials", tags=["trials"], dependencies=[ReadAccess])


def _check_names(model: str | None, dataset: str | None, method: str | None) -> None:
    problems = []
    for field, value, valid in (
        ("model", model, catalog.list_models()),
        ("dataset", dataset, catalog.list_datasets()),
        ("method", method, catalog.list_methods()),
    ):
        if value is not None and value not in valid:
            problems.append(
                {"field": f"query.{field}", "message": f"unknown {field} {value!r}; valid: {', '.join(valid)}"}
            )
    if problems:
        raise Invalid(problems)


@router.get("", response_model=TrialsPublic, responses=ERRORS)
def list_trials(
    sweep_id: str,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    model: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
    status: TrialStatusName | None = None,
) -> Response:
    """A page of the sweep's trials, in the sweep's order, filtered by model, dataset, method and status."""
    _check_names(model, dataset, method)
    service.record(sweep_id)
    filters = {"model": model, "dataset": dataset, "method": method, "status": status}

    def render() -> bytes:
        rows, count = page_trials(service.files.trials(sweep_id), filters, limit=limit, offset=offset)
        return TrialsPublic(data=[TrialPublic.model_validate(r) for r in rows], count=count).model_dump_json().encode()

    key = f"trials-page:{sorted(filters.items())}:{limit}:{offset}"  # clients poll the same pages
    return json_response(service.files.derived(sweep_id, "trials", key, render))


def _trial(service: ServiceDep, sweep_id: str, trial_id: str) -> dict:
    service.record(sweep_id)
    row = trial_row(service.files.trials(sweep_id), trial_id)
    if row is None:
        raise NotFound(f"no trial {quoted(trial_id)} in sweep {sweep_id!r}")
    return row


@router.get("/{trial_id}", response_model=TrialDetail, responses=ERRORS)
def get_trial(sweep_id: str, trial_id: str, service: ServiceDep) -> TrialDetail:
    """One trial: its result at the best-ID-validation epoch and its full config."""
    return TrialDetail.model_validate(_trial(service, sweep_id, trial_id))


@router.get("/{trial_id}/epochs", response_model=EpochsPublic, responses=ERRORS)
def get_trial_epochs(sweep_id: str, trial_id: str, service: ServiceDep) -> EpochsPublic:
    """Every epoch the trial reported, oldest first."""
    _trial(service, sweep_id, trial_id)
    rows = trial_epochs(service.files.epochs(sweep_id), trial_id)
    return EpochsPublic(trial_id=trial_id, data=[EpochPublic.model_validate(r) for r in rows], count=len(rows))
