"""Accuracy, train-weighted group accuracy and worst-group accuracy on hand-made predictions."""

from __future__ import annotations

import pytest
import torch

from worker.data import EvalSplit, compute_split_metrics, score_split, split_loss

GROUP = ("acc", "weighted_acc", "worst_group_acc")


def _split(name: str = "test", metrics: tuple[str, ...] = GROUP) -> EvalSplit:
    return EvalSplit(name=name, dataset=torch.utils.data.TensorDataset(torch.zeros(1)), metrics=metrics)


def t(*values: int) -> torch.Tensor:
    return torch.tensor(values)


def test_plain_accuracy() -> None:
    out = compute_split_metrics(_split("id_val", ("acc",)), t(0, 1, 1, 0), t(0, 1, 0, 0), t(-1, -1, -1, -1), None)
    assert out == {"id_val/acc": 0.75}


def test_weighted_and_worst_group() -> None:
    # group 0: 2/2 right, group 1: 1/2, group 2: 0/1, group 3: 3/3
    labels = t(0, 0, 0, 0, 1, 1, 1, 1)
    groups = t(0, 0, 1, 1, 2, 3, 3, 3)
    preds = t(0, 0, 0, 1, 0, 1, 1, 1)
    weights = {0: 3498.0, 1: 184.0, 2: 56.0, 3: 1057.0}
    out = compute_split_metrics(_split(), preds, labels, groups, weights)
    expected = (3498 * 1.0 + 184 * 0.5 + 56 * 0.0 + 1057 * 1.0) / (3498 + 184 + 56 + 1057)
    assert out["test/acc"] == pytest.approx(6 / 8)
    assert out["test/weighted_acc"] == pytest.approx(expected)
    assert out["test/worst_group_acc"] == 0.0
    assert set(out) == {"test/acc", "test/weighted_acc", "test/worst_group_acc"}


def test_absent_groups_drop_out_of_weighted_and_worst() -> None:
    out = compute_split_metrics(_split(), t(0, 1, 1), t(0, 0, 1), t(0, 0, 3), {0: 1.0, 1: 5.0, 2: 5.0, 3: 3.0})
    assert out["test/weighted_acc"] == pytest.approx((1 * 0.5 + 3 * 1.0) / 4)
    assert out["test/worst_group_acc"] == 0.5


def test_logits_are_reduced_to_predictions() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    assert compute_split_metrics(_split("v", ("acc",)), logits, t(0, 1, 1), t(-1, -1, -1), None) == {"v/acc": 2 / 3}


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="group_weights"):
        compute_split_metrics(_split(), t(0), t(0), t(0), None)
    with pytest.raises(ValueError, match="shapes"):
        compute_split_metrics(_split(), t(0, 1), t(0), t(0, 0), {0: 1.0})
    with pytest.raises(ValueError, match="no predictions"):
        compute_split_metrics(_split(), t(), t(), t(), {0: 1.0})
    with pytest.raises(ValueError, match="all -1"):
        compute_split_metrics(_split(), t(0), t(0), t(-1), {0: 1.0})
    with pytest.raises(ValueError, match="unknown metrics"):
        compute_split_metrics(_split(metrics=("acc", "f1")), t(0), t(0), t(0), None)


def test_each_metric_comes_with_the_best_a_constant_prediction_scores() -> None:
    # 5 of 8 labels are class 1: a constant 1 scores 62.5%; every constant misses a whole group (worst group 0);
    # the weighted accuracy's best constant is class 0, whose groups weigh 3498 + 184 of 4795
    labels = t(0, 0, 0, 1, 1, 1, 1, 1)
    groups = t(0, 0, 1, 2, 3, 3, 3, 3)
    weights = {0: 3498.0, 1: 184.0, 2: 56.0, 3: 1057.0}
    out = score_split(_split(), t(1, 1, 1, 1, 1, 1, 1, 1), labels, groups, weights, num_classes=3)
    assert out["test/acc"] == out["test/acc@constant"] == pytest.approx(5 / 8)
    assert out["test/worst_group_acc@constant"] == 0.0
    assert out["test/weighted_acc@constant"] == pytest.approx((3498 + 184) / (3498 + 184 + 56 + 1057))
    assert set(out) == {f"test/{m}{s}" for m in GROUP for s in ("", "@constant")}


def test_the_loss_is_the_mean_cross_entropy_weighted_as_the_split_weighs_its_accuracy() -> None:
    plain = _split("id_val", ("acc",))
    losses, groups = torch.tensor([0.1, 0.3, 0.5, 0.7]), torch.tensor([0, 0, 1, 1])
    assert split_loss(plain, losses, groups, None) == {"id_val/loss": pytest.approx(0.4)}
    weighted = _split("val", ("weighted_acc",))  # group 0 weighs 3x group 1, as in the training set
    assert split_loss(weighted, losses, groups, {0: 3.0, 1: 1.0}) == {"val/loss": pytest.approx((3 * 0.2 + 0.6) / 4)}
    scored = score_split(plain, torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 1]), groups, None, 2, losses=losses)
    assert scored["id_val/loss"] == pytest.approx(0.4) and "id_val/loss@constant" not in scored
    with pytest.raises(ValueError, match="losses and groups must be 1-D of one non-zero length"):
        split_loss(plain, torch.tensor([]), torch.tensor([]), None)
