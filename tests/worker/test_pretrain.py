"""Pretraining the tiny backbones: the saved file is what create_model loads, runs are reused, recipes follow
the catalog's pretraining optimizer, and a short run already learns the source task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from worker import catalog
from worker.models import create_model
from worker.pretrain import (
    CALIBRATION_STEPS,
    Recipe,
    curriculum_limit,
    lr_factor,
    main,
    pretrain_backbone,
    recipe_for,
    sidecar_path,
)
from worker.synthetic.source import SOURCE_CHARS

TINY = catalog.list_models(tiny=True)
SMALL = {"n_train": 256, "n_val": 64}


@pytest.mark.parametrize("key", TINY)
def test_short_run_writes_weights_that_create_model_loads(key: str, tmp_path: Path) -> None:
    res = pretrain_backbone(key, tmp_path, steps=2, seed=0, **SMALL)
    entry = catalog.get_model(key)
    assert res.path == tmp_path / entry.weights_file and res.path.is_file()
    assert res.steps == 2 and not res.reused and 0.0 <= res.val_acc <= 1.0
    assert res.optimizer == entry.pretraining["optimizer"]

    saved = load_file(str(res.path))
    loaded = create_model(key, 3, weights_root=tmp_path).backbone_state_dict()
    assert saved.keys() == loaded.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, loaded[name]), name

    torch.manual_seed(0)  # the initialisation pretrain_backbone starts from
    init = create_model(key, len(SOURCE_CHARS), pretrained=False).backbone_state_dict()
    assert any(not torch.equal(init[k], saved[k]) for k in saved)  # the steps changed the weights

    info = json.loads(sidecar_path(res.path).read_text())
    assert info["model"] == key and info["steps"] == 2 and info["seed"] == 0
    assert info["optimizer"] == res.optimizer and info["val_acc"] == res.val_acc


def test_reused_unless_forced(tmp_path: Path) -> None:
    first = pretrain_backbone("tiny_bit", tmp_path, steps=2, **SMALL)
    stamp = first.path.stat().st_mtime_ns
    again = pretrain_backbone("tiny_bit", tmp_path, steps=5, **SMALL)
    assert again.reused and again.steps == 2 and again.val_acc == first.val_acc
    assert first.path.stat().st_mtime_ns == stamp
    forced = pretrain_backbone("tiny_bit", tmp_path, steps=3, force=True, **SMALL)
    assert not forced.reused and forced.steps == 3
    sidecar_path(first.path).write_text("{not json")  # a broken sidecar means train again
    assert not pretrain_backbone("tiny_bit", tmp_path, steps=2, **SMALL).reused


def test_a_file_made_by_another_recipe_or_for_another_architecture_is_trained_again(tmp_path: Path) -> None:
    first = pretrain_backbone("tiny_bit", tmp_path, steps=2, **SMALL)
    side = sidecar_path(first.path)
    info = json.loads(side.read_text())
    assert info["builder"] == catalog.get_model("tiny_bit").builder and info["recipe"]["optimizer"] == "sgd"
    for field, change in (("builder", {"overrides": {"layers": [2, 2, 2, 2]}}), ("recipe", {"lr": 1.0})):
        side.write_text(json.dumps({**info, field: {**info[field], **change}}))
        assert not pretrain_backbone("tiny_bit", tmp_path, steps=2, **SMALL).reused
    assert pretrain_backbone("tiny_bit", tmp_path, steps=2, **SMALL).reused


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = pretrain_backbone("tiny_bit", tmp_path / "a", steps=3, seed=1, **SMALL)
    b = pretrain_backbone("tiny_bit", tmp_path / "b", steps=3, seed=1, **SMALL)
    wa, wb = load_file(str(a.path)), load_file(str(b.path))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_wall_clock_budget_calibrates_the_step_count(tmp_path: Path) -> None:
    res = pretrain_backbone("tiny_bit", tmp_path, minutes=0.02, **SMALL)  # 1.2 s
    assert res.steps > CALIBRATION_STEPS
    assert res.seconds < 10


def test_recipes_follow_the_catalog_optimizer() -> None:
    for key in TINY:
        pre = catalog.get_model(key).pretraining
        r = recipe_for(key)
        assert r.optimizer == pre["optimizer"]
        assert (r.lr, r.batch_size) == (pre.get("lr", r.lr), pre.get("batch_size", r.batch_size))
    assert recipe_for("tiny_bit").optimizer == "sgd" and recipe_for("tiny_bit").momentum == 0.9
    assert recipe_for("tiny_vit").optimizer == "adamw" and recipe_for("tiny_vit").weight_decay > 0
    assert recipe_for("tiny_vit").warmup_fraction > 0


def test_curriculum_ramps_the_difficulty_to_one() -> None:
    r = Recipe("adamw", lr=1e-3, weight_decay=0.05, curriculum=0.5, curriculum_start=0.1)
    limits = [curriculum_limit(s, 100, r) for s in range(100)]
    assert limits[0] == pytest.approx(0.1) and limits[50] == 1.0 and limits[-1] == 1.0
    assert all(a <= b for a, b in zip(limits, limits[1:], strict=False))
    assert curriculum_limit(0, 100, Recipe("sgd", lr=0.1, weight_decay=0.0, curriculum=0.0)) == 1.0


def test_warmup_then_cosine() -> None:
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False)) and f[-1] < 0.01


@pytest.mark.parametrize(
    ("key", "kwargs", "match"),
    [
        ("bit_r50", {}, "not a tiny model"),
        ("tiny_bit", {"steps": 0}, "steps must be"),
        ("tiny_bit", {"minutes": -1.0}, "minutes must be"),
        ("tiny_bit", {"seed": -2}, "seed must be"),
        ("nope", {}, "valid models"),
    ],
)
def test_bad_arguments_name_what_is_wrong(key: str, kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises((ValueError, KeyError), match=match):
        pretrain_backbone(key, tmp_path, **kwargs)


def test_cli_prints_one_line_per_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--models", "tiny_bit", "--steps", "2", "--n-train", "128", "--n-val", "32"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("tiny_bit: trained") and "val acc" in out[0]
    assert main(args) == 0
    assert "tiny_bit: reused" in capsys.readouterr().out
    assert main(["--out", str(tmp_path), "--models", "tiny_bit,bit_r50"]) == 2
    assert "bit_r50" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--models", "tiny_bit", "--steps", "0", "--force"]) == 2
    assert "steps must be" in capsys.readouterr().err


def test_a_short_run_learns_the_source_task(tmp_path: Path) -> None:
    res = pretrain_backbone("tiny_bit", tmp_path, steps=200, n_train=3000, n_val=500)
    assert res.val_acc > 10 / len(SOURCE_CHARS), res  # chance is 1/90
