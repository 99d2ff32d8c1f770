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
order among the leader's neighbours is still noise that early (bench/early_stopping.py measures both). "Close"
is a fixed margin, or a number of standard errors of the difference between two LRs' seed means (optionally paired
by seed, which starts both alike), so that an LR whose deficit the seeds' spread could explain is never stopped
(the racing idea: Maron & Moore, "Hoeffding races", NIPS 1993). Later in training the neighbours rule may narrow in
stages: first to fewer LRs below the leader than above it (under a schedule that decays the LR, cosine to 0 here, a
larger LR often trails until its steps shrink and then overtakes, while past the first epochs a smaller LR that
trails by more than the noise rarely catches up), then to the leader and the LRs whose deficit is within the noise.
The noise tolerance may also be left to the later stages: after the first epoch an LR's seeds often disagree by tens
of points (some have left chance, some not), a spread that keeps nearly every LR and says little about where the LR
ends.

Everything here is a function of the scores, never of the order they arrived in: a sweep resumed from its
epochs.parquet makes exactly the decisions an uninterrupted one made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker.selection import summarize

CONTINUE, PAUSE, STOP = "continue", "pause", "stop"
_TOLERANCE = 1e-9  # "within the margin" includes a score that misses it by floating-point rounding only
# seeds two LRs must share for a paired standard error: from 2 differences the sd is one number's size, too often
# near 0 (replays of 2-seed grids lost more answers paired than unpaired)
PAIRED_SEEDS = 3


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
    seed: int | None = None


@dataclass
class Member:
    """One trial of a cell as the scheduler knows it."""

    group: float = 0.0  # the LR: a cell's trials of one LR (its seeds) are ranked, kept and stopped together
    scores: dict[int, float] = field(default_factory=dict)  # epoch -> ID validation, evaluated epochs only
    reached: int = 0  # the last epoch it reported
    live: bool = False  # running or waiting to run in this run: a rung waits for it
    last_epoch_rule: bool = False  # its cell reports the last epoch, not the best (`selection.reports_last_epoch`)
    seed: int | None = None  # the trial's seed: its LR's other trials of the same seed start alike (`KeepRule.paired`)

    def record(self, epoch: int, score: float | None) -> None:
        self.reached = max(self.reached, epoch)
        if score is not None and math.isfinite(score):
            self.scores[epoch] = score

    def merge(self, recorded: RecordedTrial) -> None:
        """Add what the sweep's results recorded of this trial (a resumed sweep's earlier epochs, a stored grid)."""
        for epoch, score in recorded.scores.items():
            self.record(epoch, score)
        self.reached = max(self.reached, recorded.reached)
        if self.seed is None:
            self.seed = recorded.seed

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
class Stage:
    """The neighbours rule from the rung at `start` of a trial's epochs on, until a later stage takes over from it:
    `below` and `above` narrow the grid steps kept by position either side of the leader (they never widen them),
    `margin` and `noise` replace the tolerances. None: as before this stage."""

    start: float
    below: int | None = 0
    above: int | None = None
    margin: float | None = None
    noise: float | None = None


@dataclass(frozen=True)
class Window:
    """What the neighbours rule keeps at one rung: grid steps either side of the leader, and its tolerances."""

    below: int
    above: int
    margin: float
    noise: float


def _check_steps(name: str, steps: object) -> None:
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ValueError(f"{name} must be a whole number of grid steps >= 0, got {steps!r}")


def check_stage_order(starts: Sequence[float]) -> None:
    """Stages start at strictly increasing fractions of the epochs (the spec's `late` and `KeepRule` alike)."""
    if list(starts) != sorted(set(starts)):
        raise ValueError(f"stages must start at increasing fractions of the epochs, got {list(starts)}")


def _check_tolerances(where: str, margin: float | None, noise: float | None) -> None:
    if margin is not None and not 0.0 <= margin <= 1.0:
        raise ValueError(f"{where}margin must be in [0, 1] (the selection metric's units), got {margin}")
    if noise is not None and not 0.0 <= noise <= 10.0:
        raise ValueError(f"{where}noise must be in [0, 10] standard errors, got {noise}")


