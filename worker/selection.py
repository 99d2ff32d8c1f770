"""The paper's selection rule and a sweep's progress, as pure functions over trial and epoch records.

- Best epoch: a trial's result is its epoch with the highest ID validation metric; an exact tie goes to the lower
  ID validation loss (`TIE_BREAK`), then to the earliest epoch; an epoch without a finite ID validation metric (a
  diverged one) never counts. LP-FT on Waterbirds reports its last epoch instead, as the paper did (the catalog's
  `lp_ft.last_epoch_on`).
- LR choice: per (model, dataset, method) cell, each LR's trials are averaged over seeds and the LR with the
  best *mean* ID validation metric is chosen; an exact tie (a saturated split: 100% at several LRs) goes to the
  lower mean ID validation loss, then to the smaller LR. Its mean metrics are reported with a 90% interval
  1.645 sd / sqrt(n) (sample sd) when there is more than one seed. OOD never takes part in a choice.
- Progress: trials by status, epochs run, the share of the planned work that is settled, the time left.

Nothing is dropped quietly: a diverged LR cannot be chosen but is named in the cell's notes; trials still pending,
running, failed or cancelled make the cell `incomplete`; a cell where no LR has a result is `no_result`.

The worker (its best epoch), the results writer (trial rows), the early-stopping scheduler, the tables, the
report and the API all decide with these functions; none of them repeats the rule.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from worker import catalog
from worker.records import METRICS, SELECTION_METRIC, TIE_BREAK, TrialStatus, TrialSummary, is_finite

Z90 = 1.645  # two-sided 90% normal quantile
CellStatus = Literal["ok", "incomplete", "no_result"]
Row = Mapping[str, Any]

_IDENTITY = ("trial_id", "model", "dataset", "method", "lr", "seed")
EPOCH_COLUMNS = (*_IDENTITY, "epoch", *METRICS)  # what the rule needs of an epochs row
SELECTION_COLUMNS = (*EPOCH_COLUMNS, TIE_BREAK)  # what it reads: the tie-break is null in sweeps older than it
NO_METRICS = "completed (no metrics)"  # a trial whose status has a result but whose rows hold no metric


# ---- one trial -----------------------------------------------------------------------------------------------


def is_evaluated(report: Row) -> bool:
    """The epoch has a finite selection metric, so it can be compared (at a rung, or for the best epoch)."""
    return is_finite(report.get(SELECTION_METRIC))


def reports_last_epoch(method: str, dataset: str) -> bool:
    """Whether a run of `method` on `dataset` reports its last epoch instead of its best ID-validation epoch (the
    paper's LP-FT on Waterbirds); a method the catalog no longer knows reports its best epoch."""
    try:
        return catalog.get_method(method).reports_last_epoch(dataset)
    except catalog.CatalogError:
        return False


def _tie_break(value: Any) -> float:
    """The tie-break as a score to maximise: minus the loss; a missing one (an older record) ranks last."""
    return -float(value) if is_finite(value) else -math.inf


def best_epoch(reports: Iterable[Row], *, last: bool = False) -> Row | None:
    """The report of the best epoch: the highest ID validation metric, on an exact tie the lower ID validation
    loss, then the earliest epoch; with `last`, the last evaluated epoch."""
    evaluated = [r for r in reports if is_evaluated(r)]
    if not evaluated:
        return None
    if last:
        return max(evaluated, key=lambda r: r["epoch"])
    return max(evaluated, key=lambda r: (r[SELECTION_METRIC], _tie_break(r.get(TIE_BREAK)), -r["epoch"]))


def summarize_trial(
    reports: Iterable[Row], *, status: str, epochs_planned: int, error: str | None = None, last_epoch: bool = False
) -> TrialSummary:
    """A trial's summary from its epoch reports: its result at the best epoch (the last one with `last_epoch`),
    time, memory and sizes.

    An epoch that diverged counts towards time but not towards `epochs_done`.
    """
    ordered = sorted(reports, key=lambda r: r["epoch"])
    best = best_epoch(ordered, last=last_epoch)
    last: Row = ordered[-1] if ordered else {}
    return TrialSummary(
        status=status,
        epochs_planned=epochs_planned,
        epochs_done=max((r["epoch"] for r in ordered if is_evaluated(r)), default=0),
        best_epoch=best["epoch"] if best else None,
        **{m: (best.get(m) if best else None) for m in METRICS},
        final_train_loss=last.get("train_loss"),
        wall_time_s=sum(r.get("epoch_time_s") or 0.0 for r in ordered) if ordered else None,
        optimizer_state_bytes=last.get("optimizer_state_bytes"),
        peak_memory_bytes=max((r.get("peak_memory_bytes") or 0 for r in ordered), default=None) if ordered else None,
        trainable_params=last.get("trainable_params"),
        frozen_params=last.get("frozen_params"),
        error=error,
    )


# ---- the LR of a cell ----------------------------------------------------------------------------------------


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
    metrics: Mapping[str, MetricSummary | None]  # keyed by METRICS
    chosen: bool = False
    tie_break: float | None = None  # mean ID validation loss at the best epochs; None unless every result has one

    @property
    def eligible(self) -> bool:
        """Only an LR with a result and no diverged seed can be chosen."""
        return self.n_results > 0 and not self.diverged

    @property
    def stopped_early(self) -> bool:
        """Some seed of this LR was stopped by the early-stopping scheduler: its result is an early epoch's."""
        return self.statuses.get(TrialStatus.STOPPED, 0) > 0

    def mean(self, metric: str) -> float | None:
        s = self.metrics.get(metric)
        return None if s is None else s.mean


@dataclass(frozen=True)
class CellResult:
    """One (model, dataset, method) cell after selection. Metric values are fractions in [0, 1]."""

    model: str
    dataset: str
    method: str
    status: CellStatus
    chosen_lr: float | None
    metrics: Mapping[str, MetricSummary | None]  # the chosen LR's, keyed by METRICS; empty without a choice
    n_seeds: int
    edge_flag: bool
    has_diverged: bool
    n_missing: int
    notes: tuple[str, ...]
    per_lr: tuple[LrSummary, ...]
    stopped_choice: bool = False  # no eligible LR ran to the end: the choice is among early-stopped LRs
    tied_lrs: tuple[float, ...] = ()  # with the chosen one, the LRs whose mean ID validation equals it, if any
    chance: Mapping[str, float] = field(default_factory=dict)  # per metric: the best constant prediction's score

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.dataset, self.method)

    @property
    def edge_side(self) -> str | None:
        """ "smallest" or "largest" when the chosen LR is at that edge of the LRs run (of two or more)."""
        if not self.edge_flag or self.chosen_lr is None or len(self.per_lr) < 2:
            return None
        return "smallest" if self.chosen_lr == self.per_lr[0].lr else "largest"

    @property
    def tie_broken_by_loss(self) -> bool:
        """The LRs in `tied_lrs` were told apart by their ID validation loss (`choose_lr`), not by grid order."""
        return bool(self.tied_lrs) and loss_breaks_tie([s for s in self.per_lr if s.lr in self.tied_lrs])

    def at_chance(self, metric: str) -> bool:
        """The chosen LR's mean is no better than predicting one class for every image."""
        mean, level = self.mean(metric), self.chance.get(metric)
        return mean is not None and level is not None and mean <= level + 1e-9

    def mean(self, metric: str) -> float | None:
        s = self.metrics.get(metric)
        return None if s is None else s.mean

    def ci90(self, metric: str) -> float | None:
        s = self.metrics.get(metric)
        return None if s is None else s.ci90


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


