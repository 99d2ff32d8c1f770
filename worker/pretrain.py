"""Pretrain the tiny demo backbones on the synthetic glyph source task, with their big counterparts' optimizer.

The paper's claim is about how a backbone was pretrained (AdamW for ViTs and ConvNeXt, SGD for BiT), so each
tiny model is trained with the optimizer its catalog entry names (`pretraining.optimizer`), a short warm-up
and a cosine decay, then saved with `save_backbone_weights` at `<out_dir>/<weights_file>`: exactly where the
local-weights path of `create_model` looks when `out_dir` is the weights root. A JSON sidecar records how.

    python -m worker.pretrain --out weights/                   # every tiny model, catalog step counts
    python -m worker.pretrain --out weights/ --models tiny_vit --minutes 1 --force

Run length: `steps` if given; else a wall-clock budget `minutes` (the step count is then calibrated on the
first steps, so it depends on the machine); else the catalog's `pretraining.steps` (reproducible); else
`DEFAULT_MINUTES`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from worker import catalog
from worker.models import BuiltModel, create_model, save_backbone_weights, tensors_sha256
from worker.synthetic.source import SOURCE_CHARS, render_source

DEFAULT_MINUTES = 2.5
DEFAULT_N_TRAIN = 40_000  # source images; about 20 s to render on one core
DEFAULT_N_VAL = 2_000
CALIBRATION_STEPS = 8  # steps timed to turn a wall-clock budget into a step count
SIDECAR_SUFFIX = ".pretrain.json"
NO_DECAY_SUFFIXES = ("pos_embed", "cls_token", "positional_embedding", "class_embedding")  # timm, open_clip


@dataclass(frozen=True)
class Recipe:
    """Optimizer settings of one pretraining run. Catalog `pretraining` keys of the same names override them."""

    optimizer: str  # adamw | sgd
    lr: float
    weight_decay: float
    batch_size: int = 64
    warmup_fraction: float = 0.05  # linear warm-up, then cosine to 0
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only
    grad_clip: float = 1.0  # max global gradient norm
    curriculum: float = 0.5  # fraction of the run over which the hardest allowed source difficulty reaches 1
    curriculum_start: float = 0.1  # the hardest difficulty allowed at the first step


RECIPES = {
    "adamw": Recipe("adamw", lr=2e-3, weight_decay=0.05),
    "sgd": Recipe("sgd", lr=0.1, weight_decay=5e-5),
}


@dataclass(frozen=True)
class PretrainResult:
    path: Path  # the backbone weights file
    seconds: float  # training wall time (excludes rendering the source images)
    val_acc: float  # top-1 accuracy on held-out source images
    optimizer: str
    steps: int = 0
    reused: bool = False  # read back from an earlier run rather than trained now


def recipe_for(model_key: str) -> Recipe:
    """The catalog optimizer's recipe, with any overrides the catalog entry's `pretraining` gives."""
    entry = catalog.get_model(model_key)
    name = str(entry.pretraining.get("optimizer", ""))
    if name not in RECIPES:
        raise ValueError(f"model {model_key!r} has pretraining optimizer {name!r}; supported: {sorted(RECIPES)}")
    base = RECIPES[name]
    fields = set(Recipe.__dataclass_fields__) - {"optimizer"}
    overrides: dict[str, Any] = {}
    for k, v in entry.pretraining.items():
        if k in fields:
            kind = type(getattr(base, k))
            try:
                overrides[k] = tuple(float(b) for b in v) if kind is tuple else kind(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"model {model_key!r}: pretraining {k}={v!r} is not a valid {kind.__name__}") from e
    return replace(base, **overrides)


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up from 1/warmup to 1 over the first `warmup_fraction` of steps, then cosine to 0."""
    warm = max(1, round(total * warmup_fraction))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def _optimizer(module: torch.nn.Module, r: Recipe) -> torch.optim.Optimizer:
    # No weight decay on biases, norms, position embeddings and class tokens, as usual for these models.
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if r.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=r.lr, betas=r.betas)
    return torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum)


