"""Accuracy, train-weighted group accuracy and worst-group accuracy of one evaluation split.

WILDS' own `eval()` needs torch_scatter; these few lines compute the same numbers directly. Waterbirds'
weighted accuracy weights each (label, background) group's accuracy by that group's size in the training set,
so a balanced test set reports what the training distribution would see (PROTOCOL.md).
"""

from __future__ import annotations

import torch

from worker.data.bundle import ACC, GROUP_METRICS, WEIGHTED_ACC, WORST_GROUP_ACC, EvalSplit
from worker.records import CONSTANT_SUFFIX, LOSS


def _group_means(values: torch.Tensor, groups: torch.Tensor) -> dict[int, float]:
    out = {}
    for g in torch.unique(groups).tolist():
        if g < 0:
            continue
        mask = groups == g
        out[int(g)] = values[mask].double().mean().item()
    return out


def _weighted(per_group: dict[int, float], weights: dict[int, float], split: str) -> float:
    """Mean of the present groups' accuracies weighted by train group size; absent groups drop out."""
    present = {g: float(weights.get(g, 0.0)) for g in per_group}
    total = sum(present.values())
    if total <= 0:
        raise ValueError(
            f"split {split!r}: none of its groups {sorted(per_group)} has a positive train weight in {weights}"
        )
    return sum(per_group[g] * w for g, w in present.items()) / total


def compute_split_metrics(
    split: EvalSplit,
    preds: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor,
    group_weights: dict[int, float] | None,
) -> dict[str, float]:
    """{"<split>/<metric>": fraction in [0, 1]} for every metric the split reports.

    `preds` are predicted class ids (N,) or logits (N, C); `groups` hold -1 for examples without a group.
    """
    preds, labels, groups = torch.as_tensor(preds), torch.as_tensor(labels), torch.as_tensor(groups)
    if preds.ndim == 2:
        preds = preds.argmax(dim=1)
    if preds.ndim != 1 or labels.shape != preds.shape or groups.shape != preds.shape:
        raise ValueError(
            f"split {split.name!r}: preds, labels and groups must be 1-D of one length, got shapes "
            f"{tuple(preds.shape)}, {tuple(labels.shape)}, {tuple(groups.shape)}"
        )
    if preds.numel() == 0:
        raise ValueError(f"split {split.name!r}: no predictions to score")
    unknown = set(split.metrics) - set(GROUP_METRICS)
    if unknown:
        raise ValueError(f"split {split.name!r}: unknown metrics {sorted(unknown)}; valid: {list(GROUP_METRICS)}")

    correct = preds.long() == labels.long()
    out = {f"{split.name}/{ACC}": correct.double().mean().item()} if ACC in split.metrics else {}
    if WEIGHTED_ACC in split.metrics or WORST_GROUP_ACC in split.metrics:
        per_group = _group_means(correct, groups.long())
        if not per_group:
            raise ValueError(f"split {split.name!r} reports group metrics but no example has a group (all -1)")
        if WEIGHTED_ACC in split.metrics:
            if group_weights is None:
                raise ValueError(f"split {split.name!r} reports {WEIGHTED_ACC} but no group_weights were given")
            out[f"{split.name}/{WEIGHTED_ACC}"] = _weighted(per_group, group_weights, split.name)
        if WORST_GROUP_ACC in split.metrics:
            out[f"{split.name}/{WORST_GROUP_ACC}"] = min(per_group.values())
    return out


def split_loss(
    split: EvalSplit, losses: torch.Tensor, groups: torch.Tensor, group_weights: dict[int, float] | None
) -> dict[str, float]:
    """{"<split>/loss": mean cross-entropy}, its groups weighted as the split's weighted accuracy weighs them when it
    reports one, so that the loss breaks ties of the metric it stands beside on the same footing."""
    losses, groups = torch.as_tensor(losses), torch.as_tensor(groups)
    if losses.ndim != 1 or losses.shape != groups.shape or losses.numel() == 0:
        raise ValueError(
            f"split {split.name!r}: losses and groups must be 1-D of one non-zero length, got shapes "
            f"{tuple(losses.shape)}, {tuple(groups.shape)}"
        )
    if WEIGHTED_ACC in split.metrics and group_weights is not None:
        value = _weighted(_group_means(losses, groups.long()), group_weights, split.name)
    else:
        value = losses.double().mean().item()
    return {f"{split.name}/{LOSS}": value}


def score_split(
    split: EvalSplit,
    preds: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor,
    group_weights: dict[int, float] | None,
    num_classes: int,
    losses: torch.Tensor | None = None,
) -> dict[str, float]:
    """The split's metrics, beside each the best any constant prediction scores on the same images, and with
    per-image `losses` the split's loss (`split_loss`).

    A model at or below that level has learned nothing the metric can see (55.5% where 55.5% of the images are
    one class; a worst-group accuracy of 0 where every constant misses a whole group): the tables mark such cells.
    """
    out = compute_split_metrics(split, preds, labels, groups, group_weights)
    if losses is not None:
        out.update(split_loss(split, losses, groups, group_weights))
    labels, groups = torch.as_tensor(labels), torch.as_tensor(groups)
    best: dict[str, float] = {}
    for c in range(num_classes):
        constant = torch.full_like(labels, c)
        for key, value in compute_split_metrics(split, constant, labels, groups, group_weights).items():
            best[key] = max(best.get(key, value), value)
    out.update({key + CONSTANT_SUFFIX: value for key, value in best.items()})
    return out
