"""Tables as HTML: the ID/OOD comparison with ours and the paper's numbers side by side, and any other table.

Every number cell carries its raw value and identity as `data-*` attributes (table, model, dataset, method,
metric, source, value, ...), so a test or a script reads the page back without parsing formatted text. Tables
use a fixed layout with column widths set from their headers and row labels, never from the numbers, so a live
page that fills in results keeps its geometry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from analysis import labels
from analysis.tables.comparison import BASELINE_METHOD, METRIC_FIELD
from analysis.tables.table_data import MISSING, DisplayColumn, TableData, format_value

MINUS = "\u2212"


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def _attrs(attrs: Mapping[str, Any]) -> str:
    return "".join(f' {k}="{escape(_attr_text(v))}"' for k, v in attrs.items() if _present(v))


def _attr_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def signed(v: float, decimals: int = 1) -> str:
    """+3.2, −1.0 (a true minus sign), ±0.0: the sign is always written, so colour is never the only cue."""
    text = f"{abs(v):.{decimals}f}"
    if float(text) == 0.0:
        return f"±{text}"
    return f"+{text}" if v > 0 else f"{MINUS}{text}"


def delta_badge(v: float | None, *, what: str) -> str:
    """A gain (blue) or loss (orange) against SGD, with its sign; an empty placeholder keeps the line."""
    if not _present(v):
        return '<span class="d none">&nbsp;</span>'
    text = signed(v)
    cls = "same" if text.startswith("±") else "gain" if v > 0 else "loss"
    word = {"gain": "above", "loss": "below", "same": "level with"}[cls]
    tip = f"{what}: {abs(v):.1f} points {word} SGD"
    return f'<span class="d {cls}" title="{escape(tip)}" data-delta="{v!r}">{text}</span>'


# ---- Tables 1 and 2 -----------------------------------------------------------------------------------------


def _datasets(t: TableData) -> list[str]:
    return [d.key for d in t.display if d.delta_key and d.key != "avg"]


def _paper_deltas(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, float]]:
    """The paper's own change against its SGD row on the same model, per column, for putting beside ours."""
    base = {r["model"]: r for r in rows if r["method"] == BASELINE_METHOD}
    out = []
    for r in rows:
        b = base.get(r["model"])
        deltas = {}
        if b is not None and b is not r:
            for k in keys:
                mine, theirs = r.get(f"{k}_paper"), b.get(f"{k}_paper")
                if _present(mine) and _present(theirs):
                    deltas[k] = mine - theirs
        out.append(deltas)
    return out


def _ours_cell(t: TableData, row: Mapping[str, Any], key: str, metric: str) -> str:
    v = row.get(key)
    ci = row.get(f"{key}_ci90")
    marks = row.get(f"{key}_marks") or ""
    status = row.get(f"{key}_status")
    attrs = {
        "data-table": t.name,
        "data-source": "ours",
        "data-model": row["model"],
        "data-method": row["method"],
        "data-dataset": key,
        "data-metric": metric,
        "data-value": v if _present(v) else None,
        "data-ci90": ci,
        "data-lr": row.get(f"{key}_lr"),
        "data-seeds": row.get(f"{key}_n_seeds"),
        "data-status": status,
        "data-marks": marks or None,
    }
    main = escape(format_value(v)) if _present(v) else MISSING
    ci_text = f'<span class="ci">±{ci:.1f}</span>' if _present(ci) else ""
    mark_text = f'<span class="marks">{escape(marks.strip())}</span>' if marks.strip() else ""
    what = f"{row.get('method_title', row['method'])}, {labels.title('dataset', key) if key != 'avg' else 'average'}"
    badge = delta_badge(row.get(f"{key}_vs_sgd"), what=f"ours, {what}")
    tip = (
        f"chosen lr {row[f'{key}_lr']:g}, {row.get(f'{key}_n_seeds')} seed(s)" if _present(row.get(f"{key}_lr")) else ""
    )
    if status and status not in ("ok",):
        tip = (tip + "; " if tip else "") + str(status)
    title = f' title="{escape(tip)}"' if tip else ""
    return (
        f'<td class="num ours"{_attrs(attrs)}{title}><span class="v">{main}</span>{ci_text}{mark_text}<br>{badge}</td>'
    )


def _paper_cell(t: TableData, row: Mapping[str, Any], key: str, metric: str, delta: float | None) -> str:
    v = row.get(f"{key}_paper")
    ci = row.get(f"{key}_paper_ci90")
    attrs = {
        "data-table": t.name,
        "data-source": "paper",
        "data-model": row["model"],
        "data-method": row["method"],
        "data-dataset": key,
        "data-metric": metric,
        "data-value": v if _present(v) else None,
        "data-ci90": ci,
    }
    main = escape(format_value(v)) if _present(v) else MISSING
    ci_text = f'<span class="ci">±{ci:.1f}</span>' if _present(ci) else ""
    badge = delta_badge(delta, what="the paper")
    return f'<td class="num paper"{_attrs(attrs)}><span class="v">{main}</span>{ci_text}<br>{badge}</td>'


def has_paper_numbers(t: TableData) -> bool:
    """Whether the paper has a number for any cell of the table (never, for the tiny models and synthetic data)."""
    keys = _datasets(t) + ["avg"]
    return any(_present(r.get(f"{k}_paper")) for r in t.rows for k in keys)


