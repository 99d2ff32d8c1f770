"""Readers of the two folder layouts: DomainNet with SENTRY list files, and ImageNet folders for Living-17.

- DomainNet (SENTRY 40-class version): `SENTRY_splits/<domain>_<train|test>_mini.txt`, one
  `<domain>/<class>/<file> <label>` line per image, paths relative to the root. Train on the ID domain's train
  list; `id_test` is its test list, `ood_test` the OOD domain's test list (catalog `domains`).
- Living-17 (BREEDS, split `rand`): classes and their source/target ImageNet subclasses come from
  `worker.catalog.living17_split()`. Train on source subclasses from `train/`; `source_val` and `target_val`
  are the source and target subclasses from `val/` (ImageNet val sorted into `<wnid>/` folders).
"""

from __future__ import annotations

import os
from pathlib import Path

from worker import catalog
from worker.catalog import DatasetEntry
from worker.data.bundle import PLAIN_METRICS
from worker.data.images import ImageTable
from worker.data.layout import Layout, RawSplits, layout_error

SENTRY_DIR = "SENTRY_splits"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


# --- DomainNet -------------------------------------------------------------------------------------------


def sentry_list(root: Path, domain: str, split: str) -> Path:
    return root / SENTRY_DIR / f"{domain}_{split}_mini.txt"


def _domains(entry: DatasetEntry) -> tuple[str, str]:
    if "id" not in entry.domains or "ood" not in entry.domains:
        raise ValueError(f"dataset {entry.key!r} needs catalog `domains` with keys id and ood, got {entry.domains}")
    return entry.domains["id"], entry.domains["ood"]


def domainnet_markers(root: Path, entry: DatasetEntry) -> list[Path]:
    id_dom, ood_dom = _domains(entry)
    lists = [sentry_list(root, id_dom, "train"), sentry_list(root, id_dom, "test"), sentry_list(root, ood_dom, "test")]
    return [root / SENTRY_DIR, *lists, root / id_dom, root / ood_dom]


def read_sentry_list(root: Path, list_file: Path, entry: DatasetEntry) -> ImageTable:
    """Parse one list file; a malformed line is reported with its file and line number."""
    paths, labels = [], []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise layout_error(entry, list_file, f"line {n} is {line!r}, not '<domain>/<class>/<file> <label>'")
        paths.append(str(root / parts[0]))
        labels.append(int(parts[1]))
    return ImageTable.build(paths, labels)


def read_domainnet(root: Path, entry: DatasetEntry) -> RawSplits:
    id_dom, ood_dom = _domains(entry)
    train = read_sentry_list(root, sentry_list(root, id_dom, "train"), entry)
    evals = {
        "id_test": (read_sentry_list(root, sentry_list(root, id_dom, "test"), entry), PLAIN_METRICS),
        "ood_test": (read_sentry_list(root, sentry_list(root, ood_dom, "test"), entry), PLAIN_METRICS),
    }
    return RawSplits(train, evals)


# --- Living-17 -------------------------------------------------------------------------------------------


def _subclasses(kind: str) -> list[tuple[str, int]]:
    """(wnid, class label) of every `source` or `target` subclass of Living-17."""
    return [(wnid, int(c["label"])) for c in catalog.living17_split() for _, wnid, _ in c[kind]]


def living17_markers(root: Path, entry: DatasetEntry) -> list[Path]:
    train = [root / "train" / w for w, _ in _subclasses("source")]
    val = [root / "val" / w for kind in ("source", "target") for w, _ in _subclasses(kind)]
    return [root / "train", root / "val", *train, *val]


def _folder_images(folder: Path, entry: DatasetEntry) -> list[str]:
    if not folder.is_dir():
        raise layout_error(entry, folder, "missing ImageNet class folder")
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
    return [str(folder / n) for n in names]


def _imagenet_table(root: Path, split: str, kind: str, entry: DatasetEntry) -> ImageTable:
    paths, labels = [], []
    for wnid, label in _subclasses(kind):
        files = _folder_images(root / split / wnid, entry)
        paths += files
        labels += [label] * len(files)
    return ImageTable.build(paths, labels)


def read_living17(root: Path, entry: DatasetEntry) -> RawSplits:
    evals = {
        "source_val": (_imagenet_table(root, "val", "source", entry), PLAIN_METRICS),
        "target_val": (_imagenet_table(root, "val", "target", entry), PLAIN_METRICS),
    }
    return RawSplits(_imagenet_table(root, "train", "source", entry), evals)


DOMAINNET = Layout(domainnet_markers, read_domainnet)
LIVING17 = Layout(living17_markers, read_living17)
