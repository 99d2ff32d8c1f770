"""The extension a researcher would make next to a sweep, read off its results, as the body of an extend request.

Three kinds, in this order:
- rerun: cells with trials still lacking a result; any extension (or a resume) runs failed and cancelled trials
  again, so this item changes nothing by itself.
- widen_lrs: a method whose chosen LR sits at an edge of its grid was never tested beyond it: one more LR there.
- add_seeds: a model whose best two methods on a (model, dataset) cannot be told apart on OOD or ID test (a
  single seed, or 90% intervals that overlap) gets more seeds.

Each item's `changes`, and the merged `extension`, hold complete top-level field values, because an extension
replaces every field it names; the merged one is checked to grow the sweep before it is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.extension import extension_problems, grid_growth
from orchestrator.spec import MAX_LIST, MAX_SEEDS, SweepSpec, SweepSpecError, load_spec
from worker.config import learning_rate
from worker.records import TrialStatus
from worker.selection import CellResult, format_lr

SEED_METRICS = {"ood_test": "OOD", "id_test": "ID"}  # the metrics whose ranking more seeds should settle
# A grid of one LR has no step to repeat: take half a decade, the step of the catalog's own grids (3e-5, 1e-4, ...).
ONE_LR_STEP = 10**0.5


@dataclass(frozen=True)
class Suggestion:
    """One change the results call for, with the cells behind it and the spec fields it alone would set."""

    kind: str  # "widen_lrs" | "add_seeds" | "rerun"
    cells: list[str]  # "model/dataset/method", sorted
    reason: str
    changes: dict[str, Any]  # complete top-level field values; {} for rerun


@dataclass(frozen=True)
class Suggestions:
    """Every suggestion, and their changes merged into one extension that grows the sweep."""

    items: list[Suggestion]
    extension: dict[str, Any]  # top-level spec fields to replace; {} when nothing changes
    trials_added: int


def _name(cell: CellResult) -> str:
    return f"{cell.model}/{cell.dataset}/{cell.method}"


def _names(cells: Sequence[CellResult]) -> list[str]:
    return sorted({_name(c) for c in cells})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _two_digits(x: float) -> float:
    """Two significant digits: 1e-4 / 3.333 gives 3e-5, not 3.0003e-5."""
    return float(f"{x:.1e}")


def _grown(spec: SweepSpec, changes: dict[str, Any]) -> SweepSpec:
    """The spec an extend request with `changes` leaves; AssertionError unless it grows the sweep."""
    try:
        grown = load_spec({**spec.model_dump(mode="json"), **changes})
    except SweepSpecError as e:
        raise AssertionError(f"the suggested extension is not a valid spec: {e}") from None
    problems = extension_problems(spec, grown)
    if problems:
        raise AssertionError(
            "the suggested extension does not grow the sweep: " + "; ".join(p.message for p in problems)
        )
    return grown


# ---- rerun ---------------------------------------------------------------------------------------------------


def _rerun(cells: Sequence[CellResult]) -> Suggestion | None:
    lacking = [c for c in cells if c.n_missing > 0 or c.status in ("incomplete", "no_result")]
    if not lacking:
        return None
    statuses: dict[str, int] = {}
    for c in lacking:
        for s in c.per_lr:
            for status, n in s.statuses.items():
                if status not in TrialStatus.HAS_RESULT:
                    statuses[status] = statuses.get(status, 0) + n
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return Suggestion(
        kind="rerun",
        cells=_names(lacking),
        reason=f"{_plural(len(lacking), 'cell')} {'lacks' if len(lacking) == 1 else 'lack'} results "
        f"({counts or 'no trial result'}): an extension "
        "(or a resume) runs failed and cancelled trials again",
        changes={},
    )


# ---- widen_lrs -----------------------------------------------------------------------------------------------


def _beyond(grid: list[float], side: str) -> float | None:
    """One LR past `side` of the sorted grid, a grid step away; None when it is not a new, valid LR."""
    if side == "smallest":
        step = grid[1] / grid[0] if len(grid) > 1 else ONE_LR_STEP
        value = grid[0] / step
    else:
        step = grid[-1] / grid[-2] if len(grid) > 1 else ONE_LR_STEP
        value = grid[-1] * step
    try:
        value = learning_rate(_two_digits(value))
    except ValueError:
        return None
    return None if any(math.isclose(value, g, rel_tol=1e-9) for g in grid) else value


def _lr_changes(spec: SweepSpec, grids: dict[str, list[float]]) -> dict[str, Any]:
    return {"lrs": {**{m: list(g) for m, g in spec.lrs.items()}, **grids}}


def _widen(spec: SweepSpec, cells: Sequence[CellResult]) -> tuple[list[Suggestion], dict[str, list[float]]]:
    by_method: dict[str, dict[str, list[CellResult]]] = {}
    for c in cells:
        if c.edge_side is not None and c.method in spec.methods:
            by_method.setdefault(c.method, {}).setdefault(c.edge_side, []).append(c)
    items, grids = [], {}
    for method in sorted(by_method):
        grid = sorted(spec.lr_grid(method))
        edge = {"smallest": grid[0], "largest": grid[-1]}
        found, added = [], []
        for side in ("smallest", "largest"):
            # a cell at the edge of the LRs it ran, but not of the grid, waits for the grid's own LRs, not new ones
            at_edge = [c for c in by_method[method].get(side, []) if math.isclose(c.chosen_lr or 0.0, edge[side])]
            value = _beyond(grid, side) if at_edge else None
            if value is None:
                continue
            where = "below" if side == "smallest" else "above"
            found.append(
                f"its {side} LR {format_lr(edge[side])} in {_plural(len(at_edge), 'cell')} "
                f"({', '.join(_names(at_edge))})"
            )
            added.append((value, where, at_edge))
        if not added or len(grid) + len(added) > MAX_LIST:
            continue
        grids[method] = sorted([*grid, *(v for v, _, _ in added)])
        changes = _lr_changes(spec, {method: grids[method]})
        n = grid_growth(spec, _grown(spec, changes)).trials_added
        new = " and ".join(f"{format_lr(v)} {where} it" for v, where, _ in added)
        items.append(
            Suggestion(
                kind="widen_lrs",
                cells=_names([c for _, _, at_edge in added for c in at_edge]),
                reason=f"{method} chose {' and '.join(found)}: add {new}; the grid is a product, so each new LR "
                f"runs for every model, dataset and seed of {method} ({_plural(n, 'trial')})",
                changes=changes,
            )
        )
    return items, grids


# ---- add_seeds -----------------------------------------------------------------------------------------------


def _shown(cell: CellResult, metric: str) -> str:
    mean, ci = cell.mean(metric), cell.ci90(metric)
    assert mean is not None
    if ci is None or cell.n_seeds < 2:
        return f"{cell.method} {100 * mean:.1f} ({_plural(cell.n_seeds, 'seed')}, no interval)"
    return f"{cell.method} {100 * mean:.1f} ± {100 * ci:.1f}"


def _undecided(cells: Sequence[CellResult], metric: str) -> tuple[CellResult, CellResult] | None:
    """The best and the runner-up by mean when nothing tells them apart; None when something does."""
    ranked = sorted(
        (c for c in cells if c.chosen_lr is not None and c.mean(metric) is not None),
        key=lambda c: (-(c.mean(metric) or 0.0), c.method),
    )
    if len(ranked) < 2:
        return None  # a single method has no runner-up
    a, b = ranked[0], ranked[1]
    ci_a, ci_b = a.ci90(metric), b.ci90(metric)
    if a.n_seeds < 2 or b.n_seeds < 2 or ci_a is None or ci_b is None:
        return a, b
    return (a, b) if abs((a.mean(metric) or 0.0) - (b.mean(metric) or 0.0)) <= ci_a + ci_b else None


def _seed_changes(spec: SweepSpec, grown: dict[str, list[int]]) -> dict[str, Any]:
    """`seeds` when every model shares the global seeds and all grow alike; else `model_seeds`, complete."""
    lists = list(grown.values())
    if set(grown) == set(spec.models) and not spec.model_seeds and all(s == lists[0] for s in lists):
        return {"seeds": lists[0]}
    return {"model_seeds": {**{m: list(s) for m, s in spec.model_seeds.items()}, **grown}}


def _add_seeds(
    spec: SweepSpec, cells: Sequence[CellResult], seeds_target: int
) -> tuple[list[Suggestion], dict[str, list[int]]]:
    groups: dict[tuple[str, str], list[CellResult]] = {}
    for c in cells:
        if c.model in spec.models and c.method in spec.methods:
            groups.setdefault((c.model, c.dataset), []).append(c)
    pairs: dict[str, list[tuple[str, str, CellResult, CellResult]]] = {}
    for (model, dataset), group in groups.items():
        for metric in SEED_METRICS:
            pair = _undecided(group, metric)
            if pair is not None:
                pairs.setdefault(model, []).append((dataset, metric, *pair))
    items, grown = [], {}
    for model in sorted(pairs):
        seeds = spec.seeds_for(model)
        more = seeds_target - len(seeds) if len(seeds) < seeds_target else 2
        if len(seeds) + more > MAX_SEEDS:
            continue
        new = list(range(max(seeds) + 1, max(seeds) + 1 + more))
        grown[model] = [*seeds, *new]
        said = []
        for dataset, metric, a, b in pairs[model]:
            verb = "overlap" if a.n_seeds > 1 and b.n_seeds > 1 else "cannot be told apart"
            said.append(f"on {dataset} {SEED_METRICS[metric]}, {_shown(a, metric)} and {_shown(b, metric)} {verb}")
        goal = f" to reach {seeds_target}" if len(seeds) < seeds_target else ""
        changes = _seed_changes(spec, {model: grown[model]})
        n = grid_growth(spec, _grown(spec, changes)).trials_added
        items.append(
            Suggestion(
                kind="add_seeds",
                cells=_names([c for _, _, a, b in pairs[model] for c in (a, b)]),
                reason=f"{model}: {'; '.join(said)}: {_plural(len(seeds), 'seed')} so far, add {more} more "
                f"(seed{'s' if more > 1 else ''} {', '.join(map(str, new))}){goal}, "
                f"for every dataset, method and LR of {model} ({_plural(n, 'trial')})",
                changes=changes,
            )
        )
    return items, grown


# ---- all of it -----------------------------------------------------------------------------------------------


def suggest_extension(spec: SweepSpec, cells: Sequence[CellResult], *, seeds_target: int = 3) -> Suggestions:
    """What to run next to the sweep of `spec`, from its cells (`worker.selection.select_cells`).

    Raises AssertionError if the merged extension would not grow the sweep: a suggestion must be submittable.
    """
    rerun = _rerun(cells)
    widen, grids = _widen(spec, cells)
    seeds, grown_seeds = _add_seeds(spec, cells, seeds_target)
    items = ([rerun] if rerun else []) + widen + seeds
    extension: dict[str, Any] = {}
    if grids:
        extension.update(_lr_changes(spec, grids))
    if grown_seeds:
        extension.update(_seed_changes(spec, grown_seeds))
    if not extension:
        return Suggestions(items=items, extension={}, trials_added=0)
    grown = _grown(spec, extension)
    if grown.grid_size() > spec.max_trials:  # the sweep's own cap would refuse it; a service's ceiling still holds
        extension["max_trials"] = grown.grid_size()
    return Suggestions(items=items, extension=extension, trials_added=grid_growth(spec, grown).trials_added)
