"""Synchronous successive halving within a cell, as pure functions of the cell's recorded scores.

A cell is one (model, dataset, method, seed): its trials differ in the LR alone. At each rung (an epoch), once
every trial of the cell that is still running has reached it, the cell's trials are ranked by their best ID
validation score up to that epoch and the top 1/reduction_factor go on; the others are stopped. A trial that
reaches a rung first waits (paused) for the rest, so like is always compared with like (Jamieson & Talwalkar,
"Non-stochastic Best Arm Identification and Hyperparameter Optimization", AISTATS 2016; the per-cell
synchronous form of Hyperband's first bracket).

Everything here is a function of the scores, never of the order they arrived in: a sweep resumed from its
epochs.parquet makes exactly the decisions an uninterrupted one made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CONTINUE, PAUSE, STOP = "continue", "pause", "stop"


def rung_epochs(
    epochs: int, *, reduction_factor: float, grace_period: int = 1, fractions: Sequence[float] | None = None
) -> list[int]:
    """The epochs a trial of `epochs` is compared at: the given fractions of its epochs, or by default
    epochs / reduction_factor**k (k = 1, 2, ...), the rungs of successive halving, none before `grace_period`
    and none at the last epoch (where nothing is left to save)."""
    if fractions:
        candidates = [max(1, round(f * epochs)) for f in fractions]
    else:
        candidates, k = [], 1
        while epochs / reduction_factor**k >= grace_period:
            candidates.append(max(1, round(epochs / reduction_factor**k)))
            k += 1
    return sorted({e for e in candidates if grace_period <= e < epochs})


@dataclass(frozen=True)
class RecordedTrial:
    """A trial as the sweep's results hold it, for rebuilding a cell's rungs."""

    trial_id: str
    cell: tuple[str, str, str, int]  # model, dataset, method, seed
    status: str
    scores: Mapping[int, float]  # epoch -> ID validation, evaluated epochs only
    reached: int  # the last epoch recorded


@dataclass
class Member:
    """One trial of a cell as the scheduler knows it."""

    scores: dict[int, float] = field(default_factory=dict)  # epoch -> ID validation, evaluated epochs only
    reached: int = 0  # the last epoch it reported
    live: bool = False  # running or waiting to run in this run: a rung waits for it
    last_epoch_rule: bool = False  # its cell reports the last epoch, not the best (`selection.reports_last_epoch`)

    def record(self, epoch: int, score: float | None) -> None:
        self.reached = max(self.reached, epoch)
        if score is not None and math.isfinite(score):
            self.scores[epoch] = score

    def score_at(self, rung: int) -> float | None:
        """What the selection rule would see of this trial had it stopped at `rung`."""
        if self.last_epoch_rule:
            return self.scores.get(rung)
        seen = [v for e, v in self.scores.items() if e <= rung]
        return max(seen) if seen else None


@dataclass(frozen=True)
class RungDecision:
    epoch: int
    participants: frozenset[str]  # the trials compared here: the cell's, or the previous rung's promoted
    ranked: tuple[str, ...]  # participants with a score, best first
    promoted: frozenset[str]

    @property
    def stopped(self) -> frozenset[str]:
        return self.participants - self.promoted


@dataclass(frozen=True)
class CellState:
    decisions: tuple[RungDecision, ...]  # the rungs decided so far, in order
    waiting_at: int | None  # the first undecided rung, while a live participant has not reached it
    waiting_for: frozenset[str]  # the participants of that rung

    def action(self, trial: str, member: Member, last_epoch: int) -> str:
        """What `trial`, which has just reported `member.reached`, does next."""
        if any(trial in d.stopped and member.reached >= d.epoch for d in self.decisions):
            return STOP
        waiting = self.waiting_at is not None and trial in self.waiting_for and member.reached >= self.waiting_at
        return PAUSE if waiting and member.reached < last_epoch else CONTINUE

    def stopped(self, trial: str) -> bool:
        return any(trial in d.stopped for d in self.decisions)


def decide(members: Mapping[str, Member], rungs: Sequence[int], reduction_factor: float) -> CellState:
    """The cell's rung decisions as far as its scores allow; ties go to the smaller trial id."""
    participants = frozenset(members)
    decisions: list[RungDecision] = []
    for rung in rungs:
        if any(members[t].live and members[t].reached < rung for t in participants):
            return CellState(tuple(decisions), rung, participants)
        scores = {t: members[t].score_at(rung) for t in participants}
        ranked = tuple(sorted((t for t, s in scores.items() if s is not None), key=lambda t: (-scores[t], t)))
        if not ranked:
            break  # nothing reached this rung with a score (all diverged or failed): nothing to compare
        keep = max(1, math.ceil(len(ranked) / reduction_factor))
        promoted = frozenset(ranked[:keep])
        decisions.append(RungDecision(rung, participants, ranked, promoted))
        participants = promoted
    return CellState(tuple(decisions), None, frozenset())
