"""Growing a sweep without Ray: which specs extend a stored one (and why others are refused), what an extension
adds, its history written once, and results copied from other sweeps of the storage (only what ran to its end,
on the same files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.driver import _begin, _check_start, _reuse
from orchestrator.extension import (
    extension_problems,
    grid_growth,
    history_lines,
    read_history,
    record_extension,
)
from orchestrator.results import ResultsStore, read_epochs, read_trials
from orchestrator.spec import SweepSpec, SweepSpecError, load_spec
from orchestrator.storage import Location
from tests.orchestrator.test_results import report


def spec(**changes: Any) -> SweepSpec:
    base: dict[str, Any] = {
        "models": ["tiny_vit"],
        "datasets": ["synth_style"],
        "methods": ["sgd", "adamw"],
        "lrs": {"sgd": [1e-3, 1e-2], "adamw": [1e-4]},
        "seeds": [0],
        "epochs": 2,
        "pretrained": False,
        "data_root": "/data",
    }
    return load_spec({**base, **changes})


def fields(problems: list) -> dict[str, str]:
    return {p.field: p.message for p in problems}


def test_more_seeds_lrs_models_datasets_and_methods_extend_a_sweep() -> None:
    old = spec()
    new = spec(
        seeds=[0, 1],
        lrs={"sgd": [1e-3, 1e-2, 3e-2], "adamw": [1e-4], "lars": [1.0]},
        models=["tiny_vit", "tiny_convnext"],
        datasets=["synth_style", "synth_stain"],
        methods=["sgd", "adamw", "lars"],
        resources={"cpus": 2},
    )
    assert extension_problems(old, new) == []
    growth = grid_growth(old, new)
    assert growth.models == ["tiny_convnext"] and growth.datasets == ["synth_stain"] and growth.methods == ["lars"]
    assert growth.seeds == {"tiny_vit": [1]} and growth.lrs == {"sgd": [3e-2]}
    assert growth.trials_added == len(new.expand()) - len(old.expand()) == 40 - 3
    assert growth.changed == ["resources"]
    assert growth.describe().startswith("+37 trials: models tiny_convnext; datasets synth_stain; methods lars;")
    assert "seeds 1 for tiny_vit; LRs 3e-2 for sgd (also changed: resources)" in growth.describe()
    assert extension_problems(old, old) == [] and grid_growth(old, old).empty


def test_seeds_for_one_model_extend_through_model_seeds() -> None:
    old = spec(models=["tiny_vit", "tiny_convnext"])
    new = spec(models=["tiny_vit", "tiny_convnext"], model_seeds={"tiny_vit": [0, 1, 2]})
    assert extension_problems(old, new) == []
    assert grid_growth(old, new).seeds == {"tiny_vit": [1, 2]}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"seeds": [1]}, "seeds", "drops tiny_vit's seed(s) 0"),
        ({"model_seeds": {"tiny_vit": [1, 2]}}, "model_seeds.tiny_vit", "drops tiny_vit's seed(s) 0"),
        ({"lrs": {"sgd": [1e-2], "adamw": [1e-4]}}, "lrs.sgd", "drops LR(s) 1e-3"),
        ({"methods": ["sgd"], "lrs": {"sgd": [1e-3, 1e-2]}}, "methods", "drops method(s) 'adamw'"),
        ({"epochs": 4}, "epochs", "not old ones continued"),
        ({"batch_size": 64}, "batch_size", "new sweep"),
        ({"max_train_images": 10}, "max_train_images", "training subset"),
        ({"precision": "bf16"}, "precision", "precision"),
        ({"data_root": "/elsewhere"}, "data_root", "trained on the data found there"),
        ({"weights_root": "/w"}, "weights_root", "weights"),
        ({"early_stopping": {"enabled": True}}, "early_stopping", "old rule"),
        ({"method_options": {"sgd": {"momentum": 0.0}}}, "method_options.sgd", "what its old trials mean"),
    ],
)
def test_a_grid_that_drops_trials_or_changes_them_is_refused_naming_the_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    problems = fields(extension_problems(spec(), spec(**changes)))
    assert field in problems, problems
    assert words in problems[field]


def test_the_driver_accepts_a_grown_spec_only_when_extending(tmp_path: Path) -> None:
    loc = Location(tmp_path / "s")
    old, new = spec(), spec(seeds=[0, 1])
    assert _check_start(old, loc, resume=True, extend=True) == (old, None)  # a first job that wrote nothing
    _begin(old, None, loc)
    assert [e["event"] for e in read_history(loc)] == ["started"]
    with pytest.raises(SweepSpecError, match="differs from the spec"):
        _check_start(new, loc, resume=True, extend=False)
    with pytest.raises(SweepSpecError, match="drops tiny_vit.s seed"):
        _check_start(spec(seeds=[1]), loc, resume=True, extend=True)
    ran, previous = _check_start(new, loc, resume=True, extend=True)
    assert ran == new and previous == old

    (tmp_path / "s" / "tune").mkdir()
    (tmp_path / "s" / "tune" / "tuner.pkl").write_text("the old grid's experiment")
    _begin(new, previous, loc)
    assert not (tmp_path / "s" / "tune").exists()  # its trial list is the old grid: the extension starts Tune anew
    record_extension(loc, old, new, grid_growth(old, new))  # a driver resumed after dying here records it once
    events = read_history(loc)
    assert [e["event"] for e in events] == ["started", "extended"]
    assert events[1]["trials_added"] == 3 and events[1]["seeds"] == {"tiny_vit": [1]}
    lines = history_lines(events)
    assert lines[0].endswith("started with 3 trials") and "extended, +3 trials: seeds 1 for tiny_vit" in lines[1]
    assert _check_start(None, loc, resume=True, extend=False) == (new, new)


def test_a_sweep_from_before_the_history_gets_an_undated_start(tmp_path: Path) -> None:
    loc = Location(tmp_path)
    old, new = spec(), spec(seeds=[0, 1])
    record_extension(loc, old, new, grid_growth(old, new))
    assert [e["at"] for e in read_history(loc)][0] is None
    assert history_lines(read_history(loc))[0] == "before its history was kept: started with 3 trials"


def _finished_sweep(storage: Path, sweep_id: str, the_spec: SweepSpec, *, statuses: dict[float, str]) -> None:
    """A sweep whose trials ended as `statuses` says (by LR), each with its epochs."""
    trials = the_spec.expand()
    store = ResultsStore(storage / sweep_id, sweep_id, trials)
    for t in trials:
        store.start(t.trial_id())
        status = statuses.get(t.lr, "completed")
        for epoch in (1, 2):
            last = epoch == 2 and status in ("completed", "diverged")
            store.record_epoch(t.trial_id(), report(epoch, 0.5 + t.lr, status=status if last else "running"))
        store.finish(t.trial_id(), error="boom" if status == "failed" else None)
    store.flush()


def test_reuse_copies_only_trials_that_ran_to_their_end_on_the_same_files(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    source = spec(methods=["sgd"], lrs={"sgd": [1e-3, 1e-2, 3e-2]})
    _finished_sweep(storage, "a", source, statuses={1e-2: "failed"})
    _finished_sweep(storage, "b", spec(methods=["sgd"], lrs={"sgd": [3e-2]}, data_root="/other"), statuses={})
    (storage / "_specs").mkdir()  # the service's own directory: not a sweep

    wanted = spec(methods=["sgd"], lrs={"sgd": [1e-3, 1e-2, 3e-2, 1e-1]}, reuse=True)
    trials = wanted.expand()
    store = ResultsStore(storage / "c", "c", trials)
    assert _reuse("c", storage, store, trials) == 2  # 1e-3 and 3e-2 from a; 1e-2 failed there
    store.flush()
    rows = {r["lr"]: r for r in read_trials(storage / "c").to_pylist()}
    assert {lr: (r["status"], r["reused_from"]) for lr, r in rows.items()} == {
        1e-3: ("completed", "a"),
        1e-2: ("pending", None),
        3e-2: ("completed", "a"),
        1e-1: ("pending", None),
    }
    assert all(r["sweep_id"] == "c" for r in rows.values())
    assert rows[1e-3]["id_val"] == pytest.approx(0.501)
    epochs = read_epochs(storage / "c").to_pylist()
    assert sorted((e["lr"], e["epoch"]) for e in epochs) == [(1e-3, 1), (1e-3, 2), (3e-2, 1), (3e-2, 2)]
    assert {e["sweep_id"] for e in epochs} == {"c"}
    assert sorted(store.unfinished()) == sorted(t.trial_id() for t in trials if t.lr in (1e-2, 1e-1))
    assert _reuse("c", storage, store, trials) == 0  # nothing found twice
