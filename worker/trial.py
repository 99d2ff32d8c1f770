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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from worker import catalog
from worker.config import ReportCallable, TrialConfig
from worker.data import DatasetBundle, score_split
from worker.loading import start_trial
from worker.memory import peak_memory_bytes
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
from worker.models import BuiltModel
from worker.precision import autocast_for
from worker.records import METRICS, TIE_BREAK, EpochReport, TrialStatus, TrialSummary, tie_break_value
from worker.selection import best_epoch, summarize_trial

CHECKPOINT_FILE = "trial_state.pt"
CHECKPOINT_FORMAT = 2
NAN_CHECK_EVERY = 20  # steps between finite-loss checks on GPU (each check is a host sync)


class CheckpointMismatchError(ValueError):
    """A checkpoint from a different trial, or from an older format, was offered for resuming."""


# ---- what a trial holds ----------------------------------------------------------------------------------------


@dataclass
class _Setup:
    """Everything built once per trial: the model, its data and loaders, and the method's phases."""

    config: TrialConfig
    dataset: catalog.DatasetEntry
    method: catalog.MethodEntry
    device: torch.device
    built: BuiltModel
    bundle: DatasetBundle
    train_loader: DataLoader
    eval_loaders: dict[str, DataLoader]
    loader_rng: torch.Generator
    phases: list[Phase]
    epochs: int
    channels_last: bool


@dataclass
class _PhaseState:
    index: int
    phase: Phase
    optimizer: torch.optim.Optimizer
    scheduler: Any
    unfreezer: GradualUnfreezer | None


def _setup(config: TrialConfig) -> _Setup:
    dset = catalog.get_dataset(config.dataset)
    method = catalog.get_method(config.method)
    family = catalog.get_model(config.model).family
    if not method.applies_to(family):
        raise ValueError(
            f"method {config.method!r} applies only to families {list(method.families or [])}, "
            f"not {family!r} ({config.model})"
        )
    device, built, bundle = start_trial(config)
    channels_last = device.type == "cuda" and built.family in ("convnext", "resnetv2")
    if channels_last:
        built.module.to(memory_format=torch.channels_last)
    train_loader, eval_loaders, loader_rng = _loaders(bundle, config, device)
    epochs = config.epochs_planned()
    return _Setup(
        config=config,
        dataset=dset,
        method=method,
        device=device,
        built=built,
        bundle=bundle,
        train_loader=train_loader,
        eval_loaders=eval_loaders,
        loader_rng=loader_rng,
        phases=plan_phases(method, epochs, config.lr),
        epochs=epochs,
        channels_last=channels_last,
    )


def _loaders(
    bundle: DatasetBundle, config: TrialConfig, device: torch.device
) -> tuple[DataLoader, dict[str, DataLoader], torch.Generator]:
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


def _start_phase(t: _Setup, index: int) -> _PhaseState:
    """Phase `index` from its start: its trainable set, a fresh optimizer and schedule."""
    phase = t.phases[index]
    apply_trainable(t.built, phase)
    unfreezer = GradualUnfreezer(t.built, phase) if phase.schedule == "gradual_unfreeze" else None
    optimizer = build_optimizer(t.built, t.method, phase, t.config.method_options)
    scheduler = build_scheduler(optimizer, phase, len(t.train_loader))
    return _PhaseState(index, phase, optimizer, scheduler, unfreezer)


def _phase_for(t: _Setup, ps: _PhaseState | None, epoch_index: int) -> _PhaseState:
    """The phase that runs epoch `epoch_index` (0-based): the current one, or the next one from its start."""
    for index, phase in enumerate(t.phases):
        if phase.start_epoch <= epoch_index < phase.end_epoch:
            return ps if ps is not None and ps.index == index else _start_phase(t, index)
    raise ValueError(f"epoch {epoch_index} is outside every phase {t.phases}")


# ---- one epoch -------------------------------------------------------------------------------------------------


def train_one_epoch(
    built: BuiltModel, loader: DataLoader, ps: _PhaseState, device: torch.device, channels_last: bool, precision: str
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
        with autocast_for(device, precision):
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
    built: BuiltModel,
    bundle: DatasetBundle,
    loaders: dict[str, DataLoader],
    device: torch.device,
    channels_last: bool,
    precision: str,
) -> dict[str, float]:
    model = built.module
    model.eval()
    out: dict[str, float] = {}
    for name, loader in loaders.items():
        preds, labels, groups, losses = [], [], [], []
        for x, y, g in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, precision):
                logits = model(x)
            y = torch.as_tensor(y)
            preds.append(logits.argmax(dim=1).cpu())
            losses.append(F.cross_entropy(logits.float(), y.to(logits.device), reduction="none").cpu())
            labels.append(y)
            groups.append(torch.as_tensor(g))
        out.update(
            score_split(
                bundle.eval_splits[name],
                torch.cat(preds),
                torch.cat(labels),
                torch.cat(groups),
                bundle.group_weights,
                bundle.num_classes,
                losses=torch.cat(losses),
            )
        )
    return out


