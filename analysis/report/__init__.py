"""A sweep's HTML report and its plots as files, built from the sweep's Parquet files alone.

`render_report` returns the page (live or final), `write_report` saves it as report.html beside the Parquet
files, `list_plots`/`render_plot` give the same plots as PNG or SVG, and `list_assets`/`read_asset` the CSS and
script a server hands out when the page links them under `asset_base` instead of inlining them.
"""

from __future__ import annotations

from pathlib import Path

from analysis.report.files import list_plot_formats, list_plots, render_plot
from analysis.report.page import list_assets, read_asset, render_report
from orchestrator import Location

REPORT_FILE = "report.html"


def write_report(sweep_dir: Location | str | Path, **kw) -> Path | str:
    """Render the report (keyword arguments as `render_report`) and replace `<sweep_dir>/report.html` atomically.

    Returns the file's local path, or its URI when the sweep lives in an object store.
    """
    loc = sweep_dir if isinstance(sweep_dir, Location) else Location(sweep_dir)
    page = render_report(loc, **kw)
    loc.write_bytes(REPORT_FILE, page.encode("utf-8"))
    return loc.local_path / REPORT_FILE if loc.local_path is not None else f"{loc.uri}/{REPORT_FILE}"


__all__ = [
    "REPORT_FILE",
    "list_assets",
    "list_plot_formats",
    "list_plots",
    "read_asset",
    "render_plot",
    "render_report",
    "write_report",
]
