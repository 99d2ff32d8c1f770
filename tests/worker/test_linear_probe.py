"""The paper's linear probe and LP-FT (Appendix B): cached frozen features, the C sweep, the head it installs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from worker import catalog
from worker.config import TrialConfig
from worker.features import cached_features, head_module
from worker.linear_probe import Head, choose_c, example_losses, fit_logreg, install_head, lp_ft_head, probe_metrics
from worker.loading import start_trial
from worker.records import EpochReport, TrialStatus
from worker.selection import best_epoch, select_cells, summarize_trial
from worker.synthetic import generate_benchmark
from worker.trial import run_trial

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_benchmark("synth_style", root, n_train=160, n_eval=64)
    generate_benchmark("synth_spurious", root, n_train=160, n_eval=64)
    return root


def _config(data_root: Path, **kw) -> TrialConfig:
    base = dict(
        model="tiny_vit",
        dataset="synth_style",
        method="linear_probe",
        lr=1.0,
        epochs=2,
        batch_size=32,
        data_root=str(data_root),
        pretrained=False,
        max_train_images=128,
        max_eval_images=48,
        device="cpu",
    )
    base.update(kw)
    return TrialConfig(**base)


def _setup(config: TrialConfig):
    """The model and data a trial of `config` starts from (seeded as the trial seeds them)."""
    _, built, bundle = start_trial(config)
    return built, bundle


@pytest.mark.parametrize("model", ["tiny_clip_vit", "tiny_vit", "tiny_convnext", "tiny_bit"])
def test_features_are_what_the_head_sees(data_root: Path, model: str) -> None:
    config = _config(data_root, model=model)
    built, bundle = _setup(config)
    features, cached = cached_features(config, built, bundle, CPU)
    assert not cached and features.train.x.shape[0] == 128 and set(features.evals) == set(bundle.eval_splits)
    head = head_module(built)
    name, split = next(iter(bundle.eval_splits.items()))
    images = torch.stack([split.dataset[i][0] for i in range(8)])
    built.module.eval()
    with torch.no_grad():
        logits = built.module(images)
        from_features = torch.as_tensor(features.evals[name].x[:8]) @ head.weight.flatten(1).T + head.bias
    torch.testing.assert_close(from_features, logits, rtol=1e-4, atol=1e-4)


def test_features_are_computed_once_per_model_dataset_and_subset(data_root: Path) -> None:
    def config(**kw) -> TrialConfig:
        return _config(data_root, model="tiny_convnext", dataset="synth_spurious", **kw)

    built, bundle = _setup(config())
    first, hit = cached_features(config(), built, bundle, CPU)
    again, hit_again = cached_features(config(lr=3.0, method="lp_ft_sgd"), built, bundle, CPU)
    assert not hit and hit_again  # another C or method: the same features
    np.testing.assert_array_equal(first.train.x, again.train.x)
    _, other = cached_features(config(max_eval_images=40), built, bundle, CPU)
    assert not other  # another subset: new features
    files = list((Path(os.environ["SHIFTSWEEP_CACHE"]) / "features").glob("tiny_convnext-synth_spurious-*.npz"))
    assert len(files) == 2 and not list(files[0].parent.glob("*.tmp"))


@pytest.mark.parametrize("dataset", ["synth_style", "synth_spurious"])  # 10 classes, and 2 (one weight vector)
def test_the_installed_head_predicts_what_the_regression_does(data_root: Path, dataset: str) -> None:
    config = _config(data_root, dataset=dataset)
    built, bundle = _setup(config)
    features, _ = cached_features(config, built, bundle, CPU)
    clf = fit_logreg(features.train, 1.0, max_iter=200)
    install_head(built, Head.of(1.0, clf))
    head = head_module(built)
    for name in bundle.eval_splits:
        x = torch.as_tensor(features.evals[name].x)
        with torch.no_grad():
            preds = (x @ head.weight.flatten(1).T + head.bias).argmax(1).numpy()
        np.testing.assert_array_equal(preds, clf.predict(features.evals[name].x))


def test_a_class_the_training_subset_lacks_never_wins(data_root: Path) -> None:
    config = _config(data_root)
    built, bundle = _setup(config)
    features, _ = cached_features(config, built, bundle, CPU)
    keep = features.train.y != 3
    from worker.features import SplitFeatures

    train = SplitFeatures(features.train.x[keep], features.train.y[keep], features.train.groups[keep])
    install_head(built, Head.of(1.0, fit_logreg(train, 1.0, max_iter=200)))
    head = head_module(built)
    assert torch.all(head.weight[3] == 0) and head.bias[3] < -1e3


def test_the_c_sweep_keeps_the_best_id_validation_c_and_the_smaller_on_ties(data_root: Path) -> None:
    config = _config(data_root)
    built, bundle = _setup(config)
    features, _ = cached_features(config, built, bundle, CPU)
    cs = list(np.logspace(-7, 2, 10))
    fit = choose_c(features, bundle, cs, max_iter=200)
    best = max(fit.id_val_by_c.values())
    assert fit.c == min(c for c, v in fit.id_val_by_c.items() if v == best)
    assert sorted(fit.id_val_by_c) == sorted(cs)
    assert fit.split_metrics[bundle.entry.metrics["id_val"]] == best
    assert probe_metrics(fit.model, features, bundle) == fit.split_metrics  # the kept fit, not the last one


def test_a_linear_probe_trial_fits_one_c_and_reports_one_epoch(data_root: Path) -> None:
    reports: list[EpochReport] = []
    summary = run_trial(_config(data_root, lr=0.5), lambda r, ckpt: reports.append(r) or None)
    (r,) = reports
    assert r.status == TrialStatus.COMPLETED and r.epoch == 1 and r.lr_now == 0.5 and r.is_best
    assert r.optimizer_state_bytes == 0 and r.trainable_params == 96 * 10 + 10  # tiny ViT width 96, 10 classes
    assert summary.epochs_planned == 1 == _config(data_root).epochs_planned()
    assert 0.0 <= r.id_val <= 1.0 and r.ood_test is not None
    assert r.id_val_loss == r.split_metrics["id_val/loss"] > 0  # the selection rule's tie-break, as fine-tuning's


def test_lp_ft_starts_from_the_probes_best_head(data_root: Path) -> None:
    """At an LR too small to move the weights, LP-FT's first epoch scores what the chosen probe scores."""
    config = _config(data_root, method="lp_ft_sgd", lr=1e-12, epochs=1)
    reports: list[EpochReport] = []
    run_trial(config, lambda r, ckpt: reports.append(r) or None)
    built, bundle = _setup(config)
    features, hit = cached_features(config, built, bundle, CPU)
    probe = catalog.get_method("linear_probe")
    fit = choose_c(features, bundle, probe.lr_grid, max_iter=probe.options["max_iter"], tol=probe.options["tol"])
    assert hit  # the trial computed them
    reported = {  # the metrics alone: a fine-tuning epoch also records each split's loss
        k: v for k, v in reports[0].split_metrics.items() if not k.endswith(("@constant", "/loss"))
    }
    assert reported == pytest.approx(fit.split_metrics, abs=1e-9)
    heads_dir = Path(os.environ["SHIFTSWEEP_CACHE"]) / "heads"
    before = sorted(heads_dir.glob("*.npz"))
    head = lp_ft_head(config, built, bundle, CPU)  # the trial's head, from the cache: the same C and weights
    assert head.c == fit.c and np.array_equal(head.coef, fit.model.coef_)
    assert before and sorted(heads_dir.glob("*.npz")) == before  # served, not fitted again


