"""Broken roots, unreadable images and bad writer input fail at once with messages naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.worker import data_fakes as fk
from worker import catalog
from worker.catalog import CatalogError
from worker.data import (
    DataLayoutError,
    ImageReadError,
    LabeledImage,
    check_layout,
    load_dataset,
    write_camelyon,
    write_domainnet,
    write_fmow,
    write_imagenet_living17,
    write_waterbirds,
)


def _load(key: str, data_root: Path):
    return load_dataset(key, data_root, input_size=16, mean=fk.MEAN, std=fk.STD)


@pytest.mark.parametrize("key", catalog.list_datasets())
def test_missing_root_names_the_path_and_layout(tmp_path: Path, key: str) -> None:
    data_root = tmp_path / "nowhere"
    entry = catalog.get_dataset(key)
    msg = check_layout(key, data_root)
    assert msg is not None and str(entry.root(data_root)) in msg and entry.layout in msg
    with pytest.raises(DataLayoutError) as err:
        _load(key, data_root)
    assert isinstance(err.value, FileNotFoundError)
    assert str(entry.root(data_root)) in str(err.value) and entry.layout in str(err.value)


@pytest.mark.parametrize(
    ("key", "write", "subdir", "marker"),
    [
        ("waterbirds", fk.write_fake_waterbirds, ".", "waterbirds_v1.0/RELEASE_v1.0.txt"),
        ("camelyon", fk.write_fake_camelyon, ".", "camelyon17_v1.0/metadata.csv"),
        ("fmow", fk.write_fake_fmow, ".", "fmow_v1.1/country_code_mapping.csv"),
        ("domainnet", fk.write_fake_domainnet, "domainnet", "SENTRY_splits/real_test_mini.txt"),
        ("living17", fk.write_fake_living17, "imagenet", "val/n01630670"),
    ],
)
def test_check_layout_names_a_missing_marker(tmp_path: Path, key, write, subdir: str, marker: str) -> None:
    root = tmp_path / subdir
    write(root)
    assert check_layout(key, tmp_path) is None
    target = root / marker
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    msg = check_layout(key, tmp_path)
    assert msg is not None and str(target) in msg and catalog.get_dataset(key).layout in msg
    with pytest.raises(DataLayoutError, match="missing"):
        _load(key, tmp_path)


def test_unknown_dataset_key_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="waterbirds"):
        check_layout("imagenet21k", tmp_path)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    fk.write_fake_domainnet(tmp_path / "domainnet")
    ds = _load("domainnet", tmp_path).train
    broken, gone = Path(ds.table.paths[0]), Path(ds.table.paths[1])
    broken.write_bytes(b"not an image at all")
    gone.unlink()
    for idx, path in ((0, broken), (1, gone)):
        with pytest.raises(ImageReadError) as err:
            ds[idx]
        assert str(path) in str(err.value)
    assert ds[2][0].shape == (3, 16, 16)  # the others still read


def test_truncated_wilds_image_names_the_file(tmp_path: Path) -> None:
    fk.write_fake_camelyon(tmp_path)
    ds = _load("camelyon", tmp_path).eval_splits["ood_test"].dataset
    path = Path(ds.table.paths[0])
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ImageReadError, match=str(path)):
        ds[0]


def test_malformed_list_line_names_the_file_and_line(tmp_path: Path) -> None:
    fk.write_fake_domainnet(tmp_path / "domainnet")
    lst = tmp_path / "domainnet" / "SENTRY_splits" / "sketch_test_mini.txt"
    lst.write_text(lst.read_text() + "sketch/thing_0/x.jpg\n")
    with pytest.raises(DataLayoutError, match=rf"line 6 .*{lst}"):
        _load("domainnet", tmp_path)


def test_labels_beyond_the_catalog_class_count_are_refused(tmp_path: Path) -> None:
    fk.write_fake_domainnet(tmp_path / "synth_style", classes=12)  # synth_style has 10 classes
    with pytest.raises(DataLayoutError, match=r"labels \[10, 11\] outside 0..9"):
        _load("synth_style", tmp_path)


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    write_camelyon(tmp_path, [LabeledImage(fk.tiny(0), 0, "train", group=c) for c in (0, 1, 2)])
    with pytest.raises(DataLayoutError, match="split 'id_val' has no images"):
        _load("camelyon", tmp_path)


def test_missing_living17_subclass_folder_is_named(tmp_path: Path) -> None:
    fk.write_fake_living17(tmp_path / "imagenet")
    folder = tmp_path / "imagenet" / "train" / catalog.living17_split()[3]["source"][1][1]
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    assert str(folder) in (check_layout("living17", tmp_path) or "")


def test_bad_subset_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_train_images"):
        load_dataset("waterbirds", tmp_path, input_size=16, mean=fk.MEAN, std=fk.STD, max_train_images=0)


def _item(split: str = "train", label: int = 0, group: int = 0, **meta) -> LabeledImage:
    return LabeledImage(Image.new("RGB", (4, 4)), label, split, group, meta)


@pytest.mark.parametrize(
    ("write", "items", "match"),
    [
        (write_waterbirds, [_item("holdout")], r"split 'holdout' is not one of \['test', 'train', 'val'\]"),
        (write_waterbirds, [_item(group=2)], "place"),
        (write_waterbirds, [_item(label=2)], "label 2"),
        (write_waterbirds, [], "no items"),
        (write_camelyon, [_item("test", group=0)], "train or id_val"),
        (write_camelyon, [_item(group=5)], "0..4"),
        (write_fmow, [_item(region="Africa")], r"meta\['year'\] is required"),
        (write_fmow, [_item("ood_test", year=2014, region="Asia")], "years 2016..2017"),
        (write_fmow, [_item(year=2010, region="Antarctica")], "region"),
        (write_domainnet, [_item()], r"meta\['domain'\]"),
        (write_domainnet, [_item(domain="real", class_name="a"), _item(domain="real", class_name="b")], "class 'a'"),
        (write_imagenet_living17, [_item(label=5, wnid="n01631663")], "Living-17 class 0"),
    ],
)
def test_writers_refuse_bad_items(tmp_path: Path, write, items: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write(tmp_path, items)
