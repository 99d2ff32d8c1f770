"""A sweep's state from what the cluster says of its job and what its driver wrote in driver.json.

Pure, so each combination is tested without a cluster. The job's state says whether the sweep is still going;
driver.json says how it ended (a cancelled driver exits non-zero, so Ray calls that job FAILED).
"""

from __future__ import annotations

from typing import Any

from api import TERMINAL_STATES
from api.server.jobs import JOB_FAILED, JOB_PENDING, JOB_RUNNING, JOB_STOPPED, JOB_SUCCEEDED


def _runs(driver: dict[str, Any]) -> int:
    try:
        return int(driver.get("runs") or 0)
    except (TypeError, ValueError):
        return 0


def decide(
    status: str, job_id: str, job_status: str | None, driver: dict[str, Any] | None, runs: int
) -> tuple[str, str | None]:
    """(new sweep state, error or None) for a sweep now in `status` whose latest job is `job_id`.

    `runs` is how many jobs the sweep has had; a driver.json written by fewer runs is an earlier run's record
    and says nothing about the latest job.
    """
    current = driver is not None and _runs(driver) >= runs
    driver_state = driver.get("state") if current and driver is not None else None
    driver_error = driver.get("error") if current and driver is not None else None
    cancelling = status == "cancelling"
    if job_status in (JOB_PENDING, JOB_RUNNING):
        if cancelling:
            return "cancelling", None
        return ("pending" if job_status == JOB_PENDING else "running"), None
    if job_status == JOB_STOPPED:
        return "cancelled", None
    if job_status == JOB_SUCCEEDED:
        if driver_state in TERMINAL_STATES:
            return driver_state, driver_error
        return "finished", None
    if job_status == JOB_FAILED:
        if driver_state in ("finished", "cancelled"):
            return driver_state, None
        if cancelling:
            return "cancelled", None
        return "failed", driver_error or f"job {job_id} failed before the sweep ended; its log is on the Ray dashboard"
    if driver_state in TERMINAL_STATES:
        return driver_state, driver_error
    return "failed", f"the cluster no longer knows job {job_id} (was it restarted?); resume the sweep to continue it"
