"""A sweep's lifecycle when a process dies at the worst moment, or two processes act on one sweep at once.

Each crash is played where it can happen: the API process dying between recording a sweep and recording its
job (before or after the cluster accepted it), dying after it claimed a resume, the driver dying mid-sweep. Two
services on one SQLite registry stand for two API processes (their own connections, no shared memory).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.server.errors import Conflict
from api.server.file_cache import FileCache
from api.server.jobs import FakeJobBackend
from api.server.main import create_app
from api.server.registry import SqliteSweepRepository
from api.server.service import SweepService
from api.server.settings import Settings, get_settings
from api.server.sweep_files import SweepFiles
from tests.api.support import TOKEN, spec_body, write_driver, write_results

SWEEPS = "/api/v1/sweeps"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ProcessDied(BaseException):
    """Stands for kill -9 of the API process: nothing after the point it is raised at runs."""


class CrashingBackend(FakeJobBackend):
    """Dies once, on the next submit: before the cluster took the job, or right after."""

    crash: str | None = None  # "before" | "after" | None

    def submit(self, submission_id: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        when, self.crash = self.crash, None
        if when == "before":
            raise ProcessDied
        job = super().submit(submission_id, args, env)
        if when == "after":
            raise ProcessDied
        return job


@pytest.fixture
def grace_settings(tmp_path: Path) -> Settings:
    return get_settings(
        storage=tmp_path / "storage", base_dir=tmp_path, api_token=TOKEN, check_data=False, submit_grace_s=0.2
    )


def _service(settings: Settings, backend: FakeJobBackend) -> SweepService:
    """A service as an API process builds it: its own registry connection, its own caches."""
    return SweepService(
        settings, SqliteSweepRepository(settings.registry_file), backend, SweepFiles(settings.storage, FileCache())
    )


def _died_submitting(settings: Settings, backend: CrashingBackend, when: str) -> str:
    backend.crash = when
    dying = _service(settings, backend)
    with pytest.raises(ProcessDied):
        dying.submit(spec_body())
    (record,), _ = dying.repository.page(limit=10, offset=0)
    assert record.status == "submitted" and record.job_ids == ()
    return record.id


def test_a_job_submitted_but_not_recorded_is_adopted(grace_settings: Settings):
    backend = CrashingBackend()
    sid = _died_submitting(grace_settings, backend, "after")
    with TestClient(create_app(grace_settings, backend=backend), headers=AUTH) as restarted:
        got = restarted.get(f"{SWEEPS}/{sid}").json()
        assert got["status"] == "pending" and got["job_ids"] == [sid]
        r = restarted.post(f"{SWEEPS}/{sid}/cancel")
        assert r.status_code == 202 and backend.jobs[sid].stop_requested
        assert restarted.get(f"{SWEEPS}/{sid}").json()["status"] == "cancelled"


def test_a_job_that_never_reached_the_cluster_fails_after_the_grace_and_resumes(grace_settings: Settings):
    backend = CrashingBackend()
    sid = _died_submitting(grace_settings, backend, "before")
    with TestClient(create_app(grace_settings, backend=backend), headers=AUTH) as restarted:
        assert restarted.get(f"{SWEEPS}/{sid}").json()["status"] == "submitted"  # within the grace: maybe on its way
        threading.Event().wait(0.3)
        got = restarted.get(SWEEPS).json()["data"][0]
        assert got["status"] == "failed" and "never reached the cluster" in got["error"]
        r = restarted.post(f"{SWEEPS}/{sid}/resume")
        assert r.status_code == 202 and r.json()["job_ids"] == [sid]
        assert "--resume" not in backend.jobs[sid].args  # its first run: started anew


def test_cancel_of_a_sweep_whose_job_never_arrived(grace_settings: Settings):
    backend = CrashingBackend()
    sid = _died_submitting(grace_settings, backend, "before")
    with TestClient(create_app(grace_settings, backend=backend), headers=AUTH) as restarted:
        r = restarted.post(f"{SWEEPS}/{sid}/cancel")
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        assert restarted.post(f"{SWEEPS}/{sid}/cancel").status_code == 409


def _hold_submits(backend: FakeJobBackend, hold_s: float) -> tuple[threading.Event, threading.Event]:
    """Make the cluster hold each submit until `release` is set (at most `hold_s`); `entered` says one arrived."""
    entered, release = threading.Event(), threading.Event()
    real_submit = backend.submit

    def held_submit(submission_id: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        entered.set()
        release.wait(hold_s)
        return real_submit(submission_id, args, env)

    backend.submit = held_submit  # type: ignore[method-assign]
    return entered, release


def test_a_submit_that_lands_after_a_cancel_is_stopped(grace_settings: Settings):
    backend = FakeJobBackend()
    first, second = _service(grace_settings, backend), _service(grace_settings, backend)
    entered, release = _hold_submits(backend, 10)  # the cluster takes its time; meanwhile another process cancels
    t = threading.Thread(target=first.submit, args=(spec_body(),))
    t.start()
    assert entered.wait(10)
    (record,), _ = second.repository.page(limit=10, offset=0)
    assert second.cancel(record.id)[0].status == "cancelled"
    release.set()
    t.join(10)
    assert backend.jobs[record.id].stop_requested  # the job that landed late was stopped at once
    assert second.record(record.id).status == "cancelled" and second.record(record.id).job_ids == ()


def test_two_processes_resume_one_sweep_once(grace_settings: Settings):
    backend = FakeJobBackend()
    one, other = _service(grace_settings, backend), _service(grace_settings, backend)
    record, _ = one.submit(spec_body())
    backend.set_status(record.id, "FAILED")
    entered, release = _hold_submits(backend, 10)
    t = threading.Thread(target=one.resume, args=(record.id,))
    t.start()
    assert entered.wait(10)  # the first resume has claimed the job name and is talking to the cluster
    with pytest.raises(Conflict, match="submitted"):
        other.resume(record.id)
    release.set()
    t.join(10)
    assert sorted(backend.jobs) == [record.id, f"{record.id}-r1"]
    assert other.record(record.id).job_ids == (record.id, f"{record.id}-r1")


def test_a_resume_claimed_by_a_process_that_died_fails_after_the_grace(grace_settings: Settings):
    backend = CrashingBackend()
    service = _service(grace_settings, backend)
    record, _ = service.submit(spec_body())
    backend.set_status(record.id, "FAILED")
    service.get(record.id)
    backend.crash = "before"
    with pytest.raises(ProcessDied):
        service.resume(record.id)
    again = _service(grace_settings, backend)
    assert again.get(record.id)[0].status == "submitted"
    threading.Event().wait(0.3)
    got, _ = again.get(record.id)
    assert got.status == "failed" and f"{record.id}-r1" in (got.error or "")
    again.resume(record.id)
    assert f"{record.id}-r2" in backend.jobs


def test_a_dead_driver_leaves_files_that_say_so(client: TestClient, backend: FakeJobBackend, settings: Settings):
    body = spec_body()
    sid = client.post(SWEEPS, json=body).json()["id"]
    backend.set_status(sid, "RUNNING")
    spec = client.get(f"{SWEEPS}/{sid}").json()["spec"]
    write_results(settings.storage, sid, spec, done=1, running=1)
    write_driver(settings.storage, sid, "running")
    backend.set_status(sid, "FAILED")  # kill -9 of the driver: Ray sees the job fail, nothing else is written
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "failed" and got["driver"]["state"] == "failed" and sid in got["driver"]["error"]
    driver = json.loads((settings.storage / sid / "driver.json").read_text())
    assert driver["state"] == "failed" and driver["finished_at"]
    statuses = pq.read_table(settings.storage / sid / "trials.parquet").to_pydict()
    by_status = dict(zip(statuses["status"], statuses["error"], strict=True))
    assert sorted(statuses["status"]) == ["cancelled", "completed", "failed"]
    assert sid in by_status["failed"]
    trials = client.get(f"{SWEEPS}/{sid}/trials", params={"status": "failed"}).json()["data"]
    assert len(trials) == 1 and "\n" not in trials[0]["error"]
    assert 'data-state="failed"' in _saved_report(settings.storage / sid)


def _saved_report(sweep_dir: Path, timeout_s: float = 60.0) -> str:
    """report.html, which the service draws in the background once it has recorded the sweep's end."""
    deadline = time.monotonic() + timeout_s
    while not (sweep_dir / "report.html").exists():
        assert time.monotonic() < deadline, f"no report.html in {sweep_dir} after {timeout_s} s"
        time.sleep(0.05)
    return (sweep_dir / "report.html").read_text()


