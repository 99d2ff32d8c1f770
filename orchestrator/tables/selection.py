"""The paper's selection rule, as one pure function over a sweep's trials and epochs.

Per trial, the result is its best-ID-validation epoch (ties: the earliest). Per (model, dataset, method) cell,
trials are averaged over seeds for each LR, and the LR with the best *mean* ID validation metric is chosen; its
mean ID and OOD test metrics are reported with a 90% interval 1.645 sd / sqrt(n) (sample sd) when there is more
than one seed. OOD never takes part in the choice.

Nothing is dropped quietly: a diverged LR cannot be chosen but is named in the cell's notes; trials still
pending, running, failed or cancelled make the cell `incomplete`; a cell where no LR has a result is `no_result`
with the reason. Early-stopped (`stopped`) trials count with the epochs they ran.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

Z90 = 1.645  # two-sided 90% normal quantile
USABLE_STATUSES = ("completed", "stopped")
DIVERGED = "diverged"
METRICS = ("id_val", "id_test", "ood_test")
CellStatus = Literal["ok", "incomplete", "no_result"]

_TRIAL_COLUMNS = ("trial_id", "model", "dataset", "method", "lr", "seed", "status")
_EPOCH_COLUMNS = ("trial_id", "model", "dataset", "method", "lr", "seed", "epoch", "id_val", "id_test", "ood_test")


@dataclass(frozen=True)
class MetricSummary:
    """A metric over the seeds of one LR: mean, sample sd (ddof=1) and 90% interval, both None for one seed."""

    mean: float
    sd: float | None
    ci90: float | None
    n: int


@dataclass(frozen=True)
class LrSummary:
    """One LR of a cell: how its trials ended and, over those with a result, each metric's summary."""

    lr: float
    n_trials: int
    n_results: int
    statuses: dict[str, int]
    diverged: bool
    id_val: MetricSummary | None
    id_test: MetricSummary | None
    ood_test: MetricSummary | None
    chosen: bool = False

    @property
    def eligible(self) -> bool:
        """Only an LR with a result and no diverged seed can be chosen."""
        return self.n_results > 0 and not self.diverged


@dataclass(frozen=True)
class CellResult:
    """One (model, dataset, method) cell after selection. Metric values are fractions in [0, 1]."""

    model: str
    dataset: str
    method: str
    status: CellStatus
    chosen_lr: float | None
    id_val: float | None
    id_test: float | None
    ood_test: float | None
    id_val_ci90: float | None
    id_test_ci90: float | None
    ood_test_ci90: float | None
    n_seeds: int
    edge_flag: bool
    has_diverged: bool
    n_missing: int
    notes: tuple[str, ...]
    per_lr: tuple[LrSummary, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.dataset, self.method)


