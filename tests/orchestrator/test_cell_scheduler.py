"""Per-cell successive halving, driven through Tune's scheduler hooks with fake trials and a fake controller that
does what Tune does with each decision (no Ray running): trials wait at a rung for their cell, the best
1/reduction_factor go on, the rest stop, cells never compete, and a resumed scheduler rebuilt from the sweep's
results stops exactly the trials an uninterrupted one stops."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from orchestrator import sinks
from orchestrator.cell_scheduler import CellScheduler, cell_of, epochs_of, sweep_trial_id
from orchestrator.halving import KeepRule, Member, Stage, Window, decide, deficit_se, rung_epochs
from orchestrator.results import ResultsStore
from tests.orchestrator.test_results import report
from worker.config import TrialConfig

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = Trial.PENDING
    is_saving: bool = False


def config(model: str, lr: float, *, epochs: int = 4, seed: int = 0) -> TrialConfig:
    return TrialConfig(model=model, dataset="synth_style", method="sgd", lr=lr, seed=seed, epochs=epochs)


def trial(model: str, lr: float, **kw: Any) -> FakeTrial:
    c = config(model, lr, **kw)
    return FakeTrial(f"tune-{model}-{lr:g}-s{c.seed}", {"trial": c.to_dict()})  # Tune ids are unique


class FakeTune:
    """What Tune's controller does with a scheduler's decisions, and nothing else."""

    def __init__(self, scheduler: CellScheduler, trials: list[FakeTrial], store: ResultsStore | None = None):
        self.scheduler, self.trials, self.store = scheduler, trials, store
        for t in trials:
            scheduler.on_trial_add(self, t)

    def get_trials(self) -> list[FakeTrial]:
        return self.trials

    def stop_trial(self, t: FakeTrial) -> None:
        if t.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, t)
        t.status = Trial.TERMINATED
        if self.store is not None:
            self.store.finish(sweep_trial_id(t))

    def result(self, t: FakeTrial, epoch: int, score: float | None, status: str = "running") -> str:
        t.status = Trial.RUNNING
        if self.store is not None:
            self.store.record_epoch(sweep_trial_id(t), report(epoch, score, status=status))
        decision = self.scheduler.on_trial_result(self, t, {"epoch": epoch, "id_val": score, "status": status})
        if decision == PAUSE:
            t.status = Trial.PAUSED
        elif decision == STOP or status != "running":
            self.scheduler.on_trial_complete(self, t, {})
            t.status = Trial.TERMINATED
            if self.store is not None:
                self.store.finish(sweep_trial_id(t))
        return decision

    def next_to_run(self) -> FakeTrial | None:
        return self.scheduler.choose_trial_to_run(self)


STRONG = {1e-3: 0.90, 3e-3: 0.95, 1e-2: 0.80}  # epoch-1 ID validation of a strong model's three LRs
WEAK = {1e-3: 0.40, 3e-3: 0.60, 1e-2: 0.30}  # the weak model's best is far below the strong model's worst


def test_global_asha_stops_the_best_lr_of_a_weak_cell() -> None:
    """The failure per-cell scheduling exists for: one ASHA over the sweep kills the weak model's best LR."""
    asha = AsyncHyperBandScheduler(
        time_attr="epoch", metric="id_val", mode="max", max_t=4, grace_period=1, reduction_factor=3
    )
    trials = [trial("tiny_vit", lr) for lr in STRONG] + [trial("tiny_bit", lr) for lr in WEAK]
    scores = [*STRONG.values(), *WEAK.values()]
    for t in trials:
        asha.on_trial_add(None, t)
    decisions = [asha.on_trial_result(None, t, {"epoch": 1, "id_val": s}) for t, s in zip(trials, scores, strict=True)]
    assert decisions[4] == STOP  # tiny_bit at 3e-3, its cell's best


