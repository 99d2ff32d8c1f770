"""What per-cell early stopping saves on the demo benchmark, and whether it still picks the full grid's LRs.

    python bench/early_stopping.py [--weights-root weights] [--models ...] [--datasets ...] [--live]

Runs the demo preset's grid once with early stopping off (every trial runs every epoch), then replays the
recorded epoch results, in the order they arrived, through `CellScheduler` with the demo's grace period and
reduction factor: a trial stops where the scheduler would have stopped it. Printed: epochs and trial-seconds
of the full grid and of the early-stopped grid, and in how many cells (model, dataset, method, seed) the LR
chosen on ID validation (best epoch of what each trial ran) is the full grid's choice. With --live the demo
grid is also run for real with early stopping on, and the same figures are printed for that run (its arrival
order, hence its decisions, can differ from the replay's). Without --weights-root the backbones are random
init, which makes the numbers a statement about the scheduler, not about fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OUTDATED_IGNORE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pyarrow as pa  # noqa: E402

from orchestrator.cell_scheduler import CellScheduler  # noqa: E402
from orchestrator.driver import SweepOutcome, run_sweep  # noqa: E402
from orchestrator.results import read_epochs, read_trials  # noqa: E402
from orchestrator.spec import SweepSpec, load_preset  # noqa: E402
from worker.selection import select_cells  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-data"
Cell = tuple[str, str, str, int]


@dataclass
class _Trial:
    trial_id: str
    config: dict[str, Any]


def demo_spec(args: argparse.Namespace, *, early_stopping: bool) -> SweepSpec:
    overrides: dict[str, Any] = {"data_root": str(CACHE), "probe": False}
    if args.models:
        overrides["models"] = args.models
    if args.datasets:
        overrides["datasets"] = args.datasets
    if args.weights_root:
        overrides["weights_root"] = str(Path(args.weights_root).resolve())
    else:
        overrides.update(weights_root=None, pretrained=False)
    if args.train_images:
        overrides["max_train_images"] = args.train_images
    spec = load_preset("demo", overrides)
    es = spec.early_stopping.model_copy(update={"enabled": early_stopping})
    return spec.model_copy(update={"early_stopping": es})


def replay(spec: SweepSpec, trials: pa.Table, epochs: pa.Table) -> dict[str, int]:
    """The last epoch each trial would have run under per-cell ASHA, replaying results in arrival order."""
    fake = {r["trial_id"]: _Trial(r["trial_id"], {"trial": json.loads(r["config_json"])}) for r in trials.to_pylist()}
    planned = {r["trial_id"]: r["epochs_planned"] for r in trials.to_pylist()}
    es = spec.early_stopping
    sched = CellScheduler(grace_period=es.grace_period, reduction_factor=es.reduction_factor)
    for t in fake.values():
        sched.on_trial_add(None, t)
    ran: dict[str, int] = {}
    stopped: set[str] = set()
    for r in sorted(epochs.to_pylist(), key=lambda r: (r["reported_at"], r["epoch"])):
        tid = r["trial_id"]
        if tid in stopped:
            continue
        ran[tid] = r["epoch"]
        final = r["epoch"] == planned[tid]
        result = {"epoch": r["epoch"], "id_val": r["id_val"], "status": "completed" if final else "running"}
        if sched.on_trial_result(None, fake[tid], result) == "STOP":
            stopped.add(tid)
    return ran


def _cells(trials: pa.Table) -> dict[Cell, list[dict[str, Any]]]:
    out: dict[Cell, list[dict[str, Any]]] = defaultdict(list)
    for r in trials.to_pylist():
        out[(r["model"], r["dataset"], r["method"], r["seed"])].append(r)
    return out


def chosen_lrs(trials: pa.Table, epochs: pa.Table, last_epoch: dict[str, int]) -> dict[Cell, float | None]:
    """Per cell, the LR the selection rule chooses when each trial counts only the epochs it ran."""
    ran = [r for r in epochs.to_pylist() if r["epoch"] <= last_epoch.get(r["trial_id"], 0)]
    out: dict[Cell, float | None] = {}
    for cell, rows in _cells(trials).items():
        ids = {t["trial_id"] for t in rows}
        results = select_cells([{**t, "status": "completed"} for t in rows], [e for e in ran if e["trial_id"] in ids])
        out[cell] = results[0].chosen_lr
    return out


def cost(epochs: pa.Table, last_epoch: dict[str, int]) -> tuple[int, float]:
    rows = [r for r in epochs.to_pylist() if r["epoch"] <= last_epoch.get(r["trial_id"], 0)]
    return len(rows), sum(r["epoch_time_s"] or 0.0 for r in rows)


def _complete(outcome: SweepOutcome) -> None:
    if outcome.state != "finished":
        raise SystemExit(f"the sweep did not finish ({outcome.state}, {outcome.counts}); no figures")


def _print(label: str, full: tuple[int, float], part: tuple[int, float], same: int, cells: int) -> None:
    print(
        f"{label}: {part[0]} of {full[0]} epochs ({1 - part[0] / full[0]:.0%} saved), "
        f"{part[1]:.0f} of {full[1]:.0f} trial-seconds ({1 - part[1] / full[1]:.0%} saved); "
        f"same LR as the full grid in {same} of {cells} cells"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-root", help="tiny pretrained backbones; default: random init")
    p.add_argument("--models", nargs="+")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--train-images", type=int, help="override the demo's max_train_images")
    p.add_argument("--live", action="store_true", help="also run the early-stopped grid for real")
    args = p.parse_args()

    import ray

    from worker.synthetic import generate_benchmark

    full_spec = demo_spec(args, early_stopping=False)
    for d in full_spec.datasets:
        generate_benchmark(d, CACHE, seed=0)
    work = Path(tempfile.mkdtemp(prefix="bench-es-"))
    os.environ["HOME"] = str(work / "home")  # Ray 2.60 writes an auth token under HOME
    try:
        ray.init(_temp_dir=str(work / "ray"), num_cpus=2, include_dashboard=False, log_to_driver=False)
        t0 = time.perf_counter()
        _complete(run_sweep(full_spec, "full", work / "results", verbose=0))
        full_wall = time.perf_counter() - t0
        trials, epochs = read_trials(work / "results" / "full"), read_epochs(work / "results" / "full")
        everything = {r["trial_id"]: r["epochs_done"] for r in trials.to_pylist()}
        full_cost, full_lrs = cost(epochs, everything), chosen_lrs(trials, epochs, everything)
        cells = len(full_lrs)
        print(f"demo grid: {trials.num_rows} trials in {cells} cells, {full_spec.epochs} epochs each")
        print(f"full grid: {full_cost[0]} epochs, {full_cost[1]:.0f} trial-seconds, {full_wall:.0f} s wall")

        ran = replay(full_spec, trials, epochs)
        es_lrs = chosen_lrs(trials, epochs, ran)
        _print(
            "per-cell ASHA (replay)",
            full_cost,
            cost(epochs, ran),
            sum(es_lrs[c] == full_lrs[c] for c in full_lrs),
            cells,
        )

        if args.live:
            t0 = time.perf_counter()
            _complete(run_sweep(demo_spec(args, early_stopping=True), "live", work / "results", verbose=0))
            live_wall = time.perf_counter() - t0
            lt, le = read_trials(work / "results" / "live"), read_epochs(work / "results" / "live")
            done = {r["trial_id"]: r["epochs_done"] for r in lt.to_pylist()}
            live_lrs = chosen_lrs(lt, le, done)
            same = sum(live_lrs[c] == full_lrs[c] for c in full_lrs)
            _print("per-cell ASHA (live)", full_cost, cost(le, done), same, cells)
            stopped = sum(1 for r in lt.to_pylist() if r["status"] == "stopped")
            print(f"live run: {stopped} trials stopped early, {live_wall:.0f} s wall against {full_wall:.0f} s")
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
