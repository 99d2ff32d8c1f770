"""What each plot shows, as plain records computed once from a sweep's tables.

The page's inline SVG and the PNG/SVG files drawn with matplotlib are two renderings of the same records, so the
report and the figures exported for a paper can never disagree. Accuracies are in percent, as in the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis import labels
from analysis.sweep_data import SweepData
from analysis.tables import build_from
from worker.selection import CellResult, MetricSummary, best_epoch, reports_last_epoch

MAX_TRAINING_PANELS = 240  # above this, training curves show the chosen LR of each cell only
PROBE_MEASURES = {
    "grad_norm": "‖g‖ (raw)",
    "grad_norm_over_param_norm": "‖g‖ / ‖θ‖",
    "grad_norm_over_sqrt_numel": "‖g‖ / √n",
}


def where(*parts: tuple[str, str]) -> str:
    """Catalog titles joined for a heading: where(("model", m), ("dataset", d)) -> 'CLIP ViT-B/16 · Living-17'."""
    return " · ".join(labels.title(kind, key) for kind, key in parts)  # type: ignore[arg-type]


def _pct(s: MetricSummary | None) -> tuple[float | None, float | None]:
    if s is None:
        return None, None
    return 100.0 * s.mean, None if s.ci90 is None else 100.0 * s.ci90


def _num(v: Any) -> float | None:
    """A finite float, or None for null, NaN and inf."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class LrPoint:
    """One LR of a cell: seed means (percent) and 90% intervals (None for one seed) of ID validation and OOD test."""

    lr: float
    id_val: float | None
    id_val_ci90: float | None
    ood_test: float | None
    ood_test_ci90: float | None
    n_results: int
    n_trials: int
    diverged: bool
    chosen: bool


@dataclass(frozen=True)
class LrPanel:
    """LR sensitivity of one (model, dataset, method) cell."""

    model: str
    dataset: str
    method: str
    status: str
    chosen_lr: float | None
    points: tuple[LrPoint, ...]

    @property
    def max_seeds(self) -> int:
        return max((p.n_results for p in self.points), default=0)


def _ordered_cells(cells: list[CellResult]) -> list[CellResult]:
    models = labels.ordered("model", (c.model for c in cells))
    datasets = labels.ordered("dataset", (c.dataset for c in cells))
    methods = labels.ordered("method", (c.method for c in cells))
    return sorted(cells, key=lambda c: (models.index(c.model), datasets.index(c.dataset), methods.index(c.method)))


def lr_panels(data: SweepData) -> list[LrPanel]:
    """One panel per cell, in catalog order (model, dataset, method), LRs ascending."""
    out = []
    for c in _ordered_cells(data.cells):
        points = []
        for s in c.per_lr:
            iv, iv_ci = _pct(s.metrics["id_val"])
            ood, ood_ci = _pct(s.metrics["ood_test"])
            points.append(LrPoint(s.lr, iv, iv_ci, ood, ood_ci, s.n_results, s.n_trials, s.diverged, s.chosen))
        out.append(LrPanel(c.model, c.dataset, c.method, c.status, c.chosen_lr, tuple(points)))
    return out


@dataclass(frozen=True)
class ScatterPoint:
    """One LR of one (model, dataset) cell of a method: seed-mean ID test and OOD test accuracy."""

    model: str
    dataset: str
    lr: float
    id_test: float
    ood_test: float
    chosen: bool


@dataclass(frozen=True)
class ScatterPanel:
    method: str
    points: tuple[ScatterPoint, ...]


def id_vs_ood(data: SweepData) -> list[ScatterPanel]:
    """Per method, every LR with a result of every cell: ID test against OOD test, the chosen LRs flagged."""
    by_method: dict[str, list[ScatterPoint]] = {}
    for c in _ordered_cells(data.cells):
        pts = by_method.setdefault(c.method, [])
        for s in c.per_lr:
            id_test, ood_test = s.mean("id_test"), s.mean("ood_test")
            if id_test is not None and ood_test is not None:
                pts.append(ScatterPoint(c.model, c.dataset, s.lr, 100.0 * id_test, 100.0 * ood_test, s.chosen))
    methods = labels.ordered("method", by_method)
    return [ScatterPanel(m, tuple(by_method[m])) for m in methods]


@dataclass(frozen=True)
class TrialCurve:
    """One trial's epochs: ID validation and OOD test (percent) and training loss; None where not evaluated."""

    trial_id: str
    model: str
    dataset: str
    method: str
    lr: float
    seed: int
    status: str
    epochs_planned: int
    best_epoch: int | None
    epochs: tuple[int, ...]
    id_val: tuple[float | None, ...]
    ood_test: tuple[float | None, ...]
    train_loss: tuple[float | None, ...]


def _scaled(v: Any) -> float | None:
    f = _num(v)
    return None if f is None else 100.0 * f