def test_each_cell_waits_at_its_rung_then_keeps_its_own_best() -> None:
    sched = CellScheduler(reduction_factor=3)
    strong = {lr: trial("tiny_vit", lr) for lr in STRONG}
    weak = {lr: trial("tiny_bit", lr) for lr in WEAK}
    tune = FakeTune(sched, [*strong.values(), *weak.values()])
    # 4 epochs, reduction factor 3: one rung, at epoch 1. The first two of a cell wait there for the third.
    assert tune.result(strong[1e-3], 1, 0.90) == PAUSE
    assert tune.result(weak[1e-3], 1, 0.40) == PAUSE
    assert tune.result(strong[3e-3], 1, 0.95) == PAUSE
    assert tune.next_to_run() is strong[1e-2]  # the first pending trial, never a paused one still waiting
    assert tune.result(strong[1e-2], 1, 0.80) == STOP  # the cell is complete: only its best (3e-3) goes on
    assert strong[1e-3].status == Trial.TERMINATED  # the paused loser is stopped
    assert tune.next_to_run() is strong[3e-3]  # the paused winner is let go on
    assert tune.result(weak[3e-3], 1, 0.60) == PAUSE
    assert tune.result(weak[1e-2], 1, 0.30) == STOP
    assert weak[1e-3].status == Trial.TERMINATED and tune.next_to_run() is strong[3e-3]
    strong[3e-3].status = Trial.RUNNING
    assert tune.next_to_run() is weak[3e-3]  # the weak model's best LR survives its own cell's rung
    assert tune.result(strong[3e-3], 2, 0.96) == CONTINUE  # no rung after epoch 1
    assert tune.result(strong[3e-3], 4, 0.97, "completed") == CONTINUE
    assert {sweep_trial_id(t) for t in (strong[1e-3], strong[1e-2], weak[1e-3], weak[1e-2])} == sched.stopped


def test_rungs_are_fractions_of_each_datasets_epochs() -> None:
    assert rung_epochs(3, reduction_factor=3) == [1]  # FMoW's 3 epochs
    assert rung_epochs(4, reduction_factor=3) == [1]
    assert rung_epochs(50, reduction_factor=3) == [2, 6, 17]  # DomainNet's 50
    assert rung_epochs(6, reduction_factor=2, grace_period=2) == [3]
    assert rung_epochs(8, reduction_factor=3, fractions=[0.25, 0.5]) == [2, 4]
    assert rung_epochs(2, reduction_factor=2, grace_period=2) == []  # the only rung would be the last epoch
    assert rung_epochs(1, reduction_factor=3) == []


def test_six_lrs_halve_twice_on_their_best_score_so_far() -> None:
    sched = CellScheduler(reduction_factor=3, rungs=[0.25, 0.5])  # 8 epochs: rungs at 2 and 4
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    ts = {lr: trial("tiny_vit", lr, epochs=8) for lr in lrs}
    tune = FakeTune(sched, list(ts.values()))
    epoch1 = dict(zip(lrs, [0.1, 0.9, 0.2, 0.3, 0.4, 0.5], strict=True))  # 3e-4 peaked at epoch 1
    epoch2 = dict(zip(lrs, [0.2, 0.6, 0.7, 0.8, 0.5, 0.1], strict=True))
    for lr in lrs:
        assert tune.result(ts[lr], 1, epoch1[lr]) == CONTINUE
    decisions = {lr: tune.result(ts[lr], 2, epoch2[lr]) for lr in lrs}
    # Best so far at epoch 2: 3e-4 (0.9), 3e-3 (0.8); the other four stop.
    assert decisions[3e-2] == STOP and ts[3e-4].status == Trial.PAUSED and decisions[3e-3] == PAUSE
    assert {lr for lr in lrs if ts[lr].status == Trial.TERMINATED} == {1e-4, 1e-3, 1e-2, 3e-2}
    for lr in (3e-4, 3e-3):
        assert tune.next_to_run() is ts[lr]
        ts[lr].status = Trial.RUNNING
        assert tune.result(ts[lr], 3, 0.8) == CONTINUE
    assert tune.result(ts[3e-4], 4, 0.81) == PAUSE
    assert tune.result(ts[3e-3], 4, 0.95) == CONTINUE  # beats 3e-4's best so far (0.9): the one to go on
    assert ts[3e-4].status == Trial.TERMINATED


