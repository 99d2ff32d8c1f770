"""A sweep's three Parquet tables, read once, with the selection and the progress computed on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa

from orchestrator import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA, Location, read_epochs, read_probe, read_trials
from worker.selection import EPOCH_COLUMNS, CellResult, Progress, select_cells, sweep_progress


@dataclass(frozen=True)
class SweepData:
    """What every table and the report are built from: trials.parquet, epochs.parquet and probe.parquet."""

    trials: pa.Table
    epochs: pa.Table
    probe: pa.Table

    @cached_property
    def cells(self) -> list[CellResult]:
        return select_cells(self.trials.to_pylist(), self.epochs.select(list(EPOCH_COLUMNS)).to_pylist())

    @cached_property
    def progress(self) -> Progress:
        return sweep_progress(self.trials.to_pylist())

    @classmethod
    def empty(cls) -> SweepData:
        return cls(TRIALS_SCHEMA.empty_table(), EPOCHS_SCHEMA.empty_table(), PROBE_SCHEMA.empty_table())


def load_sweep(sweep_dir: Location | str | Path) -> SweepData:
    """The sweep's tables; a missing file reads as an empty table with its schema."""
    return SweepData(trials=read_trials(sweep_dir), epochs=read_epochs(sweep_dir), probe=read_probe(sweep_dir))