def test_lp_ft_on_waterbirds_reports_the_last_epoch_everywhere() -> None:
    rows = [{"epoch": e, "id_val": v, "id_test": v, "ood_test": v} for e, v in ((1, 0.9), (2, 0.7))]
    assert best_epoch(rows)["epoch"] == 1 and best_epoch(rows, last=True)["epoch"] == 2
    assert summarize_trial(rows, status="completed", epochs_planned=2, last_epoch=True).id_val == 0.7
    ident = {"trial_id": "t", "model": "tiny_vit", "lr": 1e-3, "seed": 0}
    for dataset, method, expected in (
        ("waterbirds", "lp_ft_sgd", 0.7),
        ("waterbirds", "sgd", 0.9),
        ("camelyon", "lp_ft_sgd", 0.9),
    ):
        trial = {**ident, "dataset": dataset, "method": method, "status": "completed"}
        epochs = [{**ident, "dataset": dataset, "method": method, **r} for r in rows]
        (cell,) = select_cells([trial], epochs)
        assert cell.mean("id_val") == expected, (dataset, method)
        assert any("reports its last epoch" in n for n in cell.notes) == (expected == 0.7)


def test_example_losses_are_sklearns_log_loss_per_example_and_finite_for_an_unseen_class() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    clf = LogisticRegression().fit(x, y)
    losses = example_losses(clf, x, y)
    assert losses.mean().item() == pytest.approx(log_loss(y, clf.predict_proba(x)))
    unseen = example_losses(clf, x[:2], np.array([0, 7]))  # class 7 was never in training: probability 0, clipped
    assert unseen[0].item() == pytest.approx(losses[0].item()) and 30 < unseen[1].item() < 40
