"""A test double of `worker.trial.run_trial`: the same signature, reports and checkpoints, no torch.

Its numbers are a fixed function of (lr, epoch), so a resumed run ends with exactly the numbers of an
uninterrupted one. Its `data_root` is a gate a test opens epoch by epoch, across processes and drivers: while
`<data_root>/budget` holds N, only N distinct (trial, epoch) pairs may ever start (re-running an epoch after a
resume is free); without the file nothing waits. A test can then stop a driver while work is certainly left,
however fast the machine.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from worker.config import ReportCallable, TrialConfig
from worker.records import EpochReport, TrialStatus, TrialSummary

STATE_FILE = "fake_state.json"


def score(lr: float, epoch: int, epochs: int) -> float:
    """ID validation accuracy: best at lr 1e-2, rising with the epoch."""
    return max(0.0, 0.9 - 0.1 * abs(math.log10(lr) + 2) - 0.02 * (epochs - epoch))


def _wait_for_the_gate(gate: Path, name: str) -> None:
    started = gate / "started"
    while (gate / "budget").exists() and not (started / name).exists():
        if len(list(started.glob("*"))) < int((gate / "budget").read_text()):
            break
        time.sleep(0.05)
    started.mkdir(parents=True, exist_ok=True)
    (started / name).touch()


def run_trial(config: TrialConfig, report: ReportCallable, *, resume_from: str | Path | None = None) -> TrialSummary:
    epochs = config.epochs or 3
    start = 0
    if resume_from is not None:
        state = json.loads((Path(resume_from) / STATE_FILE).read_text())
        if state["trial_id"] != config.trial_id():
            raise ValueError("checkpoint of another trial")
        start = state["epoch"]
    root = Path(tempfile.mkdtemp(prefix="fake-trial-"))
    try:
        for epoch in range(start + 1, epochs + 1):
            _wait_for_the_gate(Path(config.data_root), f"{config.trial_id()}-{epoch}")
            acc = score(config.lr, epoch, epochs)
            ckpt = root / f"epoch_{epoch}"
            ckpt.mkdir()
            (ckpt / STATE_FILE).write_text(json.dumps({"trial_id": config.trial_id(), "epoch": epoch}))
            report(
                EpochReport(
                    epoch=epoch,
                    train_loss=1.0 / epoch,
                    lr_now=config.lr,
                    id_val=acc,
                    id_test=acc,
                    ood_test=acc / 2,
                    split_metrics={"val/acc": acc},
                    epoch_time_s=0.01,
                    train_time_s=0.01,
                    train_images_per_s=1000.0,
                    optimizer_state_bytes=8,
                    peak_memory_bytes=1024,
                    best_epoch=epoch,
                    is_best=True,
                    status=TrialStatus.COMPLETED if epoch == epochs else TrialStatus.RUNNING,
                    trainable_params=4,
                    frozen_params=0,
                ),
                ckpt,
            )
        return TrialSummary(status=TrialStatus.COMPLETED, epochs_planned=epochs, epochs_done=epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
