"""The selection rule on hand-made trials and epochs: best epoch, best mean ID validation LR, intervals, flags."""

from __future__ import annotations

import math

import pytest

from tests.sweep_builder import SweepBuilder
from worker.records import TrialStatus
from worker.selection import (
    Z90,
    best_epoch,
    format_lr,
    select_cells,
    summarize,
    summarize_trial,
    sweep_progress,
    trial_results,
)


def _one(b: SweepBuilder):
    cells = select_cells(b.trials, b.epochs)
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
    assert c.mean("id_val") == pytest.approx(0.85)
    assert c.mean("id_test") == pytest.approx(0.83)
    assert c.mean("ood_test") == pytest.approx(0.45)
    assert [s.chosen for s in c.per_lr] == [False, True, False]


def test_each_trial_uses_its_best_id_val_epoch_earliest_on_ties() -> None:
    b = SweepBuilder()
    b.add(
        "tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.5, 0.1, 0.1), (0.8, 0.7, 0.6), (0.8, 0.9, 0.9), (0.7, 1, 1)]
    )
    per_trial = trial_results(b.trials, b.epochs)
    assert per_trial[0]["best_epoch"] == 2
    c = _one(b)
    assert (c.mean("id_val"), c.mean("id_test"), c.mean("ood_test")) == pytest.approx((0.8, 0.7, 0.6))


def test_ci90_is_1645_sample_sd_over_sqrt_n() -> None:
    b = SweepBuilder()
    for seed, ood in enumerate([0.6, 0.7, 0.8]):
        b.add("tiny_vit", "synth_style", "sgd", 1e-3, seed, curve=[(0.9, 0.9, ood)])
        b.add("tiny_vit", "synth_style", "sgd", 1e-4, seed, curve=[(0.5, 0.5, 0.5)])
        b.add("tiny_vit", "synth_style", "sgd", 1e-2, seed, curve=[(0.5, 0.5, 0.5)])
    c = _one(b)
    assert c.mean("ood_test") == pytest.approx(0.7)
    assert c.ci90("ood_test") == pytest.approx(1.645 * 0.1 / math.sqrt(3))
    assert c.ci90("id_test") == pytest.approx(0.0)
    assert summarize([0.5]).ci90 is None and summarize([0.5]).sd is None
    assert Z90 == 1.645


def test_single_seed_has_no_interval() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.9, 0.9, 0.9)])
    c = _one(b)
    assert c.n_seeds == 1 and c.ci90("ood_test") is None and c.ci90("id_val") is None


@pytest.mark.parametrize(
    ("best", "edge", "side"), [(1e-4, True, "smallest"), (3e-4, False, None), (1e-3, True, "largest")]
)
def test_edge_flag(best: float, edge: bool, side: str | None) -> None:
    b = SweepBuilder()
    for lr in (1e-4, 3e-4, 1e-3):
        v = 0.9 if lr == best else 0.5
        b.add("tiny_vit", "synth_style", "sgd", lr, curve=[(v, v, v)])
    c = _one(b)
    assert c.chosen_lr == best and c.edge_flag is edge and c.edge_side == side
    assert not c.notes  # the tables name edge cells together, one line per edge


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
    assert c.mean("id_val") == pytest.approx(0.7)
    assert "3 of 5 trials without a result: lr 3e-4 (1 running), lr 1e-3 (1 failed, 1 pending)" in c.notes


def test_cell_without_any_result_says_why() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, status="pending")
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, status="diverged", curve=[(0.9, 0.9, 0.9)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, status="cancelled")
    b.add("tiny_vit", "synth_style", "adamw", 1e-5, curve=[(0.9, 0.9, 0.9)])
    cells = {c.method: c for c in select_cells(b.trials, b.epochs)}
    c = cells["sgd"]
    assert c.status == "no_result" and c.chosen_lr is None and c.mean("ood_test") is None and c.n_seeds == 0
    assert c.notes == ("no LR has a result: 1 cancelled, 1 diverged, 1 pending",)
    assert cells["adamw"].status == "ok"


