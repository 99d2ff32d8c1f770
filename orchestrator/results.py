"""The sweep's results as Parquet, written while trials run: `trials.parquet`, `epochs.parquet`, `probe.parquet`.

`ResultsStore` holds one row per trial and one per (trial, epoch) in memory, keyed so that a repeated report
(a resumed trial re-running an epoch, a driver restarted on the same storage) replaces the earlier row instead
of adding one. It flushes at most every `flush_interval_s` and on demand, each file replaced atomically
(`storage.Location.write_table`). The trial row is derived from the trial's epoch rows, so it is right however
many times the trial was interrupted and resumed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from orchestrator.halving import RecordedTrial
from orchestrator.schema import EPOCHS_SCHEMA, IDENTITY_FIELDS, PROBE_SCHEMA, TRIALS_SCHEMA, record_row
from orchestrator.storage import Location
from worker.config import TrialConfig
from worker.records import EpochReport, TrialStatus
from worker.selection import is_evaluated, reports_last_epoch, summarize_trial, sweep_progress

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
PROBE_FILE = "probe.parquet"
_IDENTITY = tuple(f.name for f in IDENTITY_FIELDS)


def as_location(where: Location | str | Path) -> Location:
    return where if isinstance(where, Location) else Location(where)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def recorded_trials(
    trial_rows: Iterable[Mapping[str, Any]], epoch_rows: Iterable[Mapping[str, Any]]
) -> list[RecordedTrial]:
    """Each trial row with its ID validation per evaluated epoch and the last epoch it reached, in the rows' order:
    what early stopping decides from, in a running sweep (`ResultsStore.recorded_trials`) or replayed on a stored
    one (bench/early_stopping.py)."""
    scores: dict[str, dict[int, float]] = {}
    reached: dict[str, int] = {}
    for r in epoch_rows:
        tid, epoch = r["trial_id"], r["epoch"]
        reached[tid] = max(reached.get(tid, 0), epoch)
        if is_evaluated(r):
            scores.setdefault(tid, {})[epoch] = r["id_val"]
    return [
        RecordedTrial(
            t["trial_id"],
            (t["model"], t["dataset"], t["method"]),
            t["lr"],
            t["status"],
            scores.get(t["trial_id"], {}),
            reached.get(t["trial_id"], 0),
            t.get("seed"),
        )
        for t in trial_rows
    ]


class ResultsStore:
    """Every trial of a sweep, from `pending` to its final status, with its epochs; flushed to Parquet.

    A trial's row is derived from its status and its epoch rows (`worker.selection.summarize_trial`), so it is
    right however many times the trial was interrupted and resumed. Opening a store on a location that already
    holds results (a resumed sweep) loads them: finished trials keep their rows, and trials that were running or
    cancelled go back to `pending` until they start again.
    """

    def __init__(
        self,
        location: Location | str | Path,
        sweep_id: str,
        trials: Sequence[TrialConfig],
        *,
        flush_interval_s: float = 2.0,
        on_flush: Callable[[dict[str, int]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.location = as_location(location)
        self.sweep_id = sweep_id
        self.flush_interval_s = flush_interval_s
        self._on_flush = on_flush
        self._clock = clock
        self._order = list(dict.fromkeys(t.trial_id() for t in trials))  # the sweep's order
        self._trials: dict[str, dict[str, Any]] = {}
        self._epochs: dict[str, dict[int, dict[str, Any]]] = {}
        self._last_epoch_this_run: dict[str, int] = {}
        self._load()
        for t in trials:
            if t.trial_id() not in self._trials:
                self._trials[t.trial_id()] = self._new_row(t)
        self._dirty = True
        self._last_flush = -math.inf

    # ---- loading -------------------------------------------------------------------------------------------

    def _load(self) -> None:
        for row in self.location.read_table(EPOCHS_FILE, EPOCHS_SCHEMA).to_pylist():
            self._epochs.setdefault(row["trial_id"], {})[row["epoch"]] = row
        for row in self.location.read_table(TRIALS_FILE, TRIALS_SCHEMA).to_pylist():
            if row["status"] in (TrialStatus.RUNNING, TrialStatus.CANCELLED):
                row["status"] = TrialStatus.PENDING
            self._trials[row["trial_id"]] = row

    def _new_row(self, config: TrialConfig) -> dict[str, Any]:
        row: dict[str, Any] = {name: None for name in TRIALS_SCHEMA.names}
        row.update(
            sweep_id=self.sweep_id,
            trial_id=config.trial_id(),
            model=config.model,
            dataset=config.dataset,
            method=config.method,
            lr=config.lr,
            seed=config.seed,
            precision=config.precision,
            config_json=json.dumps(config.to_dict(), sort_keys=True),
        )
        summary = summarize_trial([], status=TrialStatus.PENDING, epochs_planned=config.epochs_planned())
        row.update(record_row(summary), updated_at=_now())
        return row

    # ---- state changes -------------------------------------------------------------------------------------

    def _row(self, trial_id: str) -> dict[str, Any]:
        if trial_id not in self._trials:
            raise KeyError(f"trial {trial_id!r} is not part of sweep {self.sweep_id!r}")
        return self._trials[trial_id]

    def _set(self, trial_id: str, **fields: Any) -> None:
        """Change a trial's status or error and derive the rest of its row from its epochs."""
        row = self._row(trial_id)
        row.update(fields)
        summary = summarize_trial(
            self._epochs.get(trial_id, {}).values(),
            status=row["status"],
            epochs_planned=row["epochs_planned"],
            error=row["error"],
            last_epoch=reports_last_epoch(row["method"], row["dataset"]),
        )
        row.update(record_row(summary), updated_at=_now())
        self._dirty = True

    def _add_epoch(self, trial_id: str, report: EpochReport, *, replace: bool) -> None:
        row = self._row(trial_id)
        erow = {**{k: row[k] for k in _IDENTITY}, **record_row(report), "reported_at": _now()}
        epochs = self._epochs.setdefault(trial_id, {})
        if replace or report.epoch not in epochs:
            epochs[report.epoch] = erow

    def start(self, trial_id: str) -> None:
        """The trial started (or restarted after a failure or a resume)."""
        self._set(trial_id, status=TrialStatus.RUNNING, error=None)

    def record_epoch(self, trial_id: str, report: EpochReport) -> None:
        """One epoch report; the last report of an epoch wins. A report that ends the trial ends it here too."""
        self._add_epoch(trial_id, report, replace=True)
        self._last_epoch_this_run[trial_id] = report.epoch
        status = report.status if report.status in TrialStatus.SELF_ENDED else TrialStatus.RUNNING
        if status in TrialStatus.SELF_ENDED:
            self._drop_epochs_after(trial_id, report.epoch)
        self._set(trial_id, status=status, error=None)

    def finish(self, trial_id: str, *, error: str | None = None) -> str:
        """The trial ended: `failed` with an error; else its own final status, or `stopped` if it was cut short."""
        row = self._row(trial_id)
        if error is not None:
            status = TrialStatus.FAILED
        elif row["status"] in TrialStatus.SELF_ENDED:
            status = row["status"]
        else:
            status = TrialStatus.STOPPED
        if trial_id in self._last_epoch_this_run:
            self._drop_epochs_after(trial_id, self._last_epoch_this_run[trial_id])
        self._set(trial_id, status=status, error=error)
        return status

    def merge_history(self, trial_id: str, reports: Sequence[EpochReport], *, finished: bool) -> None:
        """Epoch reports Tune kept for a trial (its result.json) that this store lacks, because a driver died
        before flushing them; with `finished`, Tune counts the trial as done, so it ends here too.

        Rows the store already has are kept: a resumed trial reproduces an epoch's numbers exactly.
        """
        row = self._row(trial_id)
        for report in reports:
            self._add_epoch(trial_id, report, replace=False)
        fields: dict[str, Any] = {}
        if finished and row["status"] not in TrialStatus.DONE:
            last = reports[-1] if reports else None
            fields["status"] = last.status if last and last.status in TrialStatus.SELF_ENDED else TrialStatus.STOPPED
            fields["error"] = None
            if last is not None:
                self._drop_epochs_after(trial_id, last.epoch)
        self._set(trial_id, **fields)

    def adopt(self, source: str, trial: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> bool:
        """Take a trial's result from sweep `source`, which ran the same trial id to its end; its row then says so.
        A trial this sweep has already done keeps its own result (False)."""
        row = self._row(trial["trial_id"])
        if row["status"] in TrialStatus.DONE:
            return False
        kept = ("sweep_id", "config_json", "updated_at")
        row.update({k: v for k, v in trial.items() if k in row and k not in kept}, reused_from=source)
        row["updated_at"] = _now()
        self._epochs[row["trial_id"]] = {e["epoch"]: {**e, "sweep_id": self.sweep_id} for e in epochs}
        self._dirty = True
        return True

    def cancel_unfinished(self) -> int:
        """Mark every pending or running trial `cancelled` (the sweep was stopped); returns how many."""
        waiting = [t for t, row in self._trials.items() if row["status"] not in TrialStatus.ENDED]
        for tid in waiting:
            self._set(tid, status=TrialStatus.CANCELLED)
        return len(waiting)

    def _drop_epochs_after(self, trial_id: str, epoch: int) -> None:
        """Rows past a trial's last epoch come from an earlier, interrupted run that this run did not reach."""
        eps = self._epochs.get(trial_id, {})
        for e in [e for e in eps if e > epoch]:
            del eps[e]

    # ---- queries -------------------------------------------------------------------------------------------

    def status(self, trial_id: str) -> str:
        return self._row(trial_id)["status"]

    def counts(self) -> dict[str, int]:
        return sweep_progress(self._trials.values()).counts

    def unfinished(self) -> list[str]:
        """Trial ids of this sweep that still have to run (failed ones are retried), in the sweep's order."""
        return [tid for tid in self._order if self._trials[tid]["status"] not in TrialStatus.DONE]

    def _all_ids(self) -> list[str]:
        ordered = set(self._order)
        return self._order + [t for t in {**self._trials, **self._epochs} if t not in ordered]

    def recorded_trials(self) -> list[RecordedTrial]:
        """Every trial's cell and ID validation per epoch, as the early-stopping scheduler rebuilds its rungs from
        (after a resume, or for an extension whose cells hold finished trials)."""
        ids = self._all_ids()
        return recorded_trials(
            (self._trials[t] for t in ids if t in self._trials),
            (r for t in ids for r in self._epochs.get(t, {}).values()),
        )

    def trials_table(self) -> pa.Table:
        return pa.Table.from_pylist(
            [self._trials[t] for t in self._all_ids() if t in self._trials], schema=TRIALS_SCHEMA
        )

    def epochs_table(self) -> pa.Table:
        rows = [r for t in self._all_ids() for _, r in sorted(self._epochs.get(t, {}).items())]
        return pa.Table.from_pylist(rows, schema=EPOCHS_SCHEMA)

    # ---- writing -------------------------------------------------------------------------------------------

    def maybe_flush(self) -> bool:
        """Flush if something changed and the last flush is at least `flush_interval_s` old."""
        if not self._dirty or self._clock() - self._last_flush < self.flush_interval_s:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Write both tables now (epochs first, so a reader of a trial row finds its epochs)."""
        self.location.write_table(EPOCHS_FILE, self.epochs_table())
        self.location.write_table(TRIALS_FILE, self.trials_table())
        self._dirty = False
        self._last_flush = self._clock()
        if self._on_flush is not None:
            self._on_flush(self.counts())


def probe_table(sweep_id: str, model: str, dataset: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Probe rows of one (model, dataset), as returned by `worker.probe.run_probe`, with their identity added."""
    full = [{**r, "sweep_id": sweep_id, "model": model, "dataset": dataset} for r in rows]
    return pa.Table.from_pylist(full, schema=PROBE_SCHEMA)


def write_probe(location: Location | str | Path, tables: Sequence[pa.Table]) -> pa.Table:
    """Merge new probe rows into `probe.parquet`: rows of a (model, dataset) replace that pair's older rows."""
    loc = as_location(location)
    old = loc.read_table(PROBE_FILE, PROBE_SCHEMA)
    fresh = {pair for t in tables for pair in _pairs(t)}
    kept = [r for r in old.to_pylist() if (r["model"], r["dataset"]) not in fresh]
    merged = pa.concat_tables([pa.Table.from_pylist(kept, schema=PROBE_SCHEMA), *tables])
    loc.write_table(PROBE_FILE, merged)
    return merged


def probed_pairs(location: Location | str | Path) -> set[tuple[str, str]]:
    """(model, dataset) pairs that already have probe rows."""
    return set(_pairs(read_probe(location)))


def _pairs(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table.column("model").to_pylist(), table.column("dataset").to_pylist(), strict=True))


