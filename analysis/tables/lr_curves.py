"""Per cell and LR: the seed means and spreads behind every selection, the data of the LR-curve plots."""

from __future__ import annotations

from typing import Any

from analysis import labels
from analysis.sweep_data import SweepData
from analysis.tables.comparison import SELECTION_NOTE, pct
from analysis.tables.registry import register
from analysis.tables.table_data import Column, DisplayColumn, TableData
from worker.records import METRICS
from worker.selection import LrSummary

COLUMNS = (
    Column("model", "str"),
    Column("dataset", "str"),
    Column("method", "str"),
    Column("lr", "float"),
    Column("n", "int", "seeds with a result at this LR"),
    Column("n_trials", "int", "trials at this LR"),
    Column("statuses", "str", "trial statuses, counted"),
    Column("diverged", "bool"),
    Column("chosen", "bool", "the LR the selection rule chose for this cell"),
    *(c for m in METRICS for c in (Column(m, "float", "seed mean, percent"), Column(f"{m}_sd", "float", "sample sd"))),
)
DISPLAY = (
    DisplayColumn("Model", "model"),
    DisplayColumn("Dataset", "dataset"),
    DisplayColumn("Method", "method"),
    DisplayColumn("LR", "lr", number_format=".0e"),
    DisplayColumn("n", "n"),
    DisplayColumn("Statuses", "statuses"),
    DisplayColumn("Chosen", "chosen"),
    *(DisplayColumn(labels.metric_title(m), m) for m in METRICS),
)


def _row(model: str, dataset: str, method: str, s: LrSummary) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "method": method,
        "lr": s.lr,
        "n": s.n_results,
        "n_trials": s.n_trials,
        "statuses": ", ".join(f"{n} {st}" for st, n in s.statuses.items()),
        "diverged": s.diverged,
        "chosen": s.chosen,
    }
    for m in METRICS:
        summary = s.metrics[m]
        if summary is not None:
            row[m], row[f"{m}_sd"] = pct(summary.mean), pct(summary.sd)
    return row


@register("lr_curves")
def lr_curves_table(data: SweepData) -> TableData:
    """One row per (model, dataset, method, LR), in catalog order and ascending LR."""
    cells = data.cells
    models = labels.ordered("model", (c.model for c in cells))
    datasets = labels.ordered("dataset", (c.dataset for c in cells))
    methods = labels.ordered("method", (c.method for c in cells))
    ordered = sorted(cells, key=lambda c: (models.index(c.model), datasets.index(c.dataset), methods.index(c.method)))
    rows = [_row(c.model, c.dataset, c.method, s) for c in ordered for s in c.per_lr]
    notes = [SELECTION_NOTE, "Metrics in percent: the mean over seeds of each run's best-ID-validation epoch."]
    return TableData(
        name="lr_curves",
        title="Accuracy per learning rate (%)",
        columns=COLUMNS,
        rows=tuple(rows),
        notes=tuple(notes),
        display=DISPLAY,
    )
