"""The synthetic benchmarks: real layouts read by the real loaders, seeded reproducibility, idempotence, and
shifts that are real (a small CNN trained on ID data does clearly worse OOD)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from worker import catalog
from worker.data import check_layout, compute_split_metrics, load_dataset
from worker.data.errors import DataLayoutError
from worker.data.layout import RawSplits
from worker.data.load import split_halves
from worker.synthetic import generate_all, generate_benchmark, read_manifest, render_source
from worker.synthetic.__main__ import main as cli_main
from worker.synthetic.benchmarks import DEFAULT_SIZES
from worker.synthetic.glyphs import DIGITS, build_atlas, place
from worker.synthetic.source import SOURCE_CHARS

KEYS = catalog.list_datasets(synthetic=True)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_catalog_has_the_three_benchmarks() -> None:
    assert sorted(catalog.get_dataset(k).synthetic for k in KEYS) == ["spurious", "stain", "style"]


@pytest.mark.parametrize("key", KEYS)
def test_written_layout_is_read_by_the_real_loader(key: str, tmp_path: Path) -> None:
    root = generate_benchmark(key, tmp_path, n_train=24, n_eval=12)
    entry = catalog.get_dataset(key)
    assert root == entry.root(tmp_path)
    assert check_layout(key, tmp_path) is None
    bundle = load_dataset(key, tmp_path, input_size=32, mean=MEAN, std=STD)
    assert len(bundle.train) == 24
    sizes = {n: len(s.dataset) for n, s in bundle.eval_splits.items()}
    for pair in entry.split_halves.values():  # a halved split's two halves share its images
        assert sizes.pop(pair[0]) + sizes.pop(pair[1]) == 12
    assert sizes == {n: 12 for n in sizes}
    for metric in entry.metrics.values():  # every metric the catalog reports comes from a split that exists
        assert metric.split("/")[0] in bundle.eval_splits
    x, y = bundle.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < entry.num_classes
    labels = {int(bundle.train[i][1]) for i in range(len(bundle.train))}
    assert labels == set(range(entry.num_classes))


@pytest.mark.parametrize("key", ["synth_style", "synth_stain"])
def test_the_id_split_that_chooses_is_not_the_one_that_reports(key: str, tmp_path: Path) -> None:
    generate_benchmark(key, tmp_path, n_train=24, n_eval=40)
    entry = catalog.get_dataset(key)
    assert entry.metrics["id_val"].split("/")[0] == "id_val" and entry.metrics["id_test"].split("/")[0] == "id_test"
    splits = load_dataset(key, tmp_path, input_size=32, mean=MEAN, std=STD).eval_splits
    val, test = (set(splits[s].dataset.table.paths) for s in ("id_val", "id_test"))
    assert abs(len(val) - len(test)) <= entry.num_classes and len(val | test) >= 38 and not val & test
    counts = [np.bincount(splits[s].dataset.table.labels, minlength=entry.num_classes) for s in ("id_val", "id_test")]
    assert np.abs(counts[0] - counts[1]).max() <= 1, counts  # each class split in two


def test_split_halves_is_checked_in_the_catalog_and_against_the_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must list the two halves"):
        catalog._split_halves({"id_val": ["id_val"]})
    with pytest.raises(ValueError, match="names one split twice"):
        catalog._split_halves({"id_val": ["a", "a"]})
    generate_benchmark("synth_stain", tmp_path, n_train=24, n_eval=12)
    entry = dataclasses.replace(catalog.get_dataset("synth_stain"), split_halves={"nope": ("a", "b")})
    raw = RawSplits(train=None, evals={"id_val": (None, ())})  # type: ignore[arg-type]
    with pytest.raises(DataLayoutError, match="split 'nope' .catalog split_halves. is not among"):
        split_halves(entry, entry.root(tmp_path), raw)


def test_spurious_groups_train_correlated_and_eval_balanced(tmp_path: Path) -> None:
    generate_benchmark("synth_spurious", tmp_path, n_train=200, n_eval=80)
    bundle = load_dataset("synth_spurious", tmp_path, input_size=32, mean=MEAN, std=STD)
    w = bundle.group_weights
    agree = (w[0] + w[3]) / sum(w.values())  # groups 2*y + place: (0, land) and (1, water) agree
    assert 0.8 <= agree <= 0.97
    for split in bundle.eval_splits.values():
        groups = [split.dataset[i][2] for i in range(len(split.dataset))]
        assert np.bincount(groups, minlength=4).tolist() == [20, 20, 20, 20]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate_benchmark("synth_stain", tmp_path / "a", seed=3, n_train=12, n_eval=6)
    b = generate_benchmark("synth_stain", tmp_path / "b", seed=3, n_train=12, n_eval=6)
    c = generate_benchmark("synth_stain", tmp_path / "c", seed=4, n_train=12, n_eval=6)
    da, db, dc = _tree_digest(a), _tree_digest(b), _tree_digest(c)
    assert da == db
    assert da.keys() == dc.keys() and da != dc
    assert (a / "synthetic_manifest.json").read_bytes() == (b / "synthetic_manifest.json").read_bytes()
    s1, s2 = render_source(50, seed=1), render_source(50, seed=1)
    assert np.array_equal(s1.images, s2.images) and np.array_equal(s1.labels, s2.labels)
    assert not np.array_equal(s1.images, render_source(50, seed=2).images)


def test_idempotent_unless_parameters_change_or_forced(tmp_path: Path) -> None:
    root = generate_benchmark("synth_style", tmp_path, n_train=20, n_eval=10)
    marker = root / "SENTRY_splits" / "sketch_train_mini.txt"
    stamp = marker.stat().st_mtime_ns
    assert generate_benchmark("synth_style", tmp_path, n_train=20, n_eval=10) == root
    assert marker.stat().st_mtime_ns == stamp
    generate_benchmark("synth_style", tmp_path, n_train=30, n_eval=10)
    assert read_manifest(root)["n_train"] == 30
    assert len(marker.read_text().splitlines()) == 30
    generate_benchmark("synth_style", tmp_path, n_train=30, n_eval=10, force=True)
    assert marker.stat().st_mtime_ns != stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    marker.unlink()  # a damaged copy with a matching manifest is written again
    generate_benchmark("synth_style", tmp_path, n_train=30, n_eval=10)
    assert check_layout("synth_style", tmp_path) is None


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path) -> None:
    root = catalog.get_dataset("synth_spurious").root(tmp_path)
    root.mkdir(parents=True)
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="force"):
        generate_benchmark("synth_spurious", tmp_path, n_train=20, n_eval=8)
    assert (root / "precious.txt").exists()
    generate_benchmark("synth_spurious", tmp_path, n_train=20, n_eval=8, force=True)
    assert not (root / "precious.txt").exists() and check_layout("synth_spurious", tmp_path) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": "waterbirds"}, "not synthetic"),
        ({"key": "nope"}, "valid datasets"),
        ({"key": "synth_style", "n_train": 2}, "n_train must be"),
        ({"key": "synth_style", "n_eval": 1.5}, "n_eval must be"),
        ({"key": "synth_style", "seed": -1}, "seed must be"),
    ],
)
def test_bad_arguments_name_what_is_wrong(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises((ValueError, KeyError), match=match):
        generate_benchmark(data_root=tmp_path, **kwargs)


def test_cli_and_generate_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--data-root", str(tmp_path), "--only", "synth_style", "--n-train", "20", "--n-eval", "10"]) == 0
    assert "synth_style" in capsys.readouterr().out
    assert json.loads((tmp_path / "synth_style" / "synthetic_manifest.json").read_text())["n_train"] == 20
    (tmp_path / "synth_stain").mkdir()
    (tmp_path / "synth_stain" / "x").write_text("")
    assert cli_main(["--data-root", str(tmp_path), "--only", "synth_stain"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_all_writes_every_benchmark_at_default_sizes(tmp_path: Path) -> None:
    roots = generate_all(tmp_path)
    assert sorted(roots) == sorted(KEYS)
    for key, root in roots.items():
        m = read_manifest(root)
        assert (m["n_train"], m["n_eval"]) == DEFAULT_SIZES[catalog.get_dataset(key).synthetic]


def test_source_task_excludes_digits_and_renders_every_glyph() -> None:
    assert not set(SOURCE_CHARS) & set(DIGITS)
    assert 60 <= len(SOURCE_CHARS) <= 100
    task = render_source(len(SOURCE_CHARS) * 2, seed=0)
    assert task.images.shape == (2 * len(SOURCE_CHARS), 32, 32, 3) and task.images.dtype == np.uint8
    assert np.bincount(task.labels).tolist() == [2] * len(SOURCE_CHARS)
    assert task.difficulty.shape == task.labels.shape and 0 <= task.difficulty.min() < task.difficulty.max() <= 1
    # easy images are plainer: less colour variation across the image than hard ones
    spread = task.images.reshape(len(task.images), -1, 3).std(axis=1).mean(axis=1)
    easy, hard = task.difficulty < 0.2, task.difficulty > 0.8
    assert np.median(spread[easy]) < np.median(spread[hard])
    atlas = build_atlas(SOURCE_CHARS)
    assert (atlas.masks.sum(axis=(3, 4)) > 20).all()  # no font lacks a glyph (no empty or tofu-sized masks)
    masks = place(atlas, np.arange(len(SOURCE_CHARS)), np.random.default_rng(0))
    assert (masks.max(axis=(1, 2)) > 0.5).all()


# --- the shifts are real ---------------------------------------------------------------------------------


def _small_cnn(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )  # fmt: skip


def _stack(dataset: torch.utils.data.Dataset) -> list[torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return [torch.stack([torch.as_tensor(it[j]) for it in items]) for j in range(len(items[0]))]


def _train_and_score(key: str, data_root: Path, epochs: int = 20) -> dict[str, float]:
    """A small CNN trained from scratch on the ID training split (decoded once through the real loader)."""
    torch.manual_seed(0)
    bundle = load_dataset(key, data_root, input_size=32, mean=MEAN, std=STD)
    x, y = _stack(bundle.train)
    model = _small_cnn(bundle.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    scores: dict[str, float] = {}
    with torch.no_grad():
        for split in bundle.eval_splits.values():
            ex, ey, eg = _stack(split.dataset)
            scores.update(compute_split_metrics(split, model(ex), ey, eg, bundle.group_weights))
    metrics = bundle.entry.metrics
    return {"id": scores[metrics["id_test"]], "ood": scores[metrics["ood_test"]]}


@pytest.mark.parametrize("key", KEYS)
def test_shift_is_real(key: str, tmp_path: Path) -> None:
    generate_benchmark(key, tmp_path)
    score = _train_and_score(key, tmp_path)
    chance = 1.0 / catalog.get_dataset(key).num_classes
    assert score["id"] >= chance + 0.3, score  # it learned the ID task ...
    assert score["ood"] <= score["id"] - 0.10, score  # ... and does clearly worse OOD
