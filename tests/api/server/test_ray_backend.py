"""RayJobBackend's handling of the job server's answers, with a stand-in for Ray's JobSubmissionClient."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from api.server.jobs import BackendUnavailable, JobExistsError, RayJobBackend


class _Client:
    def __init__(self, submit_errors: list[Exception] | None = None, status: Any = None):
        self.submit_errors = list(submit_errors or [])
        self.submitted: list[dict[str, Any]] = []
        self._status = status

    def submit_job(self, **kwargs: Any) -> str:
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        self.submitted.append(kwargs)
        return kwargs["submission_id"]

    def get_job_status(self, job_id: str) -> Any:
        if isinstance(self._status, Exception):
            raise self._status
        return SimpleNamespace(value=self._status)

    def stop_job(self, job_id: str) -> bool:
        return True

    def get_address(self) -> str:
        return "http://head:8265"


def _backend(client: _Client, **kw: Any) -> RayJobBackend:
    b = RayJobBackend("ray://head:10001", sleep=lambda s: None, **kw)
    b._client = client
    return b


def test_submit_sends_an_entrypoint_without_uploading_anything():
    client = _Client()
    b = _backend(client)
    assert b.submit("s1", ["/abs/python", "-m", "orchestrator.run", "--spec", "a b.yaml"], {"X": "1"}) == "s1"
    job = client.submitted[0]
    assert job["entrypoint"] == "/abs/python -m orchestrator.run --spec 'a b.yaml'"
    assert job["runtime_env"] == {"env_vars": {"X": "1"}}  # no working_dir: the package is installed there
    assert b.dashboard_url == "http://head:8265" and b.job_url("s1") == "http://head:8265/#/jobs/s1"


def test_submit_waits_for_a_starting_head_then_gives_up():
    busy = RuntimeError("Request failed with status code 500: No available agent to submit job, please try again later")
    client = _Client([busy, busy])
    assert _backend(client).submit("s1", ["/p"], {}) == "s1"
    ticks = iter(range(0, 100, 20))
    with pytest.raises(BackendUnavailable, match="try again later"):
        _backend(_Client([busy] * 10), submit_retry_s=30, clock=lambda: next(ticks)).submit("s2", ["/p"], {})
    with pytest.raises(JobExistsError):
        _backend(_Client([RuntimeError("Job with submission_id s1 already exists")])).submit("s1", ["/p"], {})
    with pytest.raises(BackendUnavailable, match="refused"):
        _backend(_Client([RuntimeError("status code 400: bad runtime env")])).submit("s1", ["/p"], {})


def test_status_and_stop():
    assert _backend(_Client(status="RUNNING")).status("s1") == "RUNNING"
    assert _backend(_Client(status=RuntimeError("Job s1 does not exist"))).status("s1") is None
    with pytest.raises(BackendUnavailable):
        _backend(_Client(status=ConnectionError("refused"))).status("s1")
    assert _backend(_Client()).stop("s1") is True


def test_no_cluster_is_backend_unavailable():
    b = RayJobBackend("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(BackendUnavailable, match="cannot reach the Ray job server"):
        b.ping()
