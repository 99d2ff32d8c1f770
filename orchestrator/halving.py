"""Synchronous early stopping within a cell, as pure functions of the cell's recorded scores.

A cell is one (model, dataset, method), a cell of the comparison tables: its trials differ in LR and seed. At
each rung (an epoch), once every trial of the cell that is still running has reached it, the cell's LRs are
ranked by their seeds' mean best ID validation score up to that epoch (the selection rule's own measure), and a
`KeepRule` says which go on, every seed of them; the other LRs stop. So an LR's seeds always share one fate, as
the selection rule needs (it never lets an LR with an early-stopped seed win over one that ran to the end). A
trial that reaches a rung first waits (paused) for the rest, so like is always compared with like.

Two rules: successive halving keeps the top 1/reduction_factor of the LRs (Jamieson & Talwalkar,
"Non-stochastic Best Arm Identification and Hyperparameter Optimization", AISTATS 2016; the per-cell synchronous
form of Hyperband's first bracket); the neighbours rule keeps the leading LR, its neighbours on the grid and any
LR close to its score, since the final choice is rarely more than a grid step from an early leader while the
order among the leader's neighbours is still noise that early (bench/early_stopping.py measures both).

Everything here is a function of the scores, never of the order they arrived in: a sweep resumed from its
epochs.parquet makes exactly the decisions an uninterrupted one made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CONTINUE, PAUSE, STOP = "continue", "pause", "stop"
_TOLERANCE = 1e-9  # "within the margin" includes a score that misses it by floating-point rounding only


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
    cell: tuple[str, str, str]  # model, dataset, method
    lr: float
    status: str
    scores: Mapping[int, float]  # epoch -> ID validation, evaluated epochs only
    reached: int  # the last epoch recorded


@dataclass
class Member:
    """One trial of a cell as the scheduler knows it."""

    group: float = 0.0  # the LR: a cell's trials of one LR (its seeds) are ranked, kept and stopped together
    scores: dict[int, float] = field(default_factory=dict)  # epoch -> ID validation, evaluated epochs only
    reached: int = 0  # the last epoch it reported
    live: bool = False  # running or waiting to run in this run: a rung waits for it
    last_epoch_rule: bool = False  # its cell reports the last epoch, not the best (`selection.reports_last_epoch`)

    def record(self, epoch: int, score: float | None) -> None:
        self.reached = max(self.reached, epoch)
        if score is not None and math.isfinite(score):
            self.scores[epoch] = score

    def merge(self, recorded: RecordedTrial) -> None:
        """Add what the sweep's results recorded of this trial (a resumed sweep's earlier epochs, a stored grid)."""
        for epoch, score in recorded.scores.items():
            self.record(epoch, score)
        self.reached = max(self.reached, recorded.reached)

    def score_at(self, rung: int) -> float | None:
        """What the selection rule would see of this trial had it stopped at `rung`."""
        if self.last_epoch_rule:
            return self.scores.get(rung)
        seen = [v for e, v in self.scores.items() if e <= rung]
        return max(seen) if seen else None


@dataclass(frozen=True)
class RungDecision:
    epoch: int
    participants: frozenset[float]  # the LRs compared here: the cell's, or the previous rung's promoted
    ranked: tuple[float, ...]  # participants with a score, best first
    promoted: frozenset[float]

    @property
    def stopped(self) -> frozenset[float]:
        return self.participants - self.promoted


@dataclass(frozen=True)
class CellState:
    decisions: tuple[RungDecision, ...]  # the rungs decided so far, in order
    waiting_at: int | None  # the first undecided rung, while a live trial of a participant has not reached it
    waiting_for: frozenset[float]  # the LRs that take part in that rung

    def action(self, member: Member, last_epoch: int) -> str:
        """What a trial, which has just reported `member.reached`, does next."""
        if any(member.group in d.stopped and member.reached >= d.epoch for d in self.decisions):
            return STOP
        waiting = self.waiting_at is not None and member.group in self.waiting_for
        return PAUSE if waiting and self.waiting_at <= member.reached < last_epoch else CONTINUE


@dataclass(frozen=True)
class KeepRule:
    """Which of a rung's LRs go on.

    Successive halving (`neighbours` None): the top 1/`reduction_factor`, at least one. The neighbours rule: the
    leader, the LRs up to `neighbours` steps from it on the cell's grid (its LRs in order), and every LR whose
    score is within `margin` of the leader's (the selection metric's units: 0.02 is 2 points of accuracy).
    LRs without a score at the rung (diverged, failed) never go on.
    """

    reduction_factor: float = 3.0
    neighbours: int | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        if not self.reduction_factor > 1:
            raise ValueError(f"reduction_factor must be > 1, got {self.reduction_factor}")
        if self.neighbours is not None and (isinstance(self.neighbours, bool) or self.neighbours < 0):
            raise ValueError(f"neighbours must be a whole number of grid steps >= 0, got {self.neighbours!r}")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"margin must be in [0, 1] (the selection metric's units), got {self.margin}")

    def promote(
        self, ranked: Sequence[float], scores: Mapping[float, float], grid: Sequence[float]
    ) -> frozenset[float]:
        """The LRs of `ranked` (scored, best first) that go on; `grid` is every LR of the cell, in order."""
        if self.neighbours is None:
            return frozenset(ranked[: max(1, math.ceil(len(ranked) / self.reduction_factor))])
        lead = grid.index(ranked[0])
        floor = scores[ranked[0]] - self.margin - _TOLERANCE
        return frozenset(g for g in ranked if abs(grid.index(g) - lead) <= self.neighbours or scores[g] >= floor)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def decide(members: Mapping[str, Member], rungs: Sequence[int], rule: KeepRule) -> CellState:
    """The cell's rung decisions as far as its scores allow; ties go to the smaller LR."""
    groups: dict[float, list[Member]] = {}
    for m in members.values():
        groups.setdefault(m.group, []).append(m)
    grid = sorted(groups)
    participants = frozenset(groups)
    decisions: list[RungDecision] = []
    for rung in rungs:
        if any(m.live and m.reached < rung for g in participants for m in groups[g]):
            return CellState(tuple(decisions), rung, participants)
        means = {g: _mean([s for m in groups[g] if (s := m.score_at(rung)) is not None]) for g in participants}
        scores = {g: s for g, s in means.items() if s is not None}
        ranked = tuple(sorted(scores, key=lambda g: (-scores[g], g)))
        if not ranked:
            break  # nothing reached this rung with a score (all diverged or failed): nothing to compare
        promoted = rule.promote(ranked, scores, grid)
        decisions.append(RungDecision(rung, participants, ranked, promoted))
        participants = promoted
    return CellState(tuple(decisions), None, frozenset())
