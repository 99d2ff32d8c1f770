"""A sweep's three Parquet tables, read once, with the selection computed on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa

from orchestrator import results
from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA
from orchestrator.storage import Location
from orchestrator.tables.selection import CellResult, select_cells


@dataclass(frozen=True)
class SweepData:
    """What every table is built from: trials.parquet, epochs.parquet and probe.parquet of one sweep."""

    trials: pa.Table
    epochs: pa.Table
    probe: pa.Table

    @cached_property
    def cells(self) -> list[CellResult]:
        return select_cells(self.trials, self.epochs)

    @classmethod
    def empty(cls) -> SweepData:
        return cls(TRIALS_SCHEMA.empty_table(), EPOCHS_SCHEMA.empty_table(), PROBE_SCHEMA.empty_table())


def load_sweep(sweep_dir: Location | str | Path) -> SweepData:
    """The sweep's tables; a missing file reads as an empty table with its schema."""
    return SweepData(
        trials=results.read_trials(sweep_dir),
        epochs=results.read_epochs(sweep_dir),
        probe=results.read_probe(sweep_dir),
    )