def _require(row: Row, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in row]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it needs at least {list(columns)}")


def trial_results(trials: Iterable[Row], epochs: Iterable[Row]) -> list[dict[str, Any]]:
    """One record per trial: identity, status, best_epoch and the metrics of its best epoch (None when none).

    A trial seen only in the epochs (its trial row not yet written) counts as `running`. A trial with no evaluated
    epoch rows falls back on the metrics its trial row carries. When an epoch is listed twice, the last row wins.
    """
    per_trial: dict[str, dict[int, Row]] = {}
    for row in epochs:
        _require(row, EPOCH_COLUMNS, "an epochs row")
        per_trial.setdefault(row["trial_id"], {})[row["epoch"]] = row
    best = {}
    for tid, rows in per_trial.items():
        any_row = next(iter(rows.values()))
        b = best_epoch(rows.values(), last=reports_last_epoch(any_row["method"], any_row["dataset"]))
        if b is not None:
            best[tid] = b
    latest: dict[str, Row] = {}
    for row in trials:
        _require(row, (*_IDENTITY, "status"), "a trials row")
        latest[row["trial_id"]] = row
    orphans = [
        {**{k: b[k] for k in _IDENTITY}, "status": TrialStatus.RUNNING} for t, b in best.items() if t not in latest
    ]
    out = []
    for rec in [*latest.values(), *orphans]:
        result: dict[str, Any] = {k: rec[k] for k in (*_IDENTITY, "status")}
        b = best.get(rec["trial_id"])
        source = b if b is not None else rec if all(is_finite(rec.get(m)) for m in METRICS) else {}
        result.update({m: (float(source[m]) if is_finite(source.get(m)) else None) for m in METRICS})
        result[TIE_BREAK] = float(b[TIE_BREAK]) if b is not None and is_finite(b.get(TIE_BREAK)) else None
        result["best_epoch"] = b["epoch"] if b is not None else None
        out.append(result)
    return out