def read_trials(sweep_dir: Location | str | Path) -> pa.Table:
    """`trials.parquet` of a sweep; an empty table with its schema when there is none yet."""
    return as_location(sweep_dir).read_table(TRIALS_FILE, TRIALS_SCHEMA)


def read_epochs(sweep_dir: Location | str | Path) -> pa.Table:
    """`epochs.parquet` of a sweep; an empty table with its schema when there is none yet."""
    return as_location(sweep_dir).read_table(EPOCHS_FILE, EPOCHS_SCHEMA)


def read_probe(sweep_dir: Location | str | Path) -> pa.Table:
    """`probe.parquet` of a sweep; an empty table with its schema when there is none yet."""
    return as_location(sweep_dir).read_table(PROBE_FILE, PROBE_SCHEMA)


def mark_interrupted(location: Location | str | Path, error: str | None, *, cancelled: bool = False) -> int:
    """A sweep whose driver died without ending its trials: rows still `running` become `failed` with `error`
    (`cancelled` when the sweep was), rows still `pending` become `cancelled`, so the table says what happened.
    Returns how many rows changed.

    Only for a sweep whose job has ended (nothing else writes the table then); a resume runs those trials again.
    """
    loc = as_location(location)
    epochs: dict[str, list[dict[str, Any]]] = {}
    for erow in loc.read_table(EPOCHS_FILE, EPOCHS_SCHEMA).to_pylist():
        epochs.setdefault(erow["trial_id"], []).append(erow)
    rows = loc.read_table(TRIALS_FILE, TRIALS_SCHEMA).to_pylist()
    changed = 0
    for row in rows:
        if row["status"] == TrialStatus.RUNNING and not cancelled:
            status, why = TrialStatus.FAILED, error
        elif row["status"] == TrialStatus.RUNNING:
            status, why = TrialStatus.CANCELLED, None
        elif row["status"] == TrialStatus.PENDING:
            status, why = TrialStatus.CANCELLED, None
        else:
            continue
        summary = summarize_trial(
            epochs.get(row["trial_id"], []),
            status=status,
            epochs_planned=row["epochs_planned"],
            error=why,
            last_epoch=reports_last_epoch(row["method"], row["dataset"]),
        )
        row.update(record_row(summary), updated_at=_now())
        changed += 1
    if changed:
        loc.write_table(TRIALS_FILE, pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA))
    return changed
