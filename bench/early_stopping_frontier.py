"""How much an early-stopping setting could save on stored full grids while meeting the targets, when it is chosen
on the very grids it is judged on: an optimistic bound on what a setting chosen before seeing them can do.

    python bench/early_stopping_frontier.py --results .cache/bench-es-A .cache/bench-es-C ... [--evaluations 10000]

The grids are full grids kept by `bench/early_stopping.py --keep` (every trial run to the end). Each is read as the
6-LR grid and as the demo's 5 LRs, like that bench. A setting meets the targets on a grid when the selection rule
chooses the full grid's LR in >= 95% of its cells and no OOD or ID table cell moves by more than 1 point; its saving is
the fraction of trial-seconds not run. Two families:

- Top-k schedules: after each epoch but the last, the k best LRs of those still running go on (seed-mean best ID
  validation so far, the scheduler's measure), for every non-increasing choice of k per epoch; successive halving at
  any rungs and reduction factor is one of them. Enumerated in full, on all grids together and on each alone: an
  exact bound for the family.
- The neighbours rule: the spec's own `early_stopping` settings (rungs at any epochs, `neighbours`, `margin`,
  `noise`, `paired`, up to 3 `late` stages), applied by the scheduler's own decisions (`orchestrator.halving.decide`)
  and searched by hill climbing from the suggested setting and from random starts (seeded). The best setting found
  is a lower bound on the family's best on these grids.

The best of each is replayed through the selection rule (`bench/early_stopping.py`'s `figures`) and printed on the
last lines, with where the full grid's chosen LR stood after each epoch.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from early_stopping import (  # the sibling bench: one replay for both
    SIX,
    SUGGESTED,
    Figures,
    Setting,
    agreement,
    cell_members,
    figures,
    subset,
    table_cells,
)

from orchestrator.halving import Member, decide, rung_epochs
from orchestrator.results import read_epochs, read_trials
from orchestrator.spec import EarlyStopping, load_preset
from worker.records import TrialStatus
from worker.selection import choose_lr, select_cells, summarize

SAME_LR = 0.95  # the targets: the same LR in this share of cells, no table cell moved by more than MOVE points
MOVE = 1.0
MARGINS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
NOISES = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
STEPS = (0, 1, 2)
MAX_STAGES = 3
MAX_RUNGS = 5
Table = dict[tuple[str, str, str, str], float | None]  # (model, dataset, method, ood|id) -> percent


@dataclass
class Cell:
    """One (model, dataset, method) cell of a full grid, as the scheduler and the selection rule see it."""

    members: dict[str, Member]
    lrs: list[float]  # ascending
    preference: list[float]  # the full grid's choice rule over all its LRs, first choice first
    table: dict[float, Table]  # LR -> the cell's OOD and ID table values were it chosen
    seconds: dict[float, list[float]]  # LR -> trial-seconds of its trials up to each epoch (index 0: none)
    epochs: int
    means: dict[int, dict[float, float]]  # epoch -> LR -> seed-mean best ID validation so far (the rungs' measure)

    def ranked_at(self, epoch: int, lrs: Sequence[float]) -> list[float]:
        """`lrs` with a score after `epoch`, best first (ties to the smaller LR, as at a rung)."""
        means = self.means[epoch]
        return sorted((lr for lr in lrs if lr in means), key=lambda lr: (-means[lr], lr))


@dataclass
class View:
    """One stored grid at one set of LRs."""

    name: str
    cells: list[Cell]
    trials: Any  # pa.Table, for the final replay through the selection rule
    epochs_table: Any

    @cached_property
    def total_seconds(self) -> float:
        return sum(s[-1] for c in self.cells for s in c.seconds.values())

    @cached_property
    def full(self) -> Figures:
        """The full grid's own figures, through the selection rule."""
        return figures(self.trials, self.epochs_table, None)


