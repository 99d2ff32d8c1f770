"""What early stopping saves on the demo's pretrained backbones, and whether the tables still say the same.

    python bench/early_stopping.py [--seeds 3] [--settings 3 2 2:0.5 ...] [--results DIR] [--live]
    python bench/early_stopping.py --first-seed 3 --data-seed 1 --keep .cache/bench-es-heldout   # a held-out grid
    python bench/early_stopping.py --results .cache/bench-es-heldout --first-seed 3 --data-seed 1  # replay it

Runs one grid in full, early stopping off: the demo preset's models, datasets, methods and epochs, each method
with 6 LRs half a decade apart like the paper's grids (holding the demo's 5), with --seeds seeds, on the demo's
shipped backbones (copied to .cache/bench-weights). The demo's own grid is the subset of those trials at its
LRs.

Each grid is then replayed through the early-stopping decisions (`orchestrator.halving`, which the Tune scheduler
applies as results arrive) under each of --settings (`Setting`: halving's reduction factor or the neighbours rule,
then optionally `:` and the rungs as fractions of the epochs; default: the neighbours rule at epochs 1 and 4 with 3
standard errors paired by seed and late rungs; the same unpaired; with a wide first rung narrowing at epochs 2, 3
and 6 (`WIDE_FIRST_RUNG`), paired; at epochs 1, 3 and 6 with 3 standard errors, narrowing in stages; with 3 standard
errors at the first rung and a 1-point margin at the later ones; at epochs 1 and 4 with a 5-point margin; halving at
factor 3): a trial counts the epochs up to the rung its LR was stopped at (--live uses the first setting). The
decisions depend on the scores alone, never on the order results arrive in, so the replay stops exactly the trials a
live early-stopped sweep stops. What a live run adds is the cost of pausing and restoring trials at a rung; --live
measures it on the demo grid (the demo grid with early stopping on and off, one after the other): the wall times,
the early-stopped run's own figures against the full run's, and the replay of the full run's results, so that live
and replay are compared on the same trials.

Printed on the last lines, per grid and setting: epochs and trial-seconds of the early-stopped grid against the
full one; in how many (model, dataset, method) cells the selection rule chooses the full grid's LR; the largest
change of any OOD and ID table cell, in points. Then, per seed, the full grid's own choice made without that seed
against the one made with all: how many answers a single seed decides. Targets: >= 50% of trial-seconds saved,
the same LR in >= 95% of cells, no table cell moved by more than 1 point. `bench/early_stopping_frontier.py` asks how
much any setting could save on the kept grids while meeting them.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OUTDATED_IGNORE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from orchestrator.cell_scheduler import CellScheduler  # noqa: E402
from orchestrator.driver import SweepOutcome, early_stopping_scheduler, run_sweep  # noqa: E402
from orchestrator.halving import Member, decide  # noqa: E402
from orchestrator.results import read_epochs, read_trials, recorded_trials  # noqa: E402
from orchestrator.spec import SweepSpec, load_preset  # noqa: E402
from worker.records import TrialStatus  # noqa: E402
from worker.selection import CellResult, LrSummary, reports_last_epoch, select_cells  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".cache" / "bench-data"
WEIGHTS = ROOT / ".cache" / "bench-weights"
# two steps above the leader and one below at epoch 1, one either side at epoch 2, the leader and the LR above it from
# epoch 3, the leader alone from epoch 6 (of 8), each with whatever the tolerances keep (kept every answer of grids H,
# I and F', lost 2 of the held-out E''s, at epochs 2 and 3, and 2 of J's: README, "What early stopping trades")
WIDE_FIRST_RUNG = "/b1@0.125/b1a1@0.25/b0@0.375/b0a0@0.75:0.125,0.25,0.375,0.5,0.75"
# the README's suggested setting: `noise: 3, paired: true, late: {start: 0.5}, rungs: [0.125, 0.5]`
SUGGESTED = "n1z3pb0@0.5:0.125,0.5"
SIX = {  # half a decade apart, holding the demo's 5 LRs per method
    "sgd": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1],
    "sgd_freeze_embed": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1],
    "sgd_freeze_embed_nomom": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1],
    "adamw": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
}


@dataclass(frozen=True)
class Figures:
    epochs: int
    trial_seconds: float
    chosen: dict[tuple[str, str, str], float | None]
    table: dict[tuple[str, str, str, str], float | None]  # (model, dataset, method, ood|id) -> percent


@dataclass(frozen=True)
class Setting:
    """`3`, `2:0.25,0.5`: successive halving's reduction factor, then its rungs as fractions of the epochs.
    `n1:0.125`, `n1m0.02:0.125`: the neighbours rule keeping, at each rung, the leading LR, its neighbours up to
    1 grid step away and (with `m`) every LR within that margin of its score; `m0.1:0.375`: the margin alone
    (neighbours 0); `z2`: also every LR within 2 standard errors of the leader (the noise tolerance); `z2p`: those
    standard errors paired by seed (`KeepRule.paired`). Then its
    stages, each after a `/` and in this order of letters: `/b0@0.5`, from half the epochs on 0 steps below the
    leader; `/a0z2@0.75`, from three quarters on 0 steps above it (and 0 below) and 2 standard errors; `m` too.
    Both rules are the scheduler's own (`orchestrator.halving.KeepRule`), in that order:
    `n1m0.01/b0z2@0.3/a0@0.7:0.125,0.375,0.75`."""

    reduction_factor: float
    rungs: list[float] | None
    neighbours: int | None = None
    margin: float = 0.0
    noise: float = 0.0
    stages: tuple[dict[str, Any], ...] = ()  # the spec's `late` entries
    paired: bool = False

    @classmethod
    def parse(cls, text: str) -> Setting:
        head, _, rungs = text.partition(":")
        fractions = [float(x) for x in rungs.split(",")] if rungs else None
        rule = _NEIGHBOURS.fullmatch(head)
        stages = _stages(rule.group(5)) if rule else None
        if rule is None or stages is None:
            try:
                return cls(float(head), fractions)
            except ValueError:
                raise ValueError(f"{text!r} is not a setting: see `Setting` for the forms") from None
        steps, margin, noise, paired, _ = rule.groups()
        return cls(
            3.0,
            fractions,
            neighbours=int(steps) if steps else 0,
            margin=float(margin or 0.0),
            noise=float(noise or 0.0),
            stages=tuple(stages),
            paired=bool(paired),
        )

    def describe(self, at: list[int]) -> str:
        """`at`: the rung epochs this setting gives, as the scheduler places them (`replay_scheduler`)."""
        if self.neighbours is None:
            return f"reduction factor {self.reduction_factor:g}, rungs at epochs {at}"
        pair = " paired" * self.paired
        text = f"leader and LRs within {self.neighbours} grid step(s){_tolerances(self.margin, self.noise, pair)}"
        for st in self.stages:
            text += f"; from {st['start']:g} of the epochs {st['below']} step(s) below it"
            text += f", {st['above']} above" if "above" in st else ""
            text += _tolerances(st.get("margin", 0.0), st.get("noise", 0.0), pair)
        return f"{text}, rungs at epochs {at}"

    def spec_fields(self) -> dict[str, Any]:
        """The spec's `early_stopping` fields that select this setting."""
        fields: dict[str, Any] = {"reduction_factor": self.reduction_factor, "rungs": self.rungs}
        if self.neighbours is not None:
            fields |= {
                "rule": "neighbours",
                "neighbours": self.neighbours,
                "margin": self.margin,
                "noise": self.noise,
                "paired": self.paired,
                "late": list(self.stages) or None,
            }
        return fields


