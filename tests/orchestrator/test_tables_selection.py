"""The selection rule on hand-made trials and epochs: best epoch, best mean ID validation LR, intervals, flags."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA
from orchestrator.tables.selection import Z90, format_lr, select_cells, summarize, trial_results

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
Epoch = tuple[float, float, float]  # (id_val, id_test, ood_test)


class SweepBuilder:
    """Rows of trials.parquet and epochs.parquet written the way a sweep writes them."""

    def __init__(self) -> None:
        self.trials: list[dict] = []
        self.epochs: list[dict] = []
        self.probe: list[dict] = []

    def add(
        self,
        model: str,
        dataset: str,
        method: str,
        lr: float,
        seed: int = 0,
        *,
        status: str = "completed",
        curve: Sequence[Epoch] = (),
        peak: int | None = None,
        state: int | None = None,
        trainable: int | None = None,
        trial_metrics: Epoch | None = None,
    ) -> str:
        tid = f"{model}-{dataset}-{method}-{lr:g}-{seed}"
        ident = dict(sweep_id="s", trial_id=tid, model=model, dataset=dataset, method=method, lr=lr, seed=seed)
        row = {name: None for name in TRIALS_SCHEMA.names}
        row.update(ident, status=status, epochs_planned=max(len(curve), 1), epochs_done=len(curve), updated_at=NOW)
        row.update(peak_memory_bytes=peak, optimizer_state_bytes=state, trainable_params=trainable, frozen_params=0)
        if trial_metrics is not None:
            row.update(id_val=trial_metrics[0], id_test=trial_metrics[1], ood_test=trial_metrics[2], best_epoch=1)
        self.trials.append(row)
        for i, (v, t, o) in enumerate(curve, start=1):
            e = {name: None for name in EPOCHS_SCHEMA.names}
            e.update(ident, epoch=i, id_val=v, id_test=t, ood_test=o, is_best=False, reported_at=NOW)
            self.epochs.append(e)
        return tid

    def add_probe(self, model: str, dataset: str, layer: str, kind: str, depth: int, grad: float) -> None:
        self.probe.append(
            dict(
                sweep_id="s",
                model=model,
                dataset=dataset,
                layer=layer,
                kind=kind,
                depth=depth,
                num_params=100,
                grad_norm=grad,
                param_norm=2.0,
                grad_norm_over_param_norm=grad / 2.0,
                grad_norm_over_sqrt_numel=grad / 10.0,
                batches=4,
            )
        )

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return (
            pa.Table.from_pylist(self.trials, schema=TRIALS_SCHEMA),
            pa.Table.from_pylist(self.epochs, schema=EPOCHS_SCHEMA),
        )

    def write(self, sweep_dir: Path) -> Path:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        trials, epochs = self.tables()
        pq.write_table(trials, sweep_dir / "trials.parquet")
        pq.write_table(epochs, sweep_dir / "epochs.parquet")
        if self.probe:
            pq.write_table(pa.Table.from_pylist(self.probe, schema=PROBE_SCHEMA), sweep_dir / "probe.parquet")
        return sweep_dir


def _one(b: SweepBuilder):
    cells = select_cells(*b.tables())
    assert len(cells) == 1
    return cells[0]


def test_best_mean_id_val_wins_over_best_single_seed_and_over_ood() -> None:
    b = SweepBuilder()
    # lr 1e-4: one seed has the best id_val of all (0.95) and OOD is high, but the mean id_val is 0.80
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, 0, curve=[(0.95, 0.90, 0.99)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, 1, curve=[(0.65, 0.60, 0.95)])
    # lr 3e-4: mean id_val 0.85, poor OOD: the rule must choose it
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, 0, curve=[(0.86, 0.84, 0.40)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, 1, curve=[(0.84, 0.82, 0.50)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, 0, curve=[(0.50, 0.50, 0.20)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, 1, curve=[(0.52, 0.50, 0.20)])
    c = _one(b)
    assert c.chosen_lr == 3e-4
    assert c.status == "ok" and not c.edge_flag and c.n_seeds == 2
    assert c.id_val == pytest.approx(0.85)
    assert c.id_test == pytest.approx(0.83)
    assert c.ood_test == pytest.approx(0.45)
    assert [s.chosen for s in c.per_lr] == [False, True, False]


def test_each_trial_uses_its_best_id_val_epoch_earliest_on_ties() -> None:
    b = SweepBuilder()
    b.add(
        "tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.5, 0.1, 0.1), (0.8, 0.7, 0.6), (0.8, 0.9, 0.9), (0.7, 1, 1)]
    )
    per_trial = trial_results(*b.tables())
    assert per_trial.loc[0, "best_epoch"] == 2
    c = _one(b)
    assert (c.id_val, c.id_test, c.ood_test) == pytest.approx((0.8, 0.7, 0.6))


def test_ci90_is_1645_sample_sd_over_sqrt_n() -> None:
    b = SweepBuilder()
    for seed, ood in enumerate([0.6, 0.7, 0.8]):
        b.add("tiny_vit", "synth_style", "sgd", 1e-3, seed, curve=[(0.9, 0.9, ood)])
        b.add("tiny_vit", "synth_style", "sgd", 1e-4, seed, curve=[(0.5, 0.5, 0.5)])
        b.add("tiny_vit", "synth_style", "sgd", 1e-2, seed, curve=[(0.5, 0.5, 0.5)])
    c = _one(b)
    assert c.ood_test == pytest.approx(0.7)
    assert c.ood_test_ci90 == pytest.approx(1.645 * 0.1 / math.sqrt(3))
    assert c.id_test_ci90 == pytest.approx(0.0)
    assert summarize([0.5]).ci90 is None and summarize([0.5]).sd is None
    assert Z90 == 1.645


def test_single_seed_has_no_interval() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.9, 0.9, 0.9)])
    c = _one(b)
    assert c.n_seeds == 1 and c.ood_test_ci90 is None and c.id_val_ci90 is None


@pytest.mark.parametrize(
    ("best", "edge", "side"), [(1e-4, True, "smallest"), (3e-4, False, None), (1e-3, True, "largest")]
)
def test_edge_flag(best: float, edge: bool, side: str | None) -> None:
    b = SweepBuilder()
    for lr in (1e-4, 3e-4, 1e-3):
        v = 0.9 if lr == best else 0.5
        b.add("tiny_vit", "synth_style", "sgd", lr, curve=[(v, v, v)])
    c = _one(b)
    assert c.chosen_lr == best and c.edge_flag is edge
    assert any(side in n for n in c.notes) if side else not c.notes


def test_one_lr_only_is_flagged() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.9, 0.9, 0.9)])
    c = _one(b)
    assert c.edge_flag and any("only one LR" in n for n in c.notes)


def test_diverged_lr_is_never_chosen_and_is_reported() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.5, 0.5, 0.5)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, curve=[(0.7, 0.7, 0.7)])
    # the best id_val of the cell, but its other seed diverged: the LR is out
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, 0, curve=[(0.99, 0.99, 0.99)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, 1, status="diverged", curve=[(0.3, 0.3, 0.3)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, 1, curve=[(0.5, 0.5, 0.5)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, 1, curve=[(0.7, 0.7, 0.7)])
    c = _one(b)
    assert c.chosen_lr == 3e-4 and c.status == "ok"
    assert c.has_diverged and not c.edge_flag
    assert "diverged, never chosen: lr 1e-3 (1 of 2)" in c.notes


def test_missing_trials_make_the_cell_incomplete_not_dropped() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.5, 0.5, 0.5)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, curve=[(0.7, 0.7, 0.7)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, status="pending")
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, 1, status="failed")
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, 1, status="running", curve=[(0.9, 0.9, 0.9)])
    c = _one(b)
    assert c.status == "incomplete" and c.n_missing == 3
    assert c.chosen_lr == 3e-4 and c.n_seeds == 1  # the running trial's epochs do not count yet
    assert c.id_val == pytest.approx(0.7)
    assert "3 of 5 trials without a result: lr 3e-4 (1 running), lr 1e-3 (1 failed, 1 pending)" in c.notes


def test_cell_without_any_result_says_why() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, status="pending")
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, status="diverged", curve=[(0.9, 0.9, 0.9)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, status="cancelled")
    b.add("tiny_vit", "synth_style", "adamw", 1e-5, curve=[(0.9, 0.9, 0.9)])
    cells = {c.method: c for c in select_cells(*b.tables())}
    c = cells["sgd"]
    assert c.status == "no_result" and c.chosen_lr is None and c.ood_test is None and c.n_seeds == 0
    assert c.notes == ("no LR has a result: 1 cancelled, 1 diverged, 1 pending",)
    assert cells["adamw"].status == "ok"


def test_stopped_trials_count_with_the_epochs_they_ran() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, status="stopped", curve=[(0.6, 0.6, 0.6)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, curve=[(0.5, 0.5, 0.5), (0.55, 0.55, 0.55)])
    c = _one(b)
    assert c.chosen_lr == 1e-4 and c.status == "ok"


def test_trial_row_metrics_are_used_when_a_trial_has_no_epoch_rows() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, trial_metrics=(0.8, 0.7, 0.6))
    b.add("tiny_vit", "synth_style", "sgd", 3e-4)  # completed but nothing evaluated: not a result
    c = _one(b)
    assert c.chosen_lr == 1e-4 and (c.id_val, c.id_test, c.ood_test) == pytest.approx((0.8, 0.7, 0.6))
    assert c.status == "incomplete"
    assert any("completed (no metrics)" in n for n in c.notes)


def test_ties_in_mean_id_val_go_to_the_smaller_lr() -> None:
    b = SweepBuilder()
    for lr, ood in ((1e-4, 0.1), (3e-4, 0.2), (1e-3, 0.3), (3e-3, 0.4)):
        v = 0.9 if lr in (3e-4, 1e-3) else 0.5
        b.add("tiny_vit", "synth_style", "sgd", lr, curve=[(v, v, ood)])
    assert _one(b).chosen_lr == 3e-4


def test_cells_are_separate_per_model_dataset_method() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.9, 0.9, 0.9)])
    b.add("tiny_vit", "synth_style", "adamw", 1e-6, curve=[(0.8, 0.8, 0.8)])
    b.add("tiny_bit", "synth_style", "sgd", 1e-4, curve=[(0.7, 0.7, 0.7)])
    b.add("tiny_vit", "synth_spurious", "sgd", 1e-4, curve=[(0.6, 0.6, 0.6)])
    got = {c.key: c.id_val for c in select_cells(*b.tables())}
    assert got == pytest.approx(
        {
            ("tiny_vit", "synth_style", "sgd"): 0.9,
            ("tiny_vit", "synth_style", "adamw"): 0.8,
            ("tiny_bit", "synth_style", "sgd"): 0.7,
            ("tiny_vit", "synth_spurious", "sgd"): 0.6,
        }
    )


def test_bad_input_names_the_missing_columns() -> None:
    b = SweepBuilder()
    trials, epochs = b.tables()
    with pytest.raises(ValueError, match=r"trials lacks columns \['status'\]"):
        select_cells(trials.drop_columns(["status"]), epochs)


def test_format_lr() -> None:
    assert [format_lr(x) for x in (3e-5, 1e-4, 2.5e-4, 0.01, 1.0)] == ["3e-5", "1e-4", "2.5e-4", "1e-2", "1e0"]
