"""Early stopping within a cell, on Ray Tune: synchronous successive halving per (model, dataset, method).

The decisions are `orchestrator.halving`'s; this module applies them to Tune's trials. A trial that reaches a
rung before the rest of its cell is paused (Tune saves its latest checkpoint and frees its resources) until
the cell's decision; then the losers are stopped and the winners unpaused, ahead of any trial not yet started.
Trials start in the sweep's order, which lists a cell's LRs together, so a cell's trials run side by side.
Cells never compete: a single scheduler over the whole sweep would compare a weak model's best LR with a
strong model's worst and stop the very trial the weak model's table entry is made of.

Tune restores a scheduler as it was pickled when the sweep started, without what it learnt, so the cells are
rebuilt from the sweep's results (the driver's `ResultsStore`, looked up by key in `orchestrator.sinks`): a
resumed sweep decides exactly as an uninterrupted one, and an extension's new LRs are compared with their
cell's finished trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator import sinks
from orchestrator.halving import CONTINUE, PAUSE, STOP, CellState, KeepRule, Member, decide, rung_epochs
from worker.config import TrialConfig
from worker.records import SELECTION_METRIC, TrialStatus
from worker.selection import reports_last_epoch

TRIAL_CONFIG_KEY = "trial"  # the key of the param space that holds a trial's TrialConfig dict
Cell = tuple[str, str, str]  # model, dataset, method
_LEARNT = ("_cells", "_rungs", "_last_epoch", "_tune", "_cell_of", "_sweep_ids", "_unpause", "_rebuilt", "stopped")
_TUNE_ACTION = {CONTINUE: TrialScheduler.CONTINUE, PAUSE: TrialScheduler.PAUSE, STOP: TrialScheduler.STOP}


def _trial_config(trial: Any) -> TrialConfig:
    config = getattr(trial, "config", None) or {}
    if TRIAL_CONFIG_KEY not in config:
        raise KeyError(f"trial {trial.trial_id} has no {TRIAL_CONFIG_KEY!r} entry in its config; got {sorted(config)}")
    return TrialConfig.from_dict(config[TRIAL_CONFIG_KEY])


def _cell(t: TrialConfig) -> Cell:
    return (t.model, t.dataset, t.method)


def cell_of(trial: Any) -> Cell:
    """(model, dataset, method) of a Tune trial whose config holds a TrialConfig dict: its cell of the tables."""
    return _cell(_trial_config(trial))


def epochs_of(trial: Any) -> int:
    """The number of epochs the trial will run unless stopped."""
    return _trial_config(trial).epochs_planned()


def sweep_trial_id(trial: Any) -> str:
    """The sweep's id of a Tune trial (a hash of its science), which its rows in the results carry."""
    return _trial_config(trial).trial_id()