def _stages(tail: str) -> list[dict[str, Any]] | None:
    """The stages written after the base rule, as the spec's `late` entries; None if `tail` is not stages."""
    stages, at = [], 0
    while at < len(tail):
        st = _STAGE.match(tail, at)
        if st is None:
            return None
        below, above, margin, noise, start = st.groups()
        stage: dict[str, Any] = {"start": float(start), "below": int(below or 0)}
        stage |= {"above": int(above)} if above else {}
        stage |= {"margin": float(margin)} if margin else {}
        stage |= {"noise": float(noise)} if noise else {}
        stages.append(stage)
        at = st.end()
    return stages


def _tolerances(margin: float, noise: float, pair: str = "") -> str:
    close = [f"within {margin:g}"] * bool(margin) + [f"{noise:g}{pair} SE"] * bool(noise)
    return f" or {' or '.join(close)} of its score" if close else ""


_NEIGHBOURS = re.compile(r"(?:n(\d+)|(?=m))(?:m([\d.]+))?(?:z([\d.]+))?(p)?(.*)")  # the base rule, then its stages
# a stage, after a `/` (the first may follow `z` or the base at once, as in `n1z3b0@0.5`)
_STAGE = re.compile(r"/?(?:b(\d+))?(?:a(\d+))?(?:m([\d.]+))?(?:z([\d.]+))?@([\d.]+)")


