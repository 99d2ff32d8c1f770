"""Parsed files kept in memory until the file changes, so that polling a sweep does not re-read its Parquet.

A cached value is keyed by the file's path and what was derived from it, and is valid while the file's
(mtime, size, inode) stays the same. Writers replace files by rename, so a new version always changes the inode.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Stamp = tuple[int, int, int] | None


def stamp(path: Path) -> Stamp:
    """The file's identity for caching; None when it does not exist."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileCache:
    """A small LRU of values derived from files."""

    def __init__(self, maxsize: int = 64):
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, str], tuple[Stamp, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, kind: str, load: Callable[[], T]) -> T:
        """`load()`'s value for the current version of `path`, computed once per version and `kind`."""
        key = (str(path), kind)
        current = stamp(path)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == current:
                self._entries.move_to_end(key)
                return hit[1]
        value = load()
        with self._lock:
            self._entries[key] = (current, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value
