"""A test double of `worker.trial.run_trial`: the same signature, reports and checkpoints, no torch.

Its numbers are a fixed function of (lr, epoch), so a resumed run ends with exactly the numbers of an
uninterrupted one; `method_options` may hold `sleep_s` (seconds per epoch) to give a test time to interrupt it.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from worker.config import ReportCallable, TrialConfig

STATE_FILE = "fake_state.json"


def score(lr: float, epoch: int, epochs: int) -> float:
    """ID validation accuracy: best at lr 1e-2, rising with the epoch."""
    return max(0.0, 0.9 - 0.1 * abs(math.log10(lr) + 2) - 0.02 * (epochs - epoch))


def run_trial(config: TrialConfig, report: ReportCallable, *, resume_from: str | Path | None = None) -> dict[str, Any]:
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
            time.sleep(float(config.method_options.get("sleep_s", 0.0)))
            acc = score(config.lr, epoch, epochs)
            ckpt = root / f"epoch_{epoch}"
            ckpt.mkdir()
            (ckpt / STATE_FILE).write_text(json.dumps({"trial_id": config.trial_id(), "epoch": epoch}))
            report(
                {
                    "epoch": epoch,
                    "train_loss": 1.0 / epoch,
                    "lr": config.lr,
                    "id_val": acc,
                    "id_test": acc,
                    "ood_test": acc / 2,
                    "split_metrics": {"val/acc": acc},
                    "epoch_time_s": 0.01,
                    "train_time_s": 0.01,
                    "train_images_per_s": 1000.0,
                    "optimizer_state_bytes": 8,
                    "peak_memory_bytes": 1024,
                    "best_epoch": epoch,
                    "is_best": True,
                    "status": "completed" if epoch == epochs else "running",
                    "trainable_params": 4,
                    "frozen_params": 0,
                },
                ckpt,
            )
        return {"status": "completed", "epochs_done": epochs}
    finally:
        shutil.rmtree(root, ignore_errors=True)
