"""What a trial says about itself: its status, its report for each epoch, and its summary.

Every layer speaks these records. The Parquet schemas (`orchestrator.schema`), the REST API's trial and epoch
shapes (`api.server.schemas`) and the tables' per-LR metric columns are built from the fields below, so adding a
metric takes a name in `METRICS` and a field on both records here, plus the split each dataset reports it from
(`metrics` in configs/datasets.yaml).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal


class TrialStatus:
    """The states of a trial, and the sets every layer asks about. Values are the strings stored in Parquet."""

    PENDING = "pending"  # listed, not started (or put back by a resume)
    RUNNING = "running"
    COMPLETED = "completed"  # ran every planned epoch
    DIVERGED = "diverged"  # stopped itself on a NaN/inf loss: a result of the LR, never a crash
    STOPPED = "stopped"  # stopped early by the sweep's scheduler
    FAILED = "failed"  # raised; a resume runs it again
    CANCELLED = "cancelled"  # the sweep was stopped before it ended; a resume runs it again

    ALL = (PENDING, RUNNING, COMPLETED, DIVERGED, STOPPED, FAILED, CANCELLED)
    ENDED = frozenset({COMPLETED, DIVERGED, STOPPED, FAILED, CANCELLED})  # neither running nor waiting to run
    DONE = frozenset({COMPLETED, DIVERGED, STOPPED})  # never run again, not even by a resume
    HAS_RESULT = frozenset({COMPLETED, STOPPED})  # its best epoch may stand for its LR
    SELF_ENDED = frozenset({COMPLETED, DIVERGED})  # how a trial may end itself, in its own last report


TrialStatusName = Literal["pending", "running", "completed", "diverged", "stopped", "failed", "cancelled"]

METRICS = ("id_val", "id_test", "ood_test")  # fractions in [0, 1]; each dataset maps them to "<split>/<metric>"
SELECTION_METRIC = "id_val"  # the only metric that chooses anything: epochs, LRs, early stops. Never OOD.
TIE_BREAK = "id_val_loss"  # lower wins where SELECTION_METRIC ties exactly (a saturated split: 100% at several LRs)
LOSS = "loss"  # "<split>/loss": the split's mean cross-entropy, an evaluation record beside its metrics
CONSTANT_SUFFIX = "@constant"  # "<split>/<metric>@constant": the best score of one class predicted for every image


def split_of(metric_key: str) -> str:
    """ "val/weighted_acc" -> "val": the evaluation split a "<split>/<metric>" key is measured on."""
    split, _, metric = metric_key.rpartition("/")
    if not split or not metric:
        raise ValueError(f"a metric key is '<split>/<metric>', got {metric_key!r}")
    return split


def loss_key(metric_key: str) -> str:
    """ "val/weighted_acc" -> "val/loss": the loss recorded for the split a "<split>/<metric>" key is measured on."""
    return f"{split_of(metric_key)}/{LOSS}"


def tie_break_value(split_metrics: Mapping[str, float | None], dataset_metrics: Mapping[str, str]) -> float | None:
    """An evaluation's `TIE_BREAK`: the loss of the split the dataset selects on (its `metrics` map each of METRICS
    to a "<split>/<metric>" key), None when the evaluation recorded none."""
    return split_metrics.get(loss_key(dataset_metrics[SELECTION_METRIC]))


def _doc(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class EpochReport:
    """One epoch of one trial, as the worker reports it after the epoch's evaluation."""

    epoch: int = field(metadata={"doc": "epochs completed, from 1"})
    status: str = _doc("running until the trial's last report, then completed or diverged", TrialStatus.RUNNING)
    train_loss: float | None = _doc("mean training loss of the epoch")
    lr_now: float | None = _doc("LR of the main parameter group when the epoch started")
    id_val: float | None = _doc("the dataset's selection metric (catalog metrics.id_val)")
    id_test: float | None = _doc("the dataset's reported ID metric")
    ood_test: float | None = _doc("the dataset's reported OOD metric")
    id_val_loss: float | None = _doc(
        "cross-entropy on the id_val split, its groups weighted as id_val weighs them: breaks exact id_val ties"
    )
    split_metrics: Mapping[str, float | None] = field(
        default_factory=dict, metadata={"doc": "every evaluation split's metrics, keyed '<split>/<metric>'"}
    )
    epoch_time_s: float | None = _doc("training and evaluation wall time of the epoch")
    train_time_s: float | None = _doc("training part of epoch_time_s")
    train_images_per_s: float | None = _doc("training throughput")
    optimizer_state_bytes: int | None = _doc("bytes of optimizer state (moments, momentum, anchors)")
    peak_memory_bytes: int | None = _doc("CUDA allocator peak on GPU, resident-set high-water mark on CPU")
    trainable_params: int | None = _doc("parameters the optimizer updates")
    frozen_params: int | None = _doc("parameters held fixed")
    best_epoch: int | None = _doc("the epoch with the best id_val so far (ties: lower id_val_loss, then earliest)")
    is_best: bool = _doc("this epoch is best_epoch", False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EpochReport:
        """A report from any mapping that holds its fields (a Tune result, a Parquet row); other keys ignored."""
        if "epoch" not in data:
            raise ValueError(f"an epoch report needs an 'epoch' key; got keys {sorted(data)}")
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if data.get(f.name) is not None})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["split_metrics"] = dict(self.split_metrics)
        return out

    @property
    def evaluated(self) -> bool:
        """The epoch has a finite selection metric (a diverged epoch is never evaluated)."""
        return is_finite(getattr(self, SELECTION_METRIC))


