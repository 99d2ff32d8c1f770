"""Table 4: peak memory and optimizer state per (model, method), and how much more AdamW needs.

The paper's claim: per trained parameter SGD keeps 12 bytes with momentum and 8 without, AdamW 16; on CLIP
ViT-B/16 AdamW's peak was 16% and 36% above SGD freeze-embed with and without momentum. Only completed trials
count: a failed or stopped trial may not have reached its peak.

The peak is what a GPU run measures; on a CPU it is the process's resident high-water mark, which the
interpreter, the libraries and the data loader dominate for small models (about the same for every method, and
noise decides its sign). The model state (every weight, the gradients of the trained ones, the optimizer's
state, in fp32) is what the methods change, on any device, so AdamW's overhead is also given on it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis import labels
from analysis.reference import load_reference
from analysis.sweep_data import SweepData
from analysis.tables.registry import register
from analysis.tables.table_data import Column, DisplayColumn, TableData
from worker.records import TrialStatus

ADAMW = "adamw"
MIB = float(2**20)
FP32 = 4  # bytes per weight and per gradient
OVERHEADS = {"peak_memory_bytes": "adamw_overhead_pct", "model_state_bytes": "adamw_state_overhead_pct"}

COLUMNS = (
    Column("model", "str"),
    Column("model_title", "str"),
    Column("method", "str"),
    Column("method_title", "str"),
    Column("trials", "int", "trials of this model and method in the sweep"),
    Column("completed_trials", "int", "completed trials, the only ones counted"),
    Column("peak_memory_bytes", "int", "max over completed trials"),
    Column("peak_memory_mib", "float"),
    Column("optimizer_state_bytes", "int", "max over completed trials"),
    Column("optimizer_state_mib", "float"),
    Column("trainable_params", "int", "of the trial with the largest optimizer state"),
    Column("frozen_params", "int"),
    Column("state_bytes_per_param", "float", "optimizer state bytes per trainable parameter"),
    Column("model_state_bytes", "int", "4 B per weight + 4 B per trained weight's gradient + the optimizer state"),
    Column("model_state_mib", "float"),
    Column("adamw_overhead_pct", "float", "AdamW's peak over this method's peak minus 1, percent, same model"),
    Column("adamw_state_overhead_pct", "float", "AdamW's model state over this method's minus 1, percent"),
    Column("adamw_overhead_paper_pct", "float", "the paper's quoted overhead"),
)
DISPLAY = (
    DisplayColumn("Model", "model_title"),
    DisplayColumn("Method", "method_title", short_key="method"),
    DisplayColumn("Completed", "completed_trials", short="Done"),
    DisplayColumn("Peak (MiB)", "peak_memory_mib", short="Peak MiB"),
    DisplayColumn("Optimizer state (MiB)", "optimizer_state_mib", short="State MiB"),
    DisplayColumn("State B/param", "state_bytes_per_param", short="B/param"),
    DisplayColumn("Model state (MiB)", "model_state_mib", short="Model MiB"),
    DisplayColumn(
        "AdamW more, peak (%)", "adamw_overhead_pct", paper_key="adamw_overhead_paper_pct", short="AdamW+% peak"
    ),
    DisplayColumn("AdamW more, model state (%)", "adamw_state_overhead_pct", short="AdamW+% state"),
)


def _int(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _row(model: str, method: str, group: pd.DataFrame) -> dict[str, Any]:
    done = group[group["status"] == TrialStatus.COMPLETED]
    row: dict[str, Any] = {
        "model": model,
        "model_title": labels.title("model", model),
        "method": method,
        "method_title": labels.title("method", method),
        "trials": len(group),
        "completed_trials": len(done),
    }
    peak = done["peak_memory_bytes"].dropna()
    if not peak.empty:
        row["peak_memory_bytes"] = int(peak.max())
        row["peak_memory_mib"] = row["peak_memory_bytes"] / MIB
    state = done.dropna(subset=["optimizer_state_bytes"])
    if not state.empty:
        top = state.loc[state["optimizer_state_bytes"].idxmax()]
        row["optimizer_state_bytes"] = int(top["optimizer_state_bytes"])
        row["optimizer_state_mib"] = row["optimizer_state_bytes"] / MIB
        row["trainable_params"] = _int(top["trainable_params"])
        row["frozen_params"] = _int(top["frozen_params"])
        if row["trainable_params"]:
            row["state_bytes_per_param"] = row["optimizer_state_bytes"] / row["trainable_params"]
        if row["trainable_params"] is not None and row["frozen_params"] is not None:
            weights = row["trainable_params"] + row["frozen_params"]
            row["model_state_bytes"] = FP32 * (weights + row["trainable_params"]) + row["optimizer_state_bytes"]
            row["model_state_mib"] = row["model_state_bytes"] / MIB
    return row


@register("memory")
def memory_table(data: SweepData) -> TableData:
    """Peak memory and optimizer state per (model, method) from trials.parquet, against the paper's Table 4."""
    ref = load_reference()
    t = data.trials.to_pandas()
    rows = []
    models = labels.ordered("model", t["model"])
    methods = labels.ordered("method", t["method"])
    for model in models:
        for method in methods:
            group = t[(t["model"] == model) & (t["method"] == method)]
            if not group.empty:
                rows.append(_row(model, method, group))
    adamw = {r["model"]: r for r in rows if r["method"] == ADAMW}
    notes = [
        "Peak memory is the CUDA peak on GPU and the process's resident-set high-water mark on CPU (interpreter, "
        "libraries and data included: about the same for every method, so on CPU its AdamW overhead is noise and "
        "can be negative); compare methods measured on the same device and batch size only.",
        "AdamW more, peak (%): AdamW's peak over this method's on the same model, minus 1; [the paper's number, "
        f"measured at micro-batch {ref.micro_batch}].",
        "Model state: 4 bytes per weight, 4 per trained weight's gradient, plus the optimizer state (SGD with "
        "momentum 4 bytes per trained weight, without none, AdamW 8): what the methods change on any device. "
        "AdamW more, model state (%): AdamW's over this method's, minus 1; it leaves out activations, which a GPU "
        "peak includes.",
        *ref.memory_notes,
    ]
    for r in rows:
        for measured, overhead in OVERHEADS.items():
            a, mine = adamw.get(r["model"], {}).get(measured), r.get(measured)
            if r["method"] != ADAMW and a and mine:
                r[overhead] = 100.0 * (a / mine - 1.0)
        r["adamw_overhead_paper_pct"] = ref.adamw_overhead_pct(r["model"], r["method"])
        if r["completed_trials"] == 0:
            where = f"{r['model_title']} / {r['method_title']}"
            notes.append(f"{where}: no completed trial yet ({r['trials']} in the sweep).")
    if not rows:
        notes.append("The sweep has no trials yet.")
    return TableData(
        name="memory",
        title="Table 4: peak memory per method",
        columns=COLUMNS,
        rows=tuple(rows),
        notes=tuple(notes),
        display=DISPLAY,
        group_key="model_title",
    )
