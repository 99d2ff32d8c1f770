"""Write the synthetic benchmarks to disk in the real datasets' layouts, once per (seed, sizes, version).

A benchmark is written into a temporary sibling folder and renamed into place only when complete, with a
manifest of the parameters it was made with; asking again with the same parameters returns at once, and a
crash never leaves a half-written benchmark where the loaders would find it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worker import catalog
from worker.data import LabeledImage, check_layout, write_camelyon, write_domainnet, write_waterbirds
from worker.synthetic.benchmarks import BUILDERS, DEFAULT_SIZES, DIGIT_NAMES, Part

# Bump whenever the rendering changes, so that benchmarks written by an older version are regenerated.
GENERATOR_VERSION = 4
MANIFEST = "synthetic_manifest.json"

Writer = Callable[[Path, list[LabeledImage]], Path]
WRITERS: dict[str, Writer] = {"waterbirds": write_waterbirds, "domainnet": write_domainnet, "camelyon": write_camelyon}


def _entry(key: str) -> catalog.DatasetEntry:
    entry = catalog.get_dataset(key)
    if entry.synthetic is None:
        valid = ", ".join(catalog.list_datasets(synthetic=True))
        raise ValueError(f"dataset {key!r} is not synthetic; synthetic datasets: {valid}")
    if entry.synthetic not in BUILDERS:
        raise ValueError(f"dataset {key!r} names synthetic kind {entry.synthetic!r}; known kinds: {sorted(BUILDERS)}")
    if entry.loader not in WRITERS:
        raise ValueError(f"dataset {key!r} has loader {entry.loader!r}; writable layouts: {sorted(WRITERS)}")
    if Path(entry.root_subdir) == Path("."):
        # the root is replaced as a whole, so it must be a folder of its own, never the data root itself
        raise ValueError(f"synthetic dataset {key!r} needs its own root_subdir, got {entry.root_subdir!r}")
    return entry


def _complete(key: str, data_root: str | Path, want: dict[str, Any]) -> bool:
    """The benchmark is on disk with these parameters and every layout marker."""
    have = read_manifest(_entry(key).root(data_root))
    return have is not None and {k: have.get(k) for k in want} == want and check_layout(key, data_root) is None


def _size(name: str, value: int | None, default: int, minimum: int) -> int:
    if value is None:
        return default
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (or None for {default}), got {value!r}")
    return int(value)


def _items(parts: list[Part], loader: str) -> Iterator[LabeledImage]:
    for part in parts:
        for img, label, group in zip(part.images, part.labels, part.groups, strict=True):
            meta: dict[str, Any] = dict(part.meta)
            if loader == "domainnet":
                meta["class_name"] = DIGIT_NAMES[int(label)]
            yield LabeledImage(Image.fromarray(img), int(label), part.split, int(group), meta)


def manifest_for(key: str, *, seed: int, n_train: int, n_eval: int) -> dict[str, Any]:
    """What a written benchmark records about itself; equal manifests mean identical files."""
    entry = _entry(key)
    return {
        "dataset": key,
        "kind": entry.synthetic,
        "layout": entry.loader,
        "seed": int(seed),
        "n_train": n_train,
        "n_eval": n_eval,
        "version": GENERATOR_VERSION,
    }


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest in a benchmark root, or None where there is none (or it does not parse)."""
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def generate_benchmark(
    key: str,
    data_root: str | Path,
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_eval: int | None = None,
    force: bool = False,
) -> Path:
    """Write synthetic dataset `key` under `data_root` (at its catalog root) and return that root.

    `n_train` is the number of ID training images, `n_eval` the size of each evaluation split (defaults per
    benchmark in `DEFAULT_SIZES`). Idempotent: a root whose manifest matches (and whose layout markers are
    all there) is left as it is. A root written by this generator with other parameters is replaced; any
    other existing folder is only replaced with `force`, so a real dataset is never deleted by mistake.
    """
    entry = _entry(key)
    d_train, d_eval = DEFAULT_SIZES[entry.synthetic]
    n_train = _size("n_train", n_train, d_train, 6)  # stain spreads train over 3 centers x 2 classes
    n_eval = _size("n_eval", n_eval, d_eval, 6)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    want = manifest_for(key, seed=seed, n_train=n_train, n_eval=n_eval)
    root = entry.root(data_root)
    if not force and _complete(key, data_root, want):
        return root
    if root.exists() and read_manifest(root) is None and not force and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists and was not written by the synthetic generator (no {MANIFEST}); "
            f"pass force=True (--force) to replace it"
        )

    rng = np.random.default_rng([seed, zlib.crc32(entry.synthetic.encode())])
    parts = BUILDERS[entry.synthetic](rng, n_train, n_eval)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        WRITERS[entry.loader](tmp, list(_items(parts, entry.loader)))
        counts: Counter[str] = Counter()
        for p in parts:
            counts["/".join(filter(None, (p.split, p.meta.get("domain"))))] += len(p.labels)
        (tmp / MANIFEST).write_text(json.dumps({**want, "counts": dict(counts)}, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it owner-only
        if not force and _complete(key, data_root, want):
            return root  # another process wrote the same benchmark meanwhile
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate_all(data_root: str | Path, seed: int = 0, *, force: bool = False) -> dict[str, Path]:
    """Every synthetic benchmark of the catalog, at default sizes: {dataset key: its root}."""
    return {
        key: generate_benchmark(key, data_root, seed=seed, force=force) for key in catalog.list_datasets(synthetic=True)
    }