def grid_spec(args: argparse.Namespace, *, lrs: dict[str, list[float]], setting: Setting | None) -> SweepSpec:
    spec = load_preset(
        "demo",
        {
            "data_root": str(data_root(args)),
            "weights_root": str(args.weights_root or WEIGHTS),
            "probe": False,
            "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
            "lrs": lrs,
        },
    )
    es = type(spec.early_stopping).model_validate(  # validated: the setting's fields as a spec would give them
        spec.early_stopping.model_dump()
        | {"enabled": setting is not None, "grace_period": 1}
        | (setting.spec_fields() if setting else {})
    )
    return spec.model_copy(update={"early_stopping": es})


def data_root(args: argparse.Namespace) -> Path:
    return DATA if args.data_seed == 0 else DATA.with_name(f"{DATA.name}-seed{args.data_seed}")


def prepare(args: argparse.Namespace, spec: SweepSpec) -> None:
    from worker.shipped_backbones import install
    from worker.synthetic import generate_benchmark

    for d in spec.datasets:
        generate_benchmark(d, data_root(args), seed=args.data_seed)
    if args.weights_root is None:
        for m in spec.models:
            res = install(m, WEIGHTS)
            print(f"{m}: shipped backbone, source validation accuracy {res.val_acc:.3f}", flush=True)


def replay_scheduler(spec: SweepSpec) -> CellScheduler:
    """The scheduler a sweep of `spec` runs with: where its rungs fall is its own `rungs_for`."""
    scheduler = early_stopping_scheduler(spec, "replay")
    if scheduler is None:
        raise ValueError("the spec's early stopping is off: nothing to replay")
    return scheduler


def cell_members(trials: pa.Table, epochs: pa.Table) -> dict[tuple[str, str, str], dict[str, Member]]:
    """Each cell's trials as the scheduler knows them, rebuilt from a grid's results (as a resumed sweep's are)."""
    cells: dict[tuple[str, str, str], dict[str, Member]] = {}
    for rec in recorded_trials(trials.to_pylist(), epochs.to_pylist()):
        _, dataset, method = rec.cell
        m = Member(group=rec.lr, last_epoch_rule=reports_last_epoch(method, dataset), seed=rec.seed)
        m.merge(rec)
        cells.setdefault(rec.cell, {})[rec.trial_id] = m
    return cells


def stop_epochs(spec: SweepSpec, trials: pa.Table, epochs: pa.Table) -> dict[str, int]:
    """The last epoch each trial runs under the spec's early stopping, from the scheduler's own decisions."""
    cells = cell_members(trials, epochs)
    last = {tid: m.reached for members in cells.values() for tid, m in members.items()}
    scheduler = replay_scheduler(spec)
    rule = spec.early_stopping.keep_rule()
    for members in cells.values():
        planned = max(m.reached for m in members.values())
        state = decide(members, scheduler.rungs_for(planned), rule, epochs=planned)
        by_lr = {lr: d.epoch for d in reversed(state.decisions) for lr in d.stopped}
        for tid, m in members.items():
            if m.group in by_lr:
                last[tid] = min(last[tid], by_lr[m.group])
    return last


