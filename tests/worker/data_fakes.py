"""Tiny fake datasets in the real on-disk layouts, written with worker.data's writers, for the data tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from worker import catalog
from worker.data import (
    LabeledImage,
    write_camelyon,
    write_domainnet,
    write_fmow,
    write_imagenet_living17,
    write_waterbirds,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def tiny(label: int, size: tuple[int, int] = (12, 10)) -> Image.Image:
    """A small solid image whose colour encodes the label (sizes are non-square on purpose)."""
    return Image.new("RGB", size, ((40 * label) % 256, 100, 200 - (30 * label) % 200))


def waterbirds_items() -> list[LabeledImage]:
    """Train: group sizes 6/2/1/3 for groups (y, place) 00, 01, 10, 11; val and test: 2 of each group."""
    items = []
    for (y, place), count in {(0, 0): 6, (0, 1): 2, (1, 0): 1, (1, 1): 3}.items():
        items += [LabeledImage(tiny(y), y, "train", group=place) for _ in range(count)]
    for split in ("val", "test"):
        items += [LabeledImage(tiny(g // 2), g // 2, split, group=g % 2) for g in range(4) for _ in range(2)]
    return items


def write_fake_waterbirds(root: Path) -> Path:
    return write_waterbirds(root, waterbirds_items())


def write_fake_camelyon(root: Path) -> Path:
    """Centers 0, 3, 4: 4 train + 2 id_val each; center 1: 3 patches, center 2: 5 (their split is ignored)."""
    items = []
    for c in (0, 3, 4):
        items += [LabeledImage(tiny(i % 2), i % 2, "train", group=c) for i in range(4)]
        items += [LabeledImage(tiny(i % 2), i % 2, "id_val", group=c) for i in range(2)]
    items += [LabeledImage(tiny(1), 1, "ood_val", group=1) for _ in range(3)]
    items += [LabeledImage(tiny(0), 0, "train", group=2) for _ in range(5)]
    return write_camelyon(root, items)


# (split, year, region, how many): WILDS turns these into train 4, id_val 2, id_test 3, ood_val 2, ood_test 4
# (Africa 3), and drops the 2014 train row and the sequestered one.
FMOW_ROWS = [
    ("train", 2010, "Europe", 4),
    ("train", 2014, "Asia", 1),
    ("val", 2011, "Asia", 2),
    ("test", 2012, "Americas", 3),
    ("ood_val", 2014, "Oceania", 2),
    ("ood_test", 2016, "Africa", 3),
    ("test", 2017, "Europe", 1),
    ("seq", 2011, "Other", 1),
]


def write_fake_fmow(root: Path) -> Path:
    items = []
    for split, year, region, count in FMOW_ROWS:
        for i in range(count):
            items.append(LabeledImage(tiny(i), i * 7 % 62, split, meta={"year": year, "region": region}))
    return write_fmow(root, items)


def write_fake_domainnet(root: Path, classes: int = 5) -> Path:
    """sketch: 2 train + 1 test per class; real: 2 test per class."""
    items = []
    for y in range(classes):
        meta_s = {"domain": "sketch", "class_name": f"thing_{y}"}
        meta_r = {"domain": "real", "class_name": f"thing_{y}"}
        items += [LabeledImage(tiny(y, (14, 9)), y, "train", meta=meta_s) for _ in range(2)]
        items += [LabeledImage(tiny(y, (14, 9)), y, "test", meta=meta_s)]
        items += [LabeledImage(tiny(y, (9, 14)), y, "test", meta=meta_r) for _ in range(2)]
    return write_domainnet(root, items)


def write_fake_living17(root: Path) -> Path:
    """Every source subclass: 2 train + 1 val image; every target subclass: 1 val image; plus a non-Living-17 wnid."""
    items = []
    for c in catalog.living17_split():
        y = int(c["label"])
        for _, wnid, _ in c["source"]:
            items += [LabeledImage(tiny(y, (8, 8)), y, "train", meta={"wnid": wnid}) for _ in range(2)]
            items.append(LabeledImage(tiny(y, (8, 8)), y, "val", meta={"wnid": wnid}))
        for _, wnid, _ in c["target"]:
            items.append(LabeledImage(tiny(y, (8, 8)), y, "val", meta={"wnid": wnid}))
    items.append(LabeledImage(tiny(0, (8, 8)), 0, "train", meta={"wnid": "n99999999"}))
    return write_imagenet_living17(root, items)
