"""Sweep results written the way a sweep writes them, for tests of the selection, the tables and the report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA
from worker import catalog
from worker.records import CONSTANT_SUFFIX, METRICS

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
Epoch = tuple[float, float, float]  # (id_val, id_test, ood_test)


def _metrics(values: Epoch) -> dict[str, float]:
    """(id_val, id_test, ood_test) as the records' metric fields; any further metric takes the ID test value."""
    v, t, o = values
    return {m: t for m in METRICS} | {"id_val": v, "id_test": t, "ood_test": o}


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
        precision: str | None = "fp32",
        chance: Epoch | None = None,
        losses: Sequence[float] | None = None,
    ) -> str:
        tid = f"{model}-{dataset}-{method}-{lr:g}-{seed}"
        ident = dict(sweep_id="s", trial_id=tid, model=model, dataset=dataset, method=method, lr=lr, seed=seed)
        row = {name: None for name in TRIALS_SCHEMA.names}
        row.update(ident, status=status, epochs_planned=max(len(curve), 1), epochs_done=len(curve), updated_at=NOW)
        row.update(precision=precision)
        row.update(peak_memory_bytes=peak, optimizer_state_bytes=state, trainable_params=trainable, frozen_params=0)
        if trial_metrics is not None:
            row.update(_metrics(trial_metrics), best_epoch=1)
        self.trials.append(row)
        for i, values in enumerate(curve, start=1):
            e = {name: None for name in EPOCHS_SCHEMA.names}
            e.update(ident, epoch=i, **_metrics(values), is_best=False, reported_at=NOW)
            if losses is not None:  # the ID validation loss of each epoch, the selection rule's tie-break
                e["id_val_loss"] = losses[i - 1]
            if chance is not None:  # the worker's split metrics, with the best constant prediction's beside them
                where = catalog.get_dataset(dataset).metrics
                split = {where[m]: v for m, v in _metrics(values).items()}
                split |= {where[m] + CONSTANT_SUFFIX: v for m, v in _metrics(chance).items()}
                e["split_metrics_json"] = json.dumps(split, sort_keys=True)
            self.epochs.append(e)
        return tid

    def add_probe(
        self, model: str, dataset: str, layer: str, kind: str, depth: int, grad: float, param_norm: float = 2.0
    ) -> None:
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
                param_norm=param_norm,
                grad_norm_over_param_norm=grad / param_norm,
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