@lru_cache(maxsize=2)
def _source(n_train: int, n_val: int, seed: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """(images uint8 (N, 3, 32, 32), labels, difficulty) of the train and val source sets; cached across models."""

    def tensors(stream: int, n: int) -> tuple[torch.Tensor, ...]:
        t = render_source(n, seed=seed, stream=stream)
        chw = torch.from_numpy(t.images).permute(0, 3, 1, 2).contiguous()
        return chw, torch.from_numpy(t.labels), torch.from_numpy(t.difficulty)

    return tensors(0, n_train), tensors(1, n_val)


def _normalise(x: torch.Tensor, built: BuiltModel) -> torch.Tensor:
    mean = torch.tensor(built.mean).view(1, 3, 1, 1)
    std = torch.tensor(built.std).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


@torch.no_grad()
def evaluate(built: BuiltModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of the model on uint8 images."""
    built.module.eval()
    correct = sum(
        int((built.module(_normalise(images[i : i + batch_size], built)).argmax(1) == labels[i : i + batch_size]).sum())
        for i in range(0, len(images), batch_size)
    )
    return correct / len(images)


def curriculum_limit(step: int, total: int, r: Recipe) -> float:
    """The hardest source difficulty allowed at `step`: from `curriculum_start` up to 1 over the first
    `curriculum` fraction of the run (1 throughout when `curriculum` is 0)."""
    if r.curriculum <= 0:
        return 1.0
    return min(1.0, r.curriculum_start + (1.0 - r.curriculum_start) * step / (r.curriculum * total))


def _train(
    built: BuiltModel, r: Recipe, data: tuple[torch.Tensor, ...], steps: int | None, budget_s: float, seed: int
) -> tuple[int, float, float]:
    """Train in place; returns (steps, seconds, mean loss of the last 50 steps). `steps=None` calibrates the
    step count from the time of the first CALIBRATION_STEPS steps so that the run fits `budget_s`."""
    x, y, difficulty = data
    module, opt = built.module, _optimizer(built.module, r)
    gen = torch.Generator().manual_seed(seed)
    by_difficulty = torch.argsort(difficulty, stable=True)
    sorted_d = difficulty[by_difficulty]
    total = steps or 10**4  # until calibrated, schedule as if the run were long
    losses: list[float] = []
    module.train()
    t0 = time.perf_counter()
    step = 0
    while step < total:
        if steps is None and step == CALIBRATION_STEPS:
            per_step = (time.perf_counter() - t0) / CALIBRATION_STEPS
            total = max(CALIBRATION_STEPS + 1, int(budget_s / per_step))
        eligible = max(1, int(torch.searchsorted(sorted_d, curriculum_limit(step, total, r), right=True)))
        idx = by_difficulty[torch.randint(eligible, (r.batch_size,), generator=gen)]
        for g in opt.param_groups:
            g["lr"] = r.lr * lr_factor(step, total, r.warmup_fraction)
        loss = F.cross_entropy(module(_normalise(x[idx], built)), y[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"model {built.entry.key!r}: loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), r.grad_clip)
        opt.step()
        losses.append(loss.item())
        step += 1
    return step, time.perf_counter() - t0, sum(losses[-50:]) / len(losses[-50:])


def sidecar_path(weights_path: Path) -> Path:
    return weights_path.with_name(weights_path.name.removesuffix(".safetensors") + SIDECAR_SUFFIX)


def made_as(model_key: str, r: Recipe) -> dict[str, Any]:
    """What a sidecar records of how its file was made and must still match to be reused: the recipe and the
    catalog's architecture (a changed patch size or width makes an older file another model's)."""
    return json.loads(json.dumps({"recipe": asdict(r), "builder": catalog.get_model(model_key).builder}))


def made_differently(model_key: str, info: Mapping[str, Any]) -> list[str]:
    """Each recipe or architecture setting where sidecar `info` differs from the catalog now (empty: made as now)."""
    want = made_as(model_key, recipe_for(model_key))
    out = []
    for field_name in ("recipe", "builder"):
        have = info.get(field_name) or {}
        for k in sorted(set(want[field_name]) | set(have)):
            if have.get(k) != want[field_name].get(k):
                out.append(f"{field_name}.{k}: shipped {have.get(k)!r}, catalog {want[field_name].get(k)!r}")
    return out


def result_from_sidecar(path: Path, info: Mapping[str, Any]) -> PretrainResult:
    """The result an earlier run recorded in its sidecar, for the weights file at `path`."""
    return PretrainResult(
        path, float(info["seconds"]), float(info["val_acc"]), str(info["optimizer"]), int(info["steps"]), True
    )


def _reuse(path: Path, model_key: str) -> PretrainResult | None:
    side = sidecar_path(path)
    if not (path.is_file() and side.is_file()):
        return None
    try:
        info = json.loads(side.read_text())
        if made_differently(model_key, info):
            return None  # made by another recipe or for another architecture: train again
        return result_from_sidecar(path, info)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # an unreadable sidecar: train again


def pretrain_backbone(
    model_key: str,
    out_dir: str | Path,
    *,
    minutes: float | None = None,
    seed: int = 0,
    force: bool = False,
    steps: int | None = None,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    threads: int | None = None,
) -> PretrainResult:
    """Pretrain tiny catalog model `model_key` on the glyph source task and save its backbone under `out_dir`.

    Reuses an earlier result (weights file plus sidecar) unless `force`. `threads` sets torch's CPU threads
    for the run and restores them after.
    """
    entry = catalog.get_model(model_key)
    if not entry.tiny:
        raise ValueError(f"model {model_key!r} is not a tiny model; pretrainable: {catalog.list_models(tiny=True)}")
    for name, v in (("steps", steps), ("n_train", n_train), ("n_val", n_val), ("threads", threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    path = Path(out_dir) / entry.weights_file
    if not force and (done := _reuse(path, model_key)) is not None:
        return done

    r = recipe_for(model_key)
    if steps is None and minutes is None and "steps" in entry.pretraining:
        steps = int(entry.pretraining["steps"])
    budget_s = 60.0 * (minutes if minutes is not None else DEFAULT_MINUTES)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train, (xv, yv, dv) = _source(n_train, n_val, seed)
        torch.manual_seed(seed)
        built = create_model(model_key, len(SOURCE_CHARS), pretrained=False)
        n_steps, seconds, loss = _train(built, r, train, steps, budget_s, seed)
        val_acc = evaluate(built, xv, yv)
        hard = dv >= 0.5
        val_acc_hard = evaluate(built, xv[hard], yv[hard]) if hard.any() else float("nan")
    finally:
        torch.set_num_threads(old_threads)

    tmp = path.with_name(path.name + ".tmp")
    save_backbone_weights(built, tmp)
    tmp.chmod(0o644)  # safetensors writes owner-only files; weights are shared with every trial process
    tmp.replace(path)
    info: dict[str, Any] = {
        "model": model_key,
        "val_acc": val_acc,
        "val_acc_hard": val_acc_hard,  # held-out images of difficulty >= 0.5
        "final_train_loss": loss,
        "seconds": seconds,
        "steps": n_steps,
        "images_seen": n_steps * r.batch_size,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "num_classes": len(SOURCE_CHARS),
        "threads": threads or old_threads,
        **made_as(model_key, r),
        "optimizer": r.optimizer,
        "torch": torch.__version__,
        "tensors_sha256": tensors_sha256(path),  # so that a copy can be checked against this run
    }
    sidecar_path(path).write_text(json.dumps(info, indent=2) + "\n")
    return PretrainResult(path, seconds, val_acc, r.optimizer, n_steps)


def _verify_shipped(keys: list[str] | None) -> int:
    """Retrain shipped backbones (all of them unless `keys`) and print how each compares; 1 if any is off."""
    from worker import shipped_backbones as sb

    keys = keys or sb.shipped_keys()
    failed = False
    for key in keys:
        try:
            rep = sb.reproduce(key)
        except sb.ShippedBackboneError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(rep.line(), flush=True)
        failed |= not rep.within_tolerance
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    tiny = catalog.list_models(tiny=True)
    p = argparse.ArgumentParser(prog="python -m worker.pretrain", description="Pretrain the tiny backbones.")
    p.add_argument("--out", help="weights root: files go to <out>/<catalog weights_file>")
    p.add_argument("--models", help=f"comma-separated tiny models (default: {','.join(tiny)})")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget per model (default: catalog steps)")
    p.add_argument("--steps", type=int, default=None, help="exact optimizer steps per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN, help="source training images")
    p.add_argument("--n-val", type=int, default=DEFAULT_N_VAL, help="held-out source images")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--force", action="store_true", help="retrain even where weights and sidecar exist")
    p.add_argument(
        "--shipped",
        action="store_true",
        help="install the backbones shipped with the project into --out (checked by hash) instead of training",
    )
    p.add_argument(
        "--verify-shipped",
        action="store_true",
        help="train the shipped demo backbones again from their sidecars and compare (no --out needed)",
    )
    args = p.parse_args(argv)
    keys = [k.strip() for k in (args.models or ",".join(tiny)).split(",") if k.strip()]
    unknown = [k for k in keys if k not in tiny]
    if unknown:
        print(f"error: not tiny catalog models: {unknown}; valid: {tiny}", file=sys.stderr)
        return 2
    named = keys if args.models is not None else None  # the shipped ones are every shipped model unless named
    if args.verify_shipped:
        return _verify_shipped(named)
    if args.out is None:
        print("error: --out is required (the weights root to write to)", file=sys.stderr)
        return 2
    if args.shipped:
        return _install_shipped(named, Path(args.out))
    for key in keys:
        try:
            res = pretrain_backbone(
                key,
                args.out,
                minutes=args.minutes,
                seed=args.seed,
                force=args.force,
                steps=args.steps,
                threads=args.threads,
                n_train=args.n_train,
                n_val=args.n_val,
            )
        except ValueError as e:
            print(f"error: {key}: {e}", file=sys.stderr)
            return 2
        state = "reused" if res.reused else "trained"
        how = f"{res.optimizer}, {res.steps} steps in {res.seconds:.0f}s"
        print(f"{key}: {state} ({how}), val acc {res.val_acc:.3f}, {res.path}")
    return 0


def _install_shipped(keys: list[str] | None, weights_root: Path) -> int:
    """Every shipped backbone (or `keys`) into `weights_root`: what a cluster's weights volume needs for the demo
    preset, without training there."""
    from worker.shipped_backbones import ShippedBackboneError, install, shipped_keys  # they import this module

    for key in keys or shipped_keys():
        try:
            res = install(key, weights_root)
        except ShippedBackboneError as e:
            print(f"error: {key}: {e}", file=sys.stderr)
            return 1
        how = f"{res.optimizer}, {res.steps} steps"
        print(f"{key}: installed the shipped backbone ({how}), source val acc {res.val_acc:.3f}, {res.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