@dataclass(frozen=True)
class KeepRule:
    """Which of a rung's LRs go on.

    Successive halving (`neighbours` None): the top 1/`reduction_factor`, at least one. The neighbours rule: the
    leader, the LRs up to `neighbours` steps from it on the cell's grid (its LRs in order), and every LR whose
    score is within `margin` of the leader's (the selection metric's units: 0.02 is 2 points of accuracy) or
    within `noise` standard errors of the difference of the two seed means (3: a deficit the seeds' spread
    could explain; an LR with one scored seed has no spread). `paired`: that standard error is the one of the
    per-seed differences where the two LRs share `PAIRED_SEEDS` or more scored seeds: a trial's seed sets its head's
    initialization and its batch order, the same at every LR, so what a seed does to both cancels out of the
    difference (common random numbers); otherwise, and unpaired, it comes from each LR's own spread. `stages`
    change the rule later in training (`Stage`, by increasing start): from a stage's rung on, fewer steps are kept
    by position and the tolerances may differ. LRs without a score at the rung (diverged, failed) never go on.
    """

    reduction_factor: float = 3.0
    neighbours: int | None = None
    margin: float = 0.0
    noise: float = 0.0
    stages: tuple[Stage, ...] = ()
    paired: bool = False

    def __post_init__(self) -> None:
        if not self.reduction_factor > 1:
            raise ValueError(f"reduction_factor must be > 1, got {self.reduction_factor}")
        _check_steps("neighbours", self.neighbours)
        _check_tolerances("", self.margin, self.noise)
        for i, st in enumerate(self.stages):
            if not 0.0 < st.start < 1.0:
                raise ValueError(f"stages[{i}].start is a fraction of a trial's epochs in (0, 1), got {st.start}")
            _check_steps(f"stages[{i}].below", st.below)
            _check_steps(f"stages[{i}].above", st.above)
            _check_tolerances(f"stages[{i}].", st.margin, st.noise)
        check_stage_order([st.start for st in self.stages])

    def window_at(self, fraction: float) -> Window | None:
        """What the neighbours rule keeps at a rung `fraction` of the way through the epochs (None for halving)."""
        if self.neighbours is None:
            return None
        w = Window(self.neighbours, self.neighbours, self.margin, self.noise)
        for st in self.stages:
            if fraction < st.start - _TOLERANCE:
                break
            w = Window(
                w.below if st.below is None else min(w.below, st.below),
                w.above if st.above is None else min(w.above, st.above),
                w.margin if st.margin is None else st.margin,
                w.noise if st.noise is None else st.noise,
            )
        return w

    def promote(
        self,
        ranked: Sequence[float],
        scores: Mapping[float, float],
        grid: Sequence[float],
        *,
        standard_errors: Mapping[float, float] | None = None,
        fraction: float = 0.0,
    ) -> frozenset[float]:
        """The LRs of `ranked` (scored, best first) that go on; `grid` is every LR of the cell, in order;
        `standard_errors` the standard error of each LR's deficit to the leader (`deficit_se`); `fraction` the
        rung's place in the epochs."""
        w = self.window_at(fraction)
        if w is None:
            return frozenset(ranked[: max(1, math.ceil(len(ranked) / self.reduction_factor))])
        leader = ranked[0]
        lead = grid.index(leader)
        standard_errors = standard_errors or {}

        def close(g: float) -> bool:
            noise = w.noise * standard_errors.get(g, 0.0)
            return scores[leader] - scores[g] <= max(w.margin, noise) + _TOLERANCE

        return frozenset(g for g in ranked if -w.below <= grid.index(g) - lead <= w.above or close(g))


def deficit_se(leader: Mapping[object, float], other: Mapping[object, float], *, paired: bool) -> float:
    """The standard error of the difference of two LRs' seed means (`_seed_scores`: seed -> score). Paired, over
    the seeds both scored when there are `PAIRED_SEEDS` or more: the sd of the per-seed differences / sqrt(n)."""
    shared = [s for s in leader if isinstance(s, int) and s in other]
    if paired and len(shared) >= PAIRED_SEEDS:
        return (summarize([leader[s] - other[s] for s in shared]).sd or 0.0) / math.sqrt(len(shared))
    spread = 0.0
    for values in (list(leader.values()), list(other.values())):
        spread += (summarize(values).sd or 0.0) ** 2 / len(values)  # squared standard error; 0 for 1 seed
    return math.sqrt(spread)


def decide(members: Mapping[str, Member], rungs: Sequence[int], rule: KeepRule, *, epochs: int) -> CellState:
    """The cell's rung decisions as far as its scores allow; ties go to the smaller LR. `epochs`: the cell's
    planned epochs, which place each rung in the schedule (the rule's stages)."""
    groups: dict[float, list[Member]] = {}
    for m in members.values():
        groups.setdefault(m.group, []).append(m)
    grid = sorted(groups)
    participants = frozenset(groups)
    decisions: list[RungDecision] = []
    for rung in rungs:
        if any(m.live and m.reached < rung for g in participants for m in groups[g]):
            return CellState(tuple(decisions), rung, participants)
        seeds = {g: _seed_scores(groups[g], rung) for g in participants}
        scores = {g: summarize(list(by_seed.values())).mean for g, by_seed in seeds.items() if by_seed}
        ranked = tuple(sorted(scores, key=lambda g: (-scores[g], g)))
        if not ranked:
            break  # nothing reached this rung with a score (all diverged or failed): nothing to compare
        se = {g: deficit_se(seeds[ranked[0]], seeds[g], paired=rule.paired) for g in ranked}
        promoted = rule.promote(ranked, scores, grid, standard_errors=se, fraction=rung / max(1, epochs))
        decisions.append(RungDecision(rung, participants, ranked, promoted))
        participants = promoted
    return CellState(tuple(decisions), None, frozenset())


def _seed_scores(members: Sequence[Member], rung: int) -> dict[object, float]:
    """An LR's scores at a rung by seed; a trial of unknown seed, or a second of one seed, gets a key of its own
    that pairs with nothing."""
    out: dict[object, float] = {}
    for m in members:
        score = m.score_at(rung)
        if score is not None:
            out[m.seed if m.seed is not None and m.seed not in out else object()] = score
    return out
