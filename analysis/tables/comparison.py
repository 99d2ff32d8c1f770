"""Tables 1 and 2 (OOD and ID accuracy, models x methods x datasets) and the single-model ablation table.

Each cell is the selection rule's result (selection.py) in percent, with its 90% interval, its marks, its change
against SGD on the same model and dataset, and the paper's number where the paper has one. The average is the
plain mean of the dataset columns the row has; a row missing a dataset says so instead of hiding it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import Any

from analysis import labels
from analysis.reference import PaperReference, load_reference
from analysis.sweep_data import SweepData
from analysis.tables.registry import register
from analysis.tables.table_data import Column, DisplayColumn, TableData
from worker import catalog
from worker.records import SELECTION_METRIC
from worker.selection import CellResult, format_lr

BASELINE_METHOD = "sgd"
ALL_MODELS = "all"  # the model key of the rows that average each method over the sweep's models
ABLATION_MODEL = "clip_vit_b16"  # the paper's ablation model, preferred when a sweep holds several
MARK_EDGE, MARK_MISSING, MARK_DIVERGED, MARK_STOPPED, MARK_CHANCE = "†", "*", "‡", "§", "○"
METRIC_FIELD = {"ood": "ood_test", "id": "id_test"}
METRIC_LABEL = {"ood": "OOD", "id": "ID"}

MARKS_LEGEND = (
    f"Marks: {MARK_EDGE} chosen LR at the edge of the LRs run; "
    f"{MARK_MISSING} trials without a result (pending, running, failed or cancelled), or no result at all (—); "
    f"{MARK_DIVERGED} an LR diverged and was not chosen; "
    f"{MARK_STOPPED} no LR ran to the end: chosen among early-stopped trials, on an early epoch; "
    f"{MARK_CHANCE} at or below chance: no better than predicting one class for every image."
)
LEGEND = (
    "Cells: ours in percent (±90% interval over seeds), marks, Δ change against SGD on the same model, "
    "[the paper's number]. " + MARKS_LEGEND
)
SELECTION_NOTE = (
    "Each cell: best-ID-validation epoch per run, mean over seeds per LR, the LR with the best mean ID "
    "validation metric (exact ties: the lower ID validation loss), where an LR whose trials ran to the end always "
    "wins over an early-stopped one; OOD is never used to choose."
)


def pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def cell_marks(c: CellResult, metric: str | None = None) -> str:
    """The cell's marks; with `metric`, also whether that metric's value is at or below chance."""
    return (
        (MARK_EDGE if c.edge_flag else "")
        + (MARK_MISSING if c.status != "ok" else "")
        + (MARK_DIVERGED if c.has_diverged else "")
        + (MARK_STOPPED if c.stopped_choice else "")
        + (MARK_CHANCE if metric is not None and c.at_chance(metric) else "")
    )


def dataset_columns(d: str) -> list[Column]:
    return [
        Column(d, "float", f"ours on {d}, percent"),
        Column(f"{d}_ci90", "float", "90% interval, percent; empty for one seed"),
        Column(f"{d}_marks", "str", "edge LR / missing trials / diverged LR / early-stopped choice / at-chance marks"),
        Column(f"{d}_vs_sgd", "float", "ours minus SGD on the same model, points"),
        Column(f"{d}_paper", "float", "the paper's number, percent"),
        Column(f"{d}_paper_ci90", "float", "the paper's 90% interval"),
        Column(f"{d}_lr", "float", "chosen LR"),
        Column(f"{d}_n_seeds", "int", "seeds averaged at the chosen LR"),
        Column(f"{d}_status", "str", "ok | incomplete | no_result | not run"),
    ]


AVG_COLUMNS = [
    Column("avg", "float", "plain mean of the dataset columns present"),
    Column("avg_marks", "str", "(k/N) when only k of the N dataset columns have a result"),
    Column("avg_missing", "str", "datasets left out of the average"),
    Column("avg_vs_sgd", "float", "mean change against SGD over the datasets both have"),
    Column("avg_paper", "float", "the paper's average over the same datasets"),
]
ROW_COLUMNS = [
    Column("model", "str"),
    Column("model_title", "str"),
    Column("method", "str"),
    Column("method_title", "str"),
]


def _cell_fields(c: CellResult | None, d: str, metric: str) -> dict[str, Any]:
    if c is None:
        return {f"{d}_status": "not run"}
    f = METRIC_FIELD[metric]
    return {
        d: pct(c.mean(f)),
        f"{d}_ci90": pct(c.ci90(f)),
        f"{d}_marks": cell_marks(c, f),
        f"{d}_lr": c.chosen_lr,
        f"{d}_n_seeds": c.n_seeds,
        f"{d}_status": c.status,
    }


def _paper_fields(ref: PaperReference, metric: str, model: str, method: str, datasets: Sequence[str]) -> dict:
    out: dict[str, Any] = {}
    for d in datasets:
        v = ref.value(metric, model, method, d)
        if v is not None:
            out[f"{d}_paper"], out[f"{d}_paper_ci90"] = v.value, v.ci90
    return out


def _paper_average(row: dict[str, Any], datasets: Sequence[str], ref: PaperReference, metric: str) -> None:
    """The paper's average over the datasets our row has: its own Avg for all five, else recomputed."""
    present = [d for d in datasets if row.get(d) is not None] or list(datasets)
    values = [row.get(f"{d}_paper") for d in present]
    if not values or any(v is None for v in values):
        return
    if set(present) == set(ref.datasets):
        row["avg_paper"] = ref.average(metric, row["model"], row["method"])
    else:
        row["avg_paper"] = fmean(values)


