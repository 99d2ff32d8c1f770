"""The paper's comparison tables, built from a sweep's Parquet files alone.

`list_tables()`, `build_table(name, sweep_dir)` and `render_table(name, sweep_dir, fmt)` are the doors; each
table module registers its builder under its name when this package is imported.
"""

from orchestrator.tables import best, comparison, lr_curves, memory, probe  # noqa: F401  (registers the tables)
from orchestrator.tables.reference import PaperReference, load_reference
from orchestrator.tables.registry import build_from, build_table, list_tables, register, render_table
from orchestrator.tables.render import list_formats, render
from orchestrator.tables.selection import CellResult, LrSummary, select_cells
from orchestrator.tables.sweep_data import SweepData, load_sweep
from orchestrator.tables.table_data import Column, DisplayColumn, TableData

__all__ = [
    "CellResult",
    "Column",
    "DisplayColumn",
    "LrSummary",
    "PaperReference",
    "SweepData",
    "TableData",
    "build_from",
    "build_table",
    "list_formats",
    "list_tables",
    "load_reference",
    "load_sweep",
    "register",
    "render",
    "render_table",
    "select_cells",
]