def test_an_lr_that_ran_to_the_end_wins_over_an_early_stopped_one() -> None:
    """The stopped LR's early epoch scores higher, yet the full-length LR is chosen, and the cell says why."""
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, status="stopped", curve=[(0.6, 0.6, 0.97)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, curve=[(0.5, 0.5, 0.5), (0.55, 0.55, 0.887)])
    c = _one(b)
    assert c.chosen_lr == 3e-4 and c.status == "ok" and not c.stopped_choice
    assert c.mean("ood_test") == pytest.approx(0.887)
    assert any("ran to the end, is chosen" in n for n in c.notes)
    stopped = next(s for s in c.per_lr if s.lr == 1e-4)
    assert stopped.stopped_early and stopped.n_results == 1 and stopped.mean("id_val") == pytest.approx(0.6)


def test_one_stopped_seed_makes_its_lr_early_stopped() -> None:
    b = SweepBuilder()
    for seed, status in ((0, "completed"), (1, "stopped")):
        b.add("tiny_vit", "synth_style", "sgd", 1e-4, seed, status=status, curve=[(0.9, 0.9, 0.9)])
    for seed in (0, 1):
        b.add("tiny_vit", "synth_style", "sgd", 3e-4, seed, curve=[(0.5, 0.5, 0.5)])
    c = _one(b)
    assert c.chosen_lr == 3e-4 and not c.stopped_choice


def test_a_cell_where_no_lr_ran_to_the_end_is_chosen_among_the_stopped_and_marked() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, status="stopped", curve=[(0.6, 0.6, 0.6)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, status="stopped", curve=[(0.5, 0.5, 0.5)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, status="diverged", curve=[(0.9, 0.9, 0.9)])
    c = _one(b)
    assert c.chosen_lr == 1e-4 and c.stopped_choice
    assert any(n.startswith("no LR ran to the end") for n in c.notes)


def test_trial_row_metrics_are_used_when_a_trial_has_no_epoch_rows() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, trial_metrics=(0.8, 0.7, 0.6))
    b.add("tiny_vit", "synth_style", "sgd", 3e-4)  # completed but nothing evaluated: not a result
    c = _one(b)
    assert c.chosen_lr == 1e-4 and (c.mean("id_val"), c.mean("id_test"), c.mean("ood_test")) == pytest.approx(
        (0.8, 0.7, 0.6)
    )
    assert c.status == "incomplete"
    assert any("completed (no metrics)" in n for n in c.notes)


def test_ties_in_mean_id_val_without_a_recorded_loss_go_to_the_smaller_lr() -> None:
    b = SweepBuilder()  # a sweep written before the loss was recorded
    for lr, ood in ((1e-4, 0.1), (3e-4, 0.2), (1e-3, 0.3), (3e-3, 0.4)):
        v = 0.9 if lr in (3e-4, 1e-3) else 0.5
        b.add("tiny_vit", "synth_style", "sgd", lr, curve=[(v, v, ood)])
    c = _one(b)
    assert c.chosen_lr == 3e-4 and c.tied_lrs == (3e-4, 1e-3)


def test_an_exact_tie_in_mean_id_val_goes_to_the_lower_mean_id_val_loss() -> None:
    b = SweepBuilder()  # a saturated split: three LRs at 100% for both seeds; OOD never breaks the tie
    for lr, losses, ood in ((1e-3, (0.30, 0.20), 0.99), (3e-3, (0.06, 0.04), 0.7), (1e-2, (0.08, 0.10), 0.8)):
        for seed, loss in enumerate(losses):
            b.add("tiny_bit", "synth_spurious", "sgd", lr, seed, curve=[(1.0, 1.0, ood)], losses=[loss])
    b.add("tiny_bit", "synth_spurious", "sgd", 3e-2, 0, curve=[(0.9, 0.9, 0.9)], losses=[0.01])
    b.add("tiny_bit", "synth_spurious", "sgd", 3e-2, 1, curve=[(0.9, 0.9, 0.9)], losses=[0.01])
    c = _one(b)
    assert c.chosen_lr == 3e-3 and not c.edge_flag
    assert c.mean("ood_test") == pytest.approx(0.7)
    assert [s.tie_break for s in c.per_lr] == pytest.approx([0.25, 0.05, 0.09, 0.01])
    assert c.tied_lrs == (1e-3, 3e-3, 1e-2) and c.notes == ()


