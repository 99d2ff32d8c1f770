"""The paper's comparison tables, built from a sweep's Parquet files alone.

`list_tables()`, `build_table(name, sweep_dir)` and `render_table(name, sweep_dir, fmt)` are the doors; each
table module registers its builder under its name when this package is imported.
"""

from analysis.tables import best, comparison, lr_curves, memory, probe  # noqa: F401  (registers the tables)
from analysis.tables.registry import build_from, build_table, list_tables, register, render_table
from analysis.tables.render import list_formats, render
from analysis.tables.table_data import Column, DisplayColumn, TableData

__all__ = [
    "Column",
    "DisplayColumn",
    "TableData",
    "build_from",
    "build_table",
    "list_formats",
    "list_tables",
    "register",
    "render",
    "render_table",
]
