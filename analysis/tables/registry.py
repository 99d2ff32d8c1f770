"""The registry of tables: a builder per name, filled by `@register`, reached only through these functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from analysis.sweep_data import SweepData, load_sweep
from analysis.tables.render import list_formats, render
from analysis.tables.table_data import TableData
from orchestrator import Location

Builder = Callable[[SweepData], TableData]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a table builder under `name`; a second builder for the same name is an error."""

    def deco(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"table {name!r} is already registered (by {_BUILDERS[name].__qualname__})")
        _BUILDERS[name] = fn
        return fn

    return deco


def list_tables() -> list[str]:
    return list(_BUILDERS)


def _builder(name: str) -> Builder:
    if name not in _BUILDERS:
        raise ValueError(f"unknown table {name!r}; valid tables: {', '.join(_BUILDERS)}")
    return _BUILDERS[name]


def build_from(name: str, data: SweepData) -> TableData:
    """Table `name` from tables already in memory, with the notes that hold for the whole sweep."""
    table = _builder(name)(data)
    extra = [n for n in data.precision_notes if n not in table.notes]
    return dataclasses.replace(table, notes=(*table.notes, *extra)) if extra else table


def build_table(name: str, sweep_dir: Location | str | Path) -> TableData:
    """Table `name` from the Parquet files of the sweep at `sweep_dir`."""
    _builder(name)  # an unknown name fails before any file is read
    return build_from(name, load_sweep(sweep_dir))


def render_table(name: str, sweep_dir: Location | str | Path, fmt: str) -> tuple[bytes, str]:
    """Table `name` of the sweep at `sweep_dir` as `fmt`: the content and its media type."""
    _builder(name)
    if fmt not in list_formats():
        raise ValueError(f"unknown table format {fmt!r}; valid formats: {', '.join(list_formats())}")
    return render(build_table(name, sweep_dir), fmt)
