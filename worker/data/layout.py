"""The contract between a dataset's on-disk reader and `load_dataset`.

A `Layout` names the few marker files/folders that identify a dataset root (cheap to check before a sweep
starts) and a reader that parses the root into split tables. Readers never touch pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.catalog import DatasetEntry
from worker.data.errors import DataLayoutError
from worker.data.images import ImageTable


@dataclass(frozen=True)
class RawSplits:
    """A dataset root parsed into tables: the training split and each evaluation split with its metrics."""

    train: ImageTable
    evals: dict[str, tuple[ImageTable, tuple[str, ...]]]
    group_weights: dict[int, float] | None = None


@dataclass(frozen=True)
class Layout:
    markers: Callable[[Path, DatasetEntry], list[Path]]
    read: Callable[[Path, DatasetEntry], RawSplits]


def layout_message(entry: DatasetEntry, path: Path, problem: str) -> str:
    """One message shape for every layout problem: the dataset, the path at fault, and the layout expected."""
    return f"dataset {entry.key!r}: {problem}: {path}; expected layout: {entry.layout}"


def layout_error(entry: DatasetEntry, path: Path, problem: str) -> DataLayoutError:
    return DataLayoutError(layout_message(entry, path, problem))
