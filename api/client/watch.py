"""Follow a sweep until it ends: a live progress bar on a terminal, one line per change of trial states otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from api import TERMINAL_STATES
from api.client.rest import ClientError
from api.client.terminal import safe
from worker.records import TrialStatus

BAR_WIDTH = 30
SHOWN_COUNTS = (  # the order a progress line lists trial counts in
    TrialStatus.RUNNING,
    TrialStatus.COMPLETED,
    TrialStatus.STOPPED,
    TrialStatus.DIVERGED,
    TrialStatus.FAILED,
    TrialStatus.CANCELLED,
    TrialStatus.PENDING,
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress_line(sweep: dict[str, Any], *, bar: bool) -> str:
    """`[#####.....]  45.0%  49/108 trials  running  3 running, 40 completed  ETA 3m20s`."""
    pct = float(sweep.get("percent_done") or 0.0)
    counts = sweep.get("counts") or {}
    shown = ", ".join(f"{counts[k]} {k}" for k in SHOWN_COUNTS if counts.get(k))
    text = (
        f"{pct:5.1f}%  {sweep.get('finished_trials', 0)}/{sweep.get('total_trials', 0)} trials  "
        f"{sweep['status']}  {shown}  ETA {_duration(sweep.get('eta_seconds'))}"
    )
    if not bar:
        return f"{sweep['id']}: {text}"
    filled = int(BAR_WIDTH * min(100.0, pct) / 100.0)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"


def watch(
    fetch: Callable[[], dict[str, Any]],
    out: TextIO,
    *,
    interval_s: float = 2.0,
    timeout_s: float | None = None,
    patience_s: float = 120.0,
    tty: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll `fetch` until the sweep ends; returns its last state.

    A service that stops answering (restarted, say) is waited for up to `patience_s`; a sweep that does not end
    within `timeout_s` raises TimeoutError.
    """
    live = out.isatty() if tty is None else tty
    start = clock()
    unreachable_since: float | None = None
    last_line = ""
    last_counts: tuple[Any, ...] | None = None
    while True:
        try:
            sweep = fetch()
            unreachable_since = None
        except ClientError as e:
            if e.status is not None:
                raise  # the service answered: a real error (unknown sweep, bad token)
            unreachable_since = unreachable_since if unreachable_since is not None else clock()
            if clock() - unreachable_since > patience_s:
                raise
            if not live:
                out.write(safe(f"(service not answering, retrying: {e})") + "\n")
                out.flush()
            sleep(interval_s)
            continue
        line = safe(progress_line(sweep, bar=live))
        # off a terminal, a line only when trials change state: percent and ETA move on every poll
        counts = (sweep["status"], sweep.get("finished_trials"), tuple(sorted((sweep.get("counts") or {}).items())))
        if live:
            out.write("\r" + line.ljust(len(last_line)))
        elif counts != last_counts:
            out.write(line + "\n")
        last_counts = counts
        out.flush()
        last_line = line
        if sweep["status"] in TERMINAL_STATES:
            if live:
                out.write("\n")
            return sweep
        if timeout_s is not None and clock() - start > timeout_s:
            if live:
                out.write("\n")
            raise TimeoutError(f"sweep {sweep['id']} still {sweep['status']} after {timeout_s:.0f} s")
        sleep(interval_s)
