"""The report's sections, each an HTML fragment built from the sweep's tables and plot records.

A section's shape (rows, panels, headings) follows the sweep's grid, which trials.parquet fixes from the start,
and not its results, so a live page whose results fill in keeps its layout from one refresh to the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from itertools import groupby

from analysis import labels
from analysis.report import figures, svg
from analysis.report.html_tables import comparison_table, data_table, has_paper_numbers, notes_block
from analysis.report.plot_data import (
    PROBE_MEASURES,
    id_vs_ood,
    layer_gradients,
    lr_panels,
    memory_bars,
    sweep_pairs,
    training_curves,
    where,
)
from analysis.sweep_data import SweepData
from analysis.tables import build_from
from analysis.tables.comparison import SELECTION_NOTE
from worker.records import TrialStatus
from worker.selection import Progress

STATUS_COLORS = {
    TrialStatus.COMPLETED: svg.BLUE,
    TrialStatus.STOPPED: svg.SKY,
    TrialStatus.DIVERGED: svg.ORANGE,
    TrialStatus.FAILED: svg.VERMILLION,
    TrialStatus.CANCELLED: "#57606a",
    TrialStatus.RUNNING: svg.GREEN,
    TrialStatus.PENDING: "#d0d7de",
}


@dataclass(frozen=True)
class Section:
    ident: str
    title: str
    body: str


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _grid(panels: Iterable[str], cls: str = "grid") -> str:
    return f'<div class="{cls}">{"".join(panels)}</div>'


# ---- progress -----------------------------------------------------------------------------------------------


def progress_section(
    p: Progress,
    *,
    state: str,
    dashboard_url: str | None,
    notes: Sequence[str] = (),
    history: Sequence[str] = (),
) -> Section:
    """`history`: when the sweep started and what each extension added (orchestrator.extension.history_lines)."""
    segments = []
    for status, n in p.counts.items():
        if n and p.total:
            color = STATUS_COLORS.get(status, svg.PURPLE)
            segments.append(
                f'<span class="seg" style="width:{100.0 * n / p.total:.3f}%;background:{color}"'
                f' title="{escape(status)}: {n}"></span>'
            )
    legend = "".join(
        f'<li data-status="{escape(s)}" data-count="{n}"><span class="swatch" '
        f'style="background:{STATUS_COLORS.get(s, svg.PURPLE)}"></span>{escape(s)} <b>{n}</b></li>'
        for s, n in p.counts.items()
    )
    link = (
        f'<a href="{escape(dashboard_url)}" rel="noopener" target="_blank">Ray dashboard</a>'
        if dashboard_url
        else '<span class="muted">no Ray dashboard link for this sweep</span>'
    )
    body = (
        f'<div class="progress" data-total="{p.total}" data-ended="{p.ended}" '
        f'data-percent="{p.percent_trials:.1f}" data-state="{escape(state)}">'
        f'<p class="line"><span class="state state-{escape(state)}">{escape(state)}</span> '
        f"<b>{p.percent_trials:.0f}%</b> of trials ended ({p.ended} of {p.total})</p>"
        f'<p class="line">{p.epochs_done} of {p.epochs_planned} planned epochs run · '
        f"{p.percent_done:.0f}% of the work done · {link}</p>"
        f'<div class="bar" role="img" aria-label="trials by status">{"".join(segments)}</div>'
        f'<ul class="counts">{legend}</ul></div>'
    )
    if not p.total:
        body += _note("No trials yet: trials.parquet has not been written for this sweep.")
    body += "".join(_note(n) for n in notes)
    if history:
        items = "".join(f"<li>{escape(line)}</li>" for line in history)
        body += f'<h3>History</h3><ol class="history">{items}</ol>'
    return Section("progress", "Progress", body)


# ---- Tables 1 and 2 -----------------------------------------------------------------------------------------

TABLE_LEGEND = (
    '<p class="legend">Ours: mean over seeds at the chosen LR, ±90% interval; under it the change against SGD on '
    'the same model: <span class="d gain">+1.0</span> above SGD, <span class="d loss">\u22121.0</span> below. '
    "Paper: the published number and its change against the paper's SGD. Marks: † chosen LR at an edge of the "
    "grid, * trials without a result, ‡ an LR diverged, § no LR ran to the end (chosen among early-stopped "
    "trials), ○ at or below chance (no better than one class predicted for every image).</p>"
)


def comparison_section(data: SweepData, name: str) -> Section:
    t = build_from(name, data)
    ident = f"table-{name}"
    legend = TABLE_LEGEND
    if not has_paper_numbers(t):
        legend += _note("The paper has no numbers for this sweep's models and datasets: only ours are shown.")
    body = legend + comparison_table(t) + notes_block(t.notes, ident=f"notes-{name}")
    return Section(ident, t.title, body)


# ---- LR sensitivity -----------------------------------------------------------------------------------------


def lr_section(data: SweepData) -> Section:
    panels = lr_panels(data)
    if not panels:
        return Section("lr-curves", "Accuracy against learning rate", _note("No trials yet."))
    bands = len(set(data.trials.column("seed").to_pylist())) > 1  # from the grid, so the legend never changes
    parts = [figures.lr_legend(bands)]
    for (model, dataset), group in groupby(panels, key=lambda p: (p.model, p.dataset)):
        parts.append(f"<h3>{escape(where(('model', model), ('dataset', dataset)))}</h3>")
        parts.append(_grid(figures.lr_curve(p) for p in group))
    parts.append(_note(SELECTION_NOTE))
    return Section("lr-curves", "Accuracy against learning rate", "".join(parts))


# ---- ID against OOD -----------------------------------------------------------------------------------------


def scatter_section(data: SweepData) -> Section:
    panels = id_vs_ood(data)
    if not panels:
        return Section("id-vs-ood", "ID against OOD accuracy", _note("No trials yet."))
    x, y = figures.scatter_scales(panels)
    datasets = labels.ordered("dataset", (c.dataset for c in data.cells))
    models = labels.ordered("model", (c.model for c in data.cells))
    colors, shapes = figures.dataset_colors(datasets), figures.model_shapes(models)
    body = (
        figures.scatter_legend(colors, shapes)
        + _grid(figures.scatter(p, x, y, colors, shapes) for p in panels)
        + _note("Each mark is one LR of one (model, dataset) cell, averaged over seeds; filled marks are chosen LRs.")
    )
    return Section("id-vs-ood", "ID against OOD accuracy", body)


# ---- training curves ----------------------------------------------------------------------------------------


def training_section(data: SweepData) -> Section:
    curves, note = training_curves(data)
    if not curves:
        return Section("training", "Training curves", _note("No trials yet."))
    parts = [figures.training_legend()]
    if note:
        parts.append(_note(note))
    for (model, dataset), group in groupby(curves, key=lambda c: (c.model, c.dataset)):
        parts.append(f"<h3>{escape(where(('model', model), ('dataset', dataset)))}</h3>")
        parts.append(_grid((figures.training_curve(c) for c in group), "grid small"))
    return Section("training", "Training curves", "".join(parts))


# ---- layer gradients ----------------------------------------------------------------------------------------


def gradient_section(data: SweepData, *, live: bool) -> Section:
    title = "Layer gradients at initialisation (the paper's Figure 2)"
    probe = build_from("probe", data)
    panels = {(g.model, g.dataset): g for g in layer_gradients(data)}
    pairs = sweep_pairs(data) if live else list(panels)
    intro = _note(
        "Mean gradient norm of each layer over the first minibatches, before any update, from the input (left) to "
        "the head (right); raw and normalised by the layer's parameter norm and by √(number of parameters). "
        "Log scale. On AdamW-pretrained models the paper finds the embedding layer far above the middle layers."
    )
    if not pairs:  # nothing measured, and nothing to keep a place for: say so in plain sight
        return Section("layer-gradients", title, intro + "".join(_note(n) for n in probe.notes[1:]))
    kinds = figures.ordered_kinds(list(figures.KIND_COLORS) + [lg.kind for g in panels.values() for lg in g.layers])
    parts = [intro, figures.gradient_legend(kinds)]
    for model, dataset in pairs:
        parts.append(f"<h3>{escape(where(('model', model), ('dataset', dataset)))}</h3>")
        g = panels.get((model, dataset))
        if g is None:
            parts.append(
                _grid(figures.gradient_placeholder(model, dataset, m, "not measured (yet)") for m in PROBE_MEASURES)
            )
        else:
            parts.append(_grid(figures.gradient_bars(g, m) for m in PROBE_MEASURES))
    if panels and not live:  # a live page shows the ratios in the captions only: the table would grow as rows came
        parts.append(data_table(probe))
    missing = [p for p in sweep_pairs(data) if p not in panels]
    notes = list(probe.notes)
    if missing and panels:
        notes.append("No probe rows for: " + ", ".join(where(("model", m), ("dataset", d)) for m, d in missing) + ".")
    parts.append(notes_block(notes, ident="notes-probe", summary="Probe notes"))
    return Section("layer-gradients", title, "".join(parts))


# ---- memory -------------------------------------------------------------------------------------------------


def memory_section(data: SweepData) -> Section:
    t = build_from("memory", data)
    bars = memory_bars(data)
    parts = [data_table(t, caption=False)]
    for model, group in groupby(bars, key=lambda b: b.model):
        group = list(group)
        parts.append(f"<h3>{escape(labels.title('model', model))}</h3>")
        charts = [figures.memory_chart(model, group, field) for field in ("peak_mib", "state_mib")]
        parts.append(_grid(charts, "grid wide"))
    parts.append(notes_block(t.notes, ident="notes-memory"))
    return Section("memory", t.title, "".join(parts))


def all_sections(
    data: SweepData, *, state: str, dashboard_url: str | None, live: bool, history: Sequence[str] = ()
) -> list[Section]:
    """Every section in page order."""
    return [
        progress_section(
            data.progress, state=state, dashboard_url=dashboard_url, notes=data.precision_notes, history=history
        ),
        comparison_section(data, "ood"),
        comparison_section(data, "id"),
        lr_section(data),
        scatter_section(data),
        training_section(data),
        gradient_section(data, live=live),
        memory_section(data),
    ]
