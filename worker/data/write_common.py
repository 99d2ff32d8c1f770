"""What the layout writers take, and the checks they share.

Writers exist so that tests and the synthetic benchmarks produce the real datasets' on-disk layouts, and the
real loaders are what gets exercised.
"""

from __future__ import annotations

import operator
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass
class LabeledImage:
    """One image to write: its class label, split and a writer-specific group (place, hospital, ...)."""

    image: Image.Image
    label: int
    split: str
    group: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def check_item(layout: str, n: int, item: LabeledImage, splits: Collection[str], num_labels: int | None) -> None:
    """Reject an item the layout cannot hold, naming the item's position and what is accepted."""
    if not isinstance(item, LabeledImage):
        raise TypeError(f"{layout} item {n}: expected a LabeledImage, got {type(item).__name__}")
    if not isinstance(item.image, Image.Image):
        raise TypeError(f"{layout} item {n}: image must be a PIL.Image.Image, got {type(item.image).__name__}")
    if splits and item.split not in splits:
        raise ValueError(f"{layout} item {n}: split {item.split!r} is not one of {sorted(splits)}")
    try:
        label = operator.index(item.label)
    except TypeError:
        label = -1
    if label < 0 or (num_labels is not None and label >= num_labels):
        upper = f" and < {num_labels}" if num_labels is not None else ""
        raise ValueError(f"{layout} item {n}: label {item.label!r} must be an integer >= 0{upper}")


def require_meta(layout: str, n: int, item: LabeledImage, key: str) -> Any:
    if key not in item.meta:
        raise ValueError(f"{layout} item {n}: meta[{key!r}] is required (got meta keys {sorted(item.meta)})")
    return item.meta[key]


def save_image(image: Image.Image, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if fmt == "JPEG" else {}
    image.convert("RGB").save(path, format=fmt, **options)


def write_release(directory: Path, version: str) -> None:
    """The file WILDS looks for to accept a folder as a local copy of the dataset."""
    (directory / f"RELEASE_v{version}.txt").write_text(f"v{version}\n")


def nonempty(layout: str, count: int) -> None:
    if count == 0:
        raise ValueError(f"{layout}: no items were given; a layout needs at least one image")
