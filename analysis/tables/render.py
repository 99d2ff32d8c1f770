"""A `TableData` as bytes in one of six formats, with its media type.

Markdown and LaTeX show the people's view (`TableData.view`), text its compact view for a terminal (120
columns: short headers, no change against SGD and no paper numbers, notes wrapped); CSV, JSON and Parquet carry
every machine column with raw values. JSON and Parquet also carry the title and the notes; CSV has only the
header and the rows, so that any CSV reader parses it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.tables.table_data import TableData

_ARROW_TYPES = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}


def _clean(v: Any) -> Any:
    """NaN and inf have no JSON or CSV spelling that every reader accepts: write them as missing."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _markdown(t: TableData) -> bytes:
    headers, body = t.view()
    body = [[c.replace("|", "\\|") for c in row] for row in body]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"## {t.title}", "", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    if not body:
        out.append("")
        out.append("(no rows)")
    if t.notes:
        out.append("")
        out += [f"- {n}" for n in t.notes]
    return ("\n".join(out) + "\n").encode()


TEXT_WIDTH = 120
COMPACT_NOTE = "Compact view: each cell's change against SGD and the paper's number are in the other formats."


def _text(t: TableData) -> bytes:
    headers, body = t.view(compact=True)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [t.title, "", line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in body] or ["(no rows)"]
    notes = [*t.notes, COMPACT_NOTE] if any(d.delta_key or d.paper_key for d in t.display) else list(t.notes)
    if notes:
        out.append("")
        out += [textwrap.fill(n, width=TEXT_WIDTH, initial_indent="- ", subsequent_indent="  ") for n in notes]
    return ("\n".join(out) + "\n").encode()


def _csv(t: TableData) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.column_keys())
    for rec in t.records():
        cells = [_clean(v) for v in rec.values()]
        w.writerow(["" if v is None else v for v in cells])
    return buf.getvalue().encode()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "—": "---",
    "†": r"\dag{}",
    "‡": r"\ddag{}",
    "§": r"\S{}",
    "○": r"$\circ$",
    "·": r"$\cdot$",
    "‖": r"$\|$",
    "√": r"$\surd$",
    "θ": r"$\theta$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex(t: TableData) -> bytes:
    headers, body = t.view()
    dtypes = {c.key: c.dtype for c in t.columns}
    keys = [d.key for d in t.display] if t.display else [c.key for c in t.columns]
    align = "".join("l" if dtypes.get(k) == "str" else "r" for k in keys)
    out = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(t.title)}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in headers) + " \\\\",
        "\\midrule",
    ]
    group_cells = [i for i, k in enumerate(keys) if k == t.group_key]
    for n, row in enumerate(body):
        starts_group = bool(group_cells) and n > 0 and any(row[i] for i in group_cells)
        if starts_group:
            out.append("\\midrule")
        out.append(" & ".join(latex_escape(c) for c in row) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if t.notes:
        out.append("\\par\\smallskip\\footnotesize")
        out += [latex_escape(n) + "\\\\" for n in t.notes]
    out.append("\\end{table}")
    return ("\n".join(out) + "\n").encode()


def _json(t: TableData) -> bytes:
    doc = {
        "name": t.name,
        "title": t.title,
        "columns": [{"key": c.key, "dtype": c.dtype, "description": c.description} for c in t.columns],
        "rows": [{k: _clean(v) for k, v in rec.items()} for rec in t.records()],
        "notes": list(t.notes),
    }
    return json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False).encode()


def arrow_table(t: TableData) -> pa.Table:
    """The machine columns as a pyarrow table, with the title and notes in the schema metadata."""
    schema = pa.schema(
        [pa.field(c.key, _ARROW_TYPES[c.dtype]) for c in t.columns],
        metadata={"name": t.name, "title": t.title, "notes": json.dumps(list(t.notes))},
    )
    rows = [{k: _clean(v) for k, v in rec.items()} for rec in t.records()]
    return pa.Table.from_pylist(rows, schema=schema)


def _parquet(t: TableData) -> bytes:
    buf = io.BytesIO()
    pq.write_table(arrow_table(t), buf)
    return buf.getvalue()


FORMATS: dict[str, tuple[Callable[[TableData], bytes], str]] = {
    "markdown": (_markdown, "text/markdown; charset=utf-8"),
    "csv": (_csv, "text/csv; charset=utf-8"),
    "latex": (_latex, "application/x-latex; charset=utf-8"),
    "json": (_json, "application/json"),
    "parquet": (_parquet, "application/vnd.apache.parquet"),
    "text": (_text, "text/plain; charset=utf-8"),
}


def list_formats() -> list[str]:
    return list(FORMATS)


def render(t: TableData, fmt: str) -> tuple[bytes, str]:
    """`t` as `fmt`: the content and its media type. An unknown format names the valid ones."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    writer, media_type = FORMATS[fmt]
    return writer(t), media_type
