"""How far a sweep has got, from trials.parquet alone: trials by status, and epochs done against planned."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from orchestrator.schema import TRIAL_STATUSES

ENDED = ("completed", "diverged", "stopped", "failed", "cancelled")  # no longer running nor waiting to run


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]  # every status of TRIAL_STATUSES, zero included, plus any unknown one seen
    total: int
    epochs_done: int
    epochs_planned: int

    @property
    def ended(self) -> int:
        return sum(self.counts.get(s, 0) for s in ENDED)

    @property
    def percent_trials(self) -> float:
        return 100.0 * self.ended / self.total if self.total else 0.0

    @property
    def percent_epochs(self) -> float:
        return 100.0 * self.epochs_done / self.epochs_planned if self.epochs_planned else 0.0


def sweep_progress(trials: pa.Table) -> Progress:
    """Counts per status (last row per trial) and epochs: an ended trial counts all its planned epochs as done."""
    rows = {
        r["trial_id"]: r for r in trials.select(["trial_id", "status", "epochs_planned", "epochs_done"]).to_pylist()
    }
    counts = dict.fromkeys(TRIAL_STATUSES, 0)
    done = planned = 0
    for r in rows.values():
        status = str(r["status"])
        counts[status] = counts.get(status, 0) + 1
        p = int(r["epochs_planned"] or 0)
        planned += p
        done += p if status in ENDED else min(int(r["epochs_done"] or 0), p)
    return Progress(counts=counts, total=len(rows), epochs_done=done, epochs_planned=planned)
