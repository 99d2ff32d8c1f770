"""The report's plots as inline SVG panels, one function per kind of panel, drawn from `plot_data` records.

Every panel has the same size whether or not it has data yet (an empty one says why), so a live page keeps
its layout while results arrive. Marks carry `data-*` attributes (series, LR, value) so tests can read them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from statistics import median

from analysis import labels
from analysis.report import svg
from analysis.report.plot_data import (
    PROBE_MEASURES,
    GradientPanel,
    LrPanel,
    MemoryBar,
    ScatterPanel,
    TrialCurve,
)
from analysis.tables.probe import MIDDLE_KINDS
from worker.selection import format_lr

PANEL_W, PANEL_H = 300, 210  # LR, scatter and gradient panels
TRAIN_W, TRAIN_H = 260, 180
MEMORY_W = 380
ID_COLOR, OOD_COLOR, LOSS_COLOR = svg.BLUE, svg.VERMILLION, svg.GREY
ID_DASH, OOD_DASH, LOSS_DASH = None, "5 3", "1.5 2.5"
KIND_COLORS = {
    "embed": svg.VERMILLION,
    "attn": svg.BLUE,
    "mlp": svg.SKY,
    "block": svg.GREEN,
    "norm": svg.GREY,
    "head": svg.PURPLE,
    "other": svg.ORANGE,
}
MODEL_SHAPES = ("circle", "square", "diamond")


def ordered_kinds(kinds: Iterable[str]) -> list[str]:
    """Distinct layer kinds, from input to head as KIND_COLORS lists them; unknown kinds last."""
    order = list(KIND_COLORS)
    return sorted(set(kinds), key=lambda k: (order.index(k) if k in order else len(order), k))


def series_key(label: str, color: str, dash: str | None = None, marker: str | None = None, line: bool = True) -> str:
    """A legend entry: a short line (and marker) drawn in the series' colour and dash, then its name."""
    parts = []
    if line:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="0" y1="6" x2="26" y2="6" stroke="{color}" stroke-width="2"{d}/>')
    if marker == "ring":
        parts.append(f'<circle cx="13" cy="6" r="4" fill="none" stroke="{color}" stroke-width="1.5"/>')
    elif marker == "square":
        parts.append(f'<rect x="10" y="3" width="6" height="6" fill="{color}"/>')
    elif marker == "diamond":
        parts.append(f'<polygon points="13,1.5 17.5,6 13,10.5 8.5,6" fill="{color}"/>')
    elif marker == "cross":
        parts.append(f'<path d="M9,2L17,10M9,10L17,2" stroke="{color}" stroke-width="2"/>')
    elif marker == "circle":
        parts.append(f'<circle cx="13" cy="6" r="3.2" fill="{color}"/>')
    return (
        f'<span class="key"><svg width="26" height="12" aria-hidden="true">{"".join(parts)}</svg>{escape(label)}</span>'
    )


# ---- LR sensitivity -----------------------------------------------------------------------------------------


def lr_legend(seed_bands: bool) -> str:
    keys = [
        series_key("ID validation", ID_COLOR, ID_DASH, "circle"),
        series_key("OOD test", OOD_COLOR, OOD_DASH, "square"),
        series_key("chosen LR (best mean ID validation)", svg.INK, "3 3", "ring"),
        series_key("diverged LR", svg.GREY, marker="cross", line=False),
    ]
    if seed_bands:
        keys.append('<span class="key"><span class="swatch band"></span>90% interval over seeds</span>')
    return '<p class="legend">' + "".join(keys) + "</p>"


