"""Early stopping within a cell: trials compete only with trials that differ from them in the LR alone.

A cell is one (model, dataset, method, seed). One ASHA (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020, arXiv 1810.05934) per cell decides which LRs go on; a single ASHA over the
whole sweep would compare a weak model's best LR with a strong model's worst and stop it, which removes the
very trial the weak model's table entry is made of.

Tune does not save scheduler state when it saves an experiment, so after a resume every cell's rungs start
empty: trials that were already past a rung are not compared at it again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from worker.config import TrialConfig
from worker.records import SELECTION_METRIC, TrialStatus
from worker.selection import is_evaluated

TRIAL_CONFIG_KEY = "trial"  # the key of the param space that holds a trial's TrialConfig dict


def _trial_config(trial: Any) -> TrialConfig:
    config = getattr(trial, "config", None) or {}
    if TRIAL_CONFIG_KEY not in config:
        raise KeyError(f"trial {trial.trial_id} has no {TRIAL_CONFIG_KEY!r} entry in its config; got {sorted(config)}")
    return TrialConfig.from_dict(config[TRIAL_CONFIG_KEY])


def cell_of(trial: Any) -> tuple[str, str, str, int]:
    """(model, dataset, method, seed) of a Tune trial whose config holds a TrialConfig dict."""
    t = _trial_config(trial)
    return (t.model, t.dataset, t.method, t.seed)


def epochs_of(trial: Any) -> int:
    """The number of epochs the trial will run unless stopped."""
    return _trial_config(trial).epochs_planned()


class CellScheduler(FIFOScheduler):
    """One ASHA per cell; trials run in submission order, as with FIFO. Trials are compared on the selection
    metric (`worker.records.SELECTION_METRIC`, higher is better), at epochs that have one.

    Args:
        grace_period: epochs every trial runs before it can be stopped.
        reduction_factor: at each rung only the top 1/reduction_factor of the cell's trials go on.
        time_attr: the reported progress counter (epochs, from 1).
        cell_key, max_epochs: how to read a trial's cell and length from its config (overridable for tests).
    """

    def __init__(
        self,
        *,
        grace_period: int = 1,
        reduction_factor: float = 3.0,
        time_attr: str = "epoch",
        cell_key: Callable[[Any], Hashable] = cell_of,
        max_epochs: Callable[[Any], int] = epochs_of,
    ):
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1 epoch, got {grace_period}")
        if not reduction_factor > 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        super().__init__()
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._reduction_factor = reduction_factor
        self._cell_key = cell_key
        self._max_epochs = max_epochs
        self._cells: dict[Hashable, AsyncHyperBandScheduler] = {}  # cell -> its ASHA
        self._trial_cell: dict[str, Hashable] = {}  # Tune trial id -> cell
        self._added: set[str] = set()  # Tune trial ids the cell's ASHA knows
        self.stopped: set[str] = set()  # Tune trial ids this scheduler stopped early

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Tune passes TuneConfig's metric/mode here; this scheduler's own are fixed and must not conflict."""
        return metric in (None, SELECTION_METRIC) and mode in (None, "max")

    def _asha(self, tune_controller: Any, trial: Any) -> AsyncHyperBandScheduler:
        cell = self._trial_cell.get(trial.trial_id)
        if cell is None:
            cell = self._cell_key(trial)
            self._trial_cell[trial.trial_id] = cell
        asha = self._cells.get(cell)
        if asha is None:
            max_t = max(1, self._max_epochs(trial))
            asha = AsyncHyperBandScheduler(
                time_attr=self._time_attr,
                metric=SELECTION_METRIC,
                mode="max",
                max_t=max_t,
                grace_period=min(self._grace_period, max_t),
                reduction_factor=self._reduction_factor,
                stop_last_trials=False,
            )
            self._cells[cell] = asha
        if trial.trial_id not in self._added:
            asha.on_trial_add(tune_controller, trial)
            self._added.add(trial.trial_id)
        return asha

    def _forget(self, tune_controller: Any, trial: Any) -> None:
        cell = self._trial_cell.pop(trial.trial_id, None)
        if cell is not None and trial.trial_id in self._added:
            self._cells[cell].on_trial_remove(tune_controller, trial)
        self._added.discard(trial.trial_id)

    def _comparable(self, result: dict[str, Any]) -> bool:
        return self._time_attr in result and is_evaluated(result)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._asha(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if not self._comparable(result):
            return TrialScheduler.CONTINUE  # e.g. a diverged epoch: nothing to compare; the trial ends itself
        decision = self._asha(tune_controller, trial).on_trial_result(tune_controller, trial, result)
        if result.get("status", TrialStatus.RUNNING) != TrialStatus.RUNNING:
            return TrialScheduler.CONTINUE  # the trial's last epoch: recorded at its rung, nothing left to stop
        if decision == TrialScheduler.STOP:
            self.stopped.add(trial.trial_id)
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        if self._comparable(result):
            self._asha(tune_controller, trial).on_trial_complete(tune_controller, trial, result)
            self._trial_cell.pop(trial.trial_id, None)
            self._added.discard(trial.trial_id)  # ASHA dropped the trial itself
        else:
            self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._forget(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._forget(tune_controller, trial)

    def debug_string(self) -> str:
        return f"Per-cell ASHA over {len(self._cells)} cells: {len(self.stopped)} trials stopped early"
