"""The shapes of the REST API, as a family: a Public record, a Detail that extends it, and `{data, count}` pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from api import SWEEP_STATES
from api.server.text import PublicError
from worker.records import EpochReport, TrialStatusName, TrialSummary, record_fields

SweepState = Literal[SWEEP_STATES]  # type: ignore[valid-type]


class Problem(BaseModel):
    field: str = Field(description="where the problem is: a spec field (`models[1]`), or `query.limit`, ...")
    message: str


class ErrorResponse(BaseModel):
    detail: str | list[Problem]


class PresetSubmission(BaseModel):
    """Submit a preset from `configs/sweeps/`, with top-level spec fields replaced by `overrides`."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field(max_length=100, description="a preset name, as listed by GET /catalog")
    overrides: dict[str, Any] = Field(default_factory=dict, description="top-level spec fields to replace")


class SweepPublic(BaseModel):
    id: str
    name: str
    status: SweepState
    created_at: datetime
    updated_at: datetime
    job_id: str | None = Field(description="Ray job of the latest run")
    error: PublicError = Field(None, description="why the sweep failed, in one line (the full text is in the logs)")


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    count: int = Field(description="all sweeps that match, not only this page")


class DriverPublic(BaseModel):
    """What the sweep's driver last wrote to driver.json."""

    state: str
    runs: int = Field(description="1 + how many times the sweep was resumed")
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    error: PublicError = None


class SweepDetail(SweepPublic):
    job_ids: list[str] = Field(description="every run's job: the first, then one per resume (<id>-r<N>)")
    job_status: str | None = Field(
        description="Ray's state of the latest job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); "
        "`unknown` when the cluster no longer has it, `unreachable` when the cluster did not answer"
    )
    dashboard_url: str | None = Field(description="the job's page on the Ray dashboard")
    results_dir: str
    counts: dict[str, int] = Field(description="trials by status")
    total_trials: int
    finished_trials: int = Field(description="trials that ended: completed, diverged, stopped, failed or cancelled")
    percent_done: float = Field(
        description="share of the planned epochs settled: a completed, diverged or stopped trial counts in full, "
        "any other the epochs it ran"
    )
    eta_seconds: float | None = Field(
        description="time left, from the mean wall time of completed trials and the trials running at once"
    )
    driver: DriverPublic | None
    spec: dict[str, Any]
    history: list[str] = Field(
        default_factory=list, description="when the sweep started and what each extension added, oldest first"
    )


class SuggestionPublic(BaseModel):
    kind: Literal["widen_lrs", "add_seeds", "rerun"] = Field(
        description="widen_lrs: an LR beyond a grid edge that cells chose; add_seeds: seeds where the best method's "
        "interval overlaps the runner-up's (or there is none); rerun: cells with failed or cancelled trials"
    )
    cells: list[str] = Field(description="model/dataset/method of the cells that call for it")
    reason: str
    changes: dict[str, Any] = Field(description="the spec fields this suggestion alone sets")


class SuggestionsPublic(BaseModel):
    sweep_id: str
    data: list[SuggestionPublic]
    extension: dict[str, Any] = Field(description="all of them as one body for POST /sweeps/{id}/extend")
    trials_added: int = Field(description="trials that extension adds to the grid")


def _record_fields(record: type) -> dict[str, Any]:
    """pydantic fields for every field of a record, each optional (a row written early has gaps), with its doc."""
    return {name: (tp | None, Field(None, description=doc or None)) for name, tp, doc in record_fields(record)}


_IDENTITY: dict[str, Any] = {
    "trial_id": (str, Field(description="a stable hash of the trial's science")),
    "model": (str, ...),
    "dataset": (str, ...),
    "method": (str, ...),
    "lr": (float, ...),
    "seed": (int, ...),
}

TrialPublic = create_model(
    "TrialPublic",
    __doc__="One trial: its identity and its summary at the best-ID-validation epoch (`worker.records.TrialSummary`).",
    **_IDENTITY,
    **{
        **_record_fields(TrialSummary),
        "status": (TrialStatusName, ...),
        "error": (PublicError, Field(None, description="why the trial failed, in one line (trials.parquet has all)")),
        "reused_from": (str | None, Field(None, description="the sweep its result was copied from; null: run here")),
    },
    updated_at=(datetime | None, None),
)


class TrialDetail(TrialPublic):  # type: ignore[valid-type,misc]
    config: dict[str, Any] = Field(description="the full trial config")


class TrialsPublic(BaseModel):
    data: list[TrialPublic]  # type: ignore[valid-type]
    count: int = Field(description="all trials that match the filters, not only this page")


EpochPublic = create_model(
    "EpochPublic",
    __doc__="One epoch of a trial, as the worker reported it (`worker.records.EpochReport`).",
    **{
        **_record_fields(EpochReport),
        "epoch": (int, ...),
        "split_metrics": (dict[str, float | None], Field(default_factory=dict)),
        "is_best": (bool, False),
    },
    reported_at=(datetime | None, None),
)


class EpochsPublic(BaseModel):
    trial_id: str
    data: list[EpochPublic]  # type: ignore[valid-type]
    count: int


class TablesPublic(BaseModel):
    data: list[str] = Field(description="table names for GET /sweeps/{id}/tables/{name}")
    formats: list[str]


class CatalogPublic(BaseModel):
    models: dict[str, dict[str, Any]]
    datasets: dict[str, dict[str, Any]]
    methods: dict[str, dict[str, Any]]
    presets: list[str]
    tables: list[str]
    table_formats: list[str]


class RayHealth(BaseModel):
    reachable: bool
    address: str | None = None
    dashboard_url: str | None = None
    error: PublicError = None


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    registry: Literal["ok"] = "ok"
    ray: RayHealth
