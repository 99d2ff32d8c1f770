"""The one shape every table takes: typed columns and rows for machines, a compact view for people.

Machine formats (CSV, JSON, Parquet) write every column with its raw value, so nothing is lost to formatting.
People's formats (Markdown, LaTeX) show `display` columns, each of which may fold a value, its 90% interval,
its marks, its change against a baseline and the paper's number into one cell, so that a wide comparison still
fits a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

DType = Literal["str", "float", "int", "bool"]
MISSING = "—"


@dataclass(frozen=True)
class Column:
    """One machine column: `key` names the field in every row; `dtype` fixes its Parquet type."""

    key: str
    dtype: DType = "str"
    description: str = ""


@dataclass(frozen=True)
class DisplayColumn:
    """One column as people see it: the value at `key`, optionally with interval, marks, delta and paper value.

    A cell reads `83.2 (±0.8)† Δ+3.2 [83.2]`: ours, the 90% interval, marks, the change against the baseline,
    and the paper's number in brackets. Parts whose key is None or whose value is missing are left out.
    """

    title: str
    key: str
    ci_key: str | None = None
    marks_key: str | None = None
    delta_key: str | None = None
    paper_key: str | None = None
    decimals: int = 1
    number_format: str | None = None  # a format spec such as ".3g" for floats, instead of fixed `decimals`
    short: str | None = None  # the header of the compact view, where the title is long (a dataset's key)
    short_key: str | None = None  # the value the compact view shows instead, where `key`'s is long


@dataclass(frozen=True)
class TableData:
    """A built table: title, machine columns, rows (dicts keyed by column key), notes, and the people's view.

    `group_key` names a column whose repeated values are shown only once per run of rows (Markdown, LaTeX).
    """

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = ()
    display: tuple[DisplayColumn, ...] = field(default=())
    group_key: str | None = None

    def __post_init__(self) -> None:
        keys = [c.key for c in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError(f"table {self.name!r} has duplicate column keys: {keys}")
        known = set(keys)
        for i, row in enumerate(self.rows):
            extra = set(row) - known
            if extra:
                raise ValueError(f"table {self.name!r} row {i} has keys {sorted(extra)} that are not columns")
        for d in self.display:
            for k in (d.key, d.ci_key, d.marks_key, d.delta_key, d.paper_key):
                if k is not None and k not in known:
                    raise ValueError(f"table {self.name!r} display column {d.title!r} names unknown column {k!r}")

    def column_keys(self) -> list[str]:
        return [c.key for c in self.columns]

    def records(self) -> list[dict[str, Any]]:
        """Rows with every column present (missing ones as None), in column order."""
        keys = self.column_keys()
        return [{k: row.get(k) for k in keys} for row in self.rows]

    def view(self, *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
        """Headers and text cells of the people's view; every column when no display columns were given.

        `compact` (a terminal's view): short headers, and each cell without its change against the baseline and
        the paper's number.
        """
        cols = self.display or tuple(DisplayColumn(c.key, c.key) for c in self.columns)
        if compact:
            cols = tuple(
                replace(d, title=d.short or d.title, key=d.short_key or d.key, delta_key=None, paper_key=None)
                for d in cols
            )
        body = [[format_cell(row, d) for d in cols] for row in self.rows]
        if self.group_key is not None:
            pos = [i for i, d in enumerate(cols) if d.key == self.group_key]
            previous = None
            for row, cells in zip(self.rows, body, strict=True):
                current = row.get(self.group_key)
                if current == previous:
                    for i in pos:
                        cells[i] = ""
                previous = current
        return [d.title for d in cols], body


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def format_value(v: Any, decimals: int = 1, number_format: str | None = None) -> str:
    """A float with fixed decimals (or `number_format`), other values as text, a missing one as an em dash."""
    if not _present(v):
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, number_format or f".{decimals}f")
    return str(v)


def format_cell(row: dict[str, Any], d: DisplayColumn) -> str:
    text = format_value(row.get(d.key), d.decimals, d.number_format)
    if d.ci_key and _present(row.get(d.ci_key)):
        text += f" (±{row[d.ci_key]:.{d.decimals}f})"
    if d.marks_key and row.get(d.marks_key):
        text += str(row[d.marks_key])
    if d.delta_key and _present(row.get(d.delta_key)):
        text += f" Δ{row[d.delta_key]:+.{d.decimals}f}"
    if d.paper_key and _present(row.get(d.paper_key)):
        text += f" [{row[d.paper_key]:.{d.decimals}f}]"
    return text
