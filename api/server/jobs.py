"""Where sweeps run: one Ray Job per sweep run, behind a small interface with a test double beside it.

The service holds no driver: a sweep's driver is the job's entry point (`python -m orchestrator.run`), so the
service can restart at any time and ask the cluster again. `RayJobBackend` talks to Ray's job server over HTTP;
`FakeJobBackend` keeps jobs in memory for tests and for running the service without a cluster.
"""

from __future__ import annotations

import shlex
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator import NodeCapacity

# Ray's job states (ray.job_submission.JobStatus values).
JOB_PENDING, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_STOPPED = (
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "STOPPED",
)
JOB_STATUSES = (JOB_PENDING, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_STOPPED)
JOB_ACTIVE = (JOB_PENDING, JOB_RUNNING)


class BackendUnavailable(RuntimeError):
    """The cluster could not be reached; the message says where it was looked for."""


class BackendTimeout(BackendUnavailable):
    """The cluster did not answer in time: what was asked may still happen (a submitted job may yet start)."""


class JobExistsError(RuntimeError):
    """A job with this submission id was submitted before."""


class _Late(Exception):
    """A call that did not return within its deadline."""


class _Refused(Exception):
    """The job server answered, with an error (an unknown job, a duplicate id): the caller decides what it means."""


def _unknown_job(e: _Refused) -> bool:
    return "does not exist" in str(e) or "404" in str(e)


def _within(fn: Callable[[], Any], timeout_s: float) -> Any:
    """fn() in a daemon thread, given up after `timeout_s` (the thread is left to finish or hang on its own; a
    daemon thread never keeps the process from exiting)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller as is
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="ray-call").start()
    if not done.wait(timeout_s):
        raise _Late
    if "error" in box:
        raise box["error"]
    return box["value"]


class JobBackend(ABC):
    """Submit, watch and stop the jobs that drive sweeps."""

    @abstractmethod
    def submit(self, submission_id: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        """Start `args` (an absolute interpreter path first) as a job named `submission_id`; returns its id."""

    @abstractmethod
    def status(self, job_id: str) -> str | None:
        """One of JOB_STATUSES, or None when the cluster does not know the job (e.g. the cluster was replaced)."""

    @abstractmethod
    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; True if it was still running."""

    @abstractmethod
    def node_capacities(self) -> list[NodeCapacity] | None:
        """CPUs and GPUs of each live node, or None when that cannot be told."""

    @abstractmethod
    def ping(self, *, timeout_s: float | None = None) -> None:
        """Raise BackendUnavailable unless the cluster answers (within `timeout_s`, if given)."""

    @property
    @abstractmethod
    def dashboard_url(self) -> str | None:
        """Base URL of the cluster's dashboard, if it has one."""

    def job_url(self, job_id: str) -> str | None:
        """Link to the job's page on the dashboard."""
        base = self.dashboard_url
        return None if base is None else f"{base.rstrip('/')}/#/jobs/{job_id}"