def test_a_diverged_or_failed_trial_does_not_hold_its_cell_at_the_rung() -> None:
    sched = CellScheduler(reduction_factor=2)
    a, b, c, d = (trial("tiny_vit", lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2))
    tune = FakeTune(sched, [a, b, c, d])  # rungs at epochs 2 (and 1)
    assert tune.result(a, 1, 0.5) == PAUSE
    assert tune.result(b, 1, None, "diverged") == CONTINUE
    assert tune.result(c, 1, 0.6) == PAUSE
    sched.on_trial_error(tune, d)  # failed for good before its first report
    assert tune.next_to_run() is c and a.status == Trial.TERMINATED  # 2 scored, keep 1
    assert sched.stopped == {sweep_trial_id(a)}


def test_the_last_epoch_is_never_paused_or_stopped() -> None:
    sched = CellScheduler(reduction_factor=2, grace_period=1)
    good, bad = trial("tiny_vit", 1e-3, epochs=1), trial("tiny_vit", 1e-2, epochs=1)
    tune = FakeTune(sched, [good, bad])
    assert tune.result(good, 1, 0.9, "completed") == CONTINUE
    assert tune.result(bad, 1, 0.1, "completed") == CONTINUE
    assert sched.stopped == set()


def _events(lrs: list[float]) -> list[tuple[float, int, float]]:
    """Two seeds' worth of results, interleaved as Tune might deliver them: (lr, epoch, score)."""
    curve = {1e-3: [0.5, 0.6, 0.62, 0.64], 3e-3: [0.55, 0.7, 0.72, 0.75], 1e-2: [0.6, 0.58, 0.59, 0.6]}
    return [(lr, e + 1, curve[lr][e]) for e in range(4) for lr in lrs]


def _run(tune: FakeTune, ts: dict[float, FakeTrial], events: list[tuple[float, int, float]]) -> None:
    for lr, epoch, score in events:
        t = ts[lr]
        if (
            t.status in (Trial.TERMINATED, Trial.PAUSED)
            or epoch <= tune.scheduler._cells[cell_of(t)][sweep_trial_id(t)].reached
        ):
            continue
        tune.result(t, epoch, score, "completed" if epoch == 4 else "running")
        nxt = tune.next_to_run()
        while nxt is not None:  # let go on every paused trial the scheduler releases (Tune would start it)
            nxt.status = Trial.RUNNING
            nxt = tune.next_to_run()


def test_a_resumed_scheduler_rebuilt_from_the_results_stops_the_same_trials(tmp_path: Path) -> None:
    lrs = [1e-3, 3e-3, 1e-2]
    configs = [config("tiny_vit", lr, epochs=4) for lr in lrs]
    events = _events(lrs)

    def fresh(where: Path) -> tuple[ResultsStore, dict[float, FakeTrial]]:
        store = ResultsStore(where, "s", configs)
        ts = {c.lr: FakeTrial(f"tune-{c.lr:g}", {"trial": c.to_dict()}) for c in configs}
        return store, ts

    whole_store, ts = fresh(tmp_path / "whole")
    whole = CellScheduler(reduction_factor=3, rungs=[0.5], sink_key="whole")
    sinks.register("whole", whole_store)
    try:
        _run(FakeTune(whole, list(ts.values()), whole_store), ts, events)
    finally:
        sinks.unregister("whole")
    assert len(whole.stopped) == 2  # 3 LRs, one rung at epoch 2: 3e-3 goes on

    store, ts = fresh(tmp_path / "cut")
    first = CellScheduler(reduction_factor=3, rungs=[0.5], sink_key="cut")
    sinks.register("cut", store)
    try:
        _run(FakeTune(first, list(ts.values()), store), ts, events[:4])  # epoch 1 of all, epoch 2 of one
        store.flush()
        restored = pickle.loads(pickle.dumps(first))  # as Tune restores it: without what it learnt
        assert restored.stopped == set() and restored._cells == {}
        reopened = ResultsStore(tmp_path / "cut", "s", configs)  # the resumed driver's store, from Parquet
        sinks.register("cut", reopened)
        for t in ts.values():  # Tune requeues unfinished trials, paused ones included
            t.status = Trial.PENDING if t.status != Trial.TERMINATED else t.status
        _run(FakeTune(restored, list(ts.values()), reopened), ts, events)
    finally:
        sinks.unregister("cut")
    assert restored.stopped == whole.stopped
    final = {r["trial_id"]: r["status"] for r in reopened.trials_table().to_pylist()}
    assert final == {r["trial_id"]: r["status"] for r in whole_store.trials_table().to_pylist()}


