"""One fine-tuning trial: (model, dataset, method, LR, seed), evaluated on every ID and OOD split each epoch.

`run_trial` is the only door. It reports every epoch through a callable, writes a self-contained checkpoint
for that epoch, stops cleanly on a NaN/inf loss, and resumes from any checkpoint it wrote with the same
numbers an uninterrupted run would have produced.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from worker import catalog
from worker.config import STATUS_COMPLETED, STATUS_DIVERGED, ReportCallable, TrialConfig
from worker.data import DatasetBundle, compute_split_metrics, load_dataset
from worker.memory import peak_memory_bytes, reset_peak_memory
from worker.methods import (
    GradualUnfreezer,
    Phase,
    apply_trainable,
    build_optimizer,
    build_scheduler,
    frozen_param_count,
    optimizer_state_bytes,
    plan_phases,
    trainable_param_count,
)
from worker.models import BuiltModel, create_model

CHECKPOINT_FILE = "trial_state.pt"
NAN_CHECK_EVERY = 20  # steps between finite-loss checks on GPU (each check is a host sync)


class CheckpointMismatchError(ValueError):
    """A checkpoint from a different trial was offered for resuming."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class _Progress:
    """What carries over between epochs and into a checkpoint."""

    epoch: int = 0  # epochs completed
    best_epoch: int | None = None
    best_id_val: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass
class _PhaseState:
    index: int
    phase: Phase
    optimizer: torch.optim.Optimizer
    scheduler: Any
    unfreezer: GradualUnfreezer | None


def _start_phase(
    built: BuiltModel,
    method: catalog.MethodEntry,
    phases: list[Phase],
    index: int,
    steps_per_epoch: int,
    options: dict[str, Any],
) -> _PhaseState:
    phase = phases[index]
    apply_trainable(built, phase)
    unfreezer = GradualUnfreezer(built, phase) if phase.schedule == "gradual_unfreeze" else None
    optimizer = build_optimizer(built, method, phase, options)
    scheduler = build_scheduler(optimizer, phase, steps_per_epoch)
    return _PhaseState(index, phase, optimizer, scheduler, unfreezer)


def _phase_index(phases: list[Phase], epoch: int) -> int:
    for i, p in enumerate(phases):
        if p.start_epoch <= epoch < p.end_epoch:
            return i
    raise ValueError(f"epoch {epoch} is outside every phase {phases}")


def _loaders(
    bundle: DatasetBundle, config: TrialConfig, device: torch.device
) -> tuple[DataLoader, dict, torch.Generator]:
    gen = torch.Generator()
    gen.manual_seed(config.seed)
    pin = device.type == "cuda"
    train = DataLoader(
        bundle.train,
        batch_size=config.batch_size,
        shuffle=True,
        generator=gen,
        num_workers=config.num_workers,
        pin_memory=pin,
        drop_last=False,
        persistent_workers=config.num_workers > 0,
    )
    evals = {
        name: DataLoader(
            split.dataset,
            batch_size=max(config.batch_size, 128),
            shuffle=False,
            num_workers=config.num_workers,
            pin_memory=pin,
        )
        for name, split in bundle.eval_splits.items()
    }
    return train, evals, gen


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train_one_epoch(
    built: BuiltModel, loader: DataLoader, ps: _PhaseState, device: torch.device, channels_last: bool
) -> tuple[float, int, bool]:
    """Mean training loss, images seen, and whether the loss stayed finite."""
    model = built.module
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    running = torch.zeros((), device=device)
    seen = 0
    check_every = NAN_CHECK_EVERY if device.type == "cuda" else 1
    for step, (x, y) in enumerate(loader, start=1):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            loss = loss_fn(model(x), y)
        if step % check_every == 0 and not torch.isfinite(loss).item():
            return float("nan"), seen, False
        loss.backward()
        ps.optimizer.step()
        ps.optimizer.zero_grad(set_to_none=True)
        ps.scheduler.step()
        running += loss.detach().float() * y.shape[0]
        seen += y.shape[0]
    mean = (running / max(seen, 1)).item()
    return mean, seen, math.isfinite(mean)


@torch.inference_mode()
def evaluate(
    built: BuiltModel, bundle: DatasetBundle, loaders: dict[str, DataLoader], device: torch.device, channels_last: bool
) -> dict[str, float]:
    model = built.module
    model.eval()
    out: dict[str, float] = {}
    for name, loader in loaders.items():
        preds, labels, groups = [], [], []
        for x, y, g in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                logits = model(x)
            preds.append(logits.argmax(dim=1).cpu())
            labels.append(torch.as_tensor(y))
            groups.append(torch.as_tensor(g))
        out.update(
            compute_split_metrics(
                bundle.eval_splits[name], torch.cat(preds), torch.cat(labels), torch.cat(groups), bundle.group_weights
            )
        )
    return out