def figures(trials: pa.Table, epochs: pa.Table, last: dict[str, int] | None) -> Figures:
    """Cost and tables of the grid when each trial runs to `last[trial]` (None: every epoch it ran)."""
    rows = epochs.to_pylist()
    kept = [r for r in rows if last is None or r["epoch"] <= last[r["trial_id"]]]
    trial_rows = []
    for t in trials.to_pylist():
        cut = last is not None and last[t["trial_id"]] < max(t["epochs_done"] or 0, 1)
        trial_rows.append({**t, "status": TrialStatus.STOPPED if cut else t["status"]})
    cells = select_cells(trial_rows, kept)
    table: dict[tuple[str, str, str, str], float | None] = {}
    for c in cells:
        table |= table_cells(c.key, c)
    return Figures(
        epochs=len(kept),
        trial_seconds=sum(r["epoch_time_s"] or 0.0 for r in kept),
        chosen={c.key: c.chosen_lr for c in cells},
        table=table,
    )


def table_cells(
    key: tuple[str, str, str], result: CellResult | LrSummary | None
) -> dict[tuple[str, str, str, str], float | None]:
    """A cell's OOD and ID table values, in percent, from its chosen LR's result (None: no choice)."""
    out: dict[tuple[str, str, str, str], float | None] = {}
    for name, metric in (("ood", "ood_test"), ("id", "id_test")):
        v = result.mean(metric) if result is not None else None
        out[(*key, name)] = None if v is None else 100.0 * v
    return out


def compare(label: str, full: Figures, stopped: Figures) -> str:
    return (
        f"{label}: {1 - stopped.epochs / full.epochs:.1%} of epochs and "
        f"{1 - stopped.trial_seconds / full.trial_seconds:.1%} of trial-seconds saved "
        f"({stopped.trial_seconds:.0f} of {full.trial_seconds:.0f}); {agreement(full, stopped)}"
    )


def agreement(full: Figures, stopped: Figures) -> str:
    """In how many cells `stopped` chooses `full`'s LR, and its largest table change."""
    same = sum(stopped.chosen[k] == v for k, v in full.chosen.items())
    moves = {
        name: max(
            (abs((stopped.table[k] or 0.0) - (v or 0.0)) for k, v in full.table.items() if k[3] == name),
            default=0.0,
        )
        for name in ("ood", "id")
    }
    worst = max(
        (k for k in full.table if full.table[k] is not None),
        key=lambda k: abs((stopped.table[k] or 0.0) - (full.table[k] or 0.0)),
    )
    return (
        f"same LR in {same} of {len(full.chosen)} cells ({same / len(full.chosen):.0%}); largest table change "
        f"{moves['ood']:.1f} points OOD, {moves['id']:.1f} ID ({'/'.join(worst)})"
    )


def subset(trials: pa.Table, epochs: pa.Table, lrs: dict[str, list[float]]) -> tuple[pa.Table, pa.Table]:
    return _only(trials, epochs, {t["trial_id"] for t in trials.to_pylist() if t["lr"] in lrs[t["method"]]})


def of_seeds(trials: pa.Table, epochs: pa.Table, seeds: list[int]) -> tuple[pa.Table, pa.Table]:
    kept = _only(trials, epochs, {t["trial_id"] for t in trials.to_pylist() if t["seed"] in seeds})
    if kept[0].num_rows == 0:
        known = sorted(set(trials["seed"].to_pylist()))
        raise SystemExit(f"no trial of seeds {seeds} in the grid (its seeds: {known})")
    return kept


