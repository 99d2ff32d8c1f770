"""What `load_dataset` returns: the training set and the named evaluation splits of one benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worker.catalog import DatasetEntry

ACC = "acc"
WEIGHTED_ACC = "weighted_acc"
WORST_GROUP_ACC = "worst_group_acc"
PLAIN_METRICS = (ACC,)
GROUP_METRICS = (ACC, WEIGHTED_ACC, WORST_GROUP_ACC)


@dataclass
class EvalSplit:
    """One evaluation split; its dataset yields (image_tensor, label, group), group -1 where the split has none."""

    name: str
    dataset: torch.utils.data.Dataset
    metrics: tuple[str, ...]


@dataclass
class DatasetBundle:
    """A benchmark ready to train on: train yields (image_tensor, label); eval splits carry the test transform."""

    entry: DatasetEntry
    train: torch.utils.data.Dataset
    eval_splits: dict[str, EvalSplit]
    group_weights: dict[int, float] | None  # Waterbirds: train group sizes, the weights of weighted_acc
    num_classes: int
    train_eval: torch.utils.data.Dataset | None = None  # the training images in the test transform (features)
