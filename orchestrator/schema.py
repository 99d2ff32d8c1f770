"""The Parquet tables a sweep writes under `<storage>/<sweep_id>/`, as pyarrow schemas built from the records.

`trials.parquet`: one row per trial: its identity, its `TrialSummary`, its config and when it last changed.
`epochs.parquet`: one row per (trial, epoch): its identity and its `EpochReport`; when a crashed trial repeats an
epoch, the last report wins.
`probe.parquet`: the layer-gradient probe, one `LayerGradient` row per (model, dataset, layer).
Metric columns are fractions in [0, 1]. A mapping field (an epoch's `split_metrics`) is stored as JSON text in a
column named `<field>_json`.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from orchestrator.storage import LATER_COLUMN
from worker.records import TIE_BREAK, EpochReport, LayerGradient, TrialSummary, record_fields

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
JSON_SUFFIX = "_json"

IDENTITY_FIELDS = [
    pa.field("sweep_id", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("model", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("method", pa.string()),
    pa.field("lr", pa.float64()),
    pa.field("seed", pa.int64()),
]


def _base(tp: Any) -> Any:
    """X from `X | None`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def is_mapping(tp: Any) -> bool:
    return typing.get_origin(_base(tp)) in (Mapping, dict)


def record_columns(record: type, later: frozenset[str] = frozenset()) -> list[pa.Field]:
    """One column per field of `record`, its description in the field's metadata; the fields named in `later` were
    added after files were first written (`later_column`)."""
    out = []
    for name, tp, doc in record_fields(record):
        base = _base(tp)
        column, kind = (name + JSON_SUFFIX, pa.string()) if is_mapping(base) else (name, _ARROW[base])
        out.append(
            later_column(column, kind, doc)
            if name in later
            else pa.field(column, kind, metadata={"doc": doc} if doc else None)
        )
    return out


def record_row(record: Any) -> dict[str, Any]:
    """A record's fields as one row of its columns (mappings as JSON text)."""
    row = {}
    for name, tp, _ in record_fields(type(record)):
        value = getattr(record, name)
        if is_mapping(tp):
            row[name + JSON_SUFFIX] = json.dumps(dict(value or {}), sort_keys=True)
        else:
            row[name] = value
    return row


def later_column(name: str, kind: pa.DataType, doc: str) -> pa.Field:
    """A column added after files were first written: an older file reads it as nulls."""
    return pa.field(name, kind, metadata={"doc": doc, LATER_COLUMN: "null in files written before it existed"})


TRIALS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + record_columns(TrialSummary)
    + [
        later_column("precision", pa.string(), "fp32 or bf16 (autocast); null: recorded before precision was"),
        later_column("reused_from", pa.string(), "the sweep this trial's result was copied from; null: run here"),
        pa.field("config_json", pa.string()),
        pa.field("updated_at", pa.timestamp("ms", tz="UTC")),
    ]
)
EPOCHS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + record_columns(EpochReport, later=frozenset({TIE_BREAK}))
    + [pa.field("reported_at", pa.timestamp("ms", tz="UTC"))]
)
PROBE_SCHEMA = pa.schema(
    [pa.field("sweep_id", pa.string()), pa.field("model", pa.string()), pa.field("dataset", pa.string())]
    + record_columns(LayerGradient)
)