def _run_epoch(t: _Setup, ps: _PhaseState, epoch: int, history: list[dict[str, Any]]) -> EpochReport:
    """Train and evaluate epoch `epoch` (from 1); a loss that is not finite ends it unevaluated, `diverged`."""
    if ps.unfreezer is not None:
        ps.unfreezer.on_epoch_start(epoch - 1 - ps.phase.start_epoch)
    lr_now = ps.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    train_loss, seen, finite = train_one_epoch(
        t.built, t.train_loader, ps, t.device, t.channels_last, t.config.precision
    )
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
    t_train = time.perf_counter() - t0
    split_metrics = (
        evaluate(t.built, t.bundle, t.eval_loaders, t.device, t.channels_last, t.config.precision) if finite else {}
    )
    t_epoch = time.perf_counter() - t0
    metrics = {m: split_metrics.get(t.dataset.metrics[m]) for m in METRICS}
    metrics[TIE_BREAK] = tie_break_value(split_metrics, t.dataset.metrics)
    best = best_epoch([*history, {"epoch": epoch, **metrics}], last=t.method.reports_last_epoch(t.dataset.key))
    status = TrialStatus.DIVERGED if not finite else TrialStatus.COMPLETED if epoch == t.epochs else TrialStatus.RUNNING
    return EpochReport(
        epoch=epoch,
        status=status,
        train_loss=train_loss,
        lr_now=lr_now,
        **metrics,
        split_metrics=split_metrics,
        epoch_time_s=t_epoch,
        train_time_s=t_train,
        train_images_per_s=seen / t_train if t_train > 0 else 0.0,
        optimizer_state_bytes=optimizer_state_bytes(ps.optimizer),
        peak_memory_bytes=peak_memory_bytes(),
        trainable_params=trainable_param_count(t.built.module),
        frozen_params=frozen_param_count(t.built.module),
        best_epoch=best["epoch"] if best else None,
        is_best=best is not None and best["epoch"] == epoch,
    )


# ---- checkpoints -----------------------------------------------------------------------------------------------


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


def _save_checkpoint(directory: Path, t: _Setup, ps: _PhaseState, history: list[dict[str, Any]]) -> Path:
    """Everything needed to go on after the last epoch of `history`, written atomically into `directory`."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": t.config.to_dict(),
        "trial_id": t.config.trial_id(),
        "history": history,
        "phase_index": ps.index,
        "model": t.built.module.state_dict(),
        "optimizer": ps.optimizer.state_dict(),
        "scheduler": ps.scheduler.state_dict(),
        "requires_grad": {n: p.requires_grad for n, p in t.built.module.named_parameters()},
        "rng": _rng_state(),
        "loader_rng": t.loader_rng.get_state(),
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


def _resume(t: _Setup, directory: str | Path) -> tuple[list[dict[str, Any]], _PhaseState | None]:
    """The history and phase state of the checkpoint in `directory`, with weights and generators restored."""
    ckpt = load_checkpoint(directory)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"checkpoint {directory} has format {ckpt.get('format')!r}; this worker resumes format {CHECKPOINT_FORMAT}"
        )
    if ckpt["trial_id"] != t.config.trial_id():
        raise CheckpointMismatchError(
            f"checkpoint {directory} belongs to trial {ckpt['trial_id']}, not {t.config.trial_id()}"
        )
    t.built.module.load_state_dict(ckpt["model"])
    history = ckpt["history"]
    ps = None
    if len(history) < t.epochs:
        ps = _start_phase(t, ckpt["phase_index"])  # the checkpoint's phase; the next epoch may start another
        for n, p in t.built.module.named_parameters():
            p.requires_grad_(ckpt["requires_grad"][n])
        ps.optimizer.load_state_dict(ckpt["optimizer"])
        ps.scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"])
    t.loader_rng.set_state(ckpt["loader_rng"])
    return history, ps


# ---- the trial -------------------------------------------------------------------------------------------------


def run_trial(config: TrialConfig, report: ReportCallable, *, resume_from: str | Path | None = None) -> TrialSummary:
    """Fine-tune, evaluate and report every epoch; the summary is the result at the best-ID-validation epoch.

    A linear probe is one logistic-regression fit instead (`worker.linear_probe`); LP-FT starts from the probe's
    head, fitted before the first epoch (a resumed trial has it in its checkpoint).
    """
    if catalog.get_method(config.method).is_linear_probe:
        from worker.linear_probe import run_linear_probe_trial  # scikit-learn, only where a probe runs

        return run_linear_probe_trial(config, report)
    t = _setup(config)
    history: list[dict[str, Any]] = []
    ps: _PhaseState | None = None
    if resume_from is not None:
        history, ps = _resume(t, resume_from)
    elif t.method.lp_ft:
        from worker.linear_probe import fit_lp_ft_head

        fit_lp_ft_head(config, t.built, t.bundle, t.device)
    ckpt_root = Path(tempfile.mkdtemp(prefix=f"trial-{config.trial_id()}-"))
    try:
        while len(history) < t.epochs:
            epoch = len(history) + 1
            ps = _phase_for(t, ps, epoch - 1)
            epoch_report = _run_epoch(t, ps, epoch, history)
            history.append(epoch_report.to_dict())
            if epoch_report.status == TrialStatus.DIVERGED:
                report(epoch_report, None)  # nothing worth resuming from
                break
            report(epoch_report, _save_checkpoint(ckpt_root / f"epoch_{epoch:04d}", t, ps, history))
            shutil.rmtree(ckpt_root / f"epoch_{epoch - 1:04d}", ignore_errors=True)  # the worker's copy is used
        status = history[-1]["status"] if history else TrialStatus.COMPLETED
        last = t.method.reports_last_epoch(t.dataset.key)
        return summarize_trial(history, status=status, epochs_planned=t.epochs, last_epoch=last)
    finally:
        shutil.rmtree(ckpt_root, ignore_errors=True)
