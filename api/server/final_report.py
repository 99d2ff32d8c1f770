"""An ended sweep's report.html: drawn once, saved beside its Parquet files, and served from there.

The service draws it in the background as soon as it records the sweep's end, and GET /report asks for it too;
one lock per sweep makes whichever comes second serve what the first saved. A saved page is used while it is
newer than the sweep's end and than every file it is drawn from (a resumed sweep that ended again is drawn anew).
"""

from __future__ import annotations

import threading
from pathlib import Path

import analysis as report
from orchestrator import DRIVER_FILE, EPOCHS_FILE, PROBE_FILE, TRIALS_FILE, Location


def up_to_date(saved: Path, ended_at: float) -> bool:
    """Whether the saved report.html was written after the sweep ended and after every file it is drawn from."""
    try:
        written = saved.stat().st_mtime
    except OSError:
        return False
    inputs = [saved.with_name(name) for name in (TRIALS_FILE, EPOCHS_FILE, PROBE_FILE, DRIVER_FILE)]
    newest = max([ended_at, *(p.stat().st_mtime for p in inputs if p.exists())])
    return written >= newest


class FinalReports:
    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, sweep_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sweep_id, threading.Lock())

    def page(self, sweep_dir: Path, *, sweep_id: str, state: str, ended_at: float, dashboard_url: str | None) -> str:
        """The saved page when it is current, else the page drawn now and saved."""
        saved = sweep_dir / report.REPORT_FILE
        with self._lock(sweep_id):
            if up_to_date(saved, ended_at):
                return saved.read_text(encoding="utf-8")
            page = report.render_report(
                sweep_dir, sweep_id=sweep_id, state=state, dashboard_url=dashboard_url, live=False
            )
            Location(sweep_dir).write_bytes(report.REPORT_FILE, page.encode("utf-8"))
            return page
