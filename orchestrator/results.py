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

from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIAL_STATUSES, TRIALS_SCHEMA
from orchestrator.storage import Location
from worker import catalog
from worker.config import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_FAILED, STATUS_STOPPED, TrialConfig

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
PROBE_FILE = "probe.parquet"

PENDING, RUNNING, CANCELLED = "pending", "running", "cancelled"
DONE_STATUSES = (STATUS_COMPLETED, STATUS_DIVERGED, STATUS_STOPPED)  # a resumed sweep does not run these again
REPORT_FINAL_STATUSES = (STATUS_COMPLETED, STATUS_DIVERGED)  # what a trial's own last report may say


def as_location(where: Location | str | Path) -> Location:
    return where if isinstance(where, Location) else Location(where)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def _int(x: Any) -> int | None:
    return None if x is None else int(x)


def _evaluated(row: Mapping[str, Any]) -> bool:
    v = row.get("id_val")
    return v is not None and math.isfinite(v)


def planned_epochs(config: TrialConfig) -> int:
    return config.epochs or catalog.get_dataset(config.dataset).epochs


def _identity(sweep_id: str, trial_id: str, config: TrialConfig) -> dict[str, Any]:
    return {
        "sweep_id": sweep_id,
        "trial_id": trial_id,
        "model": config.model,
        "dataset": config.dataset,
        "method": config.method,
        "lr": float(config.lr),
        "seed": int(config.seed),
    }


