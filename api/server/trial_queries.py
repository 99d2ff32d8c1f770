"""Questions asked of a sweep's trials and epochs tables: a filtered page, one trial, one trial's epochs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and inf have no JSON spelling: show them as missing."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _where(table: pa.Table, filters: Mapping[str, str | None]) -> pa.Table:
    mask = None
    for column, value in filters.items():
        if value is None:
            continue
        m = pc.equal(table[column], value)
        mask = m if mask is None else pc.and_(mask, m)
    return table if mask is None else table.filter(mask)


def page_trials(
    trials: pa.Table, filters: Mapping[str, str | None], *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Rows `offset..offset+limit` of the trials matching every given filter, and how many match."""
    matched = _where(trials, filters)
    rows = matched.slice(offset, limit).drop_columns(["config_json"]).to_pylist() if offset < matched.num_rows else []
    return [_clean(r) for r in rows], matched.num_rows


def trial_row(trials: pa.Table, trial_id: str) -> dict[str, Any] | None:
    """One trial with its config parsed, or None."""
    rows = _where(trials, {"trial_id": trial_id}).slice(0, 1).to_pylist()
    if not rows:
        return None
    row = _clean(rows[0])
    raw = row.pop("config_json", None)
    row["config"] = json.loads(raw) if raw else {}
    return row


def trial_epochs(epochs: pa.Table, trial_id: str) -> list[dict[str, Any]]:
    """A trial's epoch history, oldest first, with per-split metrics parsed."""
    rows = _where(epochs, {"trial_id": trial_id}).to_pylist()
    out = []
    for row in sorted(rows, key=lambda r: r["epoch"]):
        row = _clean(row)
        raw = row.pop("split_metrics_json", None)
        try:
            split = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            split = {}
        row["split_metrics"] = {
            str(k): (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in split.items()
        }
        out.append(row)
    return out