def _has_result(rec: Row) -> bool:
    return rec["status"] in TrialStatus.HAS_RESULT and all(rec[m] is not None for m in METRICS)


def _lr_summary(lr: float, recs: list[Row]) -> LrSummary:
    ok = [r for r in recs if _has_result(r)]
    statuses = Counter(
        NO_METRICS if r["status"] in TrialStatus.HAS_RESULT and not _has_result(r) else str(r["status"]) for r in recs
    )
    return LrSummary(
        lr=lr,
        n_trials=len(recs),
        n_results=len(ok),
        statuses=dict(sorted(statuses.items())),
        diverged=any(r["status"] == TrialStatus.DIVERGED for r in recs),
        metrics={m: summarize([r[m] for r in ok]) if ok else None for m in METRICS},
        tie_break=_mean_tie_break(ok),
    )


def _mean_tie_break(ok: list[Row]) -> float | None:
    losses = [float(r[TIE_BREAK]) for r in ok if is_finite(r.get(TIE_BREAK))]
    return sum(losses) / len(losses) if ok and len(losses) == len(ok) else None


def _n_missing(s: LrSummary) -> int:
    return s.n_trials - s.n_results - s.statuses.get(TrialStatus.DIVERGED, 0)


def _missing_text(s: LrSummary) -> str:
    counted = TrialStatus.HAS_RESULT | {TrialStatus.DIVERGED}
    return ", ".join(f"{n} {st}" for st, n in s.statuses.items() if st not in counted)