def epoch_row(sweep_id: str, trial_id: str, config: TrialConfig, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One `epochs.parquet` row from one epoch report (worker.config.EPOCH_REPORT_KEYS)."""
    if "epoch" not in metrics:
        raise ValueError(f"an epoch report needs an 'epoch' key; got keys {sorted(metrics)}")
    split = metrics.get("split_metrics") or {}
    return {
        **_identity(sweep_id, trial_id, config),
        "epoch": int(metrics["epoch"]),
        "train_loss": _float(metrics.get("train_loss")),
        "lr_now": _float(metrics.get("lr")),
        "id_val": _float(metrics.get("id_val")),
        "id_test": _float(metrics.get("id_test")),
        "ood_test": _float(metrics.get("ood_test")),
        "split_metrics_json": split if isinstance(split, str) else json.dumps(split, sort_keys=True),
        "epoch_time_s": _float(metrics.get("epoch_time_s")),
        "train_time_s": _float(metrics.get("train_time_s")),
        "train_images_per_s": _float(metrics.get("train_images_per_s")),
        "optimizer_state_bytes": _int(metrics.get("optimizer_state_bytes")),
        "peak_memory_bytes": _int(metrics.get("peak_memory_bytes")),
        "is_best": bool(metrics.get("is_best", False)),
        "reported_at": _now(),
    }


def summarize_epochs(epochs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The trial-row fields that follow from its epoch rows: the result at the best-ID-validation epoch.

    Ties go to the earlier epoch, as the worker's own bookkeeping does. A diverged epoch (no evaluation) counts
    towards time but not towards `epochs_done`.
    """
    ordered = sorted(epochs, key=lambda r: r["epoch"])
    evaluated = [r for r in ordered if _evaluated(r)]
    best = max(evaluated, key=lambda r: (r["id_val"], -r["epoch"])) if evaluated else None
    return {
        "epochs_done": max((r["epoch"] for r in evaluated), default=0),
        "best_epoch": best["epoch"] if best else None,
        "id_val": best["id_val"] if best else None,
        "id_test": best["id_test"] if best else None,
        "ood_test": best["ood_test"] if best else None,
        "final_train_loss": ordered[-1]["train_loss"] if ordered else None,
        "wall_time_s": sum(r["epoch_time_s"] or 0.0 for r in ordered) if ordered else None,
        "optimizer_state_bytes": ordered[-1]["optimizer_state_bytes"] if ordered else None,
        "peak_memory_bytes": max((r["peak_memory_bytes"] or 0 for r in ordered), default=None) if ordered else None,
    }


class ResultsStore:
    """Every trial of a sweep, from `pending` to its final status, with its epochs; flushed to Parquet.

    Opening a store on a location that already holds results (a resumed sweep) loads them: finished trials keep
    their rows, and trials that were running or cancelled go back to `pending` until they start again.
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
        self._configs: dict[str, TrialConfig] = {}
        for t in trials:
            self._configs.setdefault(t.trial_id(), t)
        self._trials: dict[str, dict[str, Any]] = {}
        self._epochs: dict[str, dict[int, dict[str, Any]]] = {}
        self._last_epoch_this_run: dict[str, int] = {}
        self._load()
        self._dirty = True
        self._last_flush = -math.inf

    # ---- loading -------------------------------------------------------------------------------------------

    def _load(self) -> None:
        for row in self.location.read_table(EPOCHS_FILE, EPOCHS_SCHEMA).to_pylist():
            self._epochs.setdefault(row["trial_id"], {})[row["epoch"]] = row
        for row in self.location.read_table(TRIALS_FILE, TRIALS_SCHEMA).to_pylist():
            if row["status"] in (RUNNING, CANCELLED):
                row["status"] = PENDING
            self._trials[row["trial_id"]] = row
        for tid, config in self._configs.items():
            if tid not in self._trials:
                self._trials[tid] = self._new_row(tid, config)

    def _new_row(self, trial_id: str, config: TrialConfig) -> dict[str, Any]:
        row: dict[str, Any] = {name: None for name in TRIALS_SCHEMA.names}
        row.update(_identity(self.sweep_id, trial_id, config))
        row.update(
            status=PENDING,
            epochs_planned=planned_epochs(config),
            epochs_done=0,
            config_json=json.dumps(config.to_dict(), sort_keys=True),
            updated_at=_now(),
        )
        return row

    # ---- state changes -------------------------------------------------------------------------------------

    def _row(self, trial_id: str) -> dict[str, Any]:
        if trial_id not in self._trials:
            raise KeyError(f"trial {trial_id!r} is not part of sweep {self.sweep_id!r}")
        return self._trials[trial_id]

    def _set(self, trial_id: str, **fields: Any) -> None:
        row = self._row(trial_id)
        row.update(fields, updated_at=_now())
        self._dirty = True

    def start(self, trial_id: str) -> None:
        """The trial started (or restarted after a failure or a resume)."""
        self._set(trial_id, status=RUNNING, error=None)

    def record_epoch(self, trial_id: str, metrics: Mapping[str, Any]) -> None:
        """One epoch report; the last report of an epoch wins. A report whose status is final ends the trial."""
        row = self._row(trial_id)
        config = self._configs.get(trial_id) or TrialConfig.from_dict(json.loads(row["config_json"]))
        erow = epoch_row(self.sweep_id, trial_id, config, metrics)
        self._epochs.setdefault(trial_id, {})[erow["epoch"]] = erow
        self._last_epoch_this_run[trial_id] = erow["epoch"]
        status = metrics.get("status", RUNNING)
        if status in REPORT_FINAL_STATUSES:
            self._drop_epochs_after(trial_id, erow["epoch"])
        else:
            status = RUNNING
        extra = {k: _int(metrics[k]) for k in ("trainable_params", "frozen_params") if metrics.get(k) is not None}
        summary = summarize_epochs(list(self._epochs[trial_id].values()))
        self._set(trial_id, status=status, error=None, **extra, **summary)

    def finish(self, trial_id: str, *, error: str | None = None) -> str:
        """The trial ended: `failed` with an error; else its own final status, or `stopped` if it was cut short."""
        row = self._row(trial_id)
        if error is not None:
            status = STATUS_FAILED
        elif row["status"] in REPORT_FINAL_STATUSES:
            status = row["status"]
        else:
            status = STATUS_STOPPED
        if trial_id in self._last_epoch_this_run:
            self._drop_epochs_after(trial_id, self._last_epoch_this_run[trial_id])
            self._set(trial_id, **summarize_epochs(list(self._epochs.get(trial_id, {}).values())))
        self._set(trial_id, status=status, error=error)
        return status

    def merge_history(self, trial_id: str, reports: Sequence[Mapping[str, Any]], *, finished: bool) -> None:
        """Epoch reports Tune kept for a trial (its result.json) that this store lacks, because a driver died
        before flushing them; with `finished`, Tune counts the trial as done, so it ends here too.

        Rows the store already has are kept: a resumed trial reproduces an epoch's numbers exactly.
        """
        row = self._row(trial_id)
        config = self._configs.get(trial_id) or TrialConfig.from_dict(json.loads(row["config_json"]))
        epochs = self._epochs.setdefault(trial_id, {})
        for m in reports:
            erow = epoch_row(self.sweep_id, trial_id, config, m)
            epochs.setdefault(erow["epoch"], erow)
        fields: dict[str, Any] = {}
        if finished and row["status"] not in DONE_STATUSES:
            last = reports[-1] if reports else {}
            fields["status"] = last.get("status") if last.get("status") in REPORT_FINAL_STATUSES else STATUS_STOPPED
            fields["error"] = None
            if last:
                self._drop_epochs_after(trial_id, int(last["epoch"]))
        self._set(trial_id, **fields, **summarize_epochs(list(epochs.values())))

    def cancel_unfinished(self) -> int:
        """Mark every pending or running trial `cancelled` (the sweep was stopped); returns how many."""
        n = 0
        for tid, row in self._trials.items():
            if row["status"] in (PENDING, RUNNING):
                self._set(tid, status=CANCELLED)
                n += 1
        return n

    def _drop_epochs_after(self, trial_id: str, epoch: int) -> None:
        """Rows past a trial's last epoch come from an earlier, interrupted run that this run did not reach."""
        eps = self._epochs.get(trial_id, {})
        for e in [e for e in eps if e > epoch]:
            del eps[e]

    # ---- queries -------------------------------------------------------------------------------------------

    def status(self, trial_id: str) -> str:
        return self._row(trial_id)["status"]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(TRIAL_STATUSES, 0)
        for row in self._trials.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    def unfinished(self) -> list[str]:
        """Trial ids of this sweep that still have to run (failed ones are retried), in the sweep's order."""
        return [tid for tid in self._configs if self._trials[tid]["status"] not in DONE_STATUSES]

    def trials_table(self) -> pa.Table:
        order = list(self._configs) + [t for t in self._trials if t not in self._configs]
        return pa.Table.from_pylist([self._trials[t] for t in order], schema=TRIALS_SCHEMA)

    def epochs_table(self) -> pa.Table:
        order = list(self._configs) + [t for t in self._epochs if t not in self._configs]
        rows = [r for t in order for _, r in sorted(self._epochs.get(t, {}).items())]
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
    """Probe rows of one (model, dataset), as returned by `worker.trial.run_probe`, with their identity added."""
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
