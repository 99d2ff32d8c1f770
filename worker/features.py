"""Frozen-backbone features, computed once per (model, weights, dataset, subset) and cached on the node's disk.

The linear probe and LP-FT fit a logistic regression on what the backbone hands its head. Every LR of a cell,
and every C of the probe's grid, would otherwise push the whole dataset through the backbone again; the cache
makes that once per node. Features are the head's input (a forward hook on the family's declared head), taken
in eval mode with the dataset's test transform, the training split included (no augmentation), as the paper's
code extracts them. Entries are written atomically under a lock, so concurrent trials on one node compute an
entry once and never read a partial file.

The cache lives under `$SHIFTSWEEP_CACHE` (default `~/.cache/shiftsweep`) in `features/` (and LP-FT's chosen heads
in `heads/`, `worker.linear_probe`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from worker.config import TrialConfig
from worker.data import DatasetBundle
from worker.models import BuiltModel
from worker.models.families import get_family
from worker.models.weights import HUB, resolve_weights_path
from worker.precision import autocast_for

FEATURES_FORMAT = 2  # 2: evaluation splits may be catalog split_halves


def cache_root() -> Path:
    return Path(os.environ.get("SHIFTSWEEP_CACHE") or Path.home() / ".cache" / "shiftsweep")


@dataclass(frozen=True)
class SplitFeatures:
    x: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) int64
    groups: np.ndarray  # (n,) int64, -1 where the split has no groups


@dataclass(frozen=True)
class Features:
    train: SplitFeatures
    evals: dict[str, SplitFeatures]


def _weights_identity(config: TrialConfig) -> str:
    """What decides the backbone's weights: its file (path, size, time), the hub, or the seed of a random init."""
    if not config.pretrained:
        return f"random-init seed {config.seed}"
    if config.weights is not None and str(config.weights) == HUB:
        return HUB
    path = resolve_weights_path(config.model, config.weights, config.weights_root).resolve()
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def features_key(config: TrialConfig) -> str:
    """A cache key over everything that changes the features; the LR, method and epochs do not."""
    blob = {
        "format": FEATURES_FORMAT,
        "model": config.model,
        "weights": _weights_identity(config),
        "dataset": config.dataset,
        "data_root": str(Path(config.data_root).resolve()),
        "max_train_images": config.max_train_images,
        "max_eval_images": config.max_eval_images,
        "seed": config.seed,  # subsets are seeded
        "precision": config.precision,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def head_module(built: BuiltModel) -> torch.nn.Linear | torch.nn.Conv2d:
    """The family's head: a linear layer, or a 1x1 convolution on pooled features (BiT), fed the feature vector."""
    path = get_family(built.family).head[0]
    head = built.module.get_submodule(path)
    if isinstance(head, torch.nn.Linear) or (isinstance(head, torch.nn.Conv2d) and head.kernel_size == (1, 1)):
        return head
    raise TypeError(f"the head {path!r} of {built.family!r} is a {type(head).__name__}, not a linear layer")


@torch.inference_mode()
def extract(
    built: BuiltModel,
    dataset: Dataset,
    *,
    device: torch.device,
    batch_size: int,
    precision: str = "fp32",
    num_workers: int = 0,
) -> SplitFeatures:
    """The head's input for every example of `dataset`, in order, with labels and groups (-1 when none)."""
    captured: list[torch.Tensor] = []
    hook = head_module(built).register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].flatten(1).float().cpu())
    )
    xs, ys, gs = [], [], []
    model = built.module
    was_training = model.training
    model.eval()
    try:
        # its own generator: a loader draws a seed from the global one, and a cache hit must leave the trial's
        # random stream exactly where a miss does
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator(),
        )
        for batch in loader:
            images, labels = batch[0], batch[1]
            groups = batch[2] if len(batch) > 2 else torch.full_like(torch.as_tensor(labels), -1)
            with autocast_for(device, precision):
                model(images.to(device))
            xs.append(captured.pop())
            ys.append(torch.as_tensor(labels))
            gs.append(torch.as_tensor(groups))
    finally:
        hook.remove()
        model.train(was_training)
    return SplitFeatures(
        x=torch.cat(xs).numpy().astype(np.float32),
        y=torch.cat(ys).long().numpy(),
        groups=torch.cat(gs).long().numpy(),
    )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `<path>.lock` exclusively: concurrent trials on one node compute a cache entry once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` in one step: a reader sees the whole file or none."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(path: Path, features: Features) -> None:
    arrays = {"train_x": features.train.x, "train_y": features.train.y, "train_groups": features.train.groups}
    for name, split in features.evals.items():
        arrays |= {f"eval:{name}:x": split.x, f"eval:{name}:y": split.y, f"eval:{name}:groups": split.groups}
    save_npz(path, arrays)


def _load(path: Path) -> Features:
    with np.load(path) as z:
        names = sorted({k.split(":")[1] for k in z.files if k.startswith("eval:")})
        evals = {n: SplitFeatures(z[f"eval:{n}:x"], z[f"eval:{n}:y"], z[f"eval:{n}:groups"]) for n in names}
        return Features(SplitFeatures(z["train_x"], z["train_y"], z["train_groups"]), evals)


def cached_features(
    config: TrialConfig, built: BuiltModel, bundle: DatasetBundle, device: torch.device
) -> tuple[Features, bool]:
    """The features of the training split and every evaluation split, and whether they came from the cache."""
    path = cache_root() / "features" / f"{config.model}-{config.dataset}-{features_key(config)}.npz"
    with locked(path):
        if path.exists():
            return _load(path), True
        if bundle.train_eval is None:
            raise ValueError(f"dataset {config.dataset!r} has no training split in its test transform to probe")
        batch = max(config.batch_size, 128)
        kw = {"device": device, "batch_size": batch, "precision": config.precision, "num_workers": config.num_workers}
        features = Features(
            train=extract(built, bundle.train_eval, **kw),
            evals={name: extract(built, split.dataset, **kw) for name, split in bundle.eval_splits.items()},
        )
        _save(path, features)
        return features, False