def test_an_extensions_new_lr_is_compared_with_its_cells_finished_trials(tmp_path: Path) -> None:
    old = [config("tiny_vit", lr) for lr in (1e-3, 3e-3, 1e-2)]
    new = config("tiny_vit", 3e-2)
    store = ResultsStore(tmp_path, "s", [*old, new])
    for c, curve in zip(old, ([0.5, 0.6, 0.6, 0.6], [0.7, 0.8, 0.8, 0.8], [0.6, 0.6, 0.6, 0.6]), strict=True):
        store.start(c.trial_id())
        for epoch, v in enumerate(curve, 1):
            store.record_epoch(c.trial_id(), report(epoch, v, status="completed" if epoch == 4 else "running"))
        store.finish(c.trial_id())
    sched = CellScheduler(reduction_factor=3, sink_key="x")
    sinks.register("x", store)
    try:
        t = FakeTrial("tune-new", {"trial": new.to_dict()})
        tune = FakeTune(sched, [t])
        # 4 epochs: one rung, at epoch 1, where the finished trials scored 0.7, 0.6 and 0.5; the top 2 of 4 go on
        assert tune.result(t, 1, 0.55) == STOP
    finally:
        sinks.unregister("x")


def test_decisions_depend_on_scores_not_on_arrival_order() -> None:
    def members(order: list[float]) -> dict[str, Member]:
        scores = {1e-3: 0.3, 3e-3: 0.9, 1e-2: 0.6, 3e-2: 0.8}
        out = {}
        for lr in order:
            m = Member(group=lr, live=True)
            m.record(1, scores[lr])
            out[f"t{lr}"] = m
        return out

    one = decide(members([1e-3, 3e-3, 1e-2, 3e-2]), [1], KeepRule(reduction_factor=2.0), epochs=4)
    two = decide(members([3e-2, 1e-2, 3e-3, 1e-3]), [1], KeepRule(reduction_factor=2.0), epochs=4)
    assert one.decisions == two.decisions and one.decisions[0].promoted == {3e-3, 3e-2}


def test_an_lrs_seeds_are_ranked_by_their_mean_and_share_one_fate() -> None:
    sched = CellScheduler(reduction_factor=2)  # 4 epochs: rungs at 2 and 1
    ts = {(lr, seed): trial("tiny_vit", lr, seed=seed) for lr in (1e-3, 1e-2) for seed in (0, 1)}
    tune = FakeTune(sched, list(ts.values()))
    # 1e-3 has the single best seed (0.9) but the worse mean (0.55 against 0.7)
    scores = {(1e-3, 0): 0.9, (1e-3, 1): 0.2, (1e-2, 0): 0.7, (1e-2, 1): 0.7}
    decisions = {k: tune.result(t, 1, scores[k]) for k, t in ts.items()}
    assert decisions[(1e-2, 1)] == CONTINUE and [decisions[k] for k in list(ts)[:3]] == [PAUSE] * 3
    assert {k for k, t in ts.items() if t.status == Trial.TERMINATED} == {(1e-3, 0), (1e-3, 1)}
    assert tune.next_to_run() is ts[(1e-2, 0)]


def test_cells_and_epochs_come_from_the_trial_config() -> None:
    t = trial("tiny_vit", 1e-3, epochs=5, seed=2)
    assert cell_of(t) == ("tiny_vit", "synth_style", "sgd")  # seeds of one LR are compared together
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
        ({"rungs": [0.5, 1.0]}, "fractions"),
        ({"neighbours": -1}, "neighbours"),
        ({"neighbours": 1, "margin": 1.5}, "margin"),
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


def test_a_trial_the_results_list_but_tune_never_creates_does_not_hold_the_rung_forever(tmp_path: Path) -> None:
    configs = [config("tiny_vit", lr) for lr in (1e-3, 1e-2, 1e-1)]
    store = ResultsStore(tmp_path, "s", configs)  # all three listed as pending
    sched = CellScheduler(reduction_factor=3, sink_key="absent")
    sinks.register("absent", store)
    try:
        a, b = (FakeTrial(f"t{c.lr:g}", {"trial": c.to_dict()}) for c in configs[:2])
        tune = FakeTune(sched, [a, b])  # the third is never created in this run
        assert tune.result(a, 1, 0.5) == PAUSE
        assert tune.result(b, 1, 0.7) == PAUSE  # waits for the listed third
        assert tune.next_to_run() is b  # nothing runs or waits to start: the rung decides without it
        assert a.status == Trial.TERMINATED
    finally:
        sinks.unregister("absent")


GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]


def _cell(scores: dict[float, list[float]]) -> dict[str, Member]:
    """A cell whose LRs' seeds reported these epoch-1 scores."""
    out = {}
    for lr, seeds in scores.items():
        for seed, v in enumerate(seeds):
            m = Member(group=lr, live=True)
            m.record(1, v)
            out[f"{lr:g}-s{seed}"] = m
    return out


def test_the_neighbours_rule_keeps_the_leader_and_its_grid_neighbours() -> None:
    # the leader 1e-3 sits mid-grid: it and one step either side go on, whatever their scores; the rest stop
    scores = {1e-4: [0.50], 3e-4: [0.60], 1e-3: [0.90], 3e-3: [0.40], 1e-2: [0.88], 3e-2: [0.20]}
    [d] = decide(_cell(scores), [1], KeepRule(neighbours=1), epochs=8).decisions
    assert d.promoted == {3e-4, 1e-3, 3e-3} and d.stopped == {1e-4, 1e-2, 3e-2}
    # at an edge of the grid it keeps the one neighbour there is
    scores[1e-4] = [0.95]
    [d] = decide(_cell(scores), [1], KeepRule(neighbours=1), epochs=8).decisions
    assert d.promoted == {1e-4, 3e-4}


def test_the_margin_keeps_a_far_lr_whose_score_is_close_to_the_leaders() -> None:
    scores = {1e-4: [0.50], 3e-4: [0.60], 1e-3: [0.90], 3e-3: [0.40], 1e-2: [0.88], 3e-2: [0.20]}
    [d] = decide(_cell(scores), [1], KeepRule(neighbours=1, margin=0.02), epochs=8).decisions
    assert d.promoted == {3e-4, 1e-3, 3e-3, 1e-2}  # 0.88 is within 0.02 of 0.90 (rounding included)
    [d] = decide(_cell(scores), [1], KeepRule(neighbours=0, margin=0.05), epochs=8).decisions
    assert d.promoted == {1e-3, 1e-2}  # the margin alone


def test_the_neighbours_rule_ranks_seed_means_breaks_ties_to_the_smaller_lr_and_never_keeps_a_diverged_lr() -> None:
    # 3e-3 has the best seed (0.99) but not the best mean; 1e-3 and 1e-2 tie on their mean: the smaller LR leads
    scores = {1e-4: [0.1, 0.1], 3e-4: [0.1, 0.1], 1e-3: [0.8, 0.8], 3e-3: [0.99, 0.41], 1e-2: [0.8, 0.8]}
    cell = _cell(scores)
    diverged = Member(group=3e-2, live=True)
    diverged.record(1, None)
    cell["diverged"] = diverged
    [d] = decide(cell, [1], KeepRule(neighbours=1), epochs=8).decisions
    assert d.ranked[0] == 1e-3  # and 1e-2, its equal, goes on too: a tie is within any margin, 0 included
    assert d.promoted == {3e-4, 1e-3, 3e-3, 1e-2} and d.stopped == {1e-4, 3e-2}


def test_a_cell_under_the_neighbours_rule_stops_its_far_lrs_at_the_rung_and_lets_the_rest_run_on() -> None:
    sched = CellScheduler(neighbours=1, rungs=[0.25])  # 4 epochs: one rung, at epoch 1
    lrs = [1e-3, 3e-3, 1e-2, 3e-2]
    ts = {lr: trial("tiny_vit", lr) for lr in lrs}
    tune = FakeTune(sched, list(ts.values()))
    scores = {1e-3: 0.9, 3e-3: 0.2, 1e-2: 0.7, 3e-2: 0.85}  # 3e-2 scores well but is three steps from the leader
    decisions = {lr: tune.result(ts[lr], 1, scores[lr]) for lr in lrs}
    assert [decisions[lr] for lr in lrs[:3]] == [PAUSE] * 3 and decisions[3e-2] == STOP
    assert {lr for lr, t in ts.items() if t.status == Trial.TERMINATED} == {1e-2, 3e-2}
    assert sched.stopped == {sweep_trial_id(ts[1e-2]), sweep_trial_id(ts[3e-2])}
    let_go = []
    while (t := tune.next_to_run()) is not None:
        let_go.append(t.trial_id)
        t.status = Trial.RUNNING
    assert sorted(let_go) == sorted(ts[lr].trial_id for lr in (1e-3, 3e-3))  # the leader and its one neighbour


