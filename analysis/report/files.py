"""The report's plots as PNG or SVG files for papers and slides, drawn with matplotlib from the same records.

Figures are built on `matplotlib.figure.Figure` directly, with the Agg canvas and no pyplot, so nothing global
changes and a server can draw from several threads. Each plot is one figure of small multiples; a plot with no
data yet is a figure that says so, rather than an error.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from statistics import median

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis import labels
from analysis.report import figures as F
from analysis.report import plot_data as P
from analysis.report.plot_data import where
from analysis.sweep_data import SweepData, load_sweep
from analysis.tables.probe import MIDDLE_KINDS
from orchestrator import Location
from worker.selection import format_lr

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
PANEL_IN = (3.2, 2.3)  # inches per small multiple


def _figure(
    rows: int,
    cols: int,
    panel: tuple[float, float] = PANEL_IN,
    *,
    top: float = 0.8,
    bottom: float = 0.2,
    left: float = 0.75,
    right: float = 0.55,
    hspace: float = 0.75,
    wspace: float = 0.45,
) -> tuple[Figure, list[list]]:
    """A rows x cols grid of axes with margins in inches; a fixed layout, far faster than constrained layout
    on the hundreds of panels a sweep can have."""
    w, h = panel[0] * cols + left + right, panel[1] * rows + top + bottom
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(
        left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace, wspace=wspace
    )
    return fig, [list(r) for r in axes]


def _grid(n: int, cols: int, panel: tuple[float, float] = PANEL_IN, **kw) -> tuple[Figure, list]:
    """`n` panels in rows of `cols`, the unused axes of the last row hidden."""
    cols = max(1, min(cols, n))
    fig, axes = _figure(max(1, math.ceil(n / cols)), cols, panel, **kw)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _empty(title: str, text: str) -> Figure:
    fig = Figure(figsize=(6, 2.5))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.62, title, ha="center", fontsize=12, weight="bold")
    fig.text(0.5, 0.4, text, ha="center", fontsize=10, color=F.svg.MUTED)
    return fig


def lr_curves_figure(data: SweepData) -> Figure:
    panels = P.lr_panels(data)
    if not panels:
        return _empty("Accuracy against learning rate", "No trials yet.")
    methods = labels.ordered("method", (p.method for p in panels))
    pairs = list(dict.fromkeys((p.model, p.dataset) for p in panels))
    cols = len(methods)
    fig, axes = _figure(len(pairs), cols)
    by_key = {(p.model, p.dataset, p.method): p for p in panels}
    for i, (model, dataset) in enumerate(pairs):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            p = by_key.get((model, dataset, method))
            ax.set_title(
                f"{where(('model', model), ('dataset', dataset))}\n{labels.title('method', method)}", fontsize=8
            )
            if p is None or not any(pt.id_val is not None or pt.diverged for pt in p.points):
                ax.text(0.5, 0.5, "not run" if p is None else "no result yet", ha="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            _lr_axes(ax, p)
    fig.suptitle("ID validation and OOD test accuracy against learning rate (chosen LR dashed)", fontsize=10)
    return fig


def _lr_axes(ax, p: P.LrPanel) -> None:
    lrs = [pt.lr for pt in p.points]
    for name, color, ls, marker in (("id_val", F.ID_COLOR, "-", "o"), ("ood_test", F.OOD_COLOR, "--", "s")):
        ys = [getattr(pt, name) for pt in p.points]
        ys_plot = [math.nan if y is None else y for y in ys]
        ax.plot(lrs, ys_plot, ls=ls, marker=marker, color=color, ms=3.5, lw=1.5, label=name.replace("_", " "))
        if p.max_seeds > 1:
            cis = [getattr(pt, f"{name}_ci90") for pt in p.points]
            lo = [math.nan if y is None or c is None else y - c for y, c in zip(ys, cis, strict=True)]
            hi = [math.nan if y is None or c is None else y + c for y, c in zip(ys, cis, strict=True)]
            ax.fill_between(lrs, lo, hi, color=color, alpha=0.18, lw=0)
    if p.chosen_lr is not None:
        ax.axvline(p.chosen_lr, color=F.svg.INK, ls=":", lw=1)
    for pt in p.points:
        if pt.diverged:
            ax.plot([pt.lr], [0.02], transform=ax.get_xaxis_transform(), marker="x", color=F.svg.GREY, ms=6)
    ax.set_xscale("log")
    ax.set_xticks(lrs, [format_lr(lr) for lr in lrs], fontsize=7)
    ax.minorticks_off()
    ax.tick_params(labelsize=7)
    ax.set_ylabel("accuracy (%)", fontsize=7)
    ax.legend(fontsize=6, loc="best", frameon=False)


def id_vs_ood_figure(data: SweepData) -> Figure:
    panels = P.id_vs_ood(data)
    if not panels:
        return _empty("ID against OOD accuracy", "No trials yet.")
    x, y = F.scatter_scales(panels)
    datasets = labels.ordered("dataset", (c.dataset for c in data.cells))
    models = labels.ordered("model", (c.model for c in data.cells))
    colors = F.dataset_colors(datasets)
    markers = dict(zip(models, ["o", "s", "D", "^", "v", "P", "X"] * 3, strict=False))
    fig, axes = _grid(len(panels), cols=4, panel=(3.4, 3.0), bottom=1.0, hspace=0.45)
    for ax, panel in zip(axes, panels, strict=True):
        ax.set_title(labels.title("method", panel.method), fontsize=9)
        lo, hi = max(x.lo, y.lo), min(x.hi, y.hi)
        if hi > lo:
            ax.plot([lo, hi], [lo, hi], color=F.svg.GREY, ls=":", lw=1)
        for pt in panel.points:
            c = colors.get(pt.dataset, F.svg.INK)
            if pt.chosen:
                ax.scatter([pt.id_test], [pt.ood_test], color=c, marker=markers.get(pt.model, "o"), s=30, zorder=3)
            else:
                ax.scatter([pt.id_test], [pt.ood_test], facecolors="none", edgecolors=c, s=12, lw=0.8)
        ax.set_xlim(x.lo, x.hi)
        ax.set_ylim(y.lo, y.hi)
        ax.set_xlabel("ID test (%)", fontsize=8)
        ax.set_ylabel("OOD test (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [
        Line2D([], [], color=c, marker="o", ls="", label=labels.title("dataset", d)) for d, c in colors.items()
    ] + [Line2D([], [], color=F.svg.INK, marker=m, ls="", label=labels.title("model", k)) for k, m in markers.items()]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 6), fontsize=7, frameon=False)
    fig.suptitle("ID against OOD test accuracy per method (filled: chosen LR; hollow: other LRs)", fontsize=10)
    return fig


def _nan(values) -> list[float]:
    return [math.nan if v is None else v for v in values]


def training_curves_figure(data: SweepData) -> Figure:
    """Per cell, two panels: accuracy by epoch (ID validation solid, OOD test dashed) and training loss, one
    colour per LR. Grouping a cell's trials keeps the figure legible (and quick to draw) for a full sweep."""
    curves, note = P.training_curves(data)
    if not curves:
        return _empty("Training curves", "No trials yet.")
    cells = [(k, list(g)) for k, g in groupby(curves, key=lambda c: (c.model, c.dataset, c.method))]
    fig, axes = _grid(2 * len(cells), cols=4, panel=(3.0, 2.2), top=1.0, bottom=0.3)
    cmap = matplotlib.colormaps["cividis"]
    for n, ((model, dataset, method), group) in enumerate(cells):
        acc, loss = axes[2 * n], axes[2 * n + 1]
        heading = where(("model", model), ("dataset", dataset), ("method", method))
        acc.set_title(f"{heading}\naccuracy (%)", fontsize=7)
        loss.set_title(f"{heading}\ntraining loss", fontsize=7)
        lrs = sorted({c.lr for c in group})
        colour = {lr: cmap(0.9 * i / max(len(lrs) - 1, 1)) for i, lr in enumerate(lrs)}
        last = max(max([c.epochs_planned, *c.epochs]) for c in group)
        for c in group:
            xs = list(c.epochs)
            first_seed = c.seed == min(x.seed for x in group if x.lr == c.lr)
            label = f"lr {format_lr(c.lr)}" if first_seed else None
            acc.plot(xs, _nan(c.id_val), color=colour[c.lr], lw=1.3, label=label)
            acc.plot(xs, _nan(c.ood_test), color=colour[c.lr], lw=1.3, ls="--")
            loss.plot(xs, _nan(c.train_loss), color=colour[c.lr], lw=1.3)
        for ax in (acc, loss):
            ax.set_xlim(0.5, last + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.tick_params(labelsize=6)
        acc.legend(fontsize=5.5, frameon=False, loc="best")
        if not any(v is not None for c in group for v in c.train_loss):
            loss.text(0.5, 0.5, "no training loss reported", ha="center", transform=loss.transAxes, fontsize=7)
    fig.suptitle(
        "Training curves by epoch, one colour per LR (seeds share it): ID validation solid, OOD test dashed"
        + (f"\n{note}" if note else ""),
        fontsize=9,
    )
    return fig


def layer_gradients_figure(data: SweepData) -> Figure:
    panels = P.layer_gradients(data)
    if not panels:
        return _empty("Layer gradients at initialisation", "No probe rows: run the sweep with `probe: true`.")
    measures = list(P.PROBE_MEASURES)
    fig, axes = _figure(len(panels), len(measures), (3.6, 2.6), bottom=0.8)
    for i, g in enumerate(panels):
        for j, m in enumerate(measures):
            ax = axes[i][j]
            layers = [lg for lg in g.layers if (lg.values.get(m) or 0) > 0]
            ratio = g.embed_over_median.get(m)
            sub = f"embed ÷ median middle = {ratio:.3g}×" if ratio is not None else ""
            ax.set_title(
                f"{where(('model', g.model), ('dataset', g.dataset))}: {P.PROBE_MEASURES[m]}\n{sub}", fontsize=8
            )
            if not layers:
                ax.text(0.5, 0.5, "no positive values", ha="center", transform=ax.transAxes)
                continue
            xs = range(len(layers))
            ax.bar(
                xs, [lg.values[m] for lg in layers], color=[F.KIND_COLORS.get(lg.kind, F.svg.ORANGE) for lg in layers]
            )
            ax.set_yscale("log")
            ax.set_xticks([0, len(layers) - 1], [layers[0].kind, layers[-1].kind], fontsize=7)
            ax.tick_params(labelsize=7)
            middle = [lg.values[m] for lg in layers if lg.kind in MIDDLE_KINDS]
            if middle:
                ax.axhline(median(middle), color=F.svg.INK, ls="--", lw=0.8)
    kinds = F.ordered_kinds(lg.kind for g in panels for lg in g.layers)
    handles = [Patch(color=F.KIND_COLORS.get(k, F.svg.ORANGE), label=k) for k in kinds]
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Gradient norm per layer at initialisation, input → head (dashed: median middle layer)", fontsize=10)
    return fig


def memory_figure(data: SweepData) -> Figure:
    bars = P.memory_bars(data)
    if not any(b.peak_mib is not None for b in bars):
        return _empty("Peak memory per method", "No completed trial with a memory measurement yet.")
    groups = [(m, list(g)) for m, g in groupby(bars, key=lambda b: b.model)]
    tallest = max(len(g) for _, g in groups)
    fig, axes = _figure(len(groups), 2, (4.2, 0.35 * tallest + 0.6), left=2.4, top=0.5, wspace=0.6)
    for i, (model, group) in enumerate(groups):
        for j, (field, what) in enumerate((("peak_mib", "Peak memory (MiB)"), ("state_mib", "Optimizer state (MiB)"))):
            ax = axes[i][j]
            names = [labels.title("method", b.method) for b in group]
            vals = [getattr(b, field) or 0.0 for b in group]
            colors = [F.svg.ORANGE if b.method.startswith("adam") else F.svg.BLUE for b in group]
            ax.barh(range(len(group))[::-1], vals, color=colors)
            ax.set_yticks(range(len(group))[::-1], names, fontsize=7)
            for k, v in enumerate(vals):
                ax.text(v, len(group) - 1 - k, f" {v:,.1f}", va="center", fontsize=7)
            ax.set_title(f"{labels.title('model', model)}: {what}", fontsize=9)
            ax.set_xlim(0, (max(vals) or 1.0) * 1.3)
            ax.tick_params(labelsize=7)
    return fig


PLOTS: dict[str, Callable[[SweepData], Figure]] = {
    "lr_curves": lr_curves_figure,
    "id_vs_ood": id_vs_ood_figure,
    "training_curves": training_curves_figure,
    "layer_gradients": layer_gradients_figure,
    "memory": memory_figure,
}


def list_plots() -> list[str]:
    return list(PLOTS)


def list_plot_formats() -> list[str]:
    return list(FORMATS)


def render_plot(sweep_dir: Location | str | Path, name: str, fmt: str) -> tuple[bytes, str]:
    """Plot `name` of the sweep at `sweep_dir` as `fmt` (png or svg): the file's bytes and its media type."""
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; valid plots: {', '.join(PLOTS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    fig = PLOTS[name](load_sweep(sweep_dir))
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {}
    fig.savefig(buf, format=fmt, dpi=150, metadata=metadata)
    return buf.getvalue(), FORMATS[fmt]