def test_a_tie_with_an_lr_lacking_the_loss_goes_to_the_smaller_lr() -> None:
    b = SweepBuilder()  # an extension's LRs run after the loss was recorded, beside trials from before it
    b.add("tiny_bit", "synth_spurious", "sgd", 1e-3, curve=[(1.0, 1.0, 0.9)])
    b.add("tiny_bit", "synth_spurious", "sgd", 3e-3, curve=[(1.0, 1.0, 0.8)], losses=[0.01])
    b.add("tiny_bit", "synth_spurious", "sgd", 1e-2, curve=[(0.5, 0.5, 0.8)], losses=[0.01])
    assert _one(b).chosen_lr == 1e-3


def test_the_loss_only_breaks_exact_ties() -> None:
    b = SweepBuilder()
    b.add("tiny_bit", "synth_spurious", "sgd", 1e-3, curve=[(0.99, 0.99, 0.9)], losses=[0.9])
    b.add("tiny_bit", "synth_spurious", "sgd", 3e-3, curve=[(0.98, 0.98, 0.8)], losses=[0.01])
    c = _one(b)
    assert c.chosen_lr == 1e-3 and c.tied_lrs == ()


def test_cells_are_separate_per_model_dataset_method() -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.9, 0.9, 0.9)])
    b.add("tiny_vit", "synth_style", "adamw", 1e-6, curve=[(0.8, 0.8, 0.8)])
    b.add("tiny_bit", "synth_style", "sgd", 1e-4, curve=[(0.7, 0.7, 0.7)])
    b.add("tiny_vit", "synth_spurious", "sgd", 1e-4, curve=[(0.6, 0.6, 0.6)])
    got = {c.key: c.mean("id_val") for c in select_cells(b.trials, b.epochs)}
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
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.9, 0.9, 0.9)])
    trials = [{k: v for k, v in r.items() if k != "status"} for r in b.trials]
    with pytest.raises(ValueError, match=r"a trials row lacks columns \['status'\]"):
        select_cells(trials, b.epochs)


def test_format_lr() -> None:
    assert [format_lr(x) for x in (3e-5, 1e-4, 2.5e-4, 0.01, 1.0)] == ["3e-5", "1e-4", "2.5e-4", "1e-2", "1e0"]


# ---- one trial's best epoch and summary --------------------------------------------------------------------------


def test_best_epoch_is_the_earliest_of_the_highest_and_ignores_unevaluated_epochs() -> None:
    reports = [
        {"epoch": 1, "id_val": 0.5},
        {"epoch": 2, "id_val": 0.8},
        {"epoch": 3, "id_val": 0.8},
        {"epoch": 4, "id_val": float("nan")},
        {"epoch": 5, "id_val": None},
    ]
    assert best_epoch(reports)["epoch"] == 2
    assert best_epoch([{"epoch": 1, "id_val": None}]) is None and best_epoch([]) is None


def test_best_epoch_ties_go_to_the_lower_id_val_loss_then_the_earliest() -> None:
    reports = [
        {"epoch": 1, "id_val": 1.0, "id_val_loss": 0.30},
        {"epoch": 2, "id_val": 1.0, "id_val_loss": 0.05},
        {"epoch": 3, "id_val": 1.0, "id_val_loss": 0.05},
        {"epoch": 4, "id_val": 0.9, "id_val_loss": 0.01},
        {"epoch": 5, "id_val": 1.0, "id_val_loss": None},  # a report from before the loss was recorded
    ]
    assert best_epoch(reports)["epoch"] == 2
    b = SweepBuilder()
    b.add("tiny_bit", "synth_spurious", "sgd", 1e-3, curve=[(1.0, 0.8, 0.5), (1.0, 0.9, 0.6)], losses=[0.2, 0.1])
    assert trial_results(b.trials, b.epochs)[0]["best_epoch"] == 2
    assert trial_results(b.trials, b.epochs)[0]["id_val_loss"] == pytest.approx(0.1)