def _notes(summaries: list[LrSummary], chosen: LrSummary | None) -> list[str]:
    """At most one line each: no result, diverged LRs, missing trials, early-stopped LRs, a lone LR."""
    if chosen is None:
        total: Counter[str] = Counter()
        for s in summaries:
            total.update(s.statuses)
        return ["no LR has a result: " + ", ".join(f"{n} {st}" for st, n in sorted(total.items()))]
    notes = []
    diverged = [
        f"lr {format_lr(s.lr)} ({s.statuses[TrialStatus.DIVERGED]} of {s.n_trials})" for s in summaries if s.diverged
    ]
    if diverged:
        notes.append("diverged, never chosen: " + ", ".join(diverged))
    missing = [s for s in summaries if _n_missing(s)]
    if missing:
        total_missing, total_trials = sum(_n_missing(s) for s in missing), sum(s.n_trials for s in summaries)
        where = ", ".join(f"lr {format_lr(s.lr)} ({_missing_text(s)})" for s in missing)
        notes.append(f"{total_missing} of {total_trials} trials without a result: {where}")
    if chosen.stopped_early:
        notes.append(
            f"no LR ran to the end: lr {format_lr(chosen.lr)} was chosen among early-stopped trials, on an early "
            "epoch (a full-length run of the cell would settle it)"
        )
    else:
        beaten = [s for s in summaries if s.eligible and s.stopped_early]
        if any(_score(s) > _score(chosen) for s in beaten):
            notes.append(
                "an early-stopped LR had a higher ID validation score on an early epoch; "
                f"lr {format_lr(chosen.lr)}, which ran to the end, is chosen"
            )
    if len(summaries) == 1:
        notes.append(f"only one LR ({format_lr(chosen.lr)}) was run: the choice is not tested against others")
    return notes  # an edge of the grid (`edge_side`) and a tie (`tied_lrs`): the tables list those cells together


def _epoch_rule_note(model: str, dataset: str, method: str) -> tuple[str, ...]:
    if reports_last_epoch(method, dataset):
        return ("each run reports its last epoch, not its best ID-validation epoch, as the paper's LP-FT does here",)
    return ()


def choose_lr(summaries: Sequence[LrSummary]) -> LrSummary | None:
    """The eligible LR with the best mean ID validation metric; on an exact tie the lower mean ID validation loss
    (where every tied LR has one), then the smaller LR (`summaries` ascend by LR).

    An LR whose trials ran to the end always wins over one with an early-stopped seed, whatever their numbers: a
    stopped trial's best epoch is an early epoch, not a result of the protocol (the paper ran every trial to the
    end). Only when no eligible LR ran to the end is the choice made among the stopped ones (the cell is marked).
    """
    candidates = _candidates(summaries)
    best = max((_score(s) for s in candidates), default=None)
    tied = [s for s in candidates if _score(s) == best]
    if len(tied) > 1 and loss_breaks_tie(tied):
        return min(tied, key=lambda s: s.tie_break if s.tie_break is not None else math.inf)
    return tied[0] if tied else None


def loss_breaks_tie(tied: Sequence[LrSummary]) -> bool:
    """The loss decides among LRs tied on ID validation only when every one of them has it recorded."""
    return all(s.tie_break is not None for s in tied)


def _candidates(summaries: Sequence[LrSummary]) -> list[LrSummary]:
    """The LRs the choice is made among: those that ran to the end, or, when none did, the early-stopped ones."""
    eligible = [s for s in summaries if s.eligible]
    return [s for s in eligible if not s.stopped_early] or eligible


def _score(s: LrSummary) -> float:
    value = s.mean(SELECTION_METRIC)
    return -math.inf if value is None else value


def _select_cell(key: tuple[str, str, str], recs: list[Row]) -> CellResult:
    by_lr: dict[float, list[Row]] = {}
    for r in recs:
        by_lr.setdefault(r["lr"], []).append(r)
    summaries = [_lr_summary(lr, by_lr[lr]) for lr in sorted(by_lr)]
    chosen = choose_lr(summaries)
    tied_lrs = tuple(s.lr for s in _candidates(summaries) if chosen is not None and _score(s) == _score(chosen))
    n_missing = sum(_n_missing(s) for s in summaries)
    status: CellStatus = "no_result" if chosen is None else "incomplete" if n_missing else "ok"
    return CellResult(
        model=key[0],
        dataset=key[1],
        method=key[2],
        status=status,
        chosen_lr=chosen.lr if chosen else None,
        metrics=dict(chosen.metrics) if chosen else {},
        n_seeds=chosen.n_results if chosen else 0,
        edge_flag=chosen is not None and chosen.lr in (summaries[0].lr, summaries[-1].lr),
        has_diverged=any(s.diverged for s in summaries),
        n_missing=n_missing,
        notes=tuple(_notes(summaries, chosen)) + _epoch_rule_note(*key),
        per_lr=tuple(replace(s, chosen=True) if s is chosen else s for s in summaries),
        stopped_choice=chosen is not None and chosen.stopped_early,
        tied_lrs=tied_lrs if len(tied_lrs) > 1 else (),
    )


