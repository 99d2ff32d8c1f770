"""Per-cell early stopping, driven through the scheduler hooks with fake trials (no Ray running)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from orchestrator.cell_scheduler import CellScheduler, cell_of, epochs_of

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)


def trial(tid: str, model: str, lr: float, *, epochs: int = 4, seed: int = 0) -> FakeTrial:
    cfg = {"model": model, "dataset": "synth_style", "method": "sgd", "lr": lr, "seed": seed, "epochs": epochs}
    return FakeTrial(tid, {"trial": cfg})


def result(epoch: int, id_val: float | None, status: str = "running") -> dict[str, Any]:
    return {"epoch": epoch, "id_val": id_val, "status": status}


# Epoch-1 ID validation accuracy of three LRs in a strong cell and in a weak cell (the weak model's best LR is
# far below the strong model's worst).
STRONG = {"s_lo": 0.90, "s_mid": 0.95, "s_hi": 0.80}
WEAK = {"w_lo": 0.40, "w_mid": 0.60, "w_hi": 0.30}


def _trials() -> list[FakeTrial]:
    lrs = {"lo": 1e-3, "mid": 3e-3, "hi": 1e-2}
    out = [trial(t, "tiny_vit", lrs[t[2:]]) for t in STRONG]
    out += [trial(t, "tiny_bit", lrs[t[2:]]) for t in WEAK]
    return out


def _epoch_one(scheduler: TrialScheduler, trials: list[FakeTrial]) -> dict[str, str]:
    for t in trials:
        scheduler.on_trial_add(None, t)
    scores = {**STRONG, **WEAK}
    return {t.trial_id: scheduler.on_trial_result(None, t, result(1, scores[t.trial_id])) for t in trials}


def test_global_asha_stops_the_best_lr_of_a_weak_cell() -> None:
    """The failure this scheduler exists for: one ASHA over the sweep kills the weak model's best LR."""
    asha = AsyncHyperBandScheduler(
        time_attr="epoch", metric="id_val", mode="max", max_t=4, grace_period=1, reduction_factor=3
    )
    decisions = _epoch_one(asha, _trials())
    assert decisions["w_mid"] == STOP


def test_cell_scheduler_keeps_the_best_lr_of_every_cell() -> None:
    decisions = _epoch_one(CellScheduler(grace_period=1, reduction_factor=3), _trials())
    assert decisions["w_mid"] == CONTINUE
    assert decisions["s_mid"] == CONTINUE


def test_cell_scheduler_stops_a_weak_lr_within_its_cell() -> None:
    sched = CellScheduler(grace_period=1, reduction_factor=3)
    decisions = _epoch_one(sched, _trials())
    # Third to report in each cell and below the cell's cutoff: stopped, and recorded as stopped.
    assert decisions["w_hi"] == STOP and decisions["s_hi"] == STOP
    assert sched.stopped == {"w_hi", "s_hi"}


def test_no_stop_before_the_grace_period() -> None:
    sched = CellScheduler(grace_period=2, reduction_factor=2)
    ts = [trial(f"t{i}", "tiny_vit", 10.0**-i, epochs=6) for i in range(4)]
    for t in ts:
        sched.on_trial_add(None, t)
    for i, t in enumerate(ts):
        assert sched.on_trial_result(None, t, result(1, 0.9 - 0.2 * i)) == CONTINUE
    # At the grace-period rung the worst of four is compared with the others and stopped.
    decisions = [sched.on_trial_result(None, t, result(2, 0.9 - 0.2 * i)) for i, t in enumerate(ts)]
    assert decisions[-1] == STOP


def test_final_epoch_and_diverged_reports_are_never_stopped() -> None:
    sched = CellScheduler(grace_period=1, reduction_factor=2)
    good, bad, nan = (trial(n, "tiny_vit", lr, epochs=1) for n, lr in (("good", 1e-3), ("bad", 1e-2), ("nan", 1.0)))
    for t in (good, bad, nan):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, good, result(1, 0.9, "completed")) == CONTINUE
    # Below the rung's cutoff, but it is the trial's last epoch: it simply completes.
    assert sched.on_trial_result(None, bad, result(1, 0.1, "completed")) == CONTINUE
    assert sched.on_trial_result(None, nan, result(1, None, "diverged")) == CONTINUE
    assert sched.on_trial_result(None, nan, result(1, float("nan"), "diverged")) == CONTINUE
    for t in (good, bad):
        sched.on_trial_complete(None, t, result(1, 0.5, "completed"))
    sched.on_trial_complete(None, nan, result(1, None, "diverged"))
    assert sched.stopped == set()


def test_complete_error_and_remove_forget_trials() -> None:
    sched = CellScheduler()
    a, b, c = (trial(n, "tiny_vit", lr) for n, lr in (("a", 1e-3), ("b", 3e-3), ("c", 1e-2)))
    for t in (a, b, c):
        sched.on_trial_add(None, t)
    sched.on_trial_result(None, a, result(1, 0.5))
    sched.on_trial_complete(None, a, result(1, 0.5))
    sched.on_trial_error(None, b)
    sched.on_trial_remove(None, c)
    assert "1 cells" in sched.debug_string()
    # A trial the scheduler never saw added (e.g. after a resume) is added on its first result.
    late = trial("late", "tiny_vit", 3e-2)
    assert sched.on_trial_result(None, late, result(1, 0.7)) == CONTINUE


def test_cells_and_epochs_come_from_the_trial_config() -> None:
    t = trial("x", "tiny_vit", 1e-3, epochs=5, seed=2)
    assert cell_of(t) == ("tiny_vit", "synth_style", "sgd", 2)
    assert epochs_of(t) == 5
    t.config["trial"]["epochs"] = None
    assert epochs_of(t) == 8  # synth_style's catalog default
    with pytest.raises(KeyError, match="'trial'"):
        cell_of(FakeTrial("y", {"lr": 1.0}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grace_period": 0}, "grace_period"),
        ({"reduction_factor": 1.0}, "reduction_factor"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CellScheduler(**kwargs)


def test_search_properties_must_agree() -> None:
    sched = CellScheduler()
    assert sched.set_search_properties(None, None)
    assert sched.set_search_properties("id_val", "max")
    assert not sched.set_search_properties("ood_test", "max")
