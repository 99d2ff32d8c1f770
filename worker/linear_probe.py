"""The paper's linear probe (its Appendix B): an L2-regularised logistic regression on frozen features.

A `linear_probe` trial fits one C of the method's grid (np.logspace(-7, 2, 50)); the sweep's selection rule then
chooses C on ID validation, as it chooses an LR. LP-FT fits the whole grid itself, warm-starting each C from the
last as the paper's code does, keeps the C with the best ID validation metric, and starts fine-tuning from that
head. Features come from `worker.features`, computed once per (model, dataset) on a node; LP-FT's chosen head is
cached beside them, so every LP-FT trial of a model, dataset and seed starts from one fit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from worker import catalog
from worker.config import ReportCallable, TrialConfig
from worker.data import DatasetBundle, compute_split_metrics, score_split
from worker.features import (
    Features,
    SplitFeatures,
    cache_root,
    cached_features,
    features_key,
    head_module,
    locked,
    save_npz,
)
from worker.loading import start_trial
from worker.memory import peak_memory_bytes
from worker.method_options import LOGREG, resolve_options
from worker.models import BuiltModel
from worker.records import METRICS, EpochReport, TrialStatus, TrialSummary, split_of, tie_break_value
from worker.selection import summarize_trial

ABSENT_CLASS_BIAS = -1.0e4  # a class the training subset never shows: its logit never wins


@dataclass(frozen=True)
class ProbeFit:
    c: float
    model: LogisticRegression
    split_metrics: dict[str, float]
    fit_time_s: float
    id_val_by_c: dict[float, float]  # every C tried and its ID validation metric


def _options(method: catalog.MethodEntry, overrides: Any = None) -> dict[str, Any]:
    return resolve_options(method.key, LOGREG, method.options, overrides)


def fit_logreg(
    train: SplitFeatures, c: float, *, max_iter: int, tol: float = 1e-4, warm: LogisticRegression | None = None
) -> LogisticRegression:
    """sklearn's L2 logistic regression at inverse strength `c`; `warm` continues from an earlier fit."""
    clf = warm if warm is not None else LogisticRegression(warm_start=True, random_state=0)
    clf.set_params(C=c, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the paper's code caps the iterations the same way
        clf.fit(train.x, train.y)
    return clf


def example_losses(clf: LogisticRegression, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """Each example's cross-entropy under the regression; a class it never saw in training has probability 0, clipped
    as sklearn's `log_loss` clips it."""
    proba = clf.predict_proba(x)
    column = {int(c): i for i, c in enumerate(clf.classes_)}
    p = np.array([proba[i, column[int(t)]] if int(t) in column else 0.0 for i, t in enumerate(y)], dtype=np.float64)
    return torch.as_tensor(-np.log(np.clip(p, np.finfo(np.float64).eps, 1.0)))


def probe_metrics(
    clf: LogisticRegression, features: Features, bundle: DatasetBundle, *, constant: bool = False
) -> dict[str, float]:
    """Every evaluation split's metrics ("<split>/<metric>") for the probe's predictions; with `constant`, also the
    best constant prediction's and the split's loss (as a trial reports them)."""
    out: dict[str, float] = {}
    for name, split in bundle.eval_splits.items():
        f = features.evals[name]
        preds, labels, groups = torch.as_tensor(clf.predict(f.x)), torch.as_tensor(f.y), torch.as_tensor(f.groups)
        if constant:
            losses = example_losses(clf, f.x, f.y)
            out.update(
                score_split(split, preds, labels, groups, bundle.group_weights, bundle.num_classes, losses=losses)
            )
        else:
            out.update(compute_split_metrics(split, preds, labels, groups, bundle.group_weights))
    return out


def choose_c(
    features: Features, bundle: DatasetBundle, cs: Sequence[float], *, max_iter: int, tol: float = 1e-4
) -> ProbeFit:
    """Fit every C in increasing order, each warm-started from the last; keep the best on ID validation (ties: the
    smaller C, the stronger regularisation)."""
    id_val = bundle.entry.metrics["id_val"]
    split = bundle.eval_splits[split_of(id_val)]  # the only split that chooses; the others are scored once
    f = features.evals[split.name]
    best: tuple[float, LogisticRegression] | None = None
    scores: dict[float, float] = {}
    clf: LogisticRegression | None = None
    t0 = time.perf_counter()
    for c in sorted(cs):
        clf = fit_logreg(features.train, c, max_iter=max_iter, tol=tol, warm=clf)
        preds, labels, groups = torch.as_tensor(clf.predict(f.x)), torch.as_tensor(f.y), torch.as_tensor(f.groups)
        scores[c] = compute_split_metrics(split, preds, labels, groups, bundle.group_weights)[id_val]
        if best is None or scores[c] > scores[best[0]]:
            best = (c, copy.deepcopy(clf))  # the next C warm-starts from clf in place
    if best is None:
        raise ValueError("choose_c needs at least one C")
    return ProbeFit(best[0], best[1], probe_metrics(best[1], features, bundle), time.perf_counter() - t0, scores)


@dataclass(frozen=True)
class Head:
    """A fitted regression as the model's head needs it, and the C it was fitted at."""

    c: float
    coef: np.ndarray  # (classes seen, d), or (1, d) for two classes
    intercept: np.ndarray
    classes: np.ndarray  # the class ids of the rows

    @classmethod
    def of(cls, c: float, clf: LogisticRegression) -> Head:
        return cls(float(c), np.asarray(clf.coef_), np.asarray(clf.intercept_), np.asarray(clf.classes_))


def install_head(built: BuiltModel, head_fit: Head) -> None:
    """Copy the regression into the model's head, so that the model's logits order classes as the regression's.

    Two classes: sklearn keeps one weight vector w for class 1; the head gets -w/2 and w/2, whose softmax equals
    the regression's sigmoid. A class the training subset lacks gets zero weight and a bias that never wins.
    """
    head = head_module(built)
    coef = np.asarray(head_fit.coef, dtype=np.float64)
    intercept = np.asarray(head_fit.intercept, dtype=np.float64)
    classes = [int(c) for c in head_fit.classes]
    if coef.shape[0] == 1:  # binary
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    out_classes, in_features = head.weight.shape[0], head.weight[0].numel()  # a 1x1 conv head: (C, D, 1, 1)
    if coef.shape[1] != in_features:
        raise ValueError(f"probe features have {coef.shape[1]} dims, the head takes {in_features}")
    weight = torch.zeros(out_classes, in_features, dtype=head.weight.dtype)
    bias = torch.full((out_classes,), ABSENT_CLASS_BIAS, dtype=head.bias.dtype)
    for row, cls in enumerate(classes):
        weight[cls] = torch.as_tensor(coef[row], dtype=weight.dtype)
        bias[cls] = float(intercept[row])
    with torch.no_grad():
        head.weight.copy_(weight.view_as(head.weight))
        head.bias.copy_(bias)


def lp_ft_head(config: TrialConfig, built: BuiltModel, bundle: DatasetBundle, device: torch.device) -> Head:
    """LP-FT's probe: the probe method's C chosen on ID validation over its grid. Every LR (and LP-FT method) of a
    model, dataset and seed starts from the same head, so it is fitted once per node and cached beside the
    features."""
    method = catalog.get_method(config.method)
    if not method.lp_ft:
        raise ValueError(f"method {config.method!r} has no lp_ft")
    probe = catalog.get_method(method.lp_ft["probe"])
    options = _options(probe)
    blob = json.dumps([features_key(config), list(probe.lr_grid), options], sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:24]
    path = cache_root() / "heads" / f"{config.model}-{config.dataset}-{key}.npz"
    with locked(path):
        if path.exists():
            with np.load(path) as z:
                return Head(float(z["c"]), z["coef"], z["intercept"], z["classes"])
        features, _ = cached_features(config, built, bundle, device)
        fit = choose_c(features, bundle, probe.lr_grid, **options)
        head = Head.of(fit.c, fit.model)
        save_npz(
            path, {"c": np.asarray(head.c), "coef": head.coef, "intercept": head.intercept, "classes": head.classes}
        )
        return head


def fit_lp_ft_head(config: TrialConfig, built: BuiltModel, bundle: DatasetBundle, device: torch.device) -> Head:
    """LP-FT's first step: the probe's head installed in the model."""
    head = lp_ft_head(config, built, bundle, device)
    install_head(built, head)
    return head


def _param_counts(built: BuiltModel, clf: LogisticRegression) -> tuple[int, int]:
    trained = int(np.asarray(clf.coef_).size + np.asarray(clf.intercept_).size)
    head = {id(p) for p in head_module(built).parameters()}
    frozen = sum(p.numel() for p in built.module.parameters() if id(p) not in head)
    return trained, frozen


def run_linear_probe_trial(config: TrialConfig, report: ReportCallable) -> TrialSummary:
    """One C of the linear probe's grid: fit on the cached features and report it as the trial's one epoch."""
    method = catalog.get_method(config.method)
    dset = catalog.get_dataset(config.dataset)
    device, built, bundle = start_trial(config)
    t0 = time.perf_counter()
    features, _ = cached_features(config, built, bundle, device)
    t_fit = time.perf_counter()
    clf = fit_logreg(features.train, config.lr, **_options(method, config.method_options))
    fit_s = time.perf_counter() - t_fit
    split_metrics = probe_metrics(clf, features, bundle, constant=True)
    train_loss = float(log_loss(features.train.y, clf.predict_proba(features.train.x), labels=clf.classes_))
    trained, frozen = _param_counts(built, clf)
    epoch = EpochReport(
        epoch=1,
        status=TrialStatus.COMPLETED,
        train_loss=train_loss,
        lr_now=config.lr,
        **{m: split_metrics.get(dset.metrics[m]) for m in METRICS},
        id_val_loss=tie_break_value(split_metrics, dset.metrics),
        split_metrics=split_metrics,
        epoch_time_s=time.perf_counter() - t0,
        train_time_s=fit_s,
        train_images_per_s=len(features.train.y) / fit_s if fit_s > 0 else 0.0,
        optimizer_state_bytes=0,
        peak_memory_bytes=peak_memory_bytes(),
        trainable_params=trained,
        frozen_params=frozen,
        best_epoch=1,
        is_best=True,
    )
    report(epoch, None)
    return summarize_trial([epoch.to_dict()], status=TrialStatus.COMPLETED, epochs_planned=1)