def select_cells(trials: Iterable[Row], epochs: Iterable[Row]) -> list[CellResult]:
    """Every (model, dataset, method) cell of a sweep after the selection rule, in order of appearance."""
    cells: dict[tuple[str, str, str], list[Row]] = {}
    for rec in trial_results(trials, epochs):
        cells.setdefault((rec["model"], rec["dataset"], rec["method"]), []).append(rec)
    return [_select_cell(key, recs) for key, recs in cells.items()]


# ---- progress ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a sweep has got. Percent done weighs trials by their planned epochs: a trial that will not run
    again (TrialStatus.DONE) counts in full, any other the epochs it has run."""

    counts: dict[str, int]  # every status of TrialStatus.ALL, zero included, plus any unknown one seen
    total: int
    epochs_done: int  # epochs actually run
    epochs_planned: int
    percent_done: float
    eta_seconds: float | None

    @property
    def ended(self) -> int:
        """Trials neither running nor waiting to run."""
        return sum(n for s, n in self.counts.items() if s in TrialStatus.ENDED)

    @property
    def percent_trials(self) -> float:
        return 100.0 * self.ended / self.total if self.total else 0.0


def _count(x: Any) -> int:
    return int(x) if is_finite(x) and x > 0 else 0


def sweep_progress(trials: Iterable[Row], *, expected_total: int = 0, active: bool = True) -> Progress:
    """Progress from a sweep's trial rows (the last row per trial counts); up to `expected_total` trials, those
    without a row yet (before the driver's first write, or an extension's) count as pending.

    The time left is the work still to run (in trials) times the mean wall time of completed trials, divided
    by the trials running now; None when the sweep is not `active` or nothing has completed yet.
    """
    rows = {r["trial_id"]: r for r in trials}
    counts = dict.fromkeys(TrialStatus.ALL, 0)
    if not rows:
        counts[TrialStatus.PENDING] = expected_total
        return Progress(counts, expected_total, 0, 0, 0.0, None)
    done = planned = 0
    settled = remaining = 0.0
    walls: list[float] = []
    for r in rows.values():
        status = str(r["status"])
        counts[status] = counts.get(status, 0) + 1
        p = max(1, _count(r.get("epochs_planned")))
        d = min(p, _count(r.get("epochs_done")))
        planned += p
        done += d
        settled += p if status in TrialStatus.DONE else d
        if status not in TrialStatus.ENDED:
            remaining += 1.0 - d / p
        if status == TrialStatus.COMPLETED and is_finite(r.get("wall_time_s")):
            walls.append(float(r["wall_time_s"]))
    missing = max(0, expected_total - len(rows))
    if missing:  # listed by the spec, not yet by the driver: pending, each as long as the mean listed trial
        counts[TrialStatus.PENDING] += missing
        remaining += missing
        planned += round(missing * planned / len(rows))
    eta = None
    if active and walls:
        parallel = max(1, counts[TrialStatus.RUNNING])
        eta = round(remaining * (sum(walls) / len(walls)) / parallel, 1)
    percent = round(100.0 * settled / planned, 2) if planned else 0.0
    return Progress(counts, len(rows) + missing, done, planned, percent, eta)
