"""What a sweep's results show, built from its Parquet files alone: the paper's tables, the report, the plots.

    render_table("ood", sweep_dir, "latex")     # Table 1 as LaTeX; list_tables() / list_formats() name the rest
    write_report(sweep_dir, sweep_id=..., state="finished", dashboard_url=None, live=False)

Nothing here talks to Ray or to the service: give it a sweep directory (or an object-store URI) and it reads
trials.parquet, epochs.parquet and probe.parquet, choosing each cell's LR with `worker.selection`.
"""

from analysis.report import (
    REPORT_FILE,
    list_assets,
    list_plot_formats,
    list_plots,
    read_asset,
    render_plot,
    render_report,
    write_report,
)
from analysis.sweep_data import SweepData, load_sweep
from analysis.tables import build_from, build_table, list_formats, list_tables, render_table

__all__ = [
    "REPORT_FILE",
    "SweepData",
    "build_from",
    "build_table",
    "list_assets",
    "list_formats",
    "list_plot_formats",
    "list_plots",
    "list_tables",
    "load_sweep",
    "read_asset",
    "render_plot",
    "render_report",
    "render_table",
    "write_report",
]
