"""The report page: one HTML document per sweep, built from its Parquet files alone.

Final mode is a static page with no script. Live mode adds a small script that re-fetches the page every
`refresh_s` seconds and swaps in the sections that changed (elements marked `data-swap`), so the page updates
without a reload and, since every section's shape follows the sweep's grid rather than its results, without
moving. The CSS and script are inlined (the page is one self-contained file) unless `asset_base` names where
the API serves them (`report.css`, `report.js`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path

from analysis.report.sections import Section, all_sections
from analysis.sweep_data import load_sweep
from orchestrator import Location
from orchestrator.extension import history_lines, read_history

ASSETS = {"report.css": "text/css; charset=utf-8", "report.js": "text/javascript; charset=utf-8"}


def list_assets() -> list[str]:
    return list(ASSETS)


def read_asset(name: str) -> tuple[bytes, str]:
    """A report asset's bytes and media type, for a server that hands them out under `asset_base`."""
    if name not in ASSETS:
        raise ValueError(f"unknown report asset {name!r}; valid assets: {', '.join(ASSETS)}")
    return resources.files("analysis.report").joinpath("assets").joinpath(name).read_bytes(), ASSETS[name]


def _css(asset_base: str) -> str:
    if asset_base:
        return f'<link rel="stylesheet" href="{escape(asset_base.rstrip("/"))}/report.css">'
    return f"<style>{read_asset('report.css')[0].decode()}</style>"


def _script(asset_base: str) -> str:
    if asset_base:
        return f'<script src="{escape(asset_base.rstrip("/"))}/report.js" defer></script>'
    return f"<script>{read_asset('report.js')[0].decode()}</script>"


def _mode(live: bool, refresh_s: int, now: datetime) -> str:
    stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    if live:
        text = f"Live: updates every {refresh_s} s without reloading · last updated {stamp}"
        return f'<p id="mode" class="mode live" data-swap><span class="dot"></span>{escape(text)}</p>'
    return f'<p id="mode" class="mode final" data-swap><span class="dot"></span>Final report · generated {stamp}</p>'


def _section(s: Section) -> str:
    return f'<section id="{escape(s.ident)}" data-swap><h2>{escape(s.title)}</h2>{s.body}</section>'


def render_report(
    sweep_dir: Location | str | Path,
    *,
    sweep_id: str,
    state: str,
    dashboard_url: str | None,
    live: bool,
    refresh_s: int = 10,
    asset_base: str = "",
) -> str:
    """The sweep's report as one HTML page: progress, Tables 1 and 2, LR curves, ID vs OOD, training curves,
    layer gradients and memory. `live` adds the in-place refresh every `refresh_s` seconds; `asset_base` (a URL
    prefix) links the CSS and script instead of inlining them."""
    if isinstance(refresh_s, bool) or not isinstance(refresh_s, int) or refresh_s < 1:
        raise ValueError(f"refresh_s must be a whole number of seconds >= 1, got {refresh_s!r}")
    if not sweep_id:
        raise ValueError("sweep_id must be a non-empty string")
    data = load_sweep(sweep_dir)
    history = history_lines(read_history(sweep_dir))
    sections = all_sections(data, state=state, dashboard_url=dashboard_url, live=live, history=history)
    toc = "".join(f'<a href="#{escape(s.ident)}">{escape(_short(s))}</a>' for s in sections)
    title = f"Sweep {sweep_id} · {state} · shiftsweep"
    now = datetime.now(timezone.utc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request: the page needs nothing from any server
        f"<title>{escape(title)}</title>{_css(asset_base)}</head>"
        f'<body data-live="{"true" if live else "false"}" data-refresh-s="{refresh_s}"'
        f' data-sweep="{escape(sweep_id)}" data-state="{escape(state)}" data-refreshes="0">'
        '<header class="top"><div class="title">'
        f"<h1>Sweep <code>{escape(sweep_id)}</code></h1>{_mode(live, refresh_s, now)}"
        '<span id="refresh-status" class="muted" aria-live="polite"></span></div>'
        f'<nav class="toc" aria-label="Sections">{toc}</nav></header>'
        f"<main>{''.join(_section(s) for s in sections)}</main>"
        "<footer>Built by shiftsweep from the sweep's trials.parquet, epochs.parquet, probe.parquet and history.json. "
        "Accuracies in percent; each cell's LR chosen on ID validation only.</footer>"
        f"{_script(asset_base) if live else ''}</body></html>\n"
    )


_SHORT = {
    "progress": "Progress",
    "table-ood": "Table 1 (OOD)",
    "table-id": "Table 2 (ID)",
    "lr-curves": "LR curves",
    "id-vs-ood": "ID vs OOD",
    "training": "Training curves",
    "layer-gradients": "Layer gradients",
    "memory": "Memory",
}


def _short(s: Section) -> str:
    return _SHORT.get(s.ident, s.title)