def _average(row: dict[str, Any], datasets: Sequence[str]) -> None:
    present = [d for d in datasets if row.get(d) is not None]
    row["avg"] = fmean(row[d] for d in present) if present else None
    if len(present) < len(datasets):
        row["avg_marks"] = f" ({len(present)}/{len(datasets)})" if present else ""
        row["avg_missing"] = ", ".join(d for d in datasets if d not in present)


def _add_deltas(rows: list[dict[str, Any]], datasets: Sequence[str]) -> None:
    base = {r["model"]: r for r in rows if r["method"] == BASELINE_METHOD}
    for r in rows:
        b = base.get(r["model"])
        if b is None or r is b:
            continue
        deltas = []
        for d in datasets:
            if r.get(d) is not None and b.get(d) is not None:
                r[f"{d}_vs_sgd"] = r[d] - b[d]
                deltas.append(r[f"{d}_vs_sgd"])
        if deltas:
            r["avg_vs_sgd"] = fmean(deltas)


def _mean_rows(
    rows: list[dict[str, Any]],
    methods: Sequence[str],
    datasets: Sequence[str],
    metric: str,
    models: Sequence[str],
    ref: PaperReference,
) -> list[dict[str, Any]]:
    """Per method, each dataset column averaged over the models that have it, beside the paper's quoted mean."""
    out = []
    paper_models = set(ref.results[metric])
    covers_paper = paper_models <= set(models) and set(datasets) == set(ref.datasets)
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        row: dict[str, Any] = {
            "model": ALL_MODELS,
            "model_title": "Mean over models",
            "method": m,
            "method_title": labels.title("method", m),
        }
        for d in datasets:
            vals = [r[d] for r in mine if r.get(d) is not None]
            row[d] = fmean(vals) if vals else None
            row[f"{d}_marks"] = MARK_MISSING if len(vals) < len(models) else ""
            row[f"{d}_status"] = f"{len(vals)} of {len(models)} models"
        _average(row, datasets)
        if covers_paper:
            row["avg_paper"] = ref.quoted_average(metric, m)
        out.append(row)
    return out


def comparison_rows(
    cells: Iterable[CellResult],
    metric: str,
    models: Sequence[str],
    methods: Sequence[str],
    datasets: Sequence[str],
    ref: PaperReference,
    *,
    mean_rows: bool,
) -> list[dict[str, Any]]:
    """One row per (model, method) that has any cell, in the given orders; deltas against SGD filled in."""
    by_key = {c.key: c for c in cells}
    rows = []
    for model in models:
        for method in methods:
            if not any((model, d, method) in by_key for d in datasets):
                continue
            row: dict[str, Any] = {
                "model": model,
                "model_title": labels.title("model", model),
                "method": method,
                "method_title": labels.title("method", method),
            }
            for d in datasets:
                row.update(_cell_fields(by_key.get((model, d, method)), d, metric))
            row.update(_paper_fields(ref, metric, model, method, datasets))
            _average(row, datasets)
            _paper_average(row, datasets, ref, metric)
            rows.append(row)
    if mean_rows and len(models) > 1:
        rows += _mean_rows(rows, methods, datasets, metric, models, ref)
    _add_deltas(rows, datasets)
    return rows


