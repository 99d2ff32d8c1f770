"""Lazily read image lists: what every loader produces (an `ImageTable`) and the Dataset that reads it.

Loaders only parse a layout into paths, labels and groups; reading, caching and transforms live here, so that
every dataset fails the same way on a bad file and small synthetic images are decoded once per process.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from worker.data.errors import ImageReadError

NO_GROUP = -1
# Images of at most this many pixels are kept decoded after the first read (synthetic 32x32 benchmarks); big
# ones are read from disk every time so a full-size dataset never fills memory.
CACHE_MAX_PIXELS = 64 * 64
CACHE_BUDGET_BYTES = 512 * 2**20


@dataclass(frozen=True)
class ImageTable:
    """One split as data: absolute image paths with their labels and groups (NO_GROUP where none)."""

    paths: tuple[str, ...]
    labels: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.paths) == len(self.labels) == len(self.groups)):
            raise ValueError(
                f"paths, labels and groups differ in length: {len(self.paths)}, {len(self.labels)}, {len(self.groups)}"
            )

    @classmethod
    def build(cls, paths: list[str], labels, groups=None) -> ImageTable:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        groups = np.full(len(labels), NO_GROUP, np.int64) if groups is None else np.asarray(groups, np.int64)
        return cls(tuple(paths), labels, groups.reshape(-1))

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: np.ndarray) -> ImageTable:
        return ImageTable(tuple(self.paths[i] for i in indices), self.labels[indices], self.groups[indices])


def seeded_subset(n: int, size: int | None, seed: int, salt: str) -> np.ndarray:
    """Sorted indices of a fixed random subset of `size` out of `n` (all of them when size is None or >= n).

    The same (seed, salt, n, size) always gives the same indices; the salt (a split name) keeps the subsets
    of different splits independent.
    """
    if size is None or size >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    return np.sort(rng.choice(n, size=size, replace=False))


def read_rgb(path: str) -> Image.Image:
    """Open and fully decode one image as RGB, or raise ImageReadError naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image file {path}: {e}") from e


class ImageDataset(torch.utils.data.Dataset):
    """Reads a table's images on demand; yields (image, label) or, with `with_group`, (image, label, group)."""

    def __init__(self, table: ImageTable, transform: Callable, *, with_group: bool) -> None:
        self.table = table
        self.transform = transform
        self.with_group = with_group
        self._cache: dict[int, Image.Image] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.table)

    def _image(self, idx: int) -> Image.Image:
        img = self._cache.get(idx)
        if img is None:
            img = read_rgb(self.table.paths[idx])
            size = img.width * img.height
            if size <= CACHE_MAX_PIXELS and self._cached_bytes + 3 * size <= CACHE_BUDGET_BYTES:
                self._cache[idx] = img
                self._cached_bytes += 3 * size
        return img

    def __getitem__(self, idx: int):
        x = self.transform(self._image(idx))
        label = int(self.table.labels[idx])
        if self.with_group:
            return x, label, int(self.table.groups[idx])
        return x, label
