"""The trial loop end to end on a generated benchmark: reports, resume, divergence, freezing, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from worker import catalog
from worker.__main__ import main as worker_main
from worker.config import TrialConfig
from worker.models import create_model
from worker.precision import autocast_for
from worker.probe import run_probe
from worker.records import EpochReport, TrialStatus, record_fields
from worker.synthetic import generate_benchmark
from worker.trial import CheckpointMismatchError, load_checkpoint, run_trial


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_benchmark("synth_style", root, n_train=400, n_eval=200)
    return root


def _config(data_root: Path, **kw) -> TrialConfig:
    base = dict(
        model="tiny_bit",
        dataset="synth_style",
        method="sgd",
        lr=0.05,
        epochs=3,
        batch_size=32,
        data_root=str(data_root),
        pretrained=False,
        max_train_images=96,
        max_eval_images=48,
        device="cpu",
    )
    base.update(kw)
    return TrialConfig(**base)


class Recorder:
    """A report callable that keeps every report and a copy of every checkpoint's state."""

    def __init__(self) -> None:
        self.reports: list[dict] = []
        self.checkpoints: list[dict] = []

    def __call__(self, report: EpochReport, checkpoint_dir: Path | None) -> None:
        self.reports.append(report.to_dict())
        if checkpoint_dir is not None:
            self.checkpoints.append(load_checkpoint(checkpoint_dir))


def test_every_epoch_reports_every_key_and_the_best_epoch(data_root: Path) -> None:
    rec = Recorder()
    summary = run_trial(_config(data_root), rec)
    assert [r["epoch"] for r in rec.reports] == [1, 2, 3]
    for r in rec.reports:
        assert set(r) == {name for name, _, _ in record_fields(EpochReport)}
        assert set(r["split_metrics"]) == {  # synth_style: its sketch test list halved into id_val and id_test
            "id_val/acc",
            "id_test/acc",
            "ood_test/acc",
            "id_val/acc@constant",
            "id_test/acc@constant",
            "ood_test/acc@constant",
            "id_val/loss",
            "id_test/loss",
            "ood_test/loss",
        }
        assert r["id_val_loss"] == r["split_metrics"]["id_val/loss"] > 0  # the selection rule's tie-break
        assert r["split_metrics"]["id_test/acc@constant"] >= 0.1  # 10 classes: the largest class's share
        assert r["train_images_per_s"] > 0 and r["peak_memory_bytes"] > 0
    assert [r["status"] for r in rec.reports] == ["running", "running", TrialStatus.COMPLETED]
    best = max(rec.reports, key=lambda r: (r["id_val"], -r["id_val_loss"], -r["epoch"]))
    assert summary.best_epoch == best["epoch"]
    assert summary.id_val == best["id_val"] and summary.ood_test == best["ood_test"]
    assert sum(r["is_best"] for r in rec.reports) >= 1
    # cosine per step from the start LR to 0: the reported (start-of-epoch) LR falls every epoch
    lrs = [r["lr_now"] for r in rec.reports]
    assert lrs[0] == pytest.approx(0.05) and lrs[0] > lrs[1] > lrs[2] > 0


# LP-FT fits its head before epoch 1; resuming after an epoch goes on from the checkpoint's head and weights
@pytest.mark.parametrize(("method", "epochs"), [("sgd_freeze_embed", 3), ("lp_ft_sgd", 4)])
def test_a_resumed_trial_ends_with_the_same_numbers(data_root: Path, method: str, epochs: int) -> None:
    cfg = _config(data_root, method=method, epochs=epochs)
    full = Recorder()
    full_summary = run_trial(cfg, full)

    first = Recorder()
    seen: list[Path] = []

    def stop_after_first_epoch(report: EpochReport, checkpoint_dir: Path | None) -> None:
        first(report, checkpoint_dir)
        # keep a copy: the trial deletes its own checkpoint directories
        keep = data_root.parent / "resume-ckpt"
        import shutil

        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(checkpoint_dir, keep)
        seen.append(keep)
        raise KeyboardInterrupt  # the process dies after epoch 1

    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, stop_after_first_epoch)
    resumed = Recorder()
    resumed_summary = run_trial(cfg, resumed, resume_from=seen[0])

    assert [r["epoch"] for r in resumed.reports] == list(range(2, epochs + 1))
    for a, b in zip(full.reports[1:], resumed.reports, strict=True):
        for key in ("train_loss", "lr_now", "id_val", "id_test", "ood_test", "split_metrics", "best_epoch"):
            assert a[key] == b[key], key
    for key in ("best_epoch", "id_val", "id_test", "ood_test", "epochs_done"):
        assert getattr(full_summary, key) == getattr(resumed_summary, key)
    final_full, final_resumed = full.checkpoints[-1]["model"], resumed.checkpoints[-1]["model"]
    assert all(torch.equal(final_full[k], final_resumed[k]) for k in final_full)


