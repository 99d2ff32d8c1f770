"""What one trial is, and what it reports every epoch.

A trial is (model, dataset, method, learning rate, seed) plus the knobs that do not change the science
(batch size, data and weights locations, device). The worker knows nothing of Ray, HTTP or sweeps: it takes
a `TrialConfig`, a `report(metrics, checkpoint_dir)` callable and an optional checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Trial outcomes. `diverged` is a clean stop on a NaN/inf loss, never a crash.
STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"
STATUS_FAILED = "failed"
STATUS_STOPPED = "stopped"  # stopped early by a scheduler

# Keys of every per-epoch report (the `epochs` Parquet table adds the trial's identity around them).
# Metric values are fractions in [0, 1]; tables show percentages.
EPOCH_REPORT_KEYS = (
    "epoch",  # epochs completed, from 1
    "train_loss",
    "lr",  # LR of the main parameter group at the end of the epoch
    "id_val",  # the dataset's selection metric (catalog `metrics.id_val`)
    "id_test",  # the dataset's reported ID metric
    "ood_test",  # the dataset's reported OOD metric
    "split_metrics",  # {"<split>/<metric>": value} for every evaluation split
    "epoch_time_s",  # training + evaluation wall time of this epoch
    "train_time_s",  # training part only
    "train_images_per_s",
    "optimizer_state_bytes",
    "peak_memory_bytes",  # CUDA peak on GPU, process RSS high-water mark on CPU
    "best_epoch",  # epoch with the best id_val so far
    "is_best",  # this epoch is the best so far
    "status",  # "running" until the last report, then a final STATUS_*
    "trainable_params",
    "frozen_params",
)


@dataclass(frozen=True)
class TrialConfig:
    model: str
    dataset: str
    method: str
    lr: float
    seed: int = 0
    epochs: int | None = None  # None: the dataset's catalog default
    batch_size: int = 32
    data_root: str = "data"
    weights: str | None = None  # a weights file; None: <weights_root>/<catalog weights_file>
    weights_root: str | None = None  # None: env SHIFTSWEEP_WEIGHTS
    pretrained: bool = True  # False builds a randomly initialised backbone (tests only)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    max_train_images: int | None = None  # a fixed seeded subset of the training split
    max_eval_images: int | None = None  # per evaluation split
    method_options: Mapping[str, Any] = field(default_factory=dict)  # overrides of the catalog's options
    threads: int | None = None  # torch intra-op threads on CPU

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method_options"] = dict(self.method_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown trial config keys {sorted(unknown)}; valid keys: {sorted(names)}")
        return cls(**dict(d))

    def science_key(self) -> dict[str, Any]:
        """The fields that change a trial's result; the trial id hashes exactly these."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "method": self.method,
            "lr": float(self.lr),
            "seed": int(self.seed),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_train_images": self.max_train_images,
            "max_eval_images": self.max_eval_images,
            "pretrained": self.pretrained,
            "method_options": dict(sorted(self.method_options.items())),
        }

    def trial_id(self) -> str:
        blob = json.dumps(self.science_key(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class ReportFn(Protocol):
    def __call__(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...


ReportCallable = Callable[[dict[str, Any], "Path | None"], None]