def comparison_table(t: TableData) -> str:
    """Table 1 or 2: per dataset (and the average) our number and the paper's, side by side, with their Δ SGD.

    The paper's columns are left out when it has no number for any cell of this sweep."""
    metric = METRIC_FIELD.get(t.name, t.name)
    keys = _datasets(t) + ["avg"]
    rows = [dict(r) for r in t.rows]
    paper = has_paper_numbers(t)
    span = 2 if paper else 1
    paper_deltas = _paper_deltas(rows, keys)
    cols = ['<col class="c-method">'] + [
        '<col class="c-ours"><col class="c-paper">' if paper else '<col class="c-ours">' for _ in keys
    ]
    head1 = ['<th rowspan="2" scope="col" class="rowhead">Method</th>']
    head2 = []
    for k in keys:
        title = "Avg" if k == "avg" else labels.title("dataset", k)
        head1.append(f'<th colspan="{span}" scope="colgroup" class="grp" title="{escape(title)}">{escape(title)}</th>')
        head2.append('<th scope="col" class="sub">Ours</th>')
        if paper:
            head2.append('<th scope="col" class="sub paper">Paper</th>')
    body = []
    previous = None
    for row, pdeltas in zip(rows, paper_deltas, strict=True):
        model_title = row.get("model_title", row["model"])
        if model_title != previous:  # the model heads its group of rows, so the rows need no model column
            body.append(
                f'<tr class="model"{_attrs({"data-model": row["model"]})}>'
                f'<th scope="rowgroup" class="rowhead model">{escape(model_title)}</th>'
                f'<td colspan="{span * len(keys)}"></td></tr>'
            )
            previous = model_title
        cells = [f'<th scope="row" class="rowhead method">{escape(row.get("method_title", row["method"]))}</th>']
        for k in keys:
            cells.append(_ours_cell(t, row, k, metric))
            if paper:
                cells.append(_paper_cell(t, row, k, metric, pdeltas.get(k)))
        attrs = _attrs({"data-model": row["model"], "data-method": row["method"]})
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{1 + span * len(keys)}" class="empty">No results yet.</td></tr>')
    cls = "cmp" if paper else "cmp no-paper"
    return (
        f'<div class="scroll" id="scroll-{escape(t.name)}"><table class="{cls}" data-table="{escape(t.name)}"'
        f' style="--pairs:{len(keys)}">'
        f'<caption class="sr-only">{escape(t.title)}</caption><colgroup>{"".join(cols)}</colgroup>'
        f"<thead><tr>{''.join(head1)}</tr><tr>{''.join(head2)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# ---- any other table ----------------------------------------------------------------------------------------

_ROW_IDENTITY = ("model", "dataset", "method", "measure", "split")


def _is_text(t: TableData, d: DisplayColumn) -> bool:
    return next((c.dtype for c in t.columns if c.key == d.key), "str") == "str"


def _width_ch(t: TableData, d: DisplayColumn) -> int:
    """Column width in characters, from the header and, for text columns, the row labels (never the numbers).

    A number column's header wraps between words, so its longest word sets the width, not the whole title: a
    table of nine numeric columns with long titles then fits a laptop's width instead of scrolling sideways."""
    if _is_text(t, d):
        width = max([len(d.title) + 2] + [len(str(r.get(d.key) or "")) + 2 for r in t.rows])
    else:
        width = max(max(len(word) for word in d.title.split()) + 2, 10 + (7 if d.paper_key else 0))
    return min(width, 40)


def data_table(t: TableData, *, caption: bool = True) -> str:
    """A table from its display columns; each cell carries its column key and raw value, each row its identity.

    `caption=False` keeps the title for screen readers only, where a section heading already shows it."""
    cols = t.display or tuple(DisplayColumn(c.key, c.key) for c in t.columns)
    dtypes = {c.key: c.dtype for c in t.columns}
    widths = [_width_ch(t, d) for d in cols]
    colgroup = "".join(f'<col style="width:{w}ch">' for w in widths)
    num = ' class="num"'
    head = "".join(f'<th scope="col"{"" if _is_text(t, d) else num}>{escape(d.title)}</th>' for d in cols)
    _, texts = t.view()
    body = []
    for row, cells_text in zip(t.rows, texts, strict=True):
        ident = {f"data-{k}": row.get(k) for k in _ROW_IDENTITY if isinstance(row.get(k), str)}
        cells = []
        for d, text in zip(cols, cells_text, strict=True):
            numeric = dtypes.get(d.key, "str") != "str"
            attrs: dict[str, Any] = {"data-col": d.key}
            if numeric:  # a number names its table, row and column, and carries its raw value
                attrs.update({"data-table": t.name, **ident, "data-metric": d.key, "data-value": row.get(d.key)})
            if d.paper_key:
                attrs["data-paper"] = row.get(d.paper_key)
            cls = "num" if numeric else "txt"
            cells.append(f'<td class="{cls}"{_attrs(attrs)} title="{escape(text)}">{escape(text)}</td>')
        body.append(f"<tr{_attrs(ident)}>{''.join(cells)}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(cols)}" class="empty">No rows yet.</td></tr>')
    cap_cls = "" if caption else ' class="sr-only"'
    return (
        f'<div class="scroll" id="scroll-{escape(t.name)}"><table class="data" data-table="{escape(t.name)}"'
        f' style="width:{sum(widths) + 2 * len(widths)}ch">'
        f"<caption{cap_cls}>{escape(t.title)}</caption><colgroup>{colgroup}</colgroup>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def notes_block(notes: Sequence[str], *, ident: str, summary: str = "Notes") -> str:
    """Notes folded into a <details>, closed by default: its height does not depend on how many notes there are."""
    if not notes:
        return f'<details class="notes" id="{escape(ident)}"><summary>{escape(summary)} (0)</summary></details>'
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return (
        f'<details class="notes" id="{escape(ident)}"><summary>{escape(summary)} ({len(notes)})</summary>'
        f"<ul>{items}</ul></details>"
    )
