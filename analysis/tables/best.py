"""Table 3: the best OOD result per dataset in the sweep, beside the paper's best and the prior state of the art.

Picking the best (model, method) by OOD is a report of what the sweep reached, as the paper's Table 3 is; within
each cell the LR was still chosen on ID validation only.
"""

from __future__ import annotations

from typing import Any

from analysis import labels
from analysis.reference import load_reference
from analysis.sweep_data import SweepData
from analysis.tables.comparison import MARKS_LEGEND, SELECTION_NOTE, cell_marks, pct
from analysis.tables.registry import register
from analysis.tables.table_data import Column, DisplayColumn, TableData

COLUMNS = (
    Column("dataset", "str"),
    Column("dataset_title", "str"),
    Column("ood", "float", "our best OOD accuracy, percent"),
    Column("ood_ci90", "float"),
    Column("marks", "str"),
    Column("id", "float", "ID accuracy of the same cell, percent"),
    Column("model", "str"),
    Column("method", "str"),
    Column("by", "str", "model and method of our best"),
    Column("lr", "float", "chosen LR of that cell"),
    Column("n_seeds", "int"),
    Column("cells_compared", "int", "cells with a result on this dataset"),
    Column("paper_best", "float"),
    Column("paper_model", "str"),
    Column("paper_method", "str"),
    Column("paper_by", "str"),
    Column("prior_sota", "float", "best result before the paper"),
    Column("vs_paper", "float", "ours minus the paper's best, points"),
    Column("vs_prior", "float", "ours minus the prior best, points"),
)
BEST_NOTE = (
    "The best (model, method) per dataset is picked by OOD accuracy, as a report of what the sweep reached "
    "(the paper's Table 3 does the same); each cell's LR was chosen on ID validation only."
)
DISPLAY = (
    DisplayColumn("Dataset", "dataset_title", short_key="dataset"),
    DisplayColumn("Ours (OOD)", "ood", ci_key="ood_ci90", marks_key="marks"),
    DisplayColumn("Ours by", "by"),
    DisplayColumn("Paper best", "paper_best", short="Paper"),
    DisplayColumn("Paper by", "paper_by", short="by"),
    DisplayColumn("Prior best", "prior_sota", short="Prior"),
    DisplayColumn("vs paper", "vs_paper", short="Δ paper"),
    DisplayColumn("vs prior", "vs_prior", short="Δ prior"),
)


def _by(model: str, method: str) -> str:
    return f"{labels.title('model', model)} · {labels.title('method', method)}"


@register("best")
def best_table(data: SweepData) -> TableData:
    """Per dataset, the (model, method) cell with the highest OOD accuracy, against the paper's Table 3."""
    ref = load_reference()
    cells = [c for c in data.cells if c.mean("ood_test") is not None]
    datasets = labels.ordered("dataset", [c.dataset for c in data.cells])
    models = labels.ordered("model", [c.model for c in data.cells])
    methods = labels.ordered("method", [c.method for c in data.cells])
    rows: list[dict[str, Any]] = []
    notes = [MARKS_LEGEND, SELECTION_NOTE, BEST_NOTE]
    for d in datasets:
        mine = sorted(
            (c for c in cells if c.dataset == d),
            key=lambda c: (-c.mean("ood_test"), models.index(c.model), methods.index(c.method)),
        )
        row: dict[str, Any] = {"dataset": d, "dataset_title": labels.title("dataset", d), "cells_compared": len(mine)}
        if mine:
            b = mine[0]
            row.update(
                ood=pct(b.mean("ood_test")),
                ood_ci90=pct(b.ci90("ood_test")),
                marks=cell_marks(b, "ood_test"),
                id=pct(b.mean("id_test")),
                model=b.model,
                method=b.method,
                by=_by(b.model, b.method),
                lr=b.chosen_lr,
                n_seeds=b.n_seeds,
            )
        else:
            notes.append(f"{labels.title('dataset', d)}: no cell has a result yet.")
        p = ref.best(d)
        if p is not None:
            row.update(
                paper_best=p.value,
                paper_model=p.model,
                paper_method=p.method,
                paper_by=_by(p.model, p.method),
                prior_sota=p.prior_sota,
            )
            if row.get("ood") is not None:
                row.update(vs_paper=row["ood"] - p.value, vs_prior=row["ood"] - p.prior_sota)
        rows.append(row)
    return TableData(
        name="best",
        title="Table 3: best OOD accuracy per dataset (%)",
        columns=COLUMNS,
        rows=tuple(rows),
        notes=tuple(notes),
        display=DISPLAY,
    )
