"""Where a model's pretrained weights live, and the backbone-only safetensors files the project writes.

Nothing is ever downloaded: a weights file is either named explicitly or looked up as
`<weights_root>/<catalog weights_file>`, with the root from the trial config or env `SHIFTSWEEP_WEIGHTS`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from worker import catalog
from worker.models.built import BuiltModel

WEIGHTS_ENV = "SHIFTSWEEP_WEIGHTS"
HUB = "hub"  # `weights="hub"`: the library's own hub name, read from a filled local cache (HF_HUB_OFFLINE=1)
BACKBONE_FORMAT = "shiftsweep.backbone/1"  # safetensors metadata "format" of files written here


class WeightsNotFoundError(FileNotFoundError):
    """No weights file where one was looked for. The message names every path tried and how to point elsewhere."""

    def __init__(self, message: str, tried: Iterable[Path | str] = ()):
        super().__init__(message)
        self.tried = tuple(Path(p) for p in tried)

    def __str__(self) -> str:
        return str(self.args[0])


class WeightsMismatchError(ValueError):
    """A weights file whose tensor names do not match the architecture (head keys aside)."""


def resolve_weights_path(key: str, weights: str | Path | None = None, weights_root: str | Path | None = None) -> Path:
    """The weights file of catalog model `key`: `weights` if given, else `<weights_root or $SHIFTSWEEP_WEIGHTS>/
    <entry.weights_file>`. Raises WeightsNotFoundError naming what was looked for."""
    entry = catalog.get_model(key)
    if weights is not None and str(weights) == HUB:
        raise ValueError(f"weights={HUB!r} reads the hub cache and has no single file; create_model handles it")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file for model {key!r} not found: {path} (given as `weights`)", [path])
        return path
    root = str(weights_root) if weights_root else os.environ.get(WEIGHTS_ENV) or None  # empty means unset
    if root is None:
        raise WeightsNotFoundError(
            f"no weights location for model {key!r}: it looks for {entry.weights_file!r} under a weights root; "
            f"set `weights_root` (trial config, sweep spec or --weights-root) or env {WEIGHTS_ENV}, "
            f"or name a file with `weights`",
            [Path(entry.weights_file)],
        )
    path = Path(root).expanduser() / entry.weights_file
    if not path.is_file():
        source = "`weights_root`" if weights_root else f"env {WEIGHTS_ENV}"
        raise WeightsNotFoundError(
            f"weights file for model {key!r} not found: {path} (root {Path(root).expanduser()} from {source}; "
            f"catalog weights_file {entry.weights_file!r}); put the file there, or name one with `weights`",
            [path],
        )
    return path


def save_backbone_weights(built: BuiltModel, path: str | Path) -> Path:
    """Write everything but the head as safetensors; `create_model(key, n, weights=path)` loads it back."""
    state = built.backbone_state_dict()
    if any(t.is_meta for t in state.values()):
        raise ValueError("cannot save a model built on the meta device: it has no weights")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": BACKBONE_FORMAT, "model": built.entry.key, "family": built.family}
    save_file(tensors, str(path), metadata=meta)
    return path


def backbone_file_metadata(path: Path) -> Mapping[str, str] | None:
    """The metadata of a file written by `save_backbone_weights`; None for any other file."""
    if path.suffix != ".safetensors":
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return meta if meta.get("format") == BACKBONE_FORMAT else None


def tensors_sha256(path: str | Path) -> str:
    """SHA-256 of a safetensors file's tensors (names, dtypes, shapes, values) in name order.

    Not of the file's bytes: safetensors writes its metadata in no fixed order, so two saves of the same
    weights can differ byte for byte.
    """
    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _under(key: str, paths: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in paths)


def check_backbone_keys(
    module: torch.nn.Module, file_keys: Iterable[str], head_paths: tuple[str, ...], source: Path
) -> None:
    """Strict on every tensor but the head: a missing or unexpected name means the file is for another
    architecture (a different depth or width would otherwise load partly and train from random blocks)."""
    expected = {k for k in module.state_dict(keep_vars=True) if not _under(k, head_paths)}
    got = {k for k in file_keys if not _under(k, head_paths)}
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise WeightsMismatchError(
            f"weights file {source} does not match the architecture: {len(missing)} missing tensors "
            f"{missing[:6]}, {len(unexpected)} unexpected tensors {unexpected[:6]} (head tensors are ignored)"
        )


def load_backbone_file(module: torch.nn.Module, path: Path, head_paths: tuple[str, ...]) -> None:
    """Load a backbone file into `module`: every non-head tensor must be present and no other may be."""
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        check_backbone_keys(module, keys, head_paths, path)
        state = {k: f.get_tensor(k) for k in keys if not _under(k, head_paths)}
    module.load_state_dict(state, strict=False)