def test_a_finished_sweep_gets_its_report_html_without_anyone_asking(
    client: TestClient, backend: FakeJobBackend, settings: Settings
):
    sid = client.post(SWEEPS, json=spec_body()).json()["id"]
    spec = client.get(f"{SWEEPS}/{sid}").json()["spec"]
    write_results(settings.storage, sid, spec, done=2)
    write_driver(settings.storage, sid, "finished")
    backend.set_status(sid, "SUCCEEDED")
    assert client.get(f"{SWEEPS}/{sid}").json()["status"] == "finished"  # a status read notices the end
    page = _saved_report(settings.storage / sid)
    assert 'data-state="finished"' in page and "Table 1" in page
    served = client.get(f"{SWEEPS}/{sid}/report")
    assert served.status_code == 200 and 'data-state="finished"' in served.text


def test_a_submit_stuck_on_the_cluster_holds_no_other_sweep(grace_settings: Settings):
    backend = FakeJobBackend()
    service = _service(grace_settings, backend)
    other, _ = service.submit(spec_body(name="other"))
    entered, release = _hold_submits(backend, 30)
    stuck = threading.Thread(target=service.submit, args=(spec_body(name="stuck"),))
    stuck.start()
    assert entered.wait(10)
    cancelled: list[str] = []
    t = threading.Thread(target=lambda: cancelled.append(service.cancel(other.id)[0].status))
    t.start()
    t.join(10)
    assert cancelled and cancelled[0] in ("cancelling", "cancelled")  # answered while the other submit waits
    release.set()
    stuck.join(10)


def test_start_up_settles_what_a_crashed_process_left(grace_settings: Settings):
    backend = CrashingBackend()
    sid = _died_submitting(grace_settings, backend, "after")
    registry = SqliteSweepRepository(grace_settings.registry_file)
    with TestClient(create_app(grace_settings, backend=backend), headers=AUTH):
        for _ in range(100):  # no request is made: the start-up reconciliation finds the job by itself
            if registry.get(sweep_id=sid).job_ids:
                break
            threading.Event().wait(0.1)
    assert registry.get(sweep_id=sid).job_ids == (sid,)