@dataclass(frozen=True)
class Outcome:
    saved: float
    same: int
    cells: int
    move: float

    @property
    def meets(self) -> bool:
        return self.same >= SAME_LR * self.cells and self.move <= MOVE + 1e-9


Stops = dict[float, int]  # LR -> the last epoch its trials run


def load_view(name: str, trials: Any, epochs: Any) -> View:
    rows = epochs.to_pylist()
    per_trial: dict[str, dict[int, float]] = {}
    for r in rows:
        per_trial.setdefault(r["trial_id"], {})[r["epoch"]] = r["epoch_time_s"] or 0.0
    members = cell_members(trials, epochs)
    cells = []
    for result in select_cells(trials.to_pylist(), rows):
        in_cell = members[result.key]
        planned = max(m.reached for m in in_cell.values())
        lrs = sorted({m.group for m in in_cell.values()})
        seconds = {lr: [0.0] * (planned + 1) for lr in lrs}
        for tid, m in in_cell.items():
            for e in range(1, planned + 1):
                seconds[m.group][e] += per_trial.get(tid, {}).get(e, 0.0)
        for lr in lrs:
            for e in range(1, planned + 1):
                seconds[lr][e] += seconds[lr][e - 1]
        table = {s.lr: table_cells(result.key, s) for s in result.per_lr}
        means = {e: seed_means(in_cell.values(), e) for e in range(1, planned + 1)}
        cells.append(Cell(in_cell, lrs, preference(list(result.per_lr)), table, seconds, planned, means))
    return View(name, cells, trials, epochs)


def preference(summaries: list[Any]) -> list[float]:
    """The order in which the selection rule would pick a cell's LRs as the better ones drop out: with the LRs that
    ran to the end unchanged, the choice among any of them is the first of this order."""
    order = []
    while (best := choose_lr(summaries)) is not None:
        order.append(best.lr)
        summaries = [s for s in summaries if s.lr != best.lr]
    return order


def judge(view: View, stops_of: Callable[[Cell], Stops], *, floor: float | None = None) -> Outcome | None:
    """How a way of stopping does on a view (None once it is known to save less than `floor`)."""
    spent, same, move = 0.0, 0, 0.0
    total = view.total_seconds
    budget = None if floor is None else (1.0 - floor) * total
    for cell in view.cells:
        stops = stops_of(cell)
        spent += sum(cell.seconds[lr][min(stops.get(lr, cell.epochs), cell.epochs)] for lr in cell.lrs)
        if budget is not None and spent > budget + 1e-9:
            return None
        ran_out = [lr for lr in cell.lrs if stops.get(lr, cell.epochs) >= cell.epochs]
        full_choice = cell.preference[0] if cell.preference else None
        choice = next((lr for lr in cell.preference if lr in ran_out), full_choice)
        if choice == full_choice:
            same += 1
        elif choice is not None and full_choice is not None:
            ours, theirs = cell.table[choice], cell.table[full_choice]
            move = max(move, *(abs((ours[k] or 0.0) - (theirs[k] or 0.0)) for k in theirs))
    return Outcome(1.0 - spent / total, same, len(view.cells), move)


# ---- top-k schedules ---------------------------------------------------------------------------------------------


def seed_means(members: Iterable[Member], epoch: int) -> dict[float, float]:
    """Each LR's seed-mean best ID validation up to `epoch`, over its trials with a score."""
    by_lr: dict[float, list[float]] = {}
    for m in members:
        if (score := m.score_at(epoch)) is not None:
            by_lr.setdefault(m.group, []).append(score)
    return {lr: summarize(v).mean for lr, v in by_lr.items()}


def top_k_stops(cell: Cell, keep: Sequence[int]) -> Stops:
    """`keep[e - 1]` LRs go on after epoch e, the best by seed mean (ties to the smaller LR)."""
    running, stops = list(cell.lrs), {}
    for epoch, k in enumerate(keep[: cell.epochs - 1], start=1):
        on = cell.ranked_at(epoch, running)[:k]
        for lr in running:
            if lr not in on:
                stops[lr] = epoch
        running = on
    return stops