def lr_curve(panel: LrPanel) -> str:
    method_title = labels.title("method", panel.method)
    label = (
        f"Accuracy against learning rate: {labels.title('model', panel.model)}, "
        f"{labels.title('dataset', panel.dataset)}, {method_title}"
    )
    attrs = {
        "data-plot": "lr_curves",
        "data-model": panel.model,
        "data-dataset": panel.dataset,
        "data-method": panel.method,
        "data-chosen-lr": None if panel.chosen_lr is None else repr(panel.chosen_lr),
    }
    pts = panel.points
    values = [
        v
        for p in pts
        for v in (
            p.id_val,
            p.ood_test,
            None if p.id_val is None or p.id_val_ci90 is None else p.id_val - p.id_val_ci90,
            None if p.id_val is None or p.id_val_ci90 is None else p.id_val + p.id_val_ci90,
            None if p.ood_test is None or p.ood_test_ci90 is None else p.ood_test - p.ood_test_ci90,
            None if p.ood_test is None or p.ood_test_ci90 is None else p.ood_test + p.ood_test_ci90,
        )
    ]
    if not any(v is not None for v in values) and not any(p.diverged for p in pts):
        return _message("no result yet", method_title, attrs, label)
    lrs = [p.lr for p in pts]
    chart = svg.Chart(
        svg.log_scale(lrs),
        svg.linear_scale(values, lo=0.0, hi=100.0),
        width=PANEL_W,
        height=PANEL_H,
        title=method_title,
        xlabel="learning rate",
        ylabel="accuracy (%)",
        x_ticks=lrs,
        x_tick_labels=[format_lr(lr) for lr in lrs],
    )
    if panel.max_seeds > 1:
        for name, color in (("id_val", ID_COLOR), ("ood_test", OOD_COLOR)):
            means = [getattr(p, name) for p in pts]
            cis = [getattr(p, f"{name}_ci90") for p in pts]
            lo = [None if m is None or c is None else m - c for m, c in zip(means, cis, strict=True)]
            hi = [None if m is None or c is None else m + c for m, c in zip(means, cis, strict=True)]
            chart.band(lrs, lo, hi, color=color)
    if panel.chosen_lr is not None:
        chart.vline(panel.chosen_lr)
    for name, color, dash, shape in (
        ("id_val", ID_COLOR, ID_DASH, "circle"),
        ("ood_test", OOD_COLOR, OOD_DASH, "square"),
    ):
        ys = [getattr(p, name) for p in pts]
        chart.line(lrs, ys, color=color, dash=dash, attrs={"data-series": name})
        for p, y in zip(pts, ys, strict=True):
            if y is None:
                continue
            ci = getattr(p, f"{name}_ci90")
            tip = f"{name} at lr {format_lr(p.lr)}: {y:.1f}%" + (f" ±{ci:.1f}" if ci is not None else "")
            tip += f" (n={p.n_results})"
            point_attrs = {"data-series": name, "data-lr": repr(p.lr), "data-value": repr(y), "data-n": p.n_results}
            chart.point(p.lr, y, color=color, shape=shape, title=tip, attrs=point_attrs)
            if p.chosen:
                chart.point(p.lr, y, color=svg.INK, shape="ring", attrs={"data-chosen": "true", "data-series": name})
    for p in pts:
        if p.diverged:
            chart.point(
                p.lr,
                chart.y.lo,
                color=svg.GREY,
                shape="cross",
                title=f"lr {format_lr(p.lr)} diverged",
                attrs={"data-series": "diverged", "data-lr": repr(p.lr)},
            )
    return _wrap(chart.svg(label=label, attrs=attrs), _lr_caption(panel))


def _lr_caption(panel: LrPanel) -> str:
    parts = []
    if panel.chosen_lr is not None:
        parts.append(f"chosen {format_lr(panel.chosen_lr)}")
    seeds = panel.max_seeds
    parts.append(f"{seeds} seed{'s' if seeds != 1 else ''}")
    if panel.status != "ok":
        parts.append(panel.status.replace("_", " "))
    return " · ".join(parts)


def _wrap(inner: str, caption: str = "") -> str:
    """A panel inside a <figure> with a one-line caption (kept even when empty, so heights do not change)."""
    return f'<figure class="panel">{inner}<figcaption>{escape(caption) if caption else "&nbsp;"}</figcaption></figure>'


def _message(
    text: str, title: str, attrs: dict, label: str, caption: str = "", width: int = PANEL_W, height: int = PANEL_H
) -> str:
    """A panel of a chart's size that says why there is nothing to draw, with the chart's identity attributes."""
    return _wrap(svg.message_panel(text, title=title, label=label, attrs=attrs, width=width, height=height), caption)


# ---- ID against OOD -----------------------------------------------------------------------------------------


def scatter_scales(panels: Sequence[ScatterPanel]) -> tuple[svg.Scale, svg.Scale]:
    """One pair of scales for every method, so the panels can be compared at a glance."""
    xs = [p.id_test for s in panels for p in s.points]
    ys = [p.ood_test for s in panels for p in s.points]
    return svg.linear_scale(xs, lo=0.0, hi=100.0), svg.linear_scale(ys, lo=0.0, hi=100.0)


def dataset_colors(datasets: Sequence[str]) -> dict[str, str]:
    return {d: svg.CATEGORICAL[i % len(svg.CATEGORICAL)] for i, d in enumerate(datasets)}


def model_shapes(models: Sequence[str]) -> dict[str, str]:
    return {m: MODEL_SHAPES[i % len(MODEL_SHAPES)] for i, m in enumerate(models)}


def scatter_legend(colors: dict[str, str], shapes: dict[str, str]) -> str:
    keys = [series_key(labels.title("dataset", d), c, marker="circle", line=False) for d, c in colors.items()]
    keys += [series_key(labels.title("model", m), svg.INK, marker=s, line=False) for m, s in shapes.items()]
    keys.append(series_key("other LRs (hollow)", svg.INK, marker="ring", line=False))
    keys.append(series_key("OOD = ID", svg.GREY, "2 3"))
    return '<p class="legend">' + "".join(keys) + "</p>"


