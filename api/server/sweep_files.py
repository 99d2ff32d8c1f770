"""A sweep's files under the service's storage, read safely and cached per file version.

Every path is checked by `api.paths.inside` first, so a sweep directory or file that is a symlink out of the
storage is refused rather than read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from api.server.file_cache import FileCache
from api.server.paths import inside
from orchestrator import (
    DRIVER_FILE,
    EPOCHS_FILE,
    PROBE_FILE,
    TRIALS_FILE,
    mark_driver_lost,
    mark_interrupted,
    read_epochs,
    read_probe,
    read_trials,
)
from orchestrator.extension import HISTORY_FILE, history_lines, read_history
from worker.selection import Progress, sweep_progress

RESULT_FILES = {"trials": TRIALS_FILE, "epochs": EPOCHS_FILE, "probe": PROBE_FILE}
T = TypeVar("T")

SPECS_DIR = "_specs"  # submitted specs, one YAML per sweep, beside the sweep directories


class SweepFiles:
    def __init__(self, storage: Path, cache: FileCache | None = None):
        self.storage = storage
        self.cache = cache or FileCache(maxsize=256)

    def sweep_dir(self, sweep_id: str) -> Path:
        return inside(self.storage, sweep_id)

    def file(self, sweep_id: str, name: str) -> Path:
        return inside(self.storage, sweep_id, name)

    def spec_file(self, sweep_id: str) -> Path:
        return inside(self.storage, SPECS_DIR, f"{sweep_id}.yaml")

    def checked_dir(self, sweep_id: str) -> Path:
        """The sweep directory after checking that none of the files readers open leaves the storage."""
        for name in (*RESULT_FILES.values(), DRIVER_FILE, HISTORY_FILE):
            self.file(sweep_id, name)
        return self.sweep_dir(sweep_id)

    def _table(self, sweep_id: str, which: str) -> pa.Table:
        path = self.file(sweep_id, RESULT_FILES[which])
        reader = {"trials": read_trials, "epochs": read_epochs, "probe": read_probe}[which]
        return self.cache.get(path, "table", lambda: reader(self.sweep_dir(sweep_id)))

    def trials(self, sweep_id: str) -> pa.Table:
        return self._table(sweep_id, "trials")

    def epochs(self, sweep_id: str) -> pa.Table:
        return self._table(sweep_id, "epochs")

    def probe(self, sweep_id: str) -> pa.Table:
        return self._table(sweep_id, "probe")

    def derived(self, sweep_id: str, which: str, kind: str, load: Callable[[], T]) -> T:
        """Something computed from result file `which` (a page of trials, say), cached per version of that file."""
        return self.cache.get(self.file(sweep_id, RESULT_FILES[which]), kind, load)

    def progress(self, sweep_id: str, *, expected_total: int, active: bool) -> Progress:
        path = self.file(sweep_id, TRIALS_FILE)
        kind = f"progress:{expected_total}:{active}"
        return self.cache.get(
            path,
            kind,
            lambda: sweep_progress(self.trials(sweep_id).to_pylist(), expected_total=expected_total, active=active),
        )

    def driver(self, sweep_id: str) -> dict[str, Any] | None:
        """driver.json, or None when absent or unreadable (a driver that never started writes none)."""
        path = self.file(sweep_id, DRIVER_FILE)

        def load() -> dict[str, Any] | None:
            try:
                data = json.loads(path.read_bytes())
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
                return None
            return data if isinstance(data, dict) else None

        return self.cache.get(path, "driver", load)

    def history(self, sweep_id: str) -> list[str]:
        """history.json as lines for people; empty when absent or unreadable."""
        path = self.file(sweep_id, HISTORY_FILE)

        def load() -> list[str]:
            try:
                return history_lines(read_history(path.parent))
            except (OSError, ValueError):  # a torn or foreign file: the sweep itself is unaffected
                return []

        return self.cache.get(path, "history", load)

    def mark_lost(self, sweep_id: str, state: str, error: str | None) -> None:
        """The sweep's job ended while its driver said `running` (killed, or its node lost): driver.json and the
        trials still running or waiting say so. Safe only once the job has ended."""
        sweep_dir = self.checked_dir(sweep_id)
        if mark_driver_lost(sweep_dir, state, error) and (sweep_dir / TRIALS_FILE).exists():
            why = error or f"the sweep ended ({state}) before this trial did"
            mark_interrupted(sweep_dir, why, cancelled=state == "cancelled")