def top_k_schedules(n_lrs: int, epochs: int) -> Iterator[tuple[int, ...]]:
    yield from itertools.combinations_with_replacement(range(n_lrs, 0, -1), epochs - 1)


# ---- the neighbours rule -------------------------------------------------------------------------------------------


def neighbours_stops(setting: dict[str, Any]) -> Callable[[Cell], Stops]:
    spec = EarlyStopping.model_validate({"enabled": True, "rule": "neighbours", **setting})
    rule = spec.keep_rule()
    cache: dict[int, list[int]] = {}

    def stops(cell: Cell) -> Stops:
        if cell.epochs not in cache:
            cache[cell.epochs] = rung_epochs(
                cell.epochs,
                reduction_factor=spec.reduction_factor,
                grace_period=spec.grace_period,
                fractions=spec.rungs,
            )
        state = decide(cell.members, cache[cell.epochs], rule, epochs=cell.epochs)
        return {lr: d.epoch for d in reversed(state.decisions) for lr in d.stopped}

    return stops


def random_setting(rng: random.Random, epochs: int) -> dict[str, Any]:
    at = sorted(rng.sample(range(1, epochs), rng.randint(1, min(MAX_RUNGS, epochs - 1))))
    setting = {
        "rungs": [e / epochs for e in at],
        "neighbours": rng.choice(STEPS),
        "margin": rng.choice(MARGINS),
        "noise": rng.choice(NOISES),
        "paired": rng.random() < 0.5,
        "late": [],
    }
    for start in sorted(rng.sample(at, min(len(at), rng.randint(0, MAX_STAGES)))):
        setting["late"].append(random_stage(rng, start / epochs))
    return setting


def random_stage(rng: random.Random, start: float) -> dict[str, Any]:
    return {
        "start": start,
        "below": rng.choice(STEPS),
        "above": rng.choice((None, *STEPS)),
        "margin": rng.choice((None, *MARGINS)),
        "noise": rng.choice((None, *NOISES)),
    }


def mutate(setting: dict[str, Any], rng: random.Random, epochs: int) -> dict[str, Any]:
    """One change: a rung added, dropped or moved, a field of the rule or of a stage redrawn, a stage added or
    dropped. Stages start at rungs (one at the first rung narrows the window there to `below` and `above`); one left
    without its rung is dropped."""
    s = {**setting, "late": [dict(st) for st in setting["late"]]}
    at = [round(f * epochs) for f in s["rungs"]]
    move = rng.randrange(6)
    if move == 0 and len(at) < min(MAX_RUNGS, epochs - 1):
        at.append(rng.choice([e for e in range(1, epochs) if e not in at]))
    elif move == 1 and len(at) > 1:
        at.remove(rng.choice(at))
    elif move == 2:
        free = [e for e in range(1, epochs) if e not in at]
        if free:
            at[rng.randrange(len(at))] = rng.choice(free)
    elif move == 3:
        name = rng.choice(("neighbours", "margin", "noise", "paired"))
        # every field drawn whichever is changed, so that one seed always makes one search
        drawn = {"neighbours": rng.choice(STEPS), "margin": rng.choice(MARGINS), "noise": rng.choice(NOISES)}
        s[name] = drawn.get(name, not s["paired"])
    elif move == 4 and s["late"]:
        stage = rng.choice(s["late"])
        key = rng.choice(("below", "above", "margin", "noise"))
        stage[key] = random_stage(rng, stage["start"])[key]
    else:
        starts = {st["start"] for st in s["late"]}
        free = [e for e in sorted(set(at)) if e / epochs not in starts]
        if s["late"] and (rng.random() < 0.5 or not free or len(s["late"]) >= MAX_STAGES):
            s["late"].pop(rng.randrange(len(s["late"])))
        elif free:
            s["late"].append(random_stage(rng, rng.choice(free) / epochs))
    at = sorted(set(at))
    s["rungs"] = [e / epochs for e in at]
    s["late"] = sorted((st for st in s["late"] if round(st["start"] * epochs) in at), key=lambda st: st["start"])
    return s