def test_summary_is_the_best_epoch_with_time_and_memory_of_every_epoch() -> None:
    reports = [
        {"epoch": 1, "id_val": 0.6, "id_test": 0.5, "ood_test": 0.4, "train_loss": 1.0, "epoch_time_s": 2.0,
         "peak_memory_bytes": 10, "optimizer_state_bytes": 8, "trainable_params": 4, "frozen_params": 1},
        {"epoch": 2, "id_val": 0.7, "id_test": 0.6, "ood_test": 0.3, "train_loss": 0.5, "epoch_time_s": 3.0,
         "peak_memory_bytes": 30, "optimizer_state_bytes": 8, "trainable_params": 4, "frozen_params": 1},
        {"epoch": 3, "id_val": None, "id_test": None, "ood_test": None, "train_loss": float("nan"),
         "epoch_time_s": 1.0, "peak_memory_bytes": 20, "optimizer_state_bytes": 8, "trainable_params": 4,
         "frozen_params": 1},
    ]  # fmt: skip
    s = summarize_trial(reports, status="diverged", epochs_planned=5)
    assert (s.status, s.epochs_planned, s.epochs_done, s.best_epoch) == ("diverged", 5, 2, 2)
    assert (s.id_val, s.id_test, s.ood_test) == (0.7, 0.6, 0.3)
    assert s.wall_time_s == 6.0 and s.peak_memory_bytes == 30 and s.optimizer_state_bytes == 8
    assert math.isnan(s.final_train_loss) and s.trainable_params == 4 and s.error is None
    empty = summarize_trial([], status="pending", epochs_planned=3)
    assert empty.best_epoch is None and empty.epochs_done == 0 and empty.wall_time_s is None


# ---- progress ----------------------------------------------------------------------------------------------------


def _progress_rows(rows: list[tuple[str, int, int, float | None]]) -> list[dict]:
    return [
        {"trial_id": str(i), "status": s, "epochs_planned": p, "epochs_done": d, "wall_time_s": w}
        for i, (s, p, d, w) in enumerate(rows)
    ]


def test_progress_before_any_result() -> None:
    p = sweep_progress([], expected_total=12)
    assert p.counts["pending"] == 12 and p.total == 12 and p.percent_done == 0.0 and p.eta_seconds is None


def test_progress_settles_done_trials_in_full_and_others_by_the_epochs_they_ran() -> None:
    rows = _progress_rows(
        [
            ("completed", 4, 4, 100.0),
            ("completed", 4, 4, 300.0),
            ("stopped", 4, 1, 50.0),  # stopped early: its work is settled, but not in the mean time
            ("running", 4, 2, None),
            ("running", 4, 0, None),
            ("pending", 4, 0, None),
            ("failed", 4, 1, None),  # a resume runs it again: only the epoch it ran counts
            ("cancelled", 4, 2, None),  # likewise
        ]
    )
    p = sweep_progress(rows)
    assert p.total == 8 and p.ended == 5 and set(p.counts) >= set(TrialStatus.ALL)
    assert (p.epochs_done, p.epochs_planned) == (4 + 4 + 1 + 2 + 0 + 0 + 1 + 2, 32)
    assert p.percent_done == pytest.approx(100 * (4 + 4 + 4 + 2 + 0 + 0 + 1 + 2) / 32, abs=0.01)
    assert p.eta_seconds == pytest.approx((0.5 + 1 + 1) * 200.0 / 2)
    assert sweep_progress(rows, active=False).eta_seconds is None


def test_progress_counts_the_last_row_of_a_trial() -> None:
    rows = _progress_rows([("running", 2, 1, None)]) + _progress_rows([("completed", 2, 2, 5.0)])
    p = sweep_progress(rows)
    assert p.total == 1 and p.counts["completed"] == 1 and p.counts["running"] == 0
