"""Sweeps as the service manages them: submit, reconcile with the cluster, cancel, resume, describe.

The service keeps no driver and no in-memory state a restart would lose: the registry holds what was asked,
the cluster holds what runs, and the sweep's directory holds what happened. Every read of an active sweep
reconciles the registry with the job's state and driver.json.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import timedelta
from functools import lru_cache
from typing import Any

import yaml

from analysis.suggest import Suggestions, suggest_extension
from analysis.sweep_data import load_sweep
from api import ACTIVE_STATES, TERMINAL_STATES
from api.server.errors import Conflict, Invalid, NotFound, Unavailable, quoted
from api.server.final_report import FinalReports
from api.server.jobs import BackendTimeout, BackendUnavailable, JobBackend, JobExistsError
from api.server.reconcile import decide
from api.server.registry import (
    DuplicateKeyError,
    StaleRecordError,
    SweepRecord,
    SweepRepository,
    UnknownSweepError,
    new_sweep_id,
    utcnow,
)
from api.server.schemas import DriverPublic, SweepDetail, SweepPublic
from api.server.settings import Settings
from api.server.submission import check, check_fits, parse_body, prepare, request_hash
from api.server.sweep_files import SweepFiles
from orchestrator import Location, NodeCapacity, SweepSpec, SweepSpecError, load_spec
from orchestrator.extension import extension_problems
from worker.catalog import CatalogError

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200
_ID_ATTEMPTS = 5
MAX_RECONCILED = 10_000  # active sweeps reconciled per listing; far above any real number
EXTEND_EXAMPLE = '{"seeds": [0, 1, 2], "lrs": {"sgd": [3e-5, 1e-4, 3e-4, 1e-3]}}'


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
        self._locks: dict[str, threading.Lock] = {}  # one per sweep: its cancel / resume decisions, one at a time
        self._locks_guard = threading.Lock()
        self.reports = FinalReports()

    def _lock(self, sweep_id: str) -> threading.Lock:
        """This process's lock for one sweep; other processes are kept out by the registry's conditional updates."""
        with self._locks_guard:
            return self._locks.setdefault(sweep_id, threading.Lock())

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
        # --extend: the spec file may hold a grown spec (an extension, or a resume of one that was interrupted)
        return args + ["--resume", "--extend"] if resume else args

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

    def _nodes(self) -> list[NodeCapacity] | None:
        """The nodes a trial may run on, from the settings or else the cluster; None when it cannot tell."""
        given = self.settings.node_cpus, self.settings.node_gpus
        if given != (None, None):
            return [NodeCapacity(cpus=given[0] or math.inf, gpus=given[1] or 0.0)]
        try:
            return self.backend.node_capacities()
        except BackendUnavailable as e:
            raise Unavailable(f"cannot check the cluster's nodes: {e}") from None

    def submit(self, body: Any, *, idempotency_key: str | None = None) -> tuple[SweepRecord, bool]:
        """Validate, record and start a sweep; (record, True), or (the first record, False) for a retry.

        Everything that can be checked is checked before the sweep is stored: the spec alone first (so a bad
        spec is answered even when the cluster is down), then against the cluster's nodes.
        """
        digest = request_hash(body)
        if idempotency_key is not None:
            if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
                raise Invalid.one("header.Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters")
            first = self._replay(idempotency_key, digest)
            if first is not None:
                return first, False
        spec = prepare(parse_body(body), base_dir=self.settings.base_dir)
        check(spec, trial_ceiling=self.settings.max_trials, check_data=self.settings.check_data)
        check_fits(spec, self._nodes())
        record, created = self._insert(spec, idempotency_key, digest)
        if not created:
            return record, False  # a concurrent request with the same key won the race
        try:
            self._write_spec(record.id, record.spec)
        except OSError as e:
            self.repository.delete(sweep_id=record.id)
            raise Unavailable(f"the sweep's spec could not be stored: {e}") from None
        try:
            job_id = self.backend.submit(record.id, self._args(record.id, resume=False), self._env())
        except BackendTimeout as e:
            # The job may yet start: the record stays, and the next read adopts the job or, after the grace
            # period, calls the sweep failed. A retry with the same Idempotency-Key returns this sweep.
            raise Unavailable(
                f"{e}; sweep {record.id} is recorded and will show its job's state once the cluster answers"
            ) from None
        except (BackendUnavailable, JobExistsError) as e:
            self.repository.delete(sweep_id=record.id)
            self.files.spec_file(record.id).unlink(missing_ok=True)
            raise Unavailable(f"the sweep could not be submitted: {e}") from None
        record = self._record_first_job(record, job_id)
        log.info("sweep %s submitted as job %s (%d trials)", record.id, job_id, spec.grid_size())
        return record, True

    def _record_first_job(self, record: SweepRecord, job_id: str) -> SweepRecord:
        try:
            return self.repository.update(
                sweep_id=record.id, job_ids=(job_id,), expect_status={"submitted"}, expect_job_ids=()
            )
        except StaleRecordError:
            now = self.repository.get(sweep_id=record.id)
            if job_id not in now.job_ids:  # cancelled while its job was being submitted: that job must not run
                self._stop_quietly(job_id)
            return now

    def _stop_quietly(self, job_id: str) -> None:
        try:
            self.backend.stop(job_id)
        except BackendUnavailable as e:
            log.warning("job %s could not be stopped: %s", job_id, e)

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
            raise NotFound(f"no sweep with id {quoted(sweep_id)}") from None

    def _within_grace(self, record: SweepRecord) -> bool:
        """Whether a job the cluster does not know may still be on its way (submitted by this or another process)."""
        return utcnow() - record.updated_at < timedelta(seconds=self.settings.submit_grace_s)

    def reconcile(self, record: SweepRecord, *, attempts: int = 3) -> tuple[SweepRecord, str | None]:
        """The record brought up to date with its job, and the job's state as the cluster reported it.

        Ended sweeps are not asked about (their job can only have ended too); the job state is then None. A
        sweep whose submitting process died before it recorded the job is found by the job's name, which is the
        sweep's id. Every change is conditional on the record as it was read, so a concurrent transition wins; the
        record as the winner left it is then reconciled again (a few times at most).
        """
        if not record.active:
            return record, None
        job_id = record.job_id or record.id  # a sweep's first job is named after the sweep
        try:
            job_status = self.backend.status(job_id)
        except BackendUnavailable:
            return record, "unreachable"
        if job_status is None and record.status == "submitted" and self._within_grace(record):
            return record, "unknown"  # not yet seen on the cluster: its submission may still be under way
        try:
            if record.job_id is None:
                if job_status is None:
                    return self._set_state(
                        record, "failed", "the sweep's job never reached the cluster; resume the sweep to run it"
                    ), "unknown"
                record = self.repository.update(
                    sweep_id=record.id, job_ids=(job_id,), expect_status={record.status}, expect_job_ids=()
                )
                log.info("sweep %s: adopted its job %s, which was submitted but not recorded", record.id, job_id)
            state, error = decide(record.status, job_id, job_status, self.files.driver(record.id), len(record.job_ids))
            if state != record.status or error != record.error:
                record = self._set_state(record, state, error)
        except StaleRecordError:
            fresh = self.repository.get(sweep_id=record.id)
            return self.reconcile(fresh, attempts=attempts - 1) if attempts > 1 else (fresh, job_status or "unknown")
        return record, job_status or "unknown"

    def _set_state(self, record: SweepRecord, state: str, error: str | None) -> SweepRecord:
        """Move an active record to `state`; once its job has ended, its files are made to say so too."""
        new = self.repository.update(
            sweep_id=record.id,
            status=state,
            error=error,
            clear_error=error is None,
            expect_status={record.status},
            expect_job_ids=record.job_ids,
        )
        if state in TERMINAL_STATES:
            try:
                self.files.mark_lost(record.id, state, error)
            except (OSError, ValueError) as e:
                log.warning("sweep %s: its files could not be marked %s: %s", record.id, state, e)
            dashboard = self.backend.job_url(record.job_id) if record.job_id else None
            threading.Thread(
                target=self._save_report, args=(new, dashboard), name=f"report-{record.id}", daemon=True
            ).start()  # drawing takes seconds: not on the request that noticed the end
        return new

    def _save_report(self, record: SweepRecord, dashboard_url: str | None) -> None:
        try:
            self.final_report(record, dashboard_url)
        except Exception as e:  # noqa: BLE001 - the results are safe; GET /report draws the page on request
            log.warning("sweep %s: report.html not written: %s: %s", record.id, type(e).__name__, e)

    def final_report(self, record: SweepRecord, dashboard_url: str | None) -> str:
        """An ended sweep's report.html, drawn once and saved beside its results."""
        return self.reports.page(
            self.files.checked_dir(record.id),
            sweep_id=record.id,
            state=record.status,
            ended_at=record.updated_at.timestamp(),
            dashboard_url=dashboard_url,
        )

    def get(self, sweep_id: str) -> tuple[SweepRecord, str | None]:
        return self.reconcile(self.record(sweep_id))

    def reconcile_active(self) -> int:
        """Reconcile every sweep that has not ended; returns how many there were. Run at start-up, so that a
        sweep a crashed process left half-submitted is settled without waiting for someone to read it."""
        seen = 0
        for state in ACTIVE_STATES:
            active, _ = self.repository.page(limit=MAX_RECONCILED, offset=0, status=state)
            for record in active:
                self.reconcile(record)
            seen += len(active)
        return seen

    def page(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[SweepRecord], int]:
        """A page of sweeps; every active sweep is reconciled first, so that the state filter is current."""
        self.reconcile_active()
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
            history=self.files.history(record.id),
        )

    # ---- cancel and resume -------------------------------------------------------------------------------

    def cancel(self, sweep_id: str) -> tuple[SweepRecord, str | None]:
        with self._lock(sweep_id):
            record, _ = self.get(sweep_id)
            if not record.active:
                raise Conflict(f"sweep {sweep_id} is {record.status}; only a sweep that has not ended can be cancelled")
            job_id = record.job_id or record.id  # a job not recorded yet is named after the sweep
            try:
                stopped = self.backend.stop(job_id)
            except BackendUnavailable as e:
                raise Unavailable(f"the sweep's job could not be stopped: {e}") from None
            if record.job_id is None and not stopped:
                # its job is not on the cluster: cancelled here; a submit still under way stops it when it lands
                try:
                    return self._set_state(record, "cancelled", None), None
                except StaleRecordError:
                    return self.get(sweep_id)
            try:
                record = self.repository.update(
                    sweep_id=sweep_id, status="cancelling", expect_status=ACTIVE_STATES, expect_job_ids=record.job_ids
                )
            except StaleRecordError:
                record = self.repository.get(sweep_id=sweep_id)
            return self.reconcile(record)

    def resume(self, sweep_id: str) -> tuple[SweepRecord, str | None]:
        """A new job `<id>-r<N>` that continues the sweep from its stored results and Tune state."""
        with self._lock(sweep_id):
            record, _ = self.get(sweep_id)
            if record.active:
                raise Conflict(
                    f"sweep {sweep_id} is {record.status}; resume it after it has ended (cancel it first to restart it)"
                )
            return self._next_run(record, spec=None)

    def extend(self, sweep_id: str, body: Any) -> tuple[SweepRecord, str | None]:
        """Grow an ended sweep's grid (the body replaces top-level fields of its spec) and run what is not done.

        Everything is checked before anything changes: the grown spec alone, then that it extends the stored one
        (`orchestrator.extension.extension_problems`), then against the cluster's nodes.
        """
        if not isinstance(body, dict):
            raise Invalid.one("body", f"expected a JSON object of spec fields to replace, e.g. {EXTEND_EXAMPLE}")
        with self._lock(sweep_id):
            record, _ = self.get(sweep_id)
            if record.active:
                raise Conflict(
                    f"sweep {sweep_id} is {record.status}; extend it after it has ended (or cancel it first)"
                )
            grown = self._grown_spec(record, body)
            return self._next_run(record, spec=grown.model_dump(mode="json"))

    def _grown_spec(self, record: SweepRecord, body: dict[str, Any]) -> SweepSpec:
        try:
            old = load_spec(record.spec)
        except SweepSpecError as e:
            raise Conflict(f"sweep {record.id}'s stored spec no longer loads, so it cannot be extended: {e}") from None
        if "preset" in body:
            raise Invalid.one("preset", f"an extension replaces fields of the sweep's spec, e.g. {EXTEND_EXAMPLE}")
        grown = prepare(parse_body({**record.spec, **body}), base_dir=self.settings.base_dir)
        check(grown, trial_ceiling=self.settings.max_trials, check_data=self.settings.check_data)
        problems = extension_problems(old, grown)
        if problems:
            raise Invalid(problems)
        check_fits(grown, self._nodes())
        return grown

    def suggestions(self, sweep_id: str) -> Suggestions:
        """The extension the sweep's results call for, from its current tables."""
        record = self.record(sweep_id)
        try:
            spec = load_spec(record.spec)
        except SweepSpecError as e:
            raise Conflict(f"sweep {sweep_id}'s stored spec no longer loads: {e}") from None
        data = load_sweep(self.files.checked_dir(sweep_id))
        return suggest_extension(spec, data.cells)

    def _next_run(self, record: SweepRecord, *, spec: dict[str, Any] | None) -> tuple[SweepRecord, str | None]:
        """Start the sweep's next job, `<id>-r<N>`, on its stored spec or (an extension) on `spec`.

        The job's name, and the grown spec, are claimed in the registry before the job is submitted, by a
        conditional update, so of two concurrent requests (in one process or two) exactly one starts a job and the
        other gets 409. The spec file the job reads is written from the registry's record every time.
        """
        n = len(record.job_ids)
        for _ in range(_ID_ATTEMPTS):
            job_id = record.id if n == 0 else f"{record.id}-r{n}"  # a sweep whose first job never ran starts anew
            claimed = self._claim(record, job_id, spec=spec)
            try:
                self._write_spec(record.id, claimed.spec)
                self.backend.submit(job_id, self._args(record.id, resume=n > 0), self._env())
            except OSError as e:
                self._release(claimed, record)
                raise Unavailable(f"the sweep's spec could not be stored: {e}") from None
            except JobExistsError:  # a job of that name exists from before this registry knew of it
                self._release(claimed, record)
                n += 1
                continue
            except BackendTimeout as e:
                raise Unavailable(f"{e}; the new run is recorded and will show once the cluster answers") from None
            except BackendUnavailable as e:
                self._release(claimed, record)
                raise Unavailable(f"the sweep's next run could not be submitted: {e}") from None
            log.info("sweep %s %s as job %s", record.id, "extended" if spec else "resumed", job_id)
            return self.reconcile(claimed)
        raise Unavailable(f"no free job name for the next run of sweep {record.id}")

    def _claim(self, record: SweepRecord, job_id: str, *, spec: dict[str, Any] | None) -> SweepRecord:
        try:
            return self.repository.update(
                sweep_id=record.id,
                status="submitted",
                job_ids=(*record.job_ids, job_id),
                clear_error=True,
                spec=spec,
                expect_status={record.status},
                expect_job_ids=record.job_ids,
            )
        except StaleRecordError:
            now = self.repository.get(sweep_id=record.id)
            raise Conflict(f"sweep {record.id} was changed by another request meanwhile; it is {now.status}") from None

    def _release(self, claimed: SweepRecord, before: SweepRecord) -> None:
        """Undo a claim whose job was not started (unless someone changed the record since)."""
        try:
            self.repository.update(
                sweep_id=before.id,
                status=before.status,
                job_ids=before.job_ids,
                error=before.error,
                clear_error=before.error is None,
                spec=before.spec if claimed.spec != before.spec else None,
                expect_status={claimed.status},
                expect_job_ids=claimed.job_ids,
            )
        except StaleRecordError:
            return
        if claimed.spec != before.spec:
            try:
                self._write_spec(before.id, before.spec)
            except OSError as e:  # the next run rewrites it from the registry anyway
                log.warning("sweep %s: its spec file was not put back: %s", before.id, e)


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
