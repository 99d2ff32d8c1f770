"""Readers of the three WILDS layouts (Camelyon17, Waterbirds, FMoW).

WILDS itself decides the splits (`wilds.get_dataset(..., download=False)`), so the semantics are exactly the
benchmark's: Camelyon17 moves hospitals 1 and 2 to OOD val/test; FMoW cuts by year (ID before 2013, OOD val
2013-2015, OOD test 2016 on) and region. File paths are taken from the same fields WILDS' `get_input` reads,
and the images are then read by `ImageDataset`, never through WILDS.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from worker.catalog import DatasetEntry
from worker.data.bundle import GROUP_METRICS, PLAIN_METRICS
from worker.data.images import ImageTable
from worker.data.layout import Layout, RawSplits, layout_error
from worker.data.wilds_offline import wilds_module

CAMELYON_DIR, WATERBIRDS_DIR, FMOW_DIR = "camelyon17_v1.0", "waterbirds_v1.0", "fmow_v1.1"
WATERBIRDS_GROUPS = 4  # group = 2 * y + place: landbird/land, landbird/water, waterbird/land, waterbird/water
AFRICA = "Africa"


def _wilds_dataset(name: str, root: Path, entry: DatasetEntry, metadata: Path):
    """Build WILDS' dataset object offline; a metadata file that does not parse names itself."""
    try:
        with warnings.catch_warnings():
            # Benign for reading: pandas' read-only arrays handed to torch, and WILDS' evaluation groupers
            # (unused here) finding no data in some years on small copies.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            warnings.filterwarnings("ignore", message="Minimum metadata value for CombinatorialGrouper")
            return wilds_module().get_dataset(dataset=name, root_dir=str(root), download=False)
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise layout_error(entry, metadata, f"WILDS could not read this metadata ({type(e).__name__}: {e})") from e


def _split(ds, name: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(ds.split_array) == ds.split_dict[name])


def _table(paths: list[str], labels: np.ndarray, idx: np.ndarray, groups: np.ndarray | None = None) -> ImageTable:
    return ImageTable.build([paths[i] for i in idx], labels[idx], None if groups is None else groups[idx])


# --- Camelyon17 ------------------------------------------------------------------------------------------


def camelyon_markers(root: Path, entry: DatasetEntry) -> list[Path]:
    d = root / CAMELYON_DIR
    return [d / "RELEASE_v1.0.txt", d / "metadata.csv", d / "patches"]


def read_camelyon(root: Path, entry: DatasetEntry) -> RawSplits:
    ds = _wilds_dataset("camelyon17", root, entry, root / CAMELYON_DIR / "metadata.csv")
    data_dir = Path(ds.data_dir)
    paths = [str(data_dir / p) for p in ds._input_array]  # the relative patch paths WILDS' get_input opens
    y = ds.y_array.numpy()
    evals = {
        out: (_table(paths, y, _split(ds, split)), PLAIN_METRICS)
        for out, split in (("id_val", "id_val"), ("ood_val", "val"), ("ood_test", "test"))
    }
    return RawSplits(_table(paths, y, _split(ds, "train")), evals)


# --- Waterbirds ------------------------------------------------------------------------------------------


def waterbirds_markers(root: Path, entry: DatasetEntry) -> list[Path]:
    d = root / WATERBIRDS_DIR
    return [d / "RELEASE_v1.0.txt", d / "metadata.csv"]


def read_waterbirds(root: Path, entry: DatasetEntry) -> RawSplits:
    ds = _wilds_dataset("waterbirds", root, entry, root / WATERBIRDS_DIR / "metadata.csv")
    data_dir = Path(ds.data_dir)
    paths = [str(data_dir / p) for p in ds._input_array]
    y = ds.y_array.numpy()
    place = ds.metadata_array[:, ds.metadata_fields.index("background")].numpy()
    groups = 2 * y + place
    train = _split(ds, "train")
    counts = np.bincount(groups[train], minlength=WATERBIRDS_GROUPS)
    evals = {s: (_table(paths, y, _split(ds, s), groups), GROUP_METRICS) for s in ("val", "test")}
    weights = {g: float(c) for g, c in enumerate(counts)}
    return RawSplits(_table(paths, y, train), evals, group_weights=weights)


# --- FMoW ------------------------------------------------------------------------------------------------


def fmow_markers(root: Path, entry: DatasetEntry) -> list[Path]:
    d = root / FMOW_DIR
    return [d / "RELEASE_v1.1.txt", d / "rgb_metadata.csv", d / "country_code_mapping.csv", d / "images"]


def read_fmow(root: Path, entry: DatasetEntry) -> RawSplits:
    ds = _wilds_dataset("fmow", root, entry, root / FMOW_DIR / "rgb_metadata.csv")
    images = Path(ds.data_dir) / "images"
    paths = [str(images / f"rgb_img_{i}.png") for i in ds.full_idxs]  # row number in rgb_metadata.csv
    y = ds.y_array.numpy()
    region = ds.metadata_array[:, ds.metadata_fields.index("region")].numpy()
    regions = list(ds.metadata_map["region"])
    ood_test = _split(ds, "test")
    africa = ood_test[region[ood_test] == regions.index(AFRICA)] if AFRICA in regions else ood_test[:0]
    evals = {
        out: (_table(paths, y, _split(ds, split)), PLAIN_METRICS)
        for out, split in (("id_val", "id_val"), ("id_test", "id_test"), ("ood_val", "val"), ("ood_test", "test"))
    }
    evals["ood_test_africa"] = (_table(paths, y, africa), PLAIN_METRICS)
    return RawSplits(_table(paths, y, _split(ds, "train")), evals)


CAMELYON = Layout(camelyon_markers, read_camelyon)
WATERBIRDS = Layout(waterbirds_markers, read_waterbirds)
FMOW = Layout(fmow_markers, read_fmow)