def _only(trials: pa.Table, epochs: pa.Table, keep: set[str]) -> tuple[pa.Table, pa.Table]:
    ids = pa.array(sorted(keep), pa.string())
    return trials.filter(pc.is_in(trials["trial_id"], value_set=ids)), epochs.filter(
        pc.is_in(epochs["trial_id"], value_set=ids)
    )


def seed_left_out(trials: pa.Table, epochs: pa.Table, full: Figures) -> list[str]:
    """Per seed, the LRs the full grid chooses without it, read in the full grid's tables (every seed's mean at
    that LR, so a cell moves only where the choice moved): how many of the grid's own answers rest on one seed,
    the yardstick for what any early stopping can keep."""
    seeds = sorted(set(trials.column("seed").to_pylist()))
    per_lr = {c.key: {s.lr: s for s in c.per_lr} for c in select_cells(trials.to_pylist(), epochs.to_pylist())}
    lines = []
    for seed in seeds if len(seeds) > 1 else []:
        chosen = figures(*of_seeds(trials, epochs, [s for s in seeds if s != seed]), None).chosen
        table: dict[tuple[str, str, str, str], float | None] = {}
        for key, lr in chosen.items():
            table |= table_cells(key, per_lr[key].get(lr) if lr is not None else None)
        other = Figures(full.epochs, full.trial_seconds, chosen, table)
        lines.append(f"  the full grid's choice without seed {seed}, against its own: {agreement(full, other)}")
    return lines