def _save_checkpoint(
    directory: Path, config: TrialConfig, progress: _Progress, built: BuiltModel, ps: _PhaseState, gen: torch.Generator
) -> Path:
    state = {
        "format": 1,
        "config": config.to_dict(),
        "trial_id": config.trial_id(),
        "epoch": progress.epoch,
        "phase_index": ps.index,
        "best_epoch": progress.best_epoch,
        "best_id_val": progress.best_id_val,
        "history": progress.history,
        "elapsed_s": progress.elapsed_s,
        "model": built.module.state_dict(),
        "optimizer": ps.optimizer.state_dict(),
        "scheduler": ps.scheduler.state_dict(),
        "requires_grad": {n: p.requires_grad for n, p in built.module.named_parameters()},
        "rng": _rng_state(),
        "loader_rng": gen.get_state(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(directory / CHECKPOINT_FILE)
    return directory


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no trial checkpoint at {path}; expected the {CHECKPOINT_FILE} a trial wrote")
    return torch.load(path, map_location="cpu", weights_only=False)


def _summary(
    config: TrialConfig, progress: _Progress, status: str, built: BuiltModel, opt_bytes: int
) -> dict[str, Any]:
    best = next((h for h in progress.history if h["epoch"] == progress.best_epoch), None)
    return {
        "trial_id": config.trial_id(),
        "status": status,
        "epochs_done": progress.epoch,
        "best_epoch": progress.best_epoch,
        "id_val": best["id_val"] if best else None,
        "id_test": best["id_test"] if best else None,
        "ood_test": best["ood_test"] if best else None,
        "wall_time_s": progress.elapsed_s,
        "optimizer_state_bytes": opt_bytes,
        "peak_memory_bytes": peak_memory_bytes(),
        "trainable_params": trainable_param_count(built.module),
        "frozen_params": frozen_param_count(built.module),
    }


def run_trial(config: TrialConfig, report: ReportCallable, *, resume_from: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune, evaluate and report every epoch; return the summary at the best-ID-validation epoch."""
    dset = catalog.get_dataset(config.dataset)
    method = catalog.get_method(config.method)
    mentry = catalog.get_model(config.model)
    if not method.applies_to(mentry.family):
        raise ValueError(
            f"method {config.method!r} applies only to families {list(method.families or [])}, "
            f"not {mentry.family!r} ({config.model})"
        )
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise ValueError(f"lr must be a finite number > 0, got {config.lr}")
    epochs = config.epochs or dset.epochs
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    reset_peak_memory(device)

    built = create_model(
        config.model,
        dset.num_classes,
        weights=config.weights,
        weights_root=config.weights_root,
        pretrained=config.pretrained,
        device=device,
    )
    channels_last = device.type == "cuda" and built.family in ("convnext", "resnetv2")
    if channels_last:
        built.module.to(memory_format=torch.channels_last)
    bundle = load_dataset(
        config.dataset,
        config.data_root,
        input_size=built.input_size,
        mean=built.mean,
        std=built.std,
        max_train_images=config.max_train_images,
        max_eval_images=config.max_eval_images,
        seed=config.seed,
    )
    train_loader, eval_loaders, gen = _loaders(bundle, config, device)
    steps_per_epoch = len(train_loader)
    phases = plan_phases(method, epochs, config.lr)
    options = dict(config.method_options)

    progress = _Progress()
    ps: _PhaseState | None = None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        if ckpt["trial_id"] != config.trial_id():
            raise CheckpointMismatchError(
                f"checkpoint {resume_from} belongs to trial {ckpt['trial_id']}, not {config.trial_id()}"
            )
        built.module.load_state_dict(ckpt["model"])
        progress = _Progress(ckpt["epoch"], ckpt["best_epoch"], ckpt["best_id_val"], ckpt["history"], ckpt["elapsed_s"])
        if progress.epoch < epochs:
            ps = _start_phase(built, method, phases, ckpt["phase_index"], steps_per_epoch, options)
            for n, p in built.module.named_parameters():
                p.requires_grad_(ckpt["requires_grad"][n])
            ps.optimizer.load_state_dict(ckpt["optimizer"])
            ps.scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        gen.set_state(ckpt["loader_rng"])

    status = STATUS_COMPLETED
    last_dir: Path | None = None
    ckpt_root = Path(tempfile.mkdtemp(prefix=f"trial-{config.trial_id()}-"))
    try:
        while progress.epoch < epochs:
            epoch = progress.epoch  # 0-based index of the epoch about to run
            index = _phase_index(phases, epoch)
            if ps is None or ps.index != index:
                ps = _start_phase(built, method, phases, index, steps_per_epoch, options)
            if ps.unfreezer is not None:
                ps.unfreezer.on_epoch_start(epoch - ps.phase.start_epoch)
            lr_now = ps.optimizer.param_groups[0]["lr"]

            t0 = time.perf_counter()
            train_loss, seen, finite = train_one_epoch(built, train_loader, ps, device, channels_last)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t_train = time.perf_counter() - t0
            opt_bytes = optimizer_state_bytes(ps.optimizer)
            if not finite:
                status = STATUS_DIVERGED
                progress.elapsed_s += t_train
                metrics = _epoch_metrics(
                    progress, epoch + 1, train_loss, lr_now, {}, dset, t_train, t_train, seen, opt_bytes, built, status
                )
                report(metrics, None)
                break
            split_metrics = evaluate(built, bundle, eval_loaders, device, channels_last)
            t_epoch = time.perf_counter() - t0
            progress.elapsed_s += t_epoch
            progress.epoch = epoch + 1
            final = progress.epoch == epochs
            metrics = _epoch_metrics(
                progress,
                epoch + 1,
                train_loss,
                lr_now,
                split_metrics,
                dset,
                t_epoch,
                t_train,
                seen,
                opt_bytes,
                built,
                STATUS_COMPLETED if final else "running",
            )
            progress.history.append({k: metrics[k] for k in ("epoch", "id_val", "id_test", "ood_test", "train_loss")})
            new_dir = _save_checkpoint(ckpt_root / f"epoch_{progress.epoch:04d}", config, progress, built, ps, gen)
            report(metrics, new_dir)
            if last_dir is not None:
                shutil.rmtree(last_dir, ignore_errors=True)
            last_dir = new_dir
        return _summary(config, progress, status, built, optimizer_state_bytes(ps.optimizer) if ps else 0)
    finally:
        shutil.rmtree(ckpt_root, ignore_errors=True)


def _epoch_metrics(
    progress: _Progress,
    epoch: int,
    train_loss: float,
    lr_now: float,
    split_metrics: dict[str, float],
    dset: catalog.DatasetEntry,
    t_epoch: float,
    t_train: float,
    seen: int,
    opt_bytes: int,
    built: BuiltModel,
    status: str,
) -> dict[str, Any]:
    """One epoch's report; updates the best-epoch bookkeeping in `progress`."""
    id_val = split_metrics.get(dset.metrics["id_val"])
    is_best = id_val is not None and id_val > progress.best_id_val
    if is_best:
        progress.best_id_val = id_val
        progress.best_epoch = epoch
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "lr": lr_now,
        "id_val": id_val,
        "id_test": split_metrics.get(dset.metrics["id_test"]),
        "ood_test": split_metrics.get(dset.metrics["ood_test"]),
        "split_metrics": split_metrics,
        "epoch_time_s": t_epoch,
        "train_time_s": t_train,
        "train_images_per_s": seen / t_train if t_train > 0 else 0.0,
        "optimizer_state_bytes": opt_bytes,
        "peak_memory_bytes": peak_memory_bytes(),
        "best_epoch": progress.best_epoch,
        "is_best": is_best,
        "status": status,
        "trainable_params": trainable_param_count(built.module),
        "frozen_params": frozen_param_count(built.module),
    }


def run_probe(
    model: str,
    dataset: str,
    *,
    data_root: str | Path,
    weights: str | None = None,
    weights_root: str | None = None,
    pretrained: bool = True,
    max_batches: int = 8,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """The layer-gradient probe (PROTOCOL.md, Figure 2) at the pretrained initialisation."""
    from worker.probe import layer_gradient_probe

    dset = catalog.get_dataset(dataset)
    dev = resolve_device(device)
    seed_everything(seed)
    built = create_model(
        model, dset.num_classes, weights=weights, weights_root=weights_root, pretrained=pretrained, device=dev
    )
    bundle = load_dataset(
        dataset,
        data_root,
        input_size=built.input_size,
        mean=built.mean,
        std=built.std,
        max_train_images=max_batches * batch_size,
        seed=seed,
    )
    gen = torch.Generator()
    gen.manual_seed(seed)
    loader = DataLoader(bundle.train, batch_size=batch_size, shuffle=True, generator=gen)
    return layer_gradient_probe(built, loader, max_batches=max_batches, device=dev)
