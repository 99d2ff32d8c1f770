"""What one trial is, checked when it is made, and how it hands out its epoch reports (`worker.records`).

A trial is (model, dataset, method, learning rate, seed) plus the knobs that do not change the science
(batch size, data and weights locations, device). The worker knows nothing of Ray, HTTP or sweeps: it takes
a `TrialConfig`, a `report(EpochReport, checkpoint_dir)` callable and an optional checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker import catalog
from worker.records import EpochReport, is_finite

PRECISIONS = ("fp32", "bf16")
"""fp32: full precision, as the paper trained (and measured its Table 4 memory); bf16: autocast, for speed."""
PAPER_PRECISION = "fp32"


def learning_rate(value: Any) -> float:
    """The one check of a learning rate, wherever one enters: a finite number > 0 (not a boolean), as a float."""
    if not is_finite(value) or value <= 0:
        raise ValueError(f"a learning rate must be a finite number > 0, got {value!r}")
    return float(value)


def _whole(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**63:
        raise ValueError(f"{name} must be a whole number from {low} to 2**63 - 1, got {value!r}")


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
    precision: str = PAPER_PRECISION  # one of PRECISIONS: the forward passes' arithmetic

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", learning_rate(self.lr))
        _whole("seed", self.seed, low=0)
        _whole("batch_size", self.batch_size, low=1)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("epochs", "max_train_images", "max_eval_images"):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name), low=1)

    def epochs_planned(self) -> int:
        """The epochs the trial runs unless stopped: its own setting, else its dataset's catalog default; a linear
        probe (one logistic-regression fit) counts as one."""
        if catalog.get_method(self.method).is_linear_probe:
            return 1
        return self.epochs or catalog.get_dataset(self.dataset).epochs

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
        """The fields that change a trial's result; the trial id hashes exactly these.

        Precision enters only when it is not the paper's fp32, so trials recorded before it was a field keep
        their ids.
        """
        key = {
            "model": self.model,
            "dataset": self.dataset,
            "method": self.method,
            "lr": self.lr,
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_train_images": self.max_train_images,
            "max_eval_images": self.max_eval_images,
            "pretrained": self.pretrained,
            "method_options": dict(sorted(self.method_options.items())),
        }
        if self.precision != PAPER_PRECISION:
            key["precision"] = self.precision
        return key

    def trial_id(self) -> str:
        blob = json.dumps(self.science_key(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


ReportCallable = Callable[[EpochReport, "Path | None"], None]
"""How a trial hands out each epoch's report, with the directory of that epoch's checkpoint (None: none)."""