def _where(c: CellResult) -> str:
    return " / ".join(
        [labels.title("model", c.model), labels.title("method", c.method), labels.title("dataset", c.dataset)]
    )


def cell_notes(cells: Iterable[CellResult]) -> list[str]:
    """Every cell's notes, prefixed with which cell, in table order; then one line for the cells whose choice broke
    an exact tie and one per edge of the grid naming the cells whose chosen LR sits there (not one per cell)."""
    cells = list(cells)
    out = [f"{_where(c)}: {n}" for c in cells for n in c.notes]
    chosen = sum(1 for c in cells if c.chosen_lr is not None)
    out += _tie_notes(cells, chosen)
    for side, beyond in (("smallest", "below"), ("largest", "above")):
        at = [c for c in cells if c.edge_side == side]
        if at:
            listed = "; ".join(f"{_where(c)} ({format_lr(c.chosen_lr)})" for c in at if c.chosen_lr is not None)
            out.append(
                f"{MARK_EDGE} the chosen LR is the {side} LR run, so the best may lie {beyond} the grid, in "
                f"{len(at)} of {chosen} cells: {listed}"
            )
    return out


def _tie_notes(cells: list[CellResult], chosen: int) -> list[str]:
    """The cells whose LRs tied exactly on mean ID validation, with the tied LRs and the one chosen; by the lower
    mean ID validation loss, or, where an LR has none recorded (an older sweep), by the smaller LR."""
    out = []
    for by_loss, how in ((True, "the lower mean ID validation loss"), (False, "the smaller LR (no loss recorded)")):
        at = [c for c in cells if c.tied_lrs and c.tie_broken_by_loss == by_loss]
        if at:
            listed = "; ".join(
                f"{_where(c)} ({', '.join(format_lr(lr) for lr in c.tied_lrs)} at {c.mean(SELECTION_METRIC):.1%}: "
                f"{format_lr(c.chosen_lr)})"
                for c in at
                if c.chosen_lr is not None
            )
            out.append(f"Exact ties in mean ID validation, broken by {how}, in {len(at)} of {chosen} cells: {listed}")
    return out


def seed_notes(cells: Iterable[CellResult], ref: PaperReference) -> list[str]:
    """A note per model whose cells average a different number of seeds than the paper's cells did."""
    by_model: dict[str, set[int]] = {}
    for c in cells:
        if c.n_seeds:
            by_model.setdefault(c.model, set()).add(c.n_seeds)
    out = []
    for model in labels.ordered("model", by_model):
        paper = ref.paper_seeds(model)
        counts = sorted(by_model[model])
        if paper is None or counts == [paper]:
            continue
        ours = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        out.append(
            f"Seeds: {labels.title('model', model)} cells average {ours} seed(s) at the chosen LR, the paper's "
            f"{paper}" + (f" (its intervals are over {paper} seeds)." if paper > 1 else ".")
        )
    return out


def _display(datasets: Sequence[str], lead: Sequence[DisplayColumn]) -> tuple[DisplayColumn, ...]:
    cols = list(lead)
    for d in datasets:
        title = labels.title("dataset", d)
        cols.append(DisplayColumn(title, d, f"{d}_ci90", f"{d}_marks", f"{d}_vs_sgd", f"{d}_paper", short=d))
    cols.append(DisplayColumn("Avg", "avg", None, "avg_marks", "avg_vs_sgd", "avg_paper"))
    return tuple(cols)


def _ordered_cells(cells: Sequence[CellResult]) -> tuple[list[str], list[str], list[str]]:
    return (
        labels.ordered("model", (c.model for c in cells)),
        labels.ordered("method", (c.method for c in cells)),
        labels.ordered("dataset", (c.dataset for c in cells)),
    )


def _sorted_cells(cells: Sequence[CellResult], models: list[str], methods: list[str], datasets: list[str]):
    return sorted(cells, key=lambda c: (models.index(c.model), methods.index(c.method), datasets.index(c.dataset)))


def _is_probe(method: str) -> bool:
    return method in catalog.list_methods() and catalog.get_method(method).is_linear_probe


