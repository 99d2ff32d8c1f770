"""The shapes of the REST API, as a family: a Public record, a Detail that extends it, and `{data, count}` pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.registry import SWEEP_STATES

SweepState = Literal[SWEEP_STATES]  # type: ignore[valid-type]


class Problem(BaseModel):
    field: str = Field(description="where the problem is: a spec field (`models[1]`), or `query.limit`, ...")
    message: str


class ErrorResponse(BaseModel):
    detail: str | list[Problem]


class PresetSubmission(BaseModel):
    """Submit a preset from `configs/sweeps/`, with top-level spec fields replaced by `overrides`."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field(description="a preset name, as listed by GET /catalog")
    overrides: dict[str, Any] = Field(default_factory=dict, description="top-level spec fields to replace")


class SweepPublic(BaseModel):
    id: str
    name: str
    status: SweepState
    created_at: datetime
    updated_at: datetime
    job_id: str | None = Field(description="Ray job of the latest run")
    error: str | None = None


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
    error: str | None = None


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
    finished_trials: int = Field(description="completed, diverged, stopped or failed")
    percent_done: float = Field(description="share of all planned epochs done; a finished trial counts in full")
    eta_seconds: float | None = Field(
        description="time left, from the mean wall time of completed trials and the trials running at once"
    )
    driver: DriverPublic | None
    spec: dict[str, Any]


class TrialPublic(BaseModel):
    trial_id: str
    model: str
    dataset: str
    method: str
    lr: float
    seed: int
    status: str
    epochs_planned: int | None = None
    epochs_done: int | None = None
    best_epoch: int | None = None
    id_val: float | None = None
    id_test: float | None = None
    ood_test: float | None = None
    final_train_loss: float | None = None
    wall_time_s: float | None = None
    optimizer_state_bytes: int | None = None
    peak_memory_bytes: int | None = None
    trainable_params: int | None = None
    frozen_params: int | None = None
    error: str | None = None
    updated_at: datetime | None = None


class TrialDetail(TrialPublic):
    config: dict[str, Any] = Field(description="the full trial config")


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int = Field(description="all trials that match the filters, not only this page")


class EpochPublic(BaseModel):
    epoch: int
    train_loss: float | None = None
    lr_now: float | None = None
    id_val: float | None = None
    id_test: float | None = None
    ood_test: float | None = None
    split_metrics: dict[str, float | None] = Field(default_factory=dict)
    epoch_time_s: float | None = None
    train_time_s: float | None = None
    train_images_per_s: float | None = None
    optimizer_state_bytes: int | None = None
    peak_memory_bytes: int | None = None
    is_best: bool = False
    reported_at: datetime | None = None


class EpochsPublic(BaseModel):
    trial_id: str
    data: list[EpochPublic]
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
    error: str | None = None


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    registry: Literal["ok"] = "ok"
    ray: RayHealth