def scatter(panel: ScatterPanel, x: svg.Scale, y: svg.Scale, colors: dict[str, str], shapes: dict[str, str]) -> str:
    title = labels.title("method", panel.method)
    label = f"ID test against OOD test accuracy, {title}: one mark per model, dataset and LR"
    attrs = {"data-plot": "id_vs_ood", "data-method": panel.method}
    if not panel.points:
        return _message("no result yet", title, attrs, label)
    chart = svg.Chart(
        x, y, width=PANEL_W, height=PANEL_H, title=title, xlabel="ID test accuracy (%)", ylabel="OOD test accuracy (%)"
    )
    chart.diagonal()
    for p in sorted(panel.points, key=lambda p: p.chosen):  # chosen marks on top
        color = colors.get(p.dataset, svg.INK)
        tip = (
            f"{labels.title('model', p.model)} · {labels.title('dataset', p.dataset)} · lr {format_lr(p.lr)}"
            f"{' (chosen)' if p.chosen else ''}: ID {p.id_test:.1f}%, OOD {p.ood_test:.1f}%"
        )
        a = {
            "data-model": p.model,
            "data-dataset": p.dataset,
            "data-lr": repr(p.lr),
            "data-id": repr(p.id_test),
            "data-ood": repr(p.ood_test),
            "data-chosen": "true" if p.chosen else "false",
        }
        shape = shapes.get(p.model, "circle") if p.chosen else "ring"
        chart.point(p.id_test, p.ood_test, color=color, shape=shape, r=3.6 if p.chosen else 2.0, title=tip, attrs=a)
    n_chosen = sum(p.chosen for p in panel.points)
    return _wrap(chart.svg(label=label, attrs=attrs), f"{n_chosen} cells · {len(panel.points)} LRs")


# ---- training curves ----------------------------------------------------------------------------------------


def training_legend() -> str:
    keys = [
        series_key("ID validation (%)", ID_COLOR, ID_DASH),
        series_key("OOD test (%)", OOD_COLOR, OOD_DASH),
        series_key("training loss (right axis)", LOSS_COLOR, LOSS_DASH),
        series_key("best-ID-validation epoch", svg.INK, "3 3"),
    ]
    return '<p class="legend">' + "".join(keys) + "</p>"


def training_curve(c: TrialCurve) -> str:
    """One trial's panel, titled by its method; its LR, seed and state in the caption."""
    title = labels.title("method", c.method)
    label = (
        f"Training curves of trial {c.trial_id}: {labels.title('model', c.model)}, "
        f"{labels.title('dataset', c.dataset)}, {title}, lr {format_lr(c.lr)}, seed {c.seed}"
    )
    attrs = {
        "data-plot": "training_curves",
        "data-trial": c.trial_id,
        "data-model": c.model,
        "data-dataset": c.dataset,
        "data-method": c.method,
        "data-lr": repr(c.lr),
        "data-seed": c.seed,
        "data-status": c.status,
        "data-epochs": len(c.epochs),
    }
    caption = f"lr {format_lr(c.lr)} · seed {c.seed} · {c.status} · {len(c.epochs)}/{c.epochs_planned} epochs"
    if not c.epochs:
        return _message(f"no epoch reported yet ({c.status})", title, attrs, label, caption, TRAIN_W, TRAIN_H)
    last = max(c.epochs_planned, max(c.epochs))
    x = svg.Scale(0.5, last + 0.5)
    acc = svg.linear_scale(list(c.id_val) + list(c.ood_test), lo=0.0, hi=100.0)
    losses = [v for v in c.train_loss if v is not None]
    y2 = svg.linear_scale(losses, lo=0.0) if losses else None
    step = max(1, round(last / 6))
    ticks = [float(e) for e in range(1, last + 1, step)]
    chart = svg.Chart(
        x,
        acc,
        width=TRAIN_W,
        height=TRAIN_H,
        y2=y2,
        title=title,
        xlabel="epoch",
        ylabel="accuracy (%)",
        y2label="loss" if y2 else "",
        x_ticks=ticks,
        x_tick_labels=[str(int(t)) for t in ticks],
    )
    xs = [float(e) for e in c.epochs]
    if c.best_epoch is not None:
        chart.vline(float(c.best_epoch))
    if y2 is not None:
        chart.line(xs, list(c.train_loss), color=LOSS_COLOR, dash=LOSS_DASH, axis="y2", attrs={"data-series": "loss"})
    for name, ys, color, dash, shape in (
        ("id_val", c.id_val, ID_COLOR, ID_DASH, "circle"),
        ("ood_test", c.ood_test, OOD_COLOR, OOD_DASH, "square"),
    ):
        chart.line(xs, list(ys), color=color, dash=dash, attrs={"data-series": name})
        for e, v in zip(xs, ys, strict=True):
            if v is not None:
                a = {"data-series": name, "data-epoch": int(e), "data-value": repr(v)}
                chart.point(e, v, color=color, shape=shape, r=1.8, title=f"epoch {int(e)}: {name} {v:.1f}%", attrs=a)
    return _wrap(chart.svg(label=label, attrs=attrs), caption)


