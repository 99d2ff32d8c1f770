"""Each real layout, written small by its writer, read back by its real loader."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.worker import data_fakes as fk
from worker import catalog
from worker.data import DatasetBundle, check_layout, load_dataset

SIZE = 16


def _load(key: str, data_root: Path, **kw) -> DatasetBundle:
    return load_dataset(key, data_root, input_size=SIZE, mean=fk.MEAN, std=fk.STD, **kw)


def _labels(dataset) -> list[int]:
    return [int(y) for y in dataset.table.labels]


def _groups(dataset) -> list[int]:
    return [int(g) for g in dataset.table.groups]


def _check_items(bundle: DatasetBundle) -> None:
    x, y = bundle.train[0]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and isinstance(y, int)
    for split in bundle.eval_splits.values():
        x, y, g = split.dataset[len(split.dataset) - 1]
        assert x.shape == (3, SIZE, SIZE) and isinstance(y, int) and isinstance(g, int)


def test_waterbirds(tmp_path: Path) -> None:
    layout_dir = fk.write_fake_waterbirds(tmp_path)
    assert layout_dir == tmp_path / "waterbirds_v1.0" and check_layout("waterbirds", tmp_path) is None
    b = _load("waterbirds", tmp_path)
    assert b.num_classes == 2 and set(b.eval_splits) == {"val", "test"}
    assert len(b.train) == 12
    assert Counter(_labels(b.train)) == {0: 8, 1: 4}
    assert b.group_weights == {0: 6.0, 1: 2.0, 2: 1.0, 3: 3.0}  # train sizes of groups 2*y + place
    for name in ("val", "test"):
        split = b.eval_splits[name]
        assert split.metrics == ("acc", "weighted_acc", "worst_group_acc")
        assert Counter(_groups(split.dataset)) == {0: 2, 1: 2, 2: 2, 3: 2}
        assert all(g // 2 == y for g, y in zip(_groups(split.dataset), _labels(split.dataset), strict=True))
        assert split.dataset[0][2] in range(4)
    _check_items(b)


def test_camelyon_hospitals_1_and_2_are_ood(tmp_path: Path) -> None:
    fk.write_fake_camelyon(tmp_path)
    assert check_layout("camelyon", tmp_path) is None
    b = _load("camelyon", tmp_path)
    sizes = {k: len(s.dataset) for k, s in b.eval_splits.items()}
    assert len(b.train) == 12 and sizes == {"id_val": 6, "ood_val": 3, "ood_test": 5}
    assert set(_labels(b.eval_splits["ood_val"].dataset)) == {1}
    assert set(_labels(b.eval_splits["ood_test"].dataset)) == {0}
    assert all(s.metrics == ("acc",) for s in b.eval_splits.values())
    assert set(_groups(b.eval_splits["id_val"].dataset)) == {-1}
    assert b.group_weights is None
    _check_items(b)


def test_fmow_splits_by_year_and_region(tmp_path: Path) -> None:
    fk.write_fake_fmow(tmp_path)
    assert check_layout("fmow", tmp_path) is None
    b = _load("fmow", tmp_path)
    sizes = {k: len(s.dataset) for k, s in b.eval_splits.items()}
    assert len(b.train) == 4  # the 2014 train row and the sequestered row are dropped, as WILDS does
    assert sizes == {"id_val": 2, "id_test": 3, "ood_val": 2, "ood_test": 4, "ood_test_africa": 3}
    assert b.num_classes == 62
    assert sorted(_labels(b.train)) == [0, 7, 14, 21]
    africa = set(b.eval_splits["ood_test_africa"].dataset.table.paths)
    assert africa < set(b.eval_splits["ood_test"].dataset.table.paths)
    _check_items(b)


def test_domainnet(tmp_path: Path) -> None:
    root = tmp_path / "domainnet"
    assert fk.write_fake_domainnet(root) == root
    line = (root / "SENTRY_splits" / "sketch_train_mini.txt").read_text().splitlines()[0]
    assert line.startswith("sketch/thing_0/") and line.endswith(".jpg 0")
    assert check_layout("domainnet", tmp_path) is None
    b = _load("domainnet", tmp_path)
    assert b.num_classes == catalog.get_dataset("domainnet").num_classes == 40
    sizes = {k: len(s.dataset) for k, s in b.eval_splits.items()}
    assert len(b.train) == 10 and sizes == {"id_test": 5, "ood_test": 10}
    assert Counter(_labels(b.eval_splits["ood_test"].dataset)) == {y: 2 for y in range(5)}
    assert all("/real/" in p for p in b.eval_splits["ood_test"].dataset.table.paths)
    _check_items(b)


def test_living17_source_and_target_subclasses(tmp_path: Path) -> None:
    fk.write_fake_living17(tmp_path / "imagenet")
    assert check_layout("living17", tmp_path) is None
    b = _load("living17", tmp_path)
    sizes = {k: len(s.dataset) for k, s in b.eval_splits.items()}
    assert len(b.train) == 17 * 2 * 2 and sizes == {"source_val": 34, "target_val": 34}  # other wnids ignored
    assert Counter(_labels(b.train)) == {y: 4 for y in range(17)}
    target = {p.split("/")[-2] for p in b.eval_splits["target_val"].dataset.table.paths}
    source = {p.split("/")[-2] for p in b.train.table.paths}
    assert len(target) == 34 and not target & source
    _check_items(b)


def test_synthetic_entries_read_through_the_real_layouts(tmp_path: Path) -> None:
    fk.write_fake_waterbirds(tmp_path / "synth_spurious")
    fk.write_fake_domainnet(tmp_path / "synth_style")
    fk.write_fake_camelyon(tmp_path / "synth_stain")
    assert len(_load("synth_spurious", tmp_path).train) == 12
    style = _load("synth_style", tmp_path)
    assert style.num_classes == 10 and set(style.eval_splits) == {"id_val", "id_test", "ood_test"}
    assert set(_load("synth_stain", tmp_path).eval_splits) == {"id_val", "id_test", "ood_val", "ood_test"}


def test_subsets_are_fixed_by_seed_and_size(tmp_path: Path) -> None:
    fk.write_fake_domainnet(tmp_path / "domainnet")

    def picks(seed: int, n: int) -> tuple:
        b = _load("domainnet", tmp_path, max_train_images=n, max_eval_images=3, seed=seed)
        return b.train.table.paths, b.eval_splits["ood_test"].dataset.table.paths

    first = picks(0, 4)
    assert len(first[0]) == 4 and len(first[1]) == 3
    assert picks(0, 4) == first
    assert any(picks(s, 4) != first for s in (1, 2, 3))
    assert len(picks(0, 1000)[0]) == 10  # larger than the split: everything


def test_small_images_are_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.data import images

    fk.write_fake_domainnet(tmp_path / "domainnet")
    ds = _load("domainnet", tmp_path).eval_splits["id_test"].dataset
    reads = []
    real = images.read_rgb
    monkeypatch.setattr(images, "read_rgb", lambda p: reads.append(p) or real(p))
    ds[0], ds[0], ds[1]
    assert len(reads) == 2
