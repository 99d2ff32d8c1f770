"""Lazily read image lists: what every loader produces (an `ImageTable`) and the Dataset that reads it.

Loaders only parse a layout into paths, labels and groups; reading, caching and transforms live here, so that
every dataset fails the same way on a bad file and small synthetic images are decoded once per process.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
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


class DecodedImageCache:
    """Small decoded images of this process, shared by every dataset that reads them, least recently used first out.

    A trial resumed in the same worker process (a paused trial let go on, the next LR of a cell) then starts with
    its images already decoded instead of reading them all again in its first epoch. An entry holds the file's
    modification time and size, and is used only while they still match, so a benchmark written again is read
    again.
    """

    def __init__(self, budget_bytes: int = CACHE_BUDGET_BYTES, max_pixels: int = CACHE_MAX_PIXELS) -> None:
        self.budget_bytes = budget_bytes
        self.max_pixels = max_pixels
        self._entries: OrderedDict[str, tuple[tuple[int, int], Image.Image]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, path: str, *, checked: bool = False) -> Image.Image:
        """The image at `path`, decoded: from the cache if the file is unchanged, else read (and kept if small).
        `checked`: the caller already found this entry current (once per dataset), so the file is not looked at."""
        hit = self._entries.get(path)
        if hit is not None and checked:
            self._entries.move_to_end(path)
            return hit[1]
        stamp = _stamp(path)
        if hit is not None and stamp == hit[0]:
            self._entries.move_to_end(path)
            return hit[1]
        img = read_rgb(path)
        if hit is not None:
            self._drop(path)
        size = 3 * img.width * img.height
        if stamp is not None and img.width * img.height <= self.max_pixels and size <= self.budget_bytes:
            while self._bytes + size > self.budget_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[path] = (stamp, img)
            self._bytes += size
        return img

    def _drop(self, path: str) -> None:
        _, img = self._entries.pop(path)
        self._bytes -= 3 * img.width * img.height


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # read_rgb names the file and the problem
    return st.st_mtime_ns, st.st_size


PROCESS_IMAGE_CACHE = DecodedImageCache()


class ImageDataset(torch.utils.data.Dataset):
    """Reads a table's images on demand; yields (image, label) or, with `with_group`, (image, label, group)."""

    def __init__(self, table: ImageTable, transform: Callable, *, with_group: bool) -> None:
        self.table = table
        self.transform = transform
        self.with_group = with_group
        self._checked: set[int] = set()  # small images found current once: not looked at on disk again

    def __len__(self) -> int:
        return len(self.table)

    def _image(self, idx: int) -> Image.Image:
        img = PROCESS_IMAGE_CACHE.get(self.table.paths[idx], checked=idx in self._checked)
        if img.width * img.height <= PROCESS_IMAGE_CACHE.max_pixels:
            self._checked.add(idx)
        return img

    def __getitem__(self, idx: int):
        x = self.transform(self._image(idx))
        label = int(self.table.labels[idx])
        if self.with_group:
            return x, label, int(self.table.groups[idx])
        return x, label
