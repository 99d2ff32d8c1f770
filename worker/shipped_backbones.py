"""The demo's small backbones, shipped pretrained with the project, so that a first demo does not spend minutes
(or, on a busy machine, a quarter of an hour) pretraining them.

Each file in `SHIPPED_DIR` is exactly what `python -m worker.pretrain` writes: the backbone's safetensors and
its JSON sidecar, which records the recipe, the architecture, the step count, the seed, the thread count, the
torch version, the source accuracy and the SHA-256 of its tensors. A copy is used only when its tensors match
that hash and its sidecar matches the catalog's recipe and architecture, so an edited file or a changed recipe
is refused instead of silently trained on.

`python -m worker.pretrain --verify-shipped` trains each one again from its sidecar and compares: bit for bit
with the same torch on the same kind of CPU; elsewhere (another BLAS or vector unit sums in another order) the
weights differ in the last bits and the check accepts a source accuracy within `SOURCE_ACC_TOLERANCE`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from worker import catalog
from worker.models import tensors_sha256
from worker.pretrain import PretrainResult, made_differently, pretrain_backbone, result_from_sidecar, sidecar_path

SHIPPED_DIR = Path(__file__).resolve().parent / "synthetic" / "backbones"
SOURCE_ACC_TOLERANCE = 0.02  # accepted |source val acc difference| when a retrained copy is not bit-identical


class ShippedBackboneError(ValueError):
    """A shipped backbone that is missing, altered, or made by another recipe than the catalog's."""


@dataclass(frozen=True)
class ShippedBackbone:
    key: str
    path: Path  # the weights file
    info: dict[str, Any]  # its sidecar

    def as_result(self, path: Path | None = None) -> PretrainResult:
        return result_from_sidecar(path or self.path, self.info)


def shipped_keys(directory: Path = SHIPPED_DIR) -> list[str]:
    """The tiny catalog models with a weights file in `directory`."""
    return [k for k in catalog.list_models(tiny=True) if (directory / catalog.get_model(k).weights_file).is_file()]


def _recipe_drift(key: str, info: dict[str, Any]) -> list[str]:
    """How the sidecar's recipe, architecture and steps differ from what the catalog now says (empty if none)."""
    drift = made_differently(key, info)
    steps = catalog.get_model(key).pretraining.get("steps")
    if steps is not None and int(steps) != info.get("steps"):
        drift.append(f"steps: shipped {info.get('steps')!r}, catalog {int(steps)!r}")
    return drift


def shipped(key: str, directory: Path = SHIPPED_DIR) -> ShippedBackbone:
    """The shipped backbone of tiny model `key`, checked: file present, hash as recorded, recipe as the catalog's."""
    entry = catalog.get_model(key)
    path = directory / entry.weights_file
    side = sidecar_path(path)
    if not (path.is_file() and side.is_file()):
        have = sorted(p.name for p in directory.glob("*.safetensors")) if directory.is_dir() else []
        raise ShippedBackboneError(f"no shipped backbone for {key!r} in {directory} (shipped: {have})")
    try:
        info = json.loads(side.read_text())
    except ValueError as e:
        raise ShippedBackboneError(f"{side} is not valid JSON: {e}") from e
    digest, recorded = tensors_sha256(path), str(info.get("tensors_sha256"))
    if digest != recorded:
        raise ShippedBackboneError(
            f"{path}'s tensors have SHA-256 {digest[:16]}..., its sidecar records {recorded[:16]}...: the file was "
            f"altered; restore it (git checkout -- {path.name}) or pretrain here (--pretrain-here)"
        )
    drift = _recipe_drift(key, info)
    if drift:
        raise ShippedBackboneError(
            f"{path.name} was made by another recipe than the catalog's ({'; '.join(drift)}); pretrain it again "
            f"(python -m worker.pretrain --out {directory} --models {key} --force) or restore the catalog"
        )
    return ShippedBackbone(key, path, info)


def install(key: str, weights_root: Path, directory: Path = SHIPPED_DIR) -> PretrainResult:
    """Copy `key`'s checked shipped backbone and sidecar to `weights_root`, where `create_model` looks for it."""
    b = shipped(key, directory)
    dest = Path(weights_root) / b.path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not (dest.is_file() and tensors_sha256(dest) == b.info["tensors_sha256"]):
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(b.path, tmp)
        tmp.replace(dest)
    shutil.copyfile(sidecar_path(b.path), sidecar_path(dest))
    return b.as_result(dest)


@dataclass(frozen=True)
class Reproduction:
    key: str
    identical: bool  # the retrained tensors equal the shipped ones, bit for bit
    max_abs_diff: float  # largest |difference| over every weight
    val_acc_shipped: float
    val_acc_now: float
    torch_shipped: str = ""  # the torch version that made the shipped file

    @property
    def within_tolerance(self) -> bool:
        return self.identical or abs(self.val_acc_now - self.val_acc_shipped) <= SOURCE_ACC_TOLERANCE

    def line(self) -> str:
        if self.identical:
            how = "bit-identical"
        else:
            verdict = "within" if self.within_tolerance else "OUTSIDE"
            how = f"not bit-identical (max |dw| {self.max_abs_diff:.2g}); {verdict} the "
            how += f"{100 * SOURCE_ACC_TOLERANCE:g}-point tolerance on source accuracy"
            if self.torch_shipped and self.torch_shipped != torch.__version__:
                how += f" (shipped with torch {self.torch_shipped}, this is {torch.__version__})"
        return f"{self.key}: {how}; source val acc shipped {self.val_acc_shipped:.3f}, retrained {self.val_acc_now:.3f}"


def _max_abs_diff(a: Path, b: Path) -> float:
    with safe_open(str(a), framework="pt") as fa, safe_open(str(b), framework="pt") as fb:
        if set(fa.keys()) != set(fb.keys()):
            return float("inf")
        return max((float((fa.get_tensor(k) - fb.get_tensor(k)).abs().max()) for k in fa.keys()), default=0.0)


def reproduce(key: str, directory: Path = SHIPPED_DIR) -> Reproduction:
    """Pretrain `key` again exactly as its sidecar says and compare with the shipped file."""
    b = shipped(key, directory)
    i = b.info
    with tempfile.TemporaryDirectory(prefix="shiftsweep-reproduce-") as tmp:
        res = pretrain_backbone(
            key,
            tmp,
            steps=int(i["steps"]),
            seed=int(i["seed"]),
            threads=int(i["threads"]),
            n_train=int(i["n_train"]),
            n_val=int(i["n_val"]),
            force=True,
        )
        identical = tensors_sha256(res.path) == i["tensors_sha256"]
        diff = 0.0 if identical else _max_abs_diff(b.path, res.path)
    return Reproduction(key, identical, diff, float(i["val_acc"]), res.val_acc, str(i.get("torch", "")))
