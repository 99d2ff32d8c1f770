"""Sweeps as the service manages them: submit, reconcile with the cluster, cancel, resume, describe.

The service keeps no driver and no in-memory state a restart would lose: the registry holds what was asked,
the cluster holds what runs, and the sweep's directory holds what happened. Every read of an active sweep
reconciles the registry with the job's state and driver.json.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import lru_cache
from typing import Any

import yaml

from api import ACTIVE_STATES
from api.server.errors import Conflict, Invalid, NotFound, Unavailable
from api.server.jobs import BackendUnavailable, JobBackend, JobExistsError
from api.server.reconcile import decide
from api.server.registry import DuplicateKeyError, SweepRecord, SweepRepository, UnknownSweepError, new_sweep_id
from api.server.schemas import DriverPublic, SweepDetail, SweepPublic
from api.server.settings import Settings
from api.server.submission import check, parse_body, prepare, request_hash
from api.server.sweep_files import SweepFiles
from orchestrator import Location, SweepSpec, SweepSpecError, load_spec
from worker.catalog import CatalogError

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200
_ID_ATTEMPTS = 5
MAX_RECONCILED = 10_000  # active sweeps reconciled per listing; far above any real number


@lru_cache(maxsize=4096)
def _planned_trials(spec_json: str) -> int:
    """Trials a stored spec expands to (0 for a probe-only sweep); specs never change, so this is cached.

    A spec that no longer expands (the catalog lost one of its names) counts 0 until its trials table exists.
    """
    try:
        spec = load_spec(json.loads(spec_json))
        return 0 if spec.probe_only else len(spec.expand())
    except (SweepSpecError, CatalogError):
        return 0


class SweepService:
    def __init__(self, settings: Settings, repository: SweepRepository, backend: JobBackend, files: SweepFiles):
        self.settings = settings
        self.repository = repository
        self.backend = backend
        self.files = files
        self._transitions = threading.Lock()  # one submit / cancel / resume decision at a time

    # ---- the job's command line --------------------------------------------------------------------------

    def _args(self, sweep_id: str, *, resume: bool) -> list[str]:
        args = [
            self.settings.python,
            "-m",
            "orchestrator.run",
            "--spec",
            str(self.files.spec_file(sweep_id)),
            "--sweep-id",
            sweep_id,
            "--storage",
            str(self.settings.storage),
        ]
        return args + ["--resume"] if resume else args

    def _env(self) -> dict[str, str]:
        # SIGINT lets Tune save its experiment state; the default SIGTERM + kill after 3 s left sweeps unresumable.
        return {
            "RAY_JOB_STOP_SIGNAL": "SIGINT",
            "RAY_JOB_STOP_WAIT_TIME_S": str(self.settings.stop_wait_s),
            "OUTDATED_IGNORE": "1",
        }

    def _write_spec(self, sweep_id: str, spec: dict[str, Any]) -> None:
        path = self.files.spec_file(sweep_id)
        Location(path.parent).write_bytes(path.name, yaml.safe_dump(spec, sort_keys=False).encode())

    # ---- submission --------------------------------------------------------------------------------------

    def _cluster_gpus(self, spec: SweepSpec) -> float | None:
        if spec.resources.gpus == 0:
            return None  # nothing to check
        if self.settings.cluster_gpus is not None:
            return self.settings.cluster_gpus
        try:
            return self.backend.cluster_gpus()
        except BackendUnavailable as e:
            raise Unavailable(f"cannot check the cluster's GPUs: {e}") from None

    def submit(self, body: Any, *, idempotency_key: str | None = None) -> tuple[SweepRecord, bool]:
        """Validate, record and start a sweep; (record, True), or (the first record, False) for a retry."""
        digest = request_hash(body)
        if idempotency_key is not None:
            if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
                raise Invalid.one("header.Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters")
            first = self._replay(idempotency_key, digest)
            if first is not None:
                return first, False
        spec = prepare(parse_body(body), base_dir=self.settings.base_dir)
        check(spec, cluster_gpus=self._cluster_gpus(spec), check_data=self.settings.check_data)
        with self._transitions:
            record, created = self._insert(spec, idempotency_key, digest)
            if not created:
                return record, False  # a concurrent request with the same key won the race
            try:
                self._write_spec(record.id, record.spec)
                job_id = self.backend.submit(record.id, self._args(record.id, resume=False), self._env())
            except (BackendUnavailable, JobExistsError, OSError) as e:
                self.repository.delete(sweep_id=record.id)
                self.files.spec_file(record.id).unlink(missing_ok=True)
                raise Unavailable(f"the sweep could not be submitted: {e}") from None
            record = self.repository.update(sweep_id=record.id, status="submitted", job_ids=(job_id,))
        log.info("sweep %s submitted as job %s (%d trials)", record.id, job_id, spec.grid_size())
        return record, True

    def _replay(self, key: str, digest: str) -> SweepRecord | None:
        first = self.repository.find_by_idempotency_key(key=key)
        if first is not None and first.request_hash != digest:
            raise Conflict(f"Idempotency-Key {key!r} was used for a different request (sweep {first.id})")
        return first

    def _insert(self, spec: SweepSpec, key: str | None, digest: str) -> tuple[SweepRecord, bool]:
        for _ in range(_ID_ATTEMPTS):
            sweep_id = new_sweep_id()
            record = SweepRecord(
                id=sweep_id,
                name=spec.name,
                spec=spec.model_dump(mode="json"),
                status="submitted",
                storage_dir=str(self.files.sweep_dir(sweep_id)),
                idempotency_key=key,
                request_hash=digest,
            )
            try:
                self.repository.add(record=record)
                return record, True
            except DuplicateKeyError:
                if key is not None:
                    first = self._replay(key, digest)
                    if first is not None:
                        return first, False
        raise Unavailable(f"no free sweep id after {_ID_ATTEMPTS} attempts")

    # ---- reading and reconciling -------------------------------------------------------------------------

    def record(self, sweep_id: str) -> SweepRecord:
        try:
            return self.repository.get(sweep_id=sweep_id)
        except UnknownSweepError:
            raise NotFound(f"no sweep with id {sweep_id!r}") from None

    def reconcile(self, record: SweepRecord) -> tuple[SweepRecord, str | None]:
        """The record brought up to date with its job, and the job's state as the cluster reported it.

        Ended sweeps are not asked about (their job can only have ended too); the job state is then None.
        """
        if not record.active or record.job_id is None:
            return record, None
        try:
            job_status = self.backend.status(record.job_id)
        except BackendUnavailable:
            return record, "unreachable"
        driver = self.files.driver(record.id)
        state, error = decide(record.status, record.job_id, job_status, driver, len(record.job_ids))
        if state != record.status or error != record.error:
            record = self.repository.update(sweep_id=record.id, status=state, error=error, clear_error=error is None)
        return record, job_status or "unknown"

    def get(self, sweep_id: str) -> tuple[SweepRecord, str | None]:
        return self.reconcile(self.record(sweep_id))

    def page(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[SweepRecord], int]:
        """A page of sweeps; every active sweep is reconciled first, so that the state filter is current."""
        for state in ACTIVE_STATES:
            active, _ = self.repository.page(limit=MAX_RECONCILED, offset=0, status=state)
            for record in active:
                self.reconcile(record)
        return self.repository.page(limit=limit, offset=offset, status=status)

    def detail(self, record: SweepRecord, job_status: str | None) -> SweepDetail:
        expected = _planned_trials(json.dumps(record.spec, sort_keys=True))
        progress = self.files.progress(record.id, expected_total=expected, active=record.active)
        driver = self.files.driver(record.id)
        return SweepDetail(
            **SweepPublic.model_validate(record, from_attributes=True).model_dump(),
            job_ids=list(record.job_ids),
            job_status=job_status,
            dashboard_url=self.backend.job_url(record.job_id) if record.job_id else None,
            results_dir=record.storage_dir,
            counts=progress.counts,
            total_trials=progress.total,
            finished_trials=progress.ended,
            percent_done=progress.percent_done,
            eta_seconds=progress.eta_seconds,
            driver=_driver_public(driver),
            spec=record.spec,
        )

    # ---- cancel and resume -------------------------------------------------------------------------------

    def cancel(self, sweep_id: str) -> tuple[SweepRecord, str | None]:
        with self._transitions:
            record, _ = self.get(sweep_id)
            if not record.active:
                raise Conflict(f"sweep {sweep_id} is {record.status}; only a sweep that has not ended can be cancelled")
            assert record.job_id is not None  # an active sweep always has a job
            try:
                self.backend.stop(record.job_id)
            except BackendUnavailable as e:
                raise Unavailable(f"the sweep's job could not be stopped: {e}") from None
            record = self.repository.update(sweep_id=sweep_id, status="cancelling")
            return self.reconcile(record)

    def resume(self, sweep_id: str) -> tuple[SweepRecord, str | None]:
        """A new job `<id>-r<N>` that continues the sweep from its stored results and Tune state."""
        with self._transitions:
            record, _ = self.get(sweep_id)
            if record.active:
                raise Conflict(
                    f"sweep {sweep_id} is {record.status}; resume it after it has ended (cancel it first to restart it)"
                )
            if not self.files.spec_file(sweep_id).exists():
                self._write_spec(sweep_id, record.spec)
            n = len(record.job_ids)
            for _ in range(_ID_ATTEMPTS):
                job_id = f"{sweep_id}-r{n}"
                try:
                    job_id = self.backend.submit(job_id, self._args(sweep_id, resume=True), self._env())
                    break
                except JobExistsError:
                    n += 1  # a job of that name was submitted before but never recorded
                except BackendUnavailable as e:
                    raise Unavailable(f"the sweep could not be resumed: {e}") from None
            else:
                raise Unavailable(f"no free job name for resuming sweep {sweep_id}")
            record = self.repository.update(
                sweep_id=sweep_id, status="submitted", job_ids=(*record.job_ids, job_id), clear_error=True
            )
            log.info("sweep %s resumed as job %s", sweep_id, job_id)
            return self.reconcile(record)


def _driver_public(driver: dict[str, Any] | None) -> DriverPublic | None:
    if driver is None or not isinstance(driver.get("state"), str):
        return None
    try:
        runs = int(driver.get("runs") or 0)
    except (TypeError, ValueError):
        runs = 0
    text = {k: (str(driver[k]) if driver.get(k) is not None else None) for k in ("started_at", "finished_at")}
    return DriverPublic(
        state=driver["state"],
        runs=runs,
        updated_at=str(driver["updated_at"]) if driver.get("updated_at") else None,
        error=str(driver["error"]) if driver.get("error") else None,
        **text,
    )