class RayJobBackend(JobBackend):
    """Ray Jobs through `ray.job_submission.JobSubmissionClient`; nothing is uploaded (the package is installed
    on the cluster), and the client is created on first use, so building the service needs no cluster.

    Ray's client has no timeouts, so every call runs in a worker thread and is given up after `timeout_s`; after
    a call that timed out or could not connect, calls fail at once for `cooldown_s`, so that a hung dashboard
    costs a request one timeout, not one per sweep it lists.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        dashboard_url: str | None = None,
        timeout_s: float = 10.0,
        cooldown_s: float = 5.0,
        submit_retry_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.address = address
        self._dashboard_url = dashboard_url
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self.submit_retry_s = submit_retry_s
        self._sleep = sleep
        self._clock = clock
        self._client: Any = None
        self._connecting = threading.Lock()  # held while a client connects, which can hang: only workers wait on it
        self._down_until = 0.0
        self._down_reason = ""

    @property
    def dashboard_url(self) -> str | None:
        if self._dashboard_url:
            return self._dashboard_url
        if self.address and self.address.startswith(("http://", "https://")):
            return self.address
        client = self._client
        return None if client is None else str(client.get_address())

    def _where(self) -> str:
        return self.address or "RAY_ADDRESS / a local cluster"

    def _get_client(self) -> Any:
        with self._connecting:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient  # heavy import, only when a cluster is used

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as e:  # ConnectionError, RuntimeError, ValueError: all mean "no cluster there"
                    raise BackendUnavailable(f"cannot reach the Ray job server at {self._where()}: {e}") from None
            return self._client

    def _mark_down(self, reason: str) -> None:
        self._client = None  # reconnect next time
        self._down_reason = reason
        self._down_until = self._clock() + self.cooldown_s

    def _call(self, what: str, fn: Any, *, timeout_s: float | None = None) -> Any:
        """fn(client) within the deadline; _Refused when the job server answered with an error."""
        wait = self._down_until - self._clock()
        if wait > 0:
            raise BackendUnavailable(f"{self._down_reason}; not asked again for another {wait:.0f} s")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return _within(lambda: fn(self._get_client()), timeout)
        except _Late:
            reason = f"the Ray job server at {self._where()} did not answer within {timeout:g} s (asked to {what})"
            self._mark_down(reason)
            raise BackendTimeout(reason) from None
        except BackendUnavailable as e:
            self._mark_down(str(e))
            raise
        except RuntimeError as e:  # how Ray's client reports an error answer
            raise _Refused(str(e)) from None
        except Exception as e:
            reason = f"Ray job server at {self._where()} failed to {what}: {e}"
            self._mark_down(reason)
            raise BackendUnavailable(reason) from None

    def submit(self, submission_id: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        deadline = self._clock() + self.submit_retry_s
        while True:
            try:
                return self._call(
                    "submit a job",
                    lambda c: c.submit_job(
                        entrypoint=shlex.join(args),
                        submission_id=submission_id,
                        runtime_env={"env_vars": dict(env)},
                        metadata={"shiftsweep_job": submission_id},
                    ),
                )
            except _Refused as e:
                if "already exists" in str(e):
                    raise JobExistsError(f"a job {submission_id!r} exists already on the cluster") from None
                # A head that has just started answers "No available agent ... try again later" for a while.
                if "try again later" in str(e) and self._clock() < deadline:
                    self._sleep(1.0)
                    continue
                raise BackendUnavailable(f"Ray refused job {submission_id!r}: {e}") from None

    def status(self, job_id: str) -> str | None:
        try:
            return str(self._call("read a job's status", lambda c: c.get_job_status(job_id)).value)
        except _Refused as e:
            if _unknown_job(e):
                return None
            raise BackendUnavailable(f"Ray job server could not report job {job_id!r}: {e}") from None

    def stop(self, job_id: str) -> bool:
        try:
            return bool(self._call("stop a job", lambda c: c.stop_job(job_id)))
        except _Refused as e:
            if _unknown_job(e):
                return False
            raise BackendUnavailable(f"Ray job server could not stop job {job_id!r}: {e}") from None

    def node_capacities(self) -> list[NodeCapacity] | None:
        from ray.util.state import list_nodes

        def nodes(client: Any) -> list[NodeCapacity] | None:
            # A head that has just started lists no node for a second or two: asked again, within half the budget.
            give_up = self._clock() + self.timeout_s / 2
            while True:
                try:
                    listed = list_nodes(
                        address=client.get_address(),
                        limit=10_000,
                        timeout=max(1, int(self.timeout_s)),
                        raise_on_missing_output=False,
                    )
                except Exception:
                    return None  # the state API failed where the job server answers: the resource check is skipped
                alive = [n.resources_total or {} for n in listed if n.state == "ALIVE"]
                if alive:
                    return [NodeCapacity(cpus=float(t.get("CPU", 0.0)), gpus=float(t.get("GPU", 0.0))) for t in alive]
                if self._clock() > give_up:
                    return None  # no node to tell by: the check is skipped
                self._sleep(0.5)

        try:
            return self._call("list the cluster's nodes", nodes)
        except _Refused:
            return None  # the job server answered with an error: the resource check is skipped, not the submit

    def ping(self, *, timeout_s: float | None = None) -> None:
        try:
            self._call("report its version", lambda c: c.get_version(), timeout_s=timeout_s)
        except _Refused as e:
            raise BackendUnavailable(f"the Ray job server at {self._where()} answered with an error: {e}") from None


@dataclass
class FakeJob:
    submission_id: str
    args: list[str]
    env: dict[str, str]
    status: str = JOB_PENDING
    stop_requested: bool = False


@dataclass
class FakeJobBackend(JobBackend):
    """Jobs in memory, moved along by the test (`set_status`); `reachable=False` plays an unreachable cluster."""

    nodes: list[NodeCapacity] | None = field(default_factory=lambda: [NodeCapacity(cpus=8.0, gpus=0.0)])
    reachable: bool = True
    base_url: str | None = "http://127.0.0.1:8265"
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _check(self) -> None:
        if not self.reachable:
            raise BackendUnavailable("the fake cluster is set unreachable")

    @property
    def dashboard_url(self) -> str | None:
        return self.base_url

    def submit(self, submission_id: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        self._check()
        with self._lock:
            if submission_id in self.jobs:
                raise JobExistsError(f"a job {submission_id!r} exists already on the cluster")
            self.jobs[submission_id] = FakeJob(submission_id, list(args), dict(env))
        return submission_id

    def status(self, job_id: str) -> str | None:
        self._check()
        job = self.jobs.get(job_id)
        return None if job is None else job.status

    def stop(self, job_id: str) -> bool:
        self._check()
        job = self.jobs.get(job_id)
        if job is None or job.status not in JOB_ACTIVE:
            return False
        job.stop_requested = True
        job.status = JOB_STOPPED
        return True

    def node_capacities(self) -> list[NodeCapacity] | None:
        self._check()
        return self.nodes

    def ping(self, *, timeout_s: float | None = None) -> None:
        self._check()

    def set_status(self, job_id: str, status: str) -> None:
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; valid: {', '.join(JOB_STATUSES)}")
        self.jobs[job_id].status = status