def test_the_noise_tolerance_keeps_an_lr_whose_deficit_the_seeds_spread_could_explain() -> None:
    # 3e-2 trails the leader by 0.10 on the mean; its seeds and the leader's spread widely: the difference of the
    # means has a standard error of sqrt(0.1**2 / 2 + 0.1**2 / 2) = 0.1, so 2 standard errors cover it
    noisy = {1e-3: [0.9, 0.7], 3e-3: [0.5, 0.5], 1e-2: [0.9, 0.9], 3e-2: [0.85, 0.65], 1e-1: [0.2, 0.2]}
    [d] = decide(_cell(noisy), [1], KeepRule(neighbours=0, noise=2.0), epochs=8).decisions
    assert d.ranked[0] == 1e-2 and d.promoted == {1e-3, 1e-2, 3e-2}  # 1e-3 trails by 0.1 too
    [d] = decide(_cell(noisy), [1], KeepRule(neighbours=0, noise=0.5), epochs=8).decisions
    assert d.promoted == {1e-2}  # half a standard error does not cover 0.1
    # the same means with seeds that agree: no spread, so only the margin can keep them
    steady = {1e-3: [0.8, 0.8], 3e-3: [0.5, 0.5], 1e-2: [0.9, 0.9], 3e-2: [0.75, 0.75], 1e-1: [0.2, 0.2]}
    [d] = decide(_cell(steady), [1], KeepRule(neighbours=0, noise=2.0), epochs=8).decisions
    assert d.promoted == {1e-2}
    [d] = decide(_cell(steady), [1], KeepRule(neighbours=0, noise=2.0, margin=0.1), epochs=8).decisions
    assert d.promoted == {1e-3, 1e-2}
    # one seed has no spread
    [d] = decide(
        _cell({lr: v[:1] for lr, v in noisy.items()}), [1], KeepRule(neighbours=0, noise=2.0), epochs=8
    ).decisions
    assert d.promoted == {1e-3, 1e-2}  # 0.9 and 0.9: a tie


def _seeded(scores: dict[float, list[float]]) -> dict[str, Member]:
    """`_cell`, its trials knowing their seeds (the i-th score of every LR is seed i's)."""
    cell = _cell(scores)
    for tid, m in cell.items():
        m.seed = int(tid.rpartition("-s")[2])
    return cell


def test_paired_noise_compares_lrs_seed_by_seed() -> None:
    # 1e-2 trails the leader by 0.06 on the mean. Each LR's seeds agree within 0.03 (sd), so unpaired 2 standard
    # errors, 2 * sqrt(2 * 0.03**2 / 3) = 0.049, do not cover 0.06; but where the leader's seed did well, 1e-2's
    # did badly: the per-seed differences 0, 0.12, 0.06 have an sd of 0.06, so paired 2 * 0.06 / sqrt(3) = 0.069 do
    crossing = {1e-4: [0.1, 0.1, 0.1], 1e-3: [0.80, 0.86, 0.83], 1e-2: [0.80, 0.74, 0.77]}
    unpaired = KeepRule(neighbours=0, noise=2.0)
    paired = KeepRule(neighbours=0, noise=2.0, paired=True)
    [d] = decide(_seeded(crossing), [1], unpaired, epochs=8).decisions
    assert d.promoted == {1e-3}
    [d] = decide(_seeded(crossing), [1], paired, epochs=8).decisions
    assert d.promoted == {1e-3, 1e-2}
    # seeds that move both LRs alike: a hard seed 0, an easy seed 1. Unpaired, the spread (sd 0.15) explains the
    # 0.05 deficit; paired, every seed says 0.05, with no spread, and 1e-2 stops
    alike = {1e-4: [0.1, 0.1, 0.1], 1e-3: [0.60, 0.90, 0.75], 1e-2: [0.55, 0.85, 0.70]}
    [d] = decide(_seeded(alike), [1], unpaired, epochs=8).decisions
    assert d.promoted == {1e-3, 1e-2}
    [d] = decide(_seeded(alike), [1], paired, epochs=8).decisions
    assert d.promoted == {1e-3}
    # trials of unknown seed, or fewer than 3 seeds in common, pair with nothing: the unpaired rule applies
    [d] = decide(_cell(alike), [1], paired, epochs=8).decisions
    assert d.promoted == {1e-3, 1e-2}
    [d] = decide(_seeded({lr: v[:2] for lr, v in alike.items()}), [1], paired, epochs=8).decisions
    assert d.promoted == {1e-3, 1e-2}
    assert deficit_se({0: 0.6, 1: 0.9}, {1: 0.85, 2: 0.7}, paired=True) == pytest.approx(
        deficit_se({0: 0.6, 1: 0.9}, {1: 0.85, 2: 0.7}, paired=False)
    )