def _cpu_seconds() -> float:
    """CPU time of this process (the driver: Tune's controller and the results store), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _finished(outcome: SweepOutcome) -> None:
    if outcome.state != "finished" or outcome.counts.get("failed"):
        raise SystemExit(f"the sweep did not finish cleanly ({outcome.state}, {outcome.counts}); no figures")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="the trials' seeds start here (a held-out grid: 3)")
    p.add_argument(
        "--data-seed", type=int, default=0, help="the synthetic benchmarks' generation seed (a held-out draw: 1)"
    )
    p.add_argument("--keep", default=str(ROOT / ".cache" / "bench-es-full"), help="where the full grid is kept")
    p.add_argument(
        "--weights-root", help="pretrained tiny backbones (default: the shipped ones, copied to .cache/bench-weights)"
    )
    p.add_argument(
        "--settings",
        nargs="+",
        default=[
            SUGGESTED,
            "n1z3b0@0.5:0.125,0.5",
            f"n2z3p{WIDE_FIRST_RUNG}",
            "n1z3/b0@0.25/a0@0.5:0.125,0.375,0.75",
            "n1z3/m0.01z0@0.25/a0@0.5:0.125,0.375,0.75",
            "n1m0.05:0.125,0.5",
            "3",
        ],
        help="see Setting",
    )
    p.add_argument("--results", help="a finished full grid's sweep directory to replay instead of running one")
    p.add_argument(
        "--only-seeds",
        nargs="+",
        type=int,
        help="replay the grid's trials of these seeds only (the demo runs 2: what its seeds alone would decide)",
    )
    p.add_argument(
        "--against",
        help="another full grid (other seeds, another draw of the data): how much its answers differ from this "
        "one's, the yardstick for what early stopping changes",
    )
    p.add_argument("--live", action="store_true", help="also run a grid with early stopping on and off")
    p.add_argument("--live-grid", choices=("demo", "6-LR"), default="demo", help="the grid --live runs")
    p.add_argument("--keep-live", help="where --live keeps its full run's results (a grid to replay later)")
    args = p.parse_args()

    import ray

    demo_lrs = load_preset("demo").lrs
    settings = [Setting.parse(x) for x in args.settings]
    full_spec = grid_spec(args, lrs=SIX, setting=None)
    prepare(args, full_spec)
    work = Path(tempfile.mkdtemp(prefix="bench-es-"))
    os.environ["HOME"] = str(work / "home")  # Ray 2.60 writes an auth token under HOME
    try:
        if args.results:
            sweep = Path(args.results)
        else:
            ray.init(_temp_dir=str(work / "ray"), num_cpus=2, include_dashboard=False, log_to_driver=False)
            t0 = time.perf_counter()
            print(f"running the full grid: {full_spec.grid_size()} trials", flush=True)
            _finished(run_sweep(full_spec, "full", work / "results", verbose=0))
            print(f"full grid ran in {time.perf_counter() - t0:.0f} s wall", flush=True)
            sweep = work / "results" / "full"
            kept = Path(args.keep)
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(sweep, kept, ignore=shutil.ignore_patterns("tune"))
            print(f"(its results are kept in {kept}; --results {kept} replays them)", flush=True)
        trials, epochs = read_trials(sweep), read_epochs(sweep)
        if args.only_seeds:
            trials, epochs = of_seeds(trials, epochs, args.only_seeds)
        lines = []
        for label, lrs in (("6-LR grid", SIX), ("demo grid", demo_lrs)):
            t, e = subset(trials, epochs, lrs)
            full = figures(t, e, None)
            n_seeds = len(set(t.column("seed").to_pylist()))
            lines.append(f"{label}: {t.num_rows} trials, {n_seeds} seeds, {full_spec.epochs} epochs each")
            for setting in settings:
                es = grid_spec(args, lrs=lrs, setting=setting)
                stopped = figures(t, e, stop_epochs(es, t, e))
                at = replay_scheduler(es).rungs_for(full_spec.epochs or 1)
                lines.append(compare(f"  {setting.describe(at)}", full, stopped))
            lines += seed_left_out(t, e, full)
            if args.against:
                other = figures(*subset(read_trials(args.against), read_epochs(args.against), lrs), None)
                lines.append(f"  the full grid of {args.against} against this one: {agreement(full, other)}")

        if args.live:
            if not ray.is_initialized():
                ray.init(_temp_dir=str(work / "ray"), num_cpus=2, include_dashboard=False, log_to_driver=False)
            live_lrs = SIX if args.live_grid == "6-LR" else demo_lrs
            walls, driver_cpu = {}, {}
            for on in (False, True):
                spec = grid_spec(args, lrs=live_lrs, setting=settings[0] if on else None)
                t0, c0 = time.perf_counter(), _cpu_seconds()
                _finished(run_sweep(spec, f"live-{on}", work / "results", verbose=0))
                walls[on], driver_cpu[on] = time.perf_counter() - t0, _cpu_seconds() - c0
            if args.keep_live:
                shutil.rmtree(args.keep_live, ignore_errors=True)
                shutil.copytree(work / "results" / "live-False", args.keep_live, ignore=shutil.ignore_patterns("tune"))
            full_t, full_e = read_trials(work / "results" / "live-False"), read_epochs(work / "results" / "live-False")
            live_t, live_e = read_trials(work / "results" / "live-True"), read_epochs(work / "results" / "live-True")
            stopped = sum(1 for r in live_t.to_pylist() if r["status"] == TrialStatus.STOPPED)
            es = grid_spec(args, lrs=live_lrs, setting=settings[0])
            at = replay_scheduler(es).rungs_for(full_spec.epochs or 1)
            replayed = figures(full_t, full_e, stop_epochs(es, full_t, full_e))
            full, live = figures(full_t, full_e, None), figures(live_t, live_e, None)
            lines += [
                f"{args.live_grid} grid live, {args.seeds} seed(s), {settings[0].describe(at)}: "
                f"{walls[True]:.0f} s wall with early stopping ({stopped} trials stopped) against {walls[False]:.0f} s "
                f"without ({1 - walls[True] / walls[False]:.1%} saved, pausing and restoring included); the driver "
                f"process (Tune's controller, the results store) used {driver_cpu[True]:.0f} s of CPU against "
                f"{driver_cpu[False]:.0f} s",
                compare("  the early-stopped run against the full one", full, live),
                compare("  the full run's results replayed", full, replayed),
            ]
        print("\n".join(lines))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