# ---- layer gradients ----------------------------------------------------------------------------------------


def gradient_legend(kinds: Sequence[str]) -> str:
    keys = [series_key(k, KIND_COLORS.get(k, svg.ORANGE), marker="square", line=False) for k in kinds]
    keys.append(series_key("median of the middle layers", svg.INK, "4 3"))
    return '<p class="legend">' + "".join(keys) + "</p>"


def gradient_bars(panel: GradientPanel, measure: str) -> str:
    mtitle = PROBE_MEASURES[measure]
    where = f"{labels.title('model', panel.model)} · {labels.title('dataset', panel.dataset)}"
    label = f"Layer gradient norms at initialisation, {mtitle}: {where}, from input (left) to head (right)"
    attrs = {"data-plot": "layer_gradients", "data-model": panel.model, "data-dataset": panel.dataset,
             "data-measure": measure}  # fmt: skip
    layers = [lg for lg in panel.layers if (lg.values.get(measure) or 0) > 0]
    if not layers:
        return _message("no positive values to draw", mtitle, attrs, label)
    values = [lg.values[measure] for lg in layers]
    n = len(layers)
    ratio = panel.embed_over_median.get(measure)
    chart = svg.Chart(
        svg.Scale(-0.7, n - 0.3),
        svg.log_scale(values, pad_decades=0.2),
        width=PANEL_W,
        height=PANEL_H,
        title=mtitle,
        xlabel="layer, input → head",
        ylabel="gradient norm",
        x_ticks=[0.0, float(n - 1)] if n > 1 else [0.0],
        x_tick_labels=[layers[0].kind, layers[-1].kind] if n > 1 else [layers[0].kind],
        grid=True,
    )
    middle = [lg.values[measure] for lg in layers if lg.kind in MIDDLE_KINDS]
    for i, lg in enumerate(layers):
        v = lg.values[measure]
        tip = f"{lg.layer} ({lg.kind}, depth {lg.depth}): {v:.3g}"
        a = {"data-layer": lg.layer, "data-kind": lg.kind, "data-value": repr(v)}
        chart.bar(float(i), v, 0.38, color=KIND_COLORS.get(lg.kind, svg.ORANGE), title=tip, attrs=a)
    if middle:
        chart.hline(median(middle))
    caption = f"embedding ÷ median middle = {ratio:.3g}×" if ratio is not None else "no embedding/middle ratio"
    return _wrap(chart.svg(label=label, attrs=attrs), caption)


def gradient_placeholder(model: str, dataset: str, measure: str, text: str) -> str:
    attrs = {"data-plot": "layer_gradients", "data-model": model, "data-dataset": dataset, "data-measure": measure}
    label = f"Layer gradient norms, {PROBE_MEASURES[measure]}: {model} / {dataset}: {text}"
    return _message(text, PROBE_MEASURES[measure], attrs, label)


# ---- memory -------------------------------------------------------------------------------------------------


def memory_chart(model: str, bars: Sequence[MemoryBar], field: str) -> str:
    what = {"peak_mib": "Peak memory (MiB)", "state_mib": "Optimizer state (MiB)"}[field]
    label = f"{what} per method, {labels.title('model', model)}"
    attrs = {"data-plot": "memory", "data-model": model, "data-field": field}
    vals = [getattr(b, field) for b in bars]
    present = [v for v in vals if v is not None]
    height = max(140, 70 + 28 * len(bars))
    if not present:
        return _message("no completed trial yet", what, attrs, label, width=MEMORY_W, height=height)
    n = len(bars)
    chart = svg.Chart(
        svg.Scale(0.0, max(present) * 1.3 or 1.0),
        svg.Scale(-0.6, n - 0.4),
        width=MEMORY_W,
        height=height,
        title=what,
        margin=(24, 14, 30, 196),
        y_ticks=[float(n - 1 - i) for i in range(n)],
        y_tick_labels=[labels.title("method", b.method) for b in bars],
        grid=False,
    )
    for i, (b, v) in enumerate(zip(bars, vals, strict=True)):
        if v is None:
            continue
        a = {"data-method": b.method, "data-value": repr(v)}
        color = svg.ORANGE if b.method.startswith("adam") else svg.BLUE
        chart.hbar(
            float(n - 1 - i), v, 0.32, color=color, label=svg.fmt_num(v), title=f"{b.method}: {v:,.4g} MiB", attrs=a
        )
    return _wrap(chart.svg(label=label, attrs=attrs))