def format_lr(lr: float) -> str:
    """3e-05 -> '3e-5', 0.00025 -> '2.5e-4': short and unambiguous in notes and tables."""
    mantissa, exponent = f"{lr:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def summarize(values: Sequence[float]) -> MetricSummary:
    """Mean, sample sd and 90% interval 1.645 sd / sqrt(n); sd and interval are None for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("cannot summarise an empty list of values")
    mean = sum(values) / n
    if n == 1:
        return MetricSummary(mean, None, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return MetricSummary(mean, sd, Z90 * sd / math.sqrt(n), n)


def _frame(data: pa.Table | pd.DataFrame, required: Sequence[str], what: str) -> pd.DataFrame:
    df = data.to_pandas() if isinstance(data, pa.Table) else data.copy()
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it needs at least {list(required)}")
    return df


def _finite(v: object) -> bool:
    return v is not None and not pd.isna(v) and math.isfinite(float(v))


def best_epochs(epochs: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """Per trial, the epoch row with the highest id_val (ties: the earliest epoch); unevaluated epochs ignored."""
    e = _frame(epochs, _EPOCH_COLUMNS, "epochs")
    id_val = pd.to_numeric(e["id_val"], errors="coerce").to_numpy(dtype=float)
    e = e.loc[np.isfinite(id_val)]
    if e.empty:
        return e.reset_index(drop=True)
    e = e.drop_duplicates(["trial_id", "epoch"], keep="last").sort_values(["trial_id", "epoch"], kind="stable")
    e = e.reset_index(drop=True)
    return e.loc[e.groupby("trial_id", sort=False)["id_val"].idxmax()].reset_index(drop=True)


def trial_results(trials: pa.Table | pd.DataFrame, epochs: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """One row per trial: identity, status, and the metrics of its best-ID-validation epoch (NaN when none).

    A trial seen only in the epochs (its trial row not yet written) counts as `running`. A finished trial with no
    evaluated epoch rows falls back on the metrics its trial row carries.
    """
    t = _frame(trials, _TRIAL_COLUMNS, "trials")
    best = best_epochs(epochs)
    ident = ["trial_id", "model", "dataset", "method", "lr", "seed"]
    t = t.drop_duplicates("trial_id", keep="last")
    orphans = best[~best["trial_id"].isin(t["trial_id"])][ident].assign(status="running")
    base = pd.concat([t[ident + ["status"] + [m for m in METRICS if m in t.columns]], orphans], ignore_index=True)
    picked = best.set_index("trial_id")
    rows = []
    for rec in base.to_dict("records"):
        out = {k: rec[k] for k in ident + ["status"]}
        if rec["trial_id"] in picked.index:
            b = picked.loc[rec["trial_id"]]
            out.update({m: float(b[m]) if _finite(b[m]) else math.nan for m in METRICS}, best_epoch=int(b["epoch"]))
        elif all(_finite(rec.get(m)) for m in METRICS):
            out.update({m: float(rec[m]) for m in METRICS}, best_epoch=None)
        else:
            out.update(dict.fromkeys(METRICS, math.nan), best_epoch=None)
        rows.append(out)
    cols = ident + ["status", *METRICS, "best_epoch"]
    return pd.DataFrame(rows, columns=cols)


def _has_result(rec: dict) -> bool:
    return rec["status"] in USABLE_STATUSES and all(_finite(rec[m]) for m in METRICS)


def _lr_summary(lr: float, recs: list[dict]) -> LrSummary:
    ok = [r for r in recs if _has_result(r)]
    stats = {m: summarize([r[m] for r in ok]) if ok else None for m in METRICS}
    statuses = Counter(
        "completed (no metrics)" if r["status"] in USABLE_STATUSES and not _has_result(r) else str(r["status"])
        for r in recs
    )
    return LrSummary(
        lr=lr,
        n_trials=len(recs),
        n_results=len(ok),
        statuses=dict(sorted(statuses.items())),
        diverged=any(r["status"] == DIVERGED for r in recs),
        id_val=stats["id_val"],
        id_test=stats["id_test"],
        ood_test=stats["ood_test"],
    )


def _n_missing(s: LrSummary) -> int:
    return s.n_trials - s.n_results - s.statuses.get(DIVERGED, 0)


def _missing_text(s: LrSummary) -> str:
    return ", ".join(f"{n} {st}" for st, n in s.statuses.items() if st not in USABLE_STATUSES and st != DIVERGED)


def _notes(summaries: list[LrSummary], chosen: LrSummary | None) -> list[str]:
    """At most one line each: no result, diverged LRs, missing trials, an edge or lone LR."""
    if chosen is None:
        total: Counter[str] = Counter()
        for s in summaries:
            total.update(s.statuses)
        return ["no LR has a result: " + ", ".join(f"{n} {st}" for st, n in sorted(total.items()))]
    notes = []
    diverged = [f"lr {format_lr(s.lr)} ({s.statuses[DIVERGED]} of {s.n_trials})" for s in summaries if s.diverged]
    if diverged:
        notes.append("diverged, never chosen: " + ", ".join(diverged))
    missing = [s for s in summaries if _n_missing(s)]
    if missing:
        total_missing, total = sum(_n_missing(s) for s in missing), sum(s.n_trials for s in summaries)
        where = ", ".join(f"lr {format_lr(s.lr)} ({_missing_text(s)})" for s in missing)
        notes.append(f"{total_missing} of {total} trials without a result: {where}")
    lrs = [s.lr for s in summaries]
    if len(lrs) == 1:
        notes.append(f"only one LR ({format_lr(chosen.lr)}) was run: the choice is not tested against others")
    elif chosen.lr in (lrs[0], lrs[-1]):
        side = "smallest" if chosen.lr == lrs[0] else "largest"
        notes.append(f"chosen lr {format_lr(chosen.lr)} is the {side} LR run: the best may lie outside the grid")
    return notes


def _select_cell(key: tuple[str, str, str], recs: list[dict]) -> CellResult:
    by_lr: dict[float, list[dict]] = {}
    for r in recs:
        by_lr.setdefault(float(r["lr"]), []).append(r)
    summaries = [_lr_summary(lr, by_lr[lr]) for lr in sorted(by_lr)]
    chosen: LrSummary | None = None
    for s in summaries:  # ascending LR with a strict comparison: ties go to the smaller LR
        if s.eligible and (chosen is None or s.id_val.mean > chosen.id_val.mean):
            chosen = s
    notes = _notes(summaries, chosen)
    n_missing = sum(_n_missing(s) for s in summaries)
    edge = chosen is not None and chosen.lr in (summaries[0].lr, summaries[-1].lr)
    status: CellStatus = "no_result" if chosen is None else "incomplete" if n_missing else "ok"
    summaries = [replace(s, chosen=True) if s is chosen else s for s in summaries]

    def metric(name: str, field: str) -> float | None:
        if chosen is None:
            return None
        return getattr(getattr(chosen, name), field)

    return CellResult(
        model=key[0],
        dataset=key[1],
        method=key[2],
        status=status,
        chosen_lr=chosen.lr if chosen else None,
        id_val=metric("id_val", "mean"),
        id_test=metric("id_test", "mean"),
        ood_test=metric("ood_test", "mean"),
        id_val_ci90=metric("id_val", "ci90"),
        id_test_ci90=metric("id_test", "ci90"),
        ood_test_ci90=metric("ood_test", "ci90"),
        n_seeds=chosen.n_results if chosen else 0,
        edge_flag=edge,
        has_diverged=any(s.diverged for s in summaries),
        n_missing=n_missing,
        notes=tuple(notes),
        per_lr=tuple(summaries),
    )


def select_cells(trials: pa.Table | pd.DataFrame, epochs: pa.Table | pd.DataFrame) -> list[CellResult]:
    """Every (model, dataset, method) cell of a sweep after the paper's selection rule, in order of appearance."""
    per_trial = trial_results(trials, epochs)
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for rec in per_trial.to_dict("records"):
        cells.setdefault((rec["model"], rec["dataset"], rec["method"]), []).append(rec)
    return [_select_cell(key, recs) for key, recs in cells.items()]