@dataclass
class Found:
    setting: dict[str, Any]
    misses: int  # views whose targets it misses
    saved: float  # its smallest saving over the views


def assess(views: Sequence[View], setting: dict[str, Any], *, beat: Found | None) -> Found | None:
    """The setting on every view; None as soon as it cannot beat `beat` (a setting that meets every target and
    saves more is all that can)."""
    stops = neighbours_stops(setting)
    floor = beat.saved if beat is not None and beat.misses == 0 else None  # only a setting meeting every target beats
    misses, saved = 0, 1.0
    for view in views:
        out = judge(view, stops, floor=floor)
        if out is None:
            return None
        misses += not out.meets
        saved = min(saved, out.saved)
        if floor is not None and misses:
            return None
    return Found(setting, misses, saved)


def better(a: Found, b: Found) -> bool:
    return (a.misses, -a.saved) <= (b.misses, -b.saved)


def suggested() -> dict[str, Any]:
    """The README's suggested setting (the sibling bench's first), the search's first start."""
    fields = Setting.parse(SUGGESTED).spec_fields()
    stages = [dict.fromkeys(("start", "below", "above", "margin", "noise")) | st for st in fields["late"] or []]
    return {k: v for k, v in fields.items() if k not in ("reduction_factor", "rule")} | {"late": stages}


def search(views: Sequence[View], *, evaluations: int, starts: int, seed: int, epochs: int) -> Found:
    rng = random.Random(seed)
    per_start = max(1, evaluations // starts)
    best: Found | None = None
    for i in range(starts):
        first = suggested() if i == 0 and epochs == 8 else random_setting(rng, epochs)
        current = assess(views, first, beat=None)
        assert current is not None
        for _ in range(per_start):
            candidate = assess(views, mutate(current.setting, rng, epochs), beat=current)
            if candidate is not None and better(candidate, current):
                current = candidate
        if best is None or better(current, best):
            best = current
    assert best is not None
    return best


# ---- report ---------------------------------------------------------------------------------------------------------


def spec_text(setting: dict[str, Any]) -> str:
    """The setting as it would be written in a sweep spec's `early_stopping`."""
    late = [{k: v for k, v in st.items() if v is not None} for st in setting["late"]]
    fields = {"enabled": True, "rule": "neighbours", **{k: v for k, v in setting.items() if k != "late"}}
    if late:
        fields["late"] = late
    return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in fields.items()) + "}"