@dataclass(frozen=True)
class TrialSummary:
    """One trial as it stands: its status and its result at its best-ID-validation epoch."""

    status: str = _doc("one of TrialStatus.ALL", TrialStatus.PENDING)
    epochs_planned: int = _doc("epochs the trial runs unless stopped", 0)
    epochs_done: int = _doc("epochs trained and evaluated", 0)
    best_epoch: int | None = _doc(
        "the epoch with the best id_val (ties: lower id_val_loss, then earliest); null before any"
    )
    id_val: float | None = _doc("at best_epoch")
    id_test: float | None = _doc("at best_epoch")
    ood_test: float | None = _doc("at best_epoch")
    final_train_loss: float | None = _doc("training loss of the last epoch run")
    wall_time_s: float | None = _doc("sum of the epochs' wall times")
    optimizer_state_bytes: int | None = _doc("of the last epoch run")
    peak_memory_bytes: int | None = _doc("the largest over the epochs run")
    trainable_params: int | None = _doc("of the last epoch run")
    frozen_params: int | None = _doc("of the last epoch run")
    error: str | None = _doc("why the trial failed")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LayerGradient:
    """One layer's row of the layer-gradient probe (the paper's Figure 2), at the pretrained weights."""

    layer: str = _doc("the layer's name")
    kind: str = _doc("embed | attn | mlp | block | norm | head | other")
    depth: int = _doc("position from the input (0) to the head")
    num_params: int = _doc("parameters in the layer")
    grad_norm: float = _doc("mean over minibatches of the layer's gradient 2-norm")
    param_norm: float = _doc("2-norm of the layer's parameters")
    grad_norm_over_param_norm: float = _doc("grad_norm / param_norm")
    grad_norm_over_sqrt_numel: float = _doc("grad_norm / sqrt(num_params)")
    batches: int = _doc("minibatches averaged")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def is_finite(value: Any) -> bool:
    """A real number that is neither NaN nor infinite (None, strings and booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@cache
def record_fields(record: type) -> tuple[tuple[str, Any, str], ...]:
    """(name, type, doc) of each field of a record, with the type resolved: what schemas and rows are built from.

    Cached: the results writer turns every report into a row with it."""
    hints = typing.get_type_hints(record)
    return tuple((f.name, hints[f.name], f.metadata.get("doc", "")) for f in dataclasses.fields(record))