def _common_notes(datasets: Sequence[str], rows: Sequence[dict[str, Any]], ref: PaperReference) -> list[str]:
    notes = [LEGEND, SELECTION_NOTE]
    probes = sorted({r["method"] for r in rows if _is_probe(r["method"])})
    if probes:
        notes.append(
            f"{', '.join(labels.title('method', m) for m in probes)}: a logistic regression on frozen features; "
            "its chosen 'LR' is the inverse L2 strength C, chosen on ID validation like an LR."
        )
    if not any(r["method"] == BASELINE_METHOD for r in rows):
        notes.append("No SGD rows in this sweep: no changes against SGD are shown.")
    incomplete = any(r.get("avg_missing") for r in rows)
    if set(datasets) != set(ref.datasets) or incomplete:
        notes.append("The paper's Avg is over the same datasets as ours in each row, recomputed from its columns.")
    if incomplete:
        notes.append("Avg (k/N): the row has only k of the N datasets; the missing ones are listed in avg_missing.")
    return notes


def _metric_table(data: SweepData, metric: str, name: str, title: str) -> TableData:
    cells = data.cells
    models, methods, datasets = _ordered_cells(cells)
    ref = load_reference()
    rows = comparison_rows(cells, metric, models, methods, datasets, ref, mean_rows=True)
    notes = _common_notes(datasets, rows, ref) + seed_notes(cells, ref)
    notes += cell_notes(_sorted_cells(cells, models, methods, datasets))
    if not cells:
        notes.append("The sweep has no trials yet.")
    lead = [DisplayColumn("Model", "model_title"), DisplayColumn("Method", "method_title")]
    return TableData(
        name=name,
        title=title,
        columns=tuple(ROW_COLUMNS + [c for d in datasets for c in dataset_columns(d)] + AVG_COLUMNS),
        rows=tuple(rows),
        notes=tuple(notes),
        display=_display(datasets, lead),
        group_key="model_title",
    )


@register("ood")
def ood_table(data: SweepData) -> TableData:
    """Table 1: OOD accuracy per model and method, with gains against SGD and the paper's numbers."""
    return _metric_table(data, "ood", "ood", "Table 1: OOD accuracy (%)")


@register("id")
def id_table(data: SweepData) -> TableData:
    """Table 2: ID accuracy per model and method, with gains against SGD and the paper's numbers."""
    return _metric_table(data, "id", "id", "Table 2: ID accuracy (%)")


def ablation_model(models: Sequence[str]) -> str | None:
    """The sweep's one model; with several, the paper's ablation model if present, else the first in catalog order."""
    if not models:
        return None
    return ABLATION_MODEL if ABLATION_MODEL in models else models[0]


@register("ablation")
def ablation_table(data: SweepData) -> TableData:
    """The ablation table: one model's methods as rows, OOD then ID, beside the paper's ablation numbers."""
    all_cells = data.cells
    models, _, _ = _ordered_cells(all_cells)
    model = ablation_model(models)
    cells = [c for c in all_cells if c.model == model]
    _, methods, datasets = _ordered_cells(cells)
    ref = load_reference()
    rows = []
    for metric in ("ood", "id"):
        for r in comparison_rows(cells, metric, [model] if model else [], methods, datasets, ref, mean_rows=False):
            rows.append({"split": METRIC_LABEL[metric], **r})
    notes = _common_notes(datasets, rows, ref) + seed_notes(cells, ref)
    if len(models) > 1:
        notes.append(
            f"The sweep holds {len(models)} models; this table shows {model} only "
            f"(others: {', '.join(m for m in models if m != model)})."
        )
    if not cells:
        notes.append("The sweep has no trials yet.")
    notes += cell_notes(_sorted_cells(cells, models, methods, datasets))
    title = f"Ablations on {labels.title('model', model)}: OOD and ID accuracy (%)" if model else "Ablations"
    lead = [DisplayColumn("Split", "split"), DisplayColumn("Method", "method_title")]
    return TableData(
        name="ablation",
        title=title,
        columns=tuple(
            [Column("split", "str", "OOD or ID")]
            + ROW_COLUMNS
            + [c for d in datasets for c in dataset_columns(d)]
            + AVG_COLUMNS
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        display=_display(datasets, lead),
        group_key="split",
    )