def test_a_paired_rule_through_the_scheduler_takes_each_trials_seed_from_its_config() -> None:
    sched = CellScheduler(rule=KeepRule(neighbours=0, noise=2.0, paired=True), rungs=[0.25])  # rung at epoch 1
    ts = {(lr, seed): trial("tiny_vit", lr, seed=seed) for lr in (1e-3, 1e-2) for seed in (0, 1, 2)}
    tune = FakeTune(sched, list(ts.values()))
    alike = {1e-3: [0.60, 0.90, 0.75], 1e-2: [0.55, 0.85, 0.70]}  # unpaired, 1e-2 would go on (above)
    decisions = {k: tune.result(t, 1, alike[k[0]][k[1]]) for k, t in ts.items()}
    assert decisions[(1e-2, 2)] == STOP and {k for k, t in ts.items() if t.status == Trial.TERMINATED} == {
        (1e-2, 0),
        (1e-2, 1),
        (1e-2, 2),
    }


def _curves(curves: dict[float, list[float]]) -> dict[str, Member]:
    """A cell of one seed per LR whose ID validation per epoch (from 1) is given."""
    out = {}
    for lr, scores in curves.items():
        m = Member(group=lr, live=True)
        for epoch, v in enumerate(scores, start=1):
            m.record(epoch, v)
        out[f"{lr:g}"] = m
    return out


def test_late_rungs_keep_the_larger_neighbour_and_a_smaller_one_only_within_the_margin() -> None:
    rule = KeepRule(neighbours=1, margin=0.01, stages=(Stage(0.5, below=0),))
    cell = {  # epochs 1-4 of 8; 1e-2 leads throughout
        1e-3: [0.4, 0.5, 0.60, 0.70],
        3e-3: [0.5, 0.6, 0.70, 0.80],
        1e-2: [0.6, 0.7, 0.80, 0.85],
        3e-2: [0.5, 0.5, 0.55, 0.60],
        1e-1: [0.1, 0.1, 0.1, 0.1],
    }
    early, late = decide(_curves(cell), [1, 4], rule, epochs=8).decisions
    assert early.promoted == {3e-3, 1e-2, 3e-2}  # epoch 1 of 8: one step either side
    assert late.promoted == {1e-2, 3e-2}  # epoch 4 of 8 is late: 3e-3 trails by 5 points and stops, 3e-2 goes on
    cell[3e-3] = [0.5, 0.6, 0.70, 0.845]  # within the margin
    _, late = decide(_curves(cell), [1, 4], rule, epochs=8).decisions
    assert late.promoted == {3e-3, 1e-2, 3e-2}
    # where the rung falls in the schedule decides: epoch 4 of 16 is not late
    _, late = decide(_curves(cell | {3e-3: [0.5, 0.6, 0.7, 0.8]}), [1, 4], rule, epochs=16).decisions
    assert late.promoted == {3e-3, 1e-2, 3e-2}
    # a stage only narrows: `below` larger than neighbours keeps `neighbours`
    assert KeepRule(neighbours=1, stages=(Stage(0.5, below=3),)).window_at(0.5) == Window(1, 1, 0.0, 0.0)


