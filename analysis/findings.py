"""A sweep's outcome in plain words: what was compared, and one sentence per finding of the paper, with numbers.

The paper's two findings, checked against the sweep's own tables: (a) on AdamW-pretrained backbones the
embedding layer's starting gradient is an outlier (its Figure 2 measure: the patch or stem convolution's
gradient norm over the median middle layer's), and not on SGD-pretrained ones; (b) out of distribution SGD
trails AdamW on those backbones, and SGD freeze-embed closes the gap. A sentence says what the numbers show,
whether or not it is what the paper found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analysis import labels
from analysis.sweep_data import SweepData
from analysis.tables import build_from
from worker import catalog

OUTLIER = 5.0  # the embedding-to-median ratio the paper's AdamW-pretrained models reach or exceed
SGD, ADAMW, FREEZE = "sgd", "adamw", "sgd_freeze_embed"
OPTIMIZER_NAMES = {"adamw": "AdamW", "sgd": "SGD", "adam": "Adam", "lamb": "LAMB", "lars": "LARS"}


def _pretrained_with(model: str) -> str | None:
    try:
        return str(catalog.get_model(model).pretraining.get("optimizer") or "") or None
    except catalog.CatalogError:
        return None


def _span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2g}x" if abs(hi - lo) < 0.005 else f"{lo:.2g}-{hi:.2g}x"


def compared(data: SweepData) -> str:
    trials = data.trials.to_pylist()
    methods = labels.ordered("method", (t["method"] for t in trials))
    models = labels.ordered("model", (t["model"] for t in trials))
    datasets = labels.ordered("dataset", (t["dataset"] for t in trials))
    seeds = len({t["seed"] for t in trials})
    return (
        f"Compared {len(methods)} fine-tuning methods ({', '.join(labels.title('method', m) for m in methods)}) on "
        f"{len(models)} backbones ({', '.join(labels.title('model', m) for m in models)}) over {len(datasets)} "
        f"shift benchmarks, {len(trials)} trials, each cell's LR chosen on ID validation only; {seeds} seed"
        + ("s." if seeds > 1 else ", so differences of a few points are noise.")
    )


OUTLIER_MEASURES = {  # probe measure -> how the sentence names it (the paper's Figure 2 shows both)
    "grad_norm": "raw",
    "grad_norm_over_param_norm": "relative to the layer's weights (the size of an SGD step)",
}


def _outlier_ratios(rows: Sequence[Mapping[str, Any]], measure: str) -> dict[str, list[float]]:
    """Embedding over median middle layer, per model (one value per dataset), in one probe measure."""
    ratios: dict[str, list[float]] = {}
    for r in rows:
        if r.get("measure") == measure and r.get("embed_over_middle_median") is not None:
            ratios.setdefault(r["model"], []).append(float(r["embed_over_middle_median"]))
    return ratios


def embedding_outlier(data: SweepData) -> str | None:
    """Finding (a), from the probe table, raw and relative to the weights; None without a probe."""
    rows = build_from("probe", data).rows  # built once for both measures
    parts = []
    for measure, name in OUTLIER_MEASURES.items():
        ratios = _outlier_ratios(rows, measure)
        if not ratios:
            continue
        spans, outliers = [], []
        for model in labels.ordered("model", ratios):
            how = _pretrained_with(model)
            title = labels.title("model", model)
            spans.append(
                f"{title} ({OPTIMIZER_NAMES.get(how or '', how or 'unknown')}-pretrained) {_span(ratios[model])}"
            )
            above, n = sum(r >= OUTLIER for r in ratios[model]), len(ratios[model])
            if above:
                outliers.append(title if above == n else f"{title} ({above} of {n} benchmarks)")
        verdict = (
            f"an outlier (>= {OUTLIER:g}x) on {', '.join(outliers)}" if outliers else f"no outlier (>= {OUTLIER:g}x)"
        )
        parts.append(f"{name}, {'; '.join(spans)}: {verdict}")
    if not parts:
        return None
    return (
        "Embedding-layer gradient at the start over the median middle layer (the paper's Figure 2), "
        + "; and ".join(parts)
        + f". The paper finds it >= {OUTLIER:g}x on AdamW-pretrained models and not on SGD-pretrained BiT."
    )


def _ood_averages(data: SweepData) -> dict[tuple[str, str], float]:
    out = {}
    for r in build_from("ood", data).rows:
        if r.get("model") != "all" and r.get("avg") is not None and not r.get("avg_missing"):
            out[(r["model"], r["method"])] = float(r["avg"])
    return out


def sgd_against_adamw(data: SweepData) -> list[str]:
    """Finding (b), from Table 1's averages over the datasets: SGD against AdamW, then SGD freeze-embed."""
    avg = _ood_averages(data)
    models = labels.ordered("model", {m for m, _ in avg})
    out = []
    pairs: list[Any] = [(m, avg.get((m, SGD)), avg.get((m, ADAMW))) for m in models]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    if pairs:
        said = [
            f"{labels.title('model', m)} {s:.1f} vs {a:.1f} ({'AdamW' if a > s else 'SGD'} ahead by {abs(a - s):.1f})"
            for m, s, a in pairs
        ]
        out.append("OOD average over the benchmarks, SGD against AdamW: " + "; ".join(said) + ".")
    frozen = [
        (m, avg[(m, FREEZE)] - avg[(m, SGD)], avg.get((m, ADAMW)))
        for m in models
        if (m, FREEZE) in avg and (m, SGD) in avg
    ]
    if frozen:
        said = []
        for m, gain, adamw in frozen:
            text = f"{labels.title('model', m)} {gain:+.1f}"
            lead = None if adamw is None else adamw - avg[(m, SGD)]
            if lead is not None and lead > 0:
                if gain > 0:
                    text += f" (closes {100 * min(gain, lead) / lead:.0f}% of AdamW's {lead:.1f}-point lead)"
                else:
                    text += f" (AdamW led SGD by {lead:.1f}; freeze-embed does not close it)"
            said.append(text)
        out.append("SGD freeze-embed against SGD, OOD average, points: " + "; ".join(said) + ".")
    return out


def findings(data: SweepData) -> list[str]:
    """What was compared, then one sentence per finding the sweep's tables can speak to."""
    out = [compared(data)]
    outlier = embedding_outlier(data)
    if outlier:
        out.append(outlier)
    return out + sgd_against_adamw(data)
