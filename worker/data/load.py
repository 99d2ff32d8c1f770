"""`load_dataset` and `check_layout`: from a catalog key and a data root to datasets ready for a DataLoader.

Each catalog entry names a `loader` (its on-disk layout); synthetic entries reuse the real layouts at their own
root, so one reader serves both. A root that lacks its layout fails before anything is parsed, naming the
missing path and the layout expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from worker import catalog
from worker.catalog import DatasetEntry
from worker.data.bundle import DatasetBundle, EvalSplit
from worker.data.errors import DataLayoutError
from worker.data.images import ImageDataset, ImageTable, seeded_subset
from worker.data.layout import Layout, RawSplits, layout_message
from worker.data.read_folders import DOMAINNET, LIVING17
from worker.data.read_wilds import CAMELYON, FMOW, WATERBIRDS
from worker.data.transforms import build_transforms

LAYOUTS: dict[str, Layout] = {
    "living17": LIVING17,
    "waterbirds": WATERBIRDS,
    "domainnet": DOMAINNET,
    "fmow": FMOW,
    "camelyon": CAMELYON,
}


def _layout(entry: DatasetEntry) -> Layout:
    if entry.loader not in LAYOUTS:
        raise ValueError(f"dataset {entry.key!r} has loader {entry.loader!r}; valid loaders: {', '.join(LAYOUTS)}")
    return LAYOUTS[entry.loader]


def check_layout(key: str, data_root: str | Path) -> str | None:
    """None when the dataset's root has its layout's marker files and folders; else what is missing.

    Cheap: it looks only at the markers (list and metadata files, top folders), never at the images.
    """
    entry = catalog.get_dataset(key)
    root = entry.root(data_root)
    if not root.is_dir():
        return layout_message(entry, root, "missing dataset root")
    for path in _layout(entry).markers(root, entry):
        if not path.exists():
            return layout_message(entry, path, "missing")
    return None


def _check_tables(entry: DatasetEntry, root: Path, raw: RawSplits) -> None:
    tables: dict[str, ImageTable] = {"train": raw.train, **{k: t for k, (t, _) in raw.evals.items()}}
    for name, table in tables.items():
        if len(table) == 0:
            raise DataLayoutError(layout_message(entry, root, f"split {name!r} has no images under"))
        bad = table.labels[(table.labels < 0) | (table.labels >= entry.num_classes)]
        if len(bad):
            raise DataLayoutError(
                layout_message(
                    entry,
                    root,
                    f"split {name!r} has labels {sorted(set(bad.tolist()))[:5]} outside "
                    f"0..{entry.num_classes - 1} (catalog num_classes) under",
                )
            )


def split_halves(entry: DatasetEntry, root: Path, raw: RawSplits) -> RawSplits:
    """Divide each split the catalog's `split_halves` names into two disjoint halves, both with its metrics: an
    ID split that must both choose the LR and report the ID number becomes two. Each class's images alternate
    between the halves in the layout's order (starting with the first half or the second by turns), so each
    half holds its share of every class."""
    evals = dict(raw.evals)
    for source, halves in entry.split_halves.items():
        if source not in evals:
            raise DataLayoutError(
                layout_message(entry, root, f"split {source!r} (catalog split_halves) is not among {sorted(evals)}")
            )
        table, metrics = evals.pop(source)
        # each image's position among its class's images, offset by the class's index, so that classes alternate
        # too: a class with one image (a tiny split) goes to the first or the second half by turns
        rank = np.zeros(len(table), dtype=np.int64)
        for k, label in enumerate(np.unique(table.labels)):
            where = np.flatnonzero(table.labels == label)
            rank[where] = np.arange(len(where)) + k
        for parity, name in enumerate(halves):
            evals[name] = (table.take(np.flatnonzero(rank % 2 == parity)), metrics)
    return replace(raw, evals=evals)


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (int(value) != value or value < 1):
        raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")


def load_dataset(
    key: str,
    data_root: str | Path,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    max_train_images: int | None = None,
    max_eval_images: int | None = None,
    seed: int = 0,
) -> DatasetBundle:
    """The training set and every evaluation split of catalog dataset `key`, read lazily from its root.

    `max_train_images` / `max_eval_images` (per split) take fixed seeded subsets: the same seed and size give
    the same images. The training set carries the dataset's train transform, evaluation splits its test one.
    """
    _check_limit("max_train_images", max_train_images)
    _check_limit("max_eval_images", max_eval_images)
    entry = catalog.get_dataset(key)
    train_tf = build_transforms(
        entry.transforms, input_size, mean, std, train=True, horizontal_flip=entry.horizontal_flip
    )
    test_tf = build_transforms(entry.transforms, input_size, mean, std, train=False)
    problem = check_layout(key, data_root)
    if problem:
        raise DataLayoutError(problem)
    root = entry.root(data_root)
    raw = split_halves(entry, root, _layout(entry).read(root, entry))
    _check_tables(entry, root, raw)

    train = raw.train.take(seeded_subset(len(raw.train), max_train_images, seed, "train"))
    evals = {}
    for name, (table, metrics) in raw.evals.items():
        subset = table.take(seeded_subset(len(table), max_eval_images, seed, name))
        evals[name] = EvalSplit(name, ImageDataset(subset, test_tf, with_group=True), metrics)
    return DatasetBundle(
        entry=entry,
        train=ImageDataset(train, train_tf, with_group=False),
        eval_splits=evals,
        group_weights=raw.group_weights,
        num_classes=entry.num_classes,
        train_eval=ImageDataset(train, test_tf, with_group=False),
    )
