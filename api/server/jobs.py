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


class JobExistsError(RuntimeError):
    """A job with this submission id was submitted before."""


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
    def cluster_gpus(self) -> float | None:
        """GPUs in the cluster, or None when that cannot be told."""

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailable unless the cluster answers."""

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
    on the cluster), and the client is created on first use, so building the service needs no cluster."""

    def __init__(
        self,
        address: str | None = None,
        *,
        dashboard_url: str | None = None,
        submit_retry_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.address = address
        self._dashboard_url = dashboard_url
        self.submit_retry_s = submit_retry_s
        self._sleep = sleep
        self._clock = clock
        self._client: Any = None
        self._lock = threading.Lock()

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

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient  # heavy import, only when a cluster is used

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as e:  # ConnectionError, RuntimeError, ValueError: all mean "no cluster there"
                    raise BackendUnavailable(f"cannot reach the Ray job server at {self._where()}: {e}") from None
            return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        client = self.client()
        try:
            return fn(client, *args, **kwargs)
        except RuntimeError:
            raise  # the job server answered with an error (unknown job, duplicate id): the caller decides
        except Exception as e:
            with self._lock:
                self._client = None  # reconnect next time
            raise BackendUnavailable(f"Ray job server at {self._where()} failed to {what}: {e}") from None

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
            except RuntimeError as e:
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
        except RuntimeError as e:
            if "does not exist" in str(e) or "404" in str(e):
                return None
            raise BackendUnavailable(f"Ray job server could not report job {job_id!r}: {e}") from None

    def stop(self, job_id: str) -> bool:
        try:
            return bool(self._call("stop a job", lambda c: c.stop_job(job_id)))
        except RuntimeError as e:
            if "does not exist" in str(e) or "404" in str(e):
                return False
            raise BackendUnavailable(f"Ray job server could not stop job {job_id!r}: {e}") from None

    def cluster_gpus(self) -> float | None:
        from ray.util.state import list_nodes

        client = self.client()
        try:
            nodes = list_nodes(address=client.get_address(), limit=10_000, raise_on_missing_output=False)
        except Exception:
            return None  # an unknown GPU count only skips the GPU check; the cluster itself is reachable
        return float(sum((n.resources_total or {}).get("GPU", 0.0) for n in nodes if n.state == "ALIVE"))

    def ping(self) -> None:
        self._call("list jobs", lambda c: c.get_version())


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

    gpus: float | None = 0.0
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

    def cluster_gpus(self) -> float | None:
        self._check()
        return self.gpus

    def ping(self) -> None:
        self._check()

    def set_status(self, job_id: str, status: str) -> None:
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; valid: {', '.join(JOB_STATUSES)}")
        self.jobs[job_id].status = status
