"""How far a sweep has got, from its trials table: counts by status, percent done, and time left."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa

from orchestrator.schema import TRIAL_STATUSES

# Trials that will not run again unless the sweep is resumed (failed ones are retried by a resume).
FINISHED = ("completed", "diverged", "stopped", "failed")


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    total: int
    finished: int
    percent_done: float
    eta_seconds: float | None


def _num(x: float | int | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def summarize(trials: pa.Table, *, expected_total: int = 0, active: bool = True) -> Progress:
    """Progress of a sweep whose trials table is `trials`; `expected_total` stands in before the table exists.

    Percent done weighs trials by their planned epochs, so a half-trained trial counts half. The time left is the
    remaining work (in trials) times the mean wall time of completed trials, divided by the trials running now.
    """
    counts = dict.fromkeys(TRIAL_STATUSES, 0)
    if trials.num_rows == 0:
        counts["pending"] = expected_total
        return Progress(counts, expected_total, 0, 0.0, None)
    cols = trials.select(["status", "epochs_planned", "epochs_done", "wall_time_s"]).to_pydict()
    planned_sum = done_sum = remaining = 0.0
    walls: list[float] = []
    for status, planned, done, wall in zip(
        cols["status"], cols["epochs_planned"], cols["epochs_done"], cols["wall_time_s"], strict=True
    ):
        counts[status] = counts.get(status, 0) + 1
        p = max(1.0, _num(planned) or 1.0)
        d = min(p, max(0.0, _num(done) or 0.0))
        planned_sum += p
        if status in FINISHED:
            done_sum += p
            w = _num(wall)
            if status == "completed" and w is not None:
                walls.append(w)
        else:
            done_sum += d
            remaining += 1.0 - d / p
    finished = sum(counts[s] for s in FINISHED)
    percent = round(100.0 * done_sum / planned_sum, 2) if planned_sum else 0.0
    eta = None
    if active and walls and remaining > 0:
        parallel = max(1, counts.get("running", 0))
        eta = round(remaining * (sum(walls) / len(walls)) / parallel, 1)
    elif active and remaining == 0 and walls:
        eta = 0.0
    return Progress(counts, trials.num_rows, finished, percent, eta)
