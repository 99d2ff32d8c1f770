"""A sweep's three Parquet tables, read once, with the selection and the progress computed on first use."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from orchestrator import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA, Location, read_epochs, read_probe, read_trials
from worker import catalog
from worker.config import PAPER_PRECISION
from worker.records import CONSTANT_SUFFIX, METRICS
from worker.selection import SELECTION_COLUMNS, CellResult, Progress, select_cells, sweep_progress


@dataclass(frozen=True)
class SweepData:
    """What every table and the report are built from: trials.parquet, epochs.parquet and probe.parquet."""

    trials: pa.Table
    epochs: pa.Table
    probe: pa.Table

    @cached_property
    def cells(self) -> list[CellResult]:
        cells = select_cells(self.trials.to_pylist(), self.epochs.select(list(SELECTION_COLUMNS)).to_pylist())
        return [replace(c, chance=self.chance.get(c.dataset, {})) for c in cells]

    @cached_property
    def chance(self) -> dict[str, dict[str, float]]:
        """Per dataset and metric, the best score of a constant prediction on the sweep's evaluation images, as
        the worker recorded it beside the metric (`<split>/<metric>@constant`); absent from older sweeps."""
        out: dict[str, dict[str, float]] = {}
        recorded = self.epochs.filter(pc.match_substring(self.epochs["split_metrics_json"], CONSTANT_SUFFIX))
        datasets = recorded.column("dataset").to_pylist()
        for d in dict.fromkeys(datasets):  # the first recorded row of each dataset: its images are the sweep's
            try:
                where = catalog.get_dataset(d).metrics
            except catalog.CatalogError:
                continue
            split_metrics = json.loads(recorded["split_metrics_json"][datasets.index(d)].as_py())
            levels = {m: split_metrics.get(where[m] + CONSTANT_SUFFIX) for m in METRICS}
            out[d] = {m: float(v) for m, v in levels.items() if v is not None}
        return out

    @cached_property
    def progress(self) -> Progress:
        return sweep_progress(self.trials.to_pylist())

    @cached_property
    def precision_notes(self) -> list[str]:
        """Every table's note when trials did not all train in the paper's precision (fp32)."""
        return precision_notes(self.trials.column("precision").to_pylist())

    @classmethod
    def empty(cls) -> SweepData:
        return cls(TRIALS_SCHEMA.empty_table(), EPOCHS_SCHEMA.empty_table(), PROBE_SCHEMA.empty_table())


def precision_notes(precisions: list[str | None]) -> list[str]:
    """A note when a sweep's trials depart from the paper's fp32 or mix precisions; none when all ran in fp32."""
    counts = Counter(precisions)
    if not counts or set(counts) == {PAPER_PRECISION}:
        return []
    consequence = (
        f"the paper trained in {PAPER_PRECISION}, so accuracies may differ slightly from it and peak memory is not "
        "comparable with its Table 4"
    )
    if set(counts) == {"bf16"}:
        return [f"Precision: every trial ran its forward passes under bf16 autocast; {consequence}."]
    if set(counts) == {None}:
        return [
            "Precision: these trials were recorded before precision was: on CUDA they ran under bf16 autocast, "
            f"on CPU in {PAPER_PRECISION}."
        ]
    named = {
        PAPER_PRECISION: f"in {PAPER_PRECISION}",
        "bf16": "under bf16 autocast",
        None: "recorded before precision was",
    }
    order = [PAPER_PRECISION, "bf16", None]
    parts = [
        f"{counts[p]} {named.get(p, p)}" for p in sorted(counts, key=lambda p: order.index(p) if p in order else 9)
    ]
    return [
        f"Precision: this sweep mixes precisions ({', '.join(parts)}); a cell may compare runs of different "
        f"precision, and {consequence}."
    ]


def load_sweep(sweep_dir: Location | str | Path) -> SweepData:
    """The sweep's tables; a missing file reads as an empty table with its schema."""
    return SweepData(trials=read_trials(sweep_dir), epochs=read_epochs(sweep_dir), probe=read_probe(sweep_dir))
