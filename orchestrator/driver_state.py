"""`driver.json`: what the sweep's driver is doing, for the service to show without asking Ray.

One small JSON object, replaced atomically: state (running / finished / cancelled / failed), timestamps, trial
counts by status, how many times the sweep was started (1 + resumes), and the error that failed it if any.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orchestrator.storage import Location

DRIVER_FILE = "driver.json"
DRIVER_STATES = ("running", "finished", "cancelled", "failed")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _save(location: Location, data: dict[str, Any]) -> None:
    data["updated_at"] = _now()
    location.write_bytes(DRIVER_FILE, json.dumps(data, indent=1).encode())


def read_driver_state(sweep_dir: Location | str | Path) -> dict[str, Any] | None:
    """The sweep's driver.json, or None before a driver has written one."""
    loc = sweep_dir if isinstance(sweep_dir, Location) else Location(sweep_dir)
    data = loc.read_bytes(DRIVER_FILE)
    return None if data is None else json.loads(data)


class DriverState:
    """The driver's own record; every change is written at once."""

    def __init__(self, location: Location, sweep_id: str, total_trials: int):
        self.location = location
        previous = read_driver_state(location) or {}
        self.data: dict[str, Any] = {
            "sweep_id": sweep_id,
            "state": "running",
            "started_at": previous.get("started_at") or _now(),
            "run_started_at": _now(),
            "updated_at": _now(),
            "finished_at": None,
            "runs": int(previous.get("runs", 0)) + 1,
            "total_trials": total_trials,
            "counts": {},
            "error": None,
            "probe_errors": {},
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self._write()

    def _write(self) -> None:
        _save(self.location, self.data)

    def update_counts(self, counts: dict[str, int]) -> None:
        self.data["counts"] = dict(counts)
        self._write()

    def probe_error(self, model: str, dataset: str, error: str) -> None:
        self.data["probe_errors"][f"{model}/{dataset}"] = error
        self._write()

    def end(self, state: str, *, error: str | None = None) -> None:
        if state not in DRIVER_STATES:
            raise ValueError(f"unknown driver state {state!r}; valid: {', '.join(DRIVER_STATES)}")
        self.data.update(state=state, error=error, finished_at=_now())
        self._write()


def mark_driver_lost(sweep_dir: Location | str | Path, state: str, error: str | None) -> bool:
    """driver.json of a driver that died while it said `running`: set to how the sweep ended, with the reason.

    Written by whoever finds the job ended (the service), never while a driver runs; False if there was nothing
    to change (no driver.json, or a driver that ended itself).
    """
    if state not in DRIVER_STATES:
        raise ValueError(f"unknown driver state {state!r}; valid: {', '.join(DRIVER_STATES)}")
    loc = sweep_dir if isinstance(sweep_dir, Location) else Location(sweep_dir)
    data = read_driver_state(loc)
    if data is None or data.get("state") != "running":
        return False
    data.update(state=state, error=error, finished_at=_now())
    _save(loc, data)
    return True
