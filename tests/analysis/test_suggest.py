"""Suggested extensions from hand-built results: the exact LRs and seeds they add, and that each one is submittable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analysis.suggest import Suggestions, suggest_extension
from orchestrator.extension import extension_problems, grid_growth
from orchestrator.spec import SweepSpec, load_spec
from tests.sweep_builder import SweepBuilder
from worker.selection import select_cells

SGD = [1e-4, 3e-4, 1e-3]
ADAMW = [1e-5, 3e-5, 1e-4]
SEPARATE = {0: (0.951, 0.701), 1: (0.949, 0.699)}  # (id_test, ood_test) per seed: a tight interval


def _spec(**fields: Any) -> SweepSpec:
    return load_spec(
        {
            "models": ["tiny_vit"],
            "datasets": ["synth_style"],
            "methods": ["sgd", "adamw"],
            "lrs": {"sgd": SGD, "adamw": ADAMW},
            **fields,
        }
    )


def _cell(
    b: SweepBuilder, model: str, method: str, lrs: list[float], best: float, seeds: dict[int, tuple[float, float]]
) -> None:
    """One cell on synth_style: `best` has the highest ID validation; its (id_test, ood_test) per seed."""
    for seed, (id_test, ood) in seeds.items():
        for lr in lrs:
            curve = [(0.9, id_test, ood)] if lr == best else [(0.8, 0.5, 0.5)]
            b.add(model, "synth_style", method, lr, seed, curve=curve)


def _suggest(spec: SweepSpec, b: SweepBuilder, **kw: Any) -> Suggestions:
    return suggest_extension(spec, select_cells(b.trials, b.epochs), **kw)


def _check_submittable(spec: SweepSpec, out: Suggestions) -> SweepSpec:
    """The extension, sent as an extend body, grows the sweep by exactly the trials it claims."""
    json.dumps(out.extension)  # it is a request body
    grown = load_spec({**spec.model_dump(mode="json"), **out.extension})
    assert extension_problems(spec, grown) == []
    assert out.trials_added == len(grown.expand()) - len(spec.expand()) == grid_growth(spec, grown).trials_added
    for item in out.items:  # each item alone is submittable too
        assert extension_problems(spec, load_spec({**spec.model_dump(mode="json"), **item.changes})) == []
    return grown


def test_edge_cells_on_both_sides_add_one_lr_beyond_each_edge() -> None:
    spec = _spec(models=["tiny_vit", "tiny_bit"], lrs={"sgd": SGD}, seeds=[0, 1])  # adamw: the catalog's grid
    catalog_adamw = spec.lr_grid("adamw")
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 1e-4, SEPARATE)  # smallest
    _cell(b, "tiny_bit", "sgd", SGD, 1e-3, SEPARATE)  # largest
    _cell(b, "tiny_vit", "adamw", catalog_adamw, 1e-4, {0: (0.8, 0.6), 1: (0.8, 0.6)})  # largest of 3e-7 .. 1e-4
    _cell(b, "tiny_bit", "adamw", catalog_adamw, 3e-6, {0: (0.8, 0.6), 1: (0.8, 0.6)})  # inside the grid

    out = _suggest(spec, b)

    assert [i.kind for i in out.items] == ["widen_lrs", "widen_lrs"]
    adamw, sgd = out.items
    assert sgd.cells == ["tiny_bit/synth_style/sgd", "tiny_vit/synth_style/sgd"]
    assert sgd.changes == {"lrs": {"sgd": [3.3e-5, *SGD, 3.3e-3]}}  # 1e-4 / 3 and 1e-3 * 10/3, two digits
    assert "smallest LR 1e-4 in 1 cell (tiny_vit/synth_style/sgd)" in sgd.reason
    assert "add 3.3e-5 below it and 3.3e-3 above it" in sgd.reason
    assert "every model, dataset and seed of sgd (8 trials)" in sgd.reason
    assert adamw.cells == ["tiny_vit/synth_style/adamw"]
    assert adamw.changes == {"lrs": {"sgd": SGD, "adamw": [*catalog_adamw, 3.3e-4]}}  # sgd's entry kept whole
    assert out.extension == {"lrs": {"sgd": [3.3e-5, *SGD, 3.3e-3], "adamw": [*catalog_adamw, 3.3e-4]}}
    grown = _check_submittable(spec, out)
    assert out.trials_added == 12  # 3 new LRs x 2 models x 2 seeds
    assert grown.lr_grid("adamw")[-1] == 3.3e-4


def test_a_grid_step_rounds_to_two_significant_digits() -> None:
    spec = _spec(methods=["sgd"], lrs={"sgd": [1e-4, 3.333e-4]})
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", [1e-4, 3.333e-4], 1e-4, {0: (0.9, 0.7)})
    out = _suggest(spec, b)
    assert out.extension == {"lrs": {"sgd": [3e-5, 1e-4, 3.333e-4]}}
    assert "add 3e-5 below it" in out.items[0].reason
    _check_submittable(spec, out)


@pytest.mark.parametrize(
    ("target", "seeds_after", "said"),
    [(3, [0, 1, 2], "add 1 more (seed 2) to reach 3"), (2, [0, 1, 2, 3], "add 2 more (seeds 2, 3)")],
)
def test_overlapping_intervals_add_global_seeds(target: int, seeds_after: list[int], said: str) -> None:
    spec = _spec(seeds=[0, 1])
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 3e-4, {0: (0.951, 0.70), 1: (0.949, 0.74)})
    _cell(b, "tiny_vit", "adamw", ADAMW, 3e-5, {0: (0.901, 0.69), 1: (0.899, 0.73)})  # ID apart, OOD overlaps

    out = _suggest(spec, b, seeds_target=target)

    (item,) = out.items
    assert item.kind == "add_seeds"
    assert item.cells == ["tiny_vit/synth_style/adamw", "tiny_vit/synth_style/sgd"]
    assert "on synth_style OOD, sgd 72.0 ± 3.3 and adamw 71.0 ± 3.3 overlap: 2 seeds so far" in item.reason
    assert "synth_style ID" not in item.reason
    assert said in item.reason
    assert item.changes == out.extension == {"seeds": seeds_after}  # the only model, on the global seeds
    _check_submittable(spec, out)
    assert out.trials_added == 6 * (len(seeds_after) - 2)


def test_single_seed_cells_add_seeds_per_model_keeping_other_models_seeds() -> None:
    spec = _spec(models=["tiny_vit", "tiny_bit"], seeds=[0], model_seeds={"tiny_bit": [0, 1]})
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 3e-4, {0: (0.95, 0.80)})
    _cell(b, "tiny_vit", "adamw", ADAMW, 3e-5, {0: (0.90, 0.60)})  # far apart, but one seed has no interval
    _cell(b, "tiny_bit", "sgd", SGD, 3e-4, SEPARATE)
    _cell(b, "tiny_bit", "adamw", ADAMW, 3e-5, {0: (0.801, 0.601), 1: (0.799, 0.599)})

    out = _suggest(spec, b)

    (item,) = out.items
    assert item.cells == ["tiny_vit/synth_style/adamw", "tiny_vit/synth_style/sgd"]
    assert "sgd 80.0 (1 seed, no interval) and adamw 60.0 (1 seed, no interval)" in item.reason
    assert "1 seed so far, add 2 more (seeds 1, 2) to reach 3" in item.reason
    assert out.extension == {"model_seeds": {"tiny_bit": [0, 1], "tiny_vit": [0, 1, 2]}}
    _check_submittable(spec, out)
    assert out.trials_added == 12  # 2 seeds x 2 methods x 3 LRs


def test_every_model_with_its_own_seeds_grows_model_seeds_not_seeds() -> None:
    spec = _spec(models=["tiny_vit", "tiny_bit"], seeds=[0], model_seeds={"tiny_vit": [0]})
    b = SweepBuilder()
    for model in ("tiny_vit", "tiny_bit"):
        _cell(b, model, "sgd", SGD, 3e-4, {0: (0.95, 0.80)})
        _cell(b, model, "adamw", ADAMW, 3e-5, {0: (0.90, 0.60)})
    out = _suggest(spec, b)
    assert [i.kind for i in out.items] == ["add_seeds", "add_seeds"]
    assert out.items[0].changes == {"model_seeds": {"tiny_vit": [0], "tiny_bit": [0, 1, 2]}}
    assert out.extension == {"model_seeds": {"tiny_vit": [0, 1, 2], "tiny_bit": [0, 1, 2]}}
    _check_submittable(spec, out)


def test_separated_intervals_with_enough_seeds_suggest_nothing() -> None:
    spec = _spec(seeds=[0, 1])
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 3e-4, SEPARATE)
    _cell(b, "tiny_vit", "adamw", ADAMW, 3e-5, {0: (0.901, 0.601), 1: (0.899, 0.599)})
    assert _suggest(spec, b) == Suggestions(items=[], extension={}, trials_added=0)


def test_a_lone_method_has_no_runner_up() -> None:
    spec = _spec(methods=["sgd"], lrs={"sgd": SGD})
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 3e-4, {0: (0.95, 0.80)})
    assert _suggest(spec, b) == Suggestions(items=[], extension={}, trials_added=0)


def test_failed_trials_come_first_as_a_rerun_that_changes_nothing() -> None:
    spec = _spec(seeds=[0, 1])
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 1e-4, SEPARATE)  # at the smallest LR
    _cell(b, "tiny_vit", "adamw", ADAMW[:2], 3e-5, {0: (0.90, 0.70), 1: (0.90, 0.71)})  # overlaps sgd on OOD
    b.add("tiny_vit", "synth_style", "adamw", 1e-4, 0, status="failed")
    b.add("tiny_vit", "synth_style", "adamw", 1e-4, 1, status="cancelled")

    out = _suggest(spec, b)

    assert [i.kind for i in out.items] == ["rerun", "widen_lrs", "add_seeds"]
    rerun = out.items[0]
    assert rerun.cells == ["tiny_vit/synth_style/adamw"]
    assert rerun.changes == {}
    assert rerun.reason == (
        "1 cell lacks results (1 cancelled, 1 failed): an extension (or a resume) runs failed and cancelled "
        "trials again"
    )
    assert out.extension == {"lrs": {"sgd": [3.3e-5, *SGD], "adamw": ADAMW}, "seeds": [0, 1, 2]}
    _check_submittable(spec, out)


def test_failed_trials_alone_leave_the_extension_empty() -> None:
    spec = _spec(methods=["sgd"], lrs={"sgd": SGD}, seeds=[0, 1])
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD, 3e-4, {0: (0.95, 0.80)})
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, 1, status="failed")
    out = _suggest(spec, b)
    assert [i.kind for i in out.items] == ["rerun"]
    assert out.items[0].reason.startswith("1 cell lacks results (1 failed)")
    assert out.extension == {} and out.trials_added == 0


def test_an_edge_of_the_lrs_run_inside_the_grid_adds_no_lr() -> None:
    spec = _spec(methods=["sgd"], lrs={"sgd": SGD})
    b = SweepBuilder()
    _cell(b, "tiny_vit", "sgd", SGD[1:], 3e-4, {0: (0.95, 0.80)})  # 1e-4 has not run: the grid already goes lower
    (cell,) = select_cells(b.trials, b.epochs)
    assert cell.edge_side == "smallest"
    assert _suggest(spec, b) == Suggestions(items=[], extension={}, trials_added=0)