def training_curves(data: SweepData, limit: int = MAX_TRAINING_PANELS) -> tuple[list[TrialCurve], str | None]:
    """Every trial's curve in cell order, LR and seed ascending; past `limit` trials only the chosen LRs, and why."""
    trials = data.trials.to_pandas()
    if trials.empty:
        return [], None
    trials = trials.drop_duplicates("trial_id", keep="last")
    epochs = data.epochs.to_pandas().drop_duplicates(["trial_id", "epoch"], keep="last")
    note = None
    if len(trials) > limit:
        chosen = {(c.model, c.dataset, c.method, c.chosen_lr) for c in data.cells if c.chosen_lr is not None}
        keep = [
            (m, d, x, lr) in chosen for m, d, x, lr in trials[["model", "dataset", "method", "lr"]].itertuples(False)
        ]
        note = (
            f"The sweep has {len(trials)} trials, more than the {limit} drawn one by one: "
            f"only the trials at each cell's chosen LR are shown ({sum(keep)})."
        )
        trials = trials[keep]
    order = {c.key: i for i, c in enumerate(_ordered_cells(data.cells))}
    trials = trials.assign(
        _cell=[order.get((m, d, x), len(order)) for m, d, x in trials[["model", "dataset", "method"]].itertuples(False)]
    ).sort_values(["_cell", "lr", "seed"], kind="stable")
    per_trial = {tid: g.sort_values("epoch") for tid, g in epochs.groupby("trial_id", sort=False)}
    out = []
    for t in trials.to_dict("records"):
        g = per_trial.get(t["trial_id"], pd.DataFrame(columns=epochs.columns))
        best = _best_epoch(g, t)
        out.append(
            TrialCurve(
                trial_id=str(t["trial_id"]),
                model=t["model"],
                dataset=t["dataset"],
                method=t["method"],
                lr=float(t["lr"]),
                seed=int(t["seed"]),
                status=str(t["status"]),
                epochs_planned=int(_num(t.get("epochs_planned")) or max(g["epoch"], default=1)),
                best_epoch=best,
                epochs=tuple(int(e) for e in g["epoch"]),
                id_val=tuple(_scaled(v) for v in g["id_val"]),
                ood_test=tuple(_scaled(v) for v in g["ood_test"]),
                train_loss=tuple(_num(v) for v in g["train_loss"]),
            )
        )
    return out, note


def _best_epoch(g: pd.DataFrame, trial: dict[str, Any]) -> int | None:
    """The best epoch by the selection rule from the epoch rows, else the one the trial row records."""
    best = best_epoch(g.to_dict("records"), last=reports_last_epoch(trial["method"], trial["dataset"]))
    if best is not None:
        return int(best["epoch"])
    f = _num(trial.get("best_epoch"))
    return None if f is None else int(f)


@dataclass(frozen=True)
class LayerGradient:
    layer: str
    kind: str
    depth: int
    num_params: int | None
    values: dict[str, float | None]  # measure -> value


@dataclass(frozen=True)
class GradientPanel:
    """The layer-gradient probe of one (model, dataset): every layer from input to head, and the outlier ratios."""

    model: str
    dataset: str
    layers: tuple[LayerGradient, ...]
    embed_over_median: dict[str, float | None]  # measure -> embedding / median middle layer


def layer_gradients(data: SweepData) -> list[GradientPanel]:
    """Probe rows per (model, dataset) in depth order, with the embedding-to-median ratios of the probe table."""
    p = data.probe.to_pandas()
    if p.empty:
        return []
    ratios: dict[tuple[str, str], dict[str, float | None]] = {}
    for r in build_from("probe", data).rows:
        ratios.setdefault((r["model"], r["dataset"]), {})[r["measure"]] = r.get("embed_over_middle_median")
    out = []
    for model in labels.ordered("model", p["model"]):
        for dataset in labels.ordered("dataset", p[p["model"] == model]["dataset"]):
            g = p[(p["model"] == model) & (p["dataset"] == dataset)].sort_values(["depth", "layer"], kind="stable")
            layers = tuple(
                LayerGradient(
                    layer=str(r["layer"]),
                    kind=str(r["kind"]),
                    depth=int(r["depth"]),
                    num_params=None if _num(r["num_params"]) is None else int(r["num_params"]),
                    values={m: _num(r[m]) for m in PROBE_MEASURES},
                )
                for r in g.to_dict("records")
            )
            out.append(GradientPanel(model, dataset, layers, ratios.get((model, dataset), {})))
    return out


def sweep_pairs(data: SweepData) -> list[tuple[str, str]]:
    """(model, dataset) pairs that have trials or probe rows, in catalog order."""
    seen = set(zip(data.trials.column("model").to_pylist(), data.trials.column("dataset").to_pylist(), strict=True))
    seen |= set(zip(data.probe.column("model").to_pylist(), data.probe.column("dataset").to_pylist(), strict=True))
    models = labels.ordered("model", (m for m, _ in seen))
    datasets = labels.ordered("dataset", (d for _, d in seen))
    return sorted(seen, key=lambda md: (models.index(md[0]), datasets.index(md[1])))


@dataclass(frozen=True)
class MemoryBar:
    model: str
    method: str
    peak_mib: float | None
    state_mib: float | None
    completed: int


def memory_bars(data: SweepData) -> list[MemoryBar]:
    """Per (model, method), peak memory and optimizer state in MiB over completed trials (the memory table's rows)."""
    return [
        MemoryBar(
            r["model"], r["method"], r.get("peak_memory_mib"), r.get("optimizer_state_mib"), r["completed_trials"]
        )
        for r in build_from("memory", data).rows
    ]