def _yaml(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    return str(v)


def replayed(view: View, stops_of: Callable[[Cell], Stops]) -> str:
    """The selection rule's own figures for the cut grid, against the full one's."""
    last: dict[str, int] = {}
    for cell in view.cells:
        stops = stops_of(cell)
        for tid, m in cell.members.items():
            last[tid] = min(m.reached, stops.get(m.group, m.reached))
    cut = figures(view.trials, view.epochs_table, last)
    return f"{view.name}: {1 - cut.trial_seconds / view.full.trial_seconds:.1%} saved, {agreement(view.full, cut)}"


def winner_ranks(views: Sequence[View]) -> list[str]:
    """Where each cell's chosen LR stood after each epoch, among all its LRs (the 6-LR views)."""
    lines = []
    epochs = max(c.epochs for v in views for c in v.cells)
    counts = {e: Counter() for e in range(1, epochs)}
    n = 0
    for view in views:
        for cell in view.cells:
            if not cell.preference:
                continue
            n += 1
            for e in counts:
                order = cell.ranked_at(e, cell.lrs)
                rank = order.index(cell.preference[0]) if cell.preference[0] in order else len(cell.lrs)
                counts[e][min(rank, 2)] += 1
    for e, c in counts.items():
        lines.append(f"  after epoch {e}: first in {c[0]}, second in {c[1]}, lower in {c[2]} of {n} cells")
    return lines


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def read_full_grid(d: str) -> tuple[Any, Any]:
    """A kept grid's trials and epochs; refused unless every trial ended by itself (ran every epoch or diverged), since
    the bound is against a full grid."""
    if not (Path(d) / "trials.parquet").is_file():
        raise SystemExit(
            f"{d}: no trials.parquet there; --results takes full grids kept by bench/early_stopping.py --keep"
        )
    trials = read_trials(d)
    cut = Counter(t["status"] for t in trials.to_pylist() if t["status"] not in TrialStatus.SELF_ENDED)
    if trials.num_rows == 0 or cut:
        raise SystemExit(
            f"{d}: {trials.num_rows} trials, of which {dict(cut)} did not end by themselves; --results takes full "
            f"grids, every trial {' or '.join(sorted(TrialStatus.SELF_ENDED))}"
        )
    return trials, read_epochs(d)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="+", required=True, help="full grids kept by bench/early_stopping.py --keep")
    p.add_argument("--evaluations", type=positive, default=10000, help="neighbours settings tried per LR set")
    p.add_argument("--starts", type=positive, default=30, help="starts of the hill climb (the first: the suggestion)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    demo_lrs = load_preset("demo").lrs
    lines: list[str] = []
    ranks: list[View] = []
    grids = [(Path(d).name, read_full_grid(d)) for d in args.results]
    for label, lrs in (("6-LR grid", SIX), ("demo grid", demo_lrs)):
        views = [load_view(name, *subset(*grid, lrs)) for name, grid in grids]
        if lrs is SIX:
            ranks = views
        n_lrs = max(len(c.lrs) for v in views for c in v.cells)
        epochs = max(c.epochs for v in views for c in v.cells)
        print(f"{label}: {len(views)} grids, {n_lrs} LRs, {epochs} epochs; searching", flush=True)

        schedules = list(top_k_schedules(n_lrs, epochs))
        outcomes = {ks: [judge(v, lambda c, ks=ks: top_k_stops(c, ks)) for v in views] for ks in schedules}
        meeting = [ks for ks, outs in outcomes.items() if all(o.meets for o in outs)]
        best_ks = max(meeting, key=lambda ks: min(o.saved for o in outcomes[ks]), default=None)
        lines.append(f"{label}, top-k schedules ({len(schedules)}, every one), LRs going on after each epoch:")
        if best_ks is None:
            lines.append("  none meets the targets on every grid")
        else:
            lines.append(f"  best meeting the targets on every grid: {list(best_ks)}")
            lines += [f"    {replayed(v, lambda c, ks=best_ks: top_k_stops(c, ks))}" for v in views]
        for i, v in enumerate(views):
            alone = [ks for ks in schedules if outcomes[ks][i].meets]
            top = max(alone, key=lambda ks, i=i: outcomes[ks][i].saved)
            lines.append(f"  {v.name} alone: at most {outcomes[top][i].saved:.1%} saved, {list(top)}")

        found = search(views, evaluations=args.evaluations, starts=args.starts, seed=args.seed, epochs=epochs)
        lines.append(
            f"{label}, the neighbours rule ({args.evaluations} settings searched, seed {args.seed}): best "
            f"{'meeting the targets on every grid' if not found.misses else f'found misses {found.misses} grids'}: "
            f"{spec_text(found.setting)}"
        )
        lines += [f"    {replayed(v, neighbours_stops(found.setting))}" for v in views]
    lines.append("where the full grid's chosen LR stood after each epoch (6-LR grids, seed-mean best ID validation):")
    lines += winner_ranks(ranks)
    lines.append(
        f"targets: >= 50% of trial-seconds saved, the same LR in >= {SAME_LR:.0%} of cells, no table cell "
        f"moved by more than {MOVE:g} point"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