def test_a_checkpoint_of_another_trial_is_refused(data_root: Path, tmp_path: Path) -> None:
    rec = Recorder()
    keep = tmp_path / "ckpt"

    def keep_first(report: EpochReport, checkpoint_dir: Path | None) -> None:
        import shutil

        if not keep.exists():
            shutil.copytree(checkpoint_dir, keep)
        rec(report, checkpoint_dir)

    run_trial(_config(data_root, epochs=1), keep_first)
    with pytest.raises(CheckpointMismatchError, match="belongs to trial"):
        run_trial(_config(data_root, epochs=1, lr=0.01), Recorder(), resume_from=keep)


def test_a_diverging_trial_stops_cleanly(data_root: Path) -> None:
    rec = Recorder()
    summary = run_trial(_config(data_root, lr=1e12), rec)
    assert summary.status == TrialStatus.DIVERGED
    assert rec.reports[-1]["status"] == TrialStatus.DIVERGED
    assert math.isnan(rec.reports[-1]["train_loss"])
    assert len(rec.reports) < 3  # it stopped instead of training on


def test_freeze_embed_reports_exactly_the_embedding_as_frozen(data_root: Path) -> None:
    rec = Recorder()
    run_trial(_config(data_root, method="sgd_freeze_embed_nomom", epochs=1), rec)
    built = create_model("tiny_bit", catalog.get_dataset("synth_style").num_classes, pretrained=False)
    params = dict(built.module.named_parameters())
    embed = sum(params[n].numel() for n in built.embed_param_names)
    assert rec.reports[0]["frozen_params"] == embed
    assert rec.reports[0]["optimizer_state_bytes"] == 0  # SGD without momentum keeps no state


def test_a_trial_on_a_synthetic_benchmark_beats_chance(data_root: Path) -> None:
    rec = Recorder()
    summary = run_trial(_config(data_root, epochs=5, max_train_images=384, max_eval_images=200), rec)
    chance = 1 / catalog.get_dataset("synth_style").num_classes
    assert summary.id_val > chance + 0.07, rec.reports


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_sets_the_forward_arithmetic(precision: str, dtype: torch.dtype) -> None:
    layer = torch.nn.Linear(8, 4)
    with autocast_for(torch.device("cpu"), precision):
        assert layer(torch.randn(2, 8)).dtype == dtype


def test_a_bf16_trial_trains_differently_from_fp32_and_has_its_own_id(data_root: Path) -> None:
    fp32, bf16 = Recorder(), Recorder()
    run_trial(_config(data_root, epochs=1), fp32)
    run_trial(_config(data_root, epochs=1, precision="bf16"), bf16)
    assert bf16.reports[0]["status"] == TrialStatus.COMPLETED and math.isfinite(bf16.reports[0]["train_loss"])
    assert bf16.reports[0]["train_loss"] != fp32.reports[0]["train_loss"]  # bf16 rounding reached the loss
    assert _config(data_root, precision="bf16").trial_id() != _config(data_root).trial_id()
    assert "precision" not in _config(data_root).science_key()  # fp32 trials keep the ids they had before
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        _config(data_root, precision="fp16")


def test_a_method_outside_its_families_is_refused(data_root: Path) -> None:
    with pytest.raises(ValueError, match="applies only to families"):
        run_trial(_config(data_root, method="sgd_freeze_patch_only"), Recorder())


def test_probe_rows_cover_embedding_middle_and_head(data_root: Path) -> None:
    rows = run_probe(
        "tiny_vit", "synth_style", data_root=data_root, pretrained=False, max_batches=2, batch_size=16, device="cpu"
    )
    kinds = {r["kind"] for r in rows}
    assert {"embed", "attn", "mlp", "head"} <= kinds
    assert all(r["grad_norm"] >= 0 and r["batches"] == 2 for r in rows)


def test_the_command_line_prints_one_json_line_per_epoch(data_root: Path, capsys: pytest.CaptureFixture) -> None:
    code = worker_main(
        [
            "--model",
            "tiny_bit",
            "--dataset",
            "synth_style",
            "--method",
            "sgd",
            "--lr",
            "0.01",
            "--epochs",
            "2",
            "--data-root",
            str(data_root),
            "--random-init",
            "--max-train-images",
            "64",
            "--max-eval-images",
            "32",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["epoch"] for x in lines[:-1]] == [1, 2]
    assert lines[-1]["summary"]["status"] == TrialStatus.COMPLETED


def test_the_command_line_names_bad_input(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = worker_main(
        [
            "--model",
            "no_such_model",
            "--dataset",
            "synth_style",
            "--method",
            "sgd",
            "--lr",
            "0.01",
            "--data-root",
            str(tmp_path),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'no_such_model'" in err and "tiny_vit" in err