class CellScheduler(FIFOScheduler):
    """Synchronous early stopping per cell, on the selection metric (`SELECTION_METRIC`, higher is better).

    Args:
        reduction_factor: at each rung only the top 1/reduction_factor of the cell's trials go on (at least one),
            unless `neighbours` is given; it also places the default rungs.
        grace_period: epochs every trial runs before its first rung.
        rungs: fractions of a trial's epochs to compare at; None: epochs / reduction_factor**k (k = 1, 2, ...).
        neighbours, margin: the neighbours rule instead of halving (`orchestrator.halving.KeepRule`): at each rung
            the leading LR, the LRs up to `neighbours` grid steps from it and those within `margin` of its score.
        rule: the whole `KeepRule` at once (a spec's `early_stopping.keep_rule()`, with its noise tolerance and
            late rungs), in place of the three above.
        sink_key: the key of the sweep's results sink in `orchestrator.sinks`, to rebuild the cells from.
    """

    def __init__(
        self,
        *,
        reduction_factor: float = 3.0,
        grace_period: int = 1,
        rungs: Sequence[float] | None = None,
        neighbours: int | None = None,
        margin: float = 0.0,
        rule: KeepRule | None = None,
        sink_key: str | None = None,
    ):
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1 epoch, got {grace_period}")
        if rule is None:
            rule = KeepRule(reduction_factor=reduction_factor, neighbours=neighbours, margin=margin)  # checks them
        if rungs is not None and not all(0 < f < 1 for f in rungs):
            raise ValueError(f"rungs are fractions of a trial's epochs, each in (0, 1); got {list(rungs)}")
        super().__init__()
        self._rule = rule
        self._grace_period = grace_period
        self._rung_fractions = list(rungs) if rungs else None
        self._sink_key = sink_key
        self._reset()

    def _reset(self) -> None:
        self._cells: dict[Cell, dict[str, Member]] = {}  # cell -> sweep trial id -> what is known of it
        self._rungs: dict[Cell, list[int]] = {}
        self._last_epoch: dict[Cell, int] = {}
        self._tune: dict[str, Any] = {}  # sweep trial id -> its Tune trial, for trials of this run
        self._cell_of: dict[str, Cell] = {}  # sweep trial id -> cell
        self._sweep_ids: dict[str, str] = {}  # Tune's trial id -> the sweep's (its config is read once)
        self._unpause: list[str] = []  # paused trials a decision has let go on, in the order they were let go
        self._rebuilt = False
        self.stopped: set[str] = set()  # sweep trial ids this scheduler stopped early

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles the scheduler with the experiment; what it learnt is rebuilt from the results instead."""
        state = dict(self.__dict__)
        for name in _LEARNT:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Tune passes TuneConfig's metric/mode here; this scheduler's own are fixed and must not conflict."""
        return metric in (None, SELECTION_METRIC) and mode in (None, "max")

    def rungs_for(self, epochs: int) -> list[int]:
        """The epochs a trial of `epochs` epochs is compared at, where it may be paused."""
        return rung_epochs(
            epochs,
            reduction_factor=self._rule.reduction_factor,
            grace_period=self._grace_period,
            fractions=self._rung_fractions,
        )

    # ---- what is known of each cell ----------------------------------------------------------------------

    def _member(self, tid: str, cell: Cell, lr: float, seed: int | None) -> Member:
        members = self._cells.setdefault(cell, {})
        if tid not in members:
            _, dataset, method = cell
            members[tid] = Member(group=lr, last_epoch_rule=reports_last_epoch(method, dataset), seed=seed)
        self._cell_of[tid] = cell
        return members[tid]

    def _rebuild(self) -> None:
        """Seed every cell with what the sweep's results recorded: trials of earlier runs (stopped, completed),
        the epochs a resumed trial ran before, and the trials Tune has yet to create (it creates them as slots
        free up), which a rung waits for. Once, at the first result (after Tune's restore was merged)."""
        self._rebuilt = True
        sink = sinks.find(self._sink_key)
        if sink is None:
            return
        for rec in sink.recorded_trials():
            member = self._member(rec.trial_id, rec.cell, rec.lr, rec.seed)
            member.merge(rec)
            if rec.trial_id not in self._tune:  # a trial Tune has not created yet runs in this run unless done
                member.live = rec.status not in TrialStatus.DONE
            if rec.status == TrialStatus.STOPPED:
                self.stopped.add(rec.trial_id)

    def _track(self, trial: Any) -> tuple[str, Member]:
        tid = self._sweep_ids.get(trial.trial_id)
        if tid is None:
            config = _trial_config(trial)
            tid = self._sweep_ids[trial.trial_id] = config.trial_id()
            cell = _cell(config)
            member = self._member(tid, cell, config.lr, config.seed)
            if cell not in self._rungs:
                epochs = max(1, config.epochs_planned())
                self._last_epoch[cell] = epochs
                self._rungs[cell] = self.rungs_for(epochs)
            self._tune[tid] = trial
            member.live = getattr(trial, "status", Trial.PENDING) not in (Trial.TERMINATED, Trial.ERROR)
        return tid, self._cells[self._cell_of[tid]][tid]

    # ---- Tune's hooks --------------------------------------------------------------------------------------

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._track(trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if not self._rebuilt:
            self._rebuild()
        tid, member = self._track(trial)
        if "epoch" not in result:
            return TrialScheduler.CONTINUE
        member.record(int(result["epoch"]), result.get(SELECTION_METRIC))
        cell = self._cell_of[tid]
        if result.get("status", TrialStatus.RUNNING) != TrialStatus.RUNNING:
            member.live = False  # its last report (completed, or diverged): it ends by itself
            self._settle(tune_controller, cell)
            return TrialScheduler.CONTINUE
        state = decide(self._cells[cell], self._rungs[cell], self._rule, epochs=self._last_epoch[cell])
        action = state.action(member, self._last_epoch[cell])
        if action == STOP:
            self.stopped.add(tid)
        self._settle(tune_controller, cell, acting=tid, state=state)
        return _TUNE_ACTION[action]

    def _settle(
        self, tune_controller: Any, cell: Cell, acting: str | None = None, state: CellState | None = None
    ) -> None:
        """Apply the cell's decisions (`state`, or decided here) to its paused trials: losers stop, winners are
        let go on."""
        state = state or decide(self._cells[cell], self._rungs[cell], self._rule, epochs=self._last_epoch[cell])
        for tid, member in self._cells[cell].items():
            trial = self._tune.get(tid)
            if tid == acting or trial is None or not member.live:
                continue
            if not (trial.status == Trial.PAUSED or getattr(trial, "is_saving", False)):
                continue
            action = state.action(member, self._last_epoch[cell])
            if action == STOP:
                self.stopped.add(tid)
                member.live = False
                tune_controller.stop_trial(trial)  # Tune then tells the results callback, which records it stopped
            elif action == CONTINUE and tid not in self._unpause:
                self._unpause.append(tid)

    def _end(self, tune_controller: Any, trial: Any) -> None:
        tid, member = self._track(trial)
        member.live = False
        self._settle(tune_controller, self._cell_of[tid])

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._end(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._end(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._end(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any | None:
        """A paused trial its cell has let go on, first; else the first pending trial in the sweep's order.
        A paused trial still waiting for its cell is never chosen."""
        for tid in list(self._unpause):
            trial = self._tune.get(tid)
            if trial is not None and trial.status == Trial.PAUSED:
                return trial
            if trial is None or not getattr(trial, "is_saving", False):
                self._unpause.remove(tid)  # started again, or ended; one still saving its pause stays
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if self._unpause or any(t.status == Trial.RUNNING for t in trials):
            return None
        if any(t.status == Trial.PAUSED for t in trials) and self._release_absent(tune_controller):
            return self.choose_trial_to_run(tune_controller)
        return None

    def _release_absent(self, tune_controller: Any) -> bool:
        """Every trial of this run waits at a rung while nothing runs or waits to start: Tune has created every
        trial it will, so the trials the results listed but this run lacks are not coming. The rungs stop waiting
        for them (instead of the sweep waiting forever); True if a decision was let go."""
        absent = [
            (cell, m) for cell, ms in self._cells.items() for tid, m in ms.items() if m.live and tid not in self._tune
        ]
        for _, member in absent:
            member.live = False
        for cell in {cell for cell, _ in absent}:
            if cell in self._rungs:
                self._settle(tune_controller, cell)
        return bool(self._unpause)

    def debug_string(self) -> str:
        waiting = sum(1 for t in self._tune.values() if getattr(t, "status", None) == Trial.PAUSED)
        return (
            f"Successive halving in {len(self._cells)} cells: {len(self.stopped)} trials stopped early, "
            f"{waiting} paused at a rung"
        )
