"""The layer-gradient probe (the paper's Figure 2) as a table: is the embedding layer's gradient an outlier?

Per (model, dataset) and per measure (the raw gradient norm and its two normalisations, by the layer's parameter
norm and by the square root of its parameter count): the embedding layer, the median and mean over the middle
layers, the head, and the embedding-to-median-middle ratio. The embedding layer is the `embed` row: the patch or
stem convolution alone, as in the paper's Figure 2 (the class token, position embedding and the norm after the
convolution are rows of their own, and ConvNeXt's and BiT's stage 0, which freeze-embed also freezes, are block
rows). Middle layers are the attention, MLP and block rows. Probe files written before this rule have one `embed`
row holding the whole freeze-embed set.
"""

from __future__ import annotations

from statistics import fmean, median
from typing import Any

import pandas as pd

from analysis import labels
from analysis.sweep_data import SweepData
from analysis.tables.registry import register
from analysis.tables.table_data import Column, DisplayColumn, TableData

MEASURES = {
    "grad_norm": "‖g‖",
    "grad_norm_over_param_norm": "‖g‖ / ‖θ‖",
    "grad_norm_over_sqrt_numel": "‖g‖ / √n",
}
MIDDLE_KINDS = ("attn", "mlp", "block")

COLUMNS = (
    Column("model", "str"),
    Column("model_title", "str"),
    Column("dataset", "str"),
    Column("dataset_title", "str"),
    Column("measure", "str", ", ".join(MEASURES)),
    Column("measure_title", "str"),
    Column("embed_layer", "str", "the embedding row used"),
    Column("embed", "float"),
    Column("middle_median", "float"),
    Column("middle_mean", "float"),
    Column("middle_layers", "int", "how many middle rows"),
    Column("head", "float"),
    Column("embed_over_middle_median", "float", "the outlier ratio"),
    Column("batches", "int", "minibatches averaged"),
)
DISPLAY = (
    DisplayColumn("Model", "model_title"),
    DisplayColumn("Dataset", "dataset_title", short_key="dataset"),
    DisplayColumn("Measure", "measure_title"),
    DisplayColumn("Embedding", "embed", number_format=".3g"),
    DisplayColumn("Middle median", "middle_median", number_format=".3g"),
    DisplayColumn("Middle mean", "middle_mean", number_format=".3g"),
    DisplayColumn("Head", "head", number_format=".3g"),
    DisplayColumn("Embed / median", "embed_over_middle_median", number_format=".3g"),
)


def _finite(values: pd.Series) -> list[float]:
    return [float(v) for v in values.dropna()]


def _rows(model: str, dataset: str, g: pd.DataFrame, notes: list[str]) -> list[dict[str, Any]]:
    where = f"{labels.title('model', model)} / {labels.title('dataset', dataset)}"
    embed = g[g["kind"] == "embed"].sort_values(["depth", "num_params"], ascending=[True, False])
    middle = g[g["kind"].isin(MIDDLE_KINDS)]
    if middle.empty:
        middle = g[~g["kind"].isin(("embed", "head"))]
        notes.append(f"{where}: no attention, MLP or block rows; middle layers are every non-embedding, non-head row.")
    head = g[g["kind"] == "head"].sort_values("depth")
    if embed.empty:
        notes.append(f"{where}: no embedding row in the probe.")
    if head.empty:
        notes.append(f"{where}: no head row in the probe.")
    batches = g["batches"].dropna()
    out = []
    for measure, measure_title in MEASURES.items():
        mids = _finite(middle[measure])
        row: dict[str, Any] = {
            "model": model,
            "model_title": labels.title("model", model),
            "dataset": dataset,
            "dataset_title": labels.title("dataset", dataset),
            "measure": measure,
            "measure_title": measure_title,
            "middle_layers": len(mids),
            "middle_median": median(mids) if mids else None,
            "middle_mean": fmean(mids) if mids else None,
            "batches": int(batches.max()) if not batches.empty else None,
        }
        if not embed.empty:
            row["embed_layer"] = str(embed.iloc[0]["layer"])
            row["embed"] = None if pd.isna(embed.iloc[0][measure]) else float(embed.iloc[0][measure])
        if not head.empty and not pd.isna(head.iloc[-1][measure]):
            row["head"] = float(head.iloc[-1][measure])
        if row.get("embed") is not None and row["middle_median"]:
            row["embed_over_middle_median"] = row["embed"] / row["middle_median"]
        out.append(row)
    return out


@register("probe")
def probe_table(data: SweepData) -> TableData:
    """Embedding, middle and head gradient norms at initialisation, per model and dataset, from probe.parquet."""
    p = data.probe.to_pandas()
    notes = [
        "Gradient norms at the pretrained initialisation, before any update, averaged over minibatches. "
        "Embedding: the patch or stem convolution alone, as in the paper's Figure 2. "
        "The paper finds the embedding an outlier on AdamW-pretrained models and not on SGD-pretrained BiT ResNets."
    ]
    rows: list[dict[str, Any]] = []
    for model in labels.ordered("model", p["model"]):
        for dataset in labels.ordered("dataset", p[p["model"] == model]["dataset"]):
            g = p[(p["model"] == model) & (p["dataset"] == dataset)]
            rows += _rows(model, dataset, g, notes)
    if not rows:
        notes.append("No probe rows: run the sweep with `probe: true` to measure layer gradients.")
    return TableData(
        name="probe",
        title="Layer gradient norms at initialisation",
        columns=COLUMNS,
        rows=tuple(rows),
        notes=tuple(notes),
        display=DISPLAY,
        group_key="model_title",
    )