def test_stages_go_on_from_each_other_and_narrow_the_window_late() -> None:
    rule = KeepRule(
        neighbours=1,
        margin=0.01,
        stages=(Stage(0.3, below=0, noise=2.0), Stage(0.7, below=None, above=0, margin=0.0)),
    )
    assert rule.window_at(0.125) == Window(1, 1, 0.01, 0.0)
    assert rule.window_at(0.375) == Window(0, 1, 0.01, 2.0)
    assert rule.window_at(0.75) == Window(0, 0, 0.0, 2.0)  # below stays 0, noise stays 2 from the stage before
    cell = {  # one seed per LR, epochs 1-6 of 8; 1e-2 leads from epoch 3, 3e-2 trails it by 2 points at epoch 6
        1e-3: [0.60, 0.65, 0.70, 0.72, 0.74, 0.75],
        3e-3: [0.62, 0.70, 0.78, 0.80, 0.82, 0.83],
        1e-2: [0.55, 0.72, 0.82, 0.84, 0.86, 0.88],
        3e-2: [0.40, 0.60, 0.80, 0.83, 0.85, 0.86],
        1e-1: [0.10, 0.10, 0.10, 0.10, 0.10, 0.10],
    }
    first, second, third = decide(_curves(cell), [1, 3, 6], rule, epochs=8).decisions
    assert first.promoted == {1e-3, 3e-3, 1e-2}  # 3e-3 leads at epoch 1: a step either side
    assert second.promoted == {1e-2}  # 1e-2 leads at epoch 3; 3e-2 was stopped at epoch 1, 3e-3 is below
    cell[1e-2][0] = 0.65  # now 1e-2 leads at epoch 1 too, and 3e-2 goes on as its larger neighbour
    first, second, third = decide(_curves(cell), [1, 3, 6], rule, epochs=8).decisions
    assert (first.promoted, second.promoted) == ({3e-3, 1e-2, 3e-2}, {1e-2, 3e-2})
    assert third.promoted == {1e-2}  # from 0.7 of the epochs nothing above the leader by position, no margin


def test_a_cell_with_late_rungs_stops_the_smaller_neighbour_at_the_late_rung_through_the_scheduler() -> None:
    rule = KeepRule(neighbours=1, stages=(Stage(0.5, below=0),))
    sched = CellScheduler(rule=rule, rungs=[0.25, 0.5])  # 4 epochs: rungs at 1 and 2, the second late
    lrs = [1e-3, 3e-3, 1e-2]
    ts = {lr: trial("tiny_vit", lr, epochs=4) for lr in lrs}
    tune = FakeTune(sched, list(ts.values()))
    assert [tune.result(ts[lr], 1, s) for lr, s in zip(lrs, (0.5, 0.8, 0.6), strict=True)] == [PAUSE, PAUSE, CONTINUE]
    while (t := tune.next_to_run()) is not None:
        t.status = Trial.RUNNING  # every LR is within a step of the leader: all three go on
    decisions = {lr: tune.result(ts[lr], 2, s) for lr, s in zip(lrs, (0.7, 0.9, 0.6), strict=True)}
    assert decisions[1e-2] == CONTINUE and ts[1e-3].status == Trial.TERMINATED  # below the leader, at a late rung
    assert sched.stopped == {sweep_trial_id(ts[1e-3])}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"neighbours": 1, "noise": -1.0}, "noise"),
        ({"neighbours": 1, "stages": (Stage(1.0),)}, r"stages\[0\]\.start"),
        ({"neighbours": 1, "stages": (Stage(0.5, below=-1),)}, r"stages\[0\]\.below"),
        ({"neighbours": 1, "stages": (Stage(0.5, above=0.5),)}, r"stages\[0\]\.above"),
        ({"neighbours": 1, "stages": (Stage(0.5, noise=11.0),)}, r"stages\[0\]\.noise"),
        ({"neighbours": 1, "stages": (Stage(0.5, margin=2.0),)}, r"stages\[0\]\.margin"),
        ({"neighbours": 1, "stages": (Stage(0.7), Stage(0.3))}, "increasing"),
    ],
)
def test_bad_keep_rules_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeepRule(**kwargs)
