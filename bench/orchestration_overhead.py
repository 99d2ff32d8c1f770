"""What running trials through the orchestrator costs: the same short trials through a local Ray Tune sweep
(one at a time) and back to back in one plain process.

    python bench/orchestration_overhead.py [--trials 6] [--epochs 1 4] [--model tiny_vit] [--dataset synth_style]

Each trial is a real `worker.trial.run_trial` on a tiny random-init model and a small synthetic benchmark
(generated on first use under .cache/bench-data). The plain process imports the worker once and calls
run_trial with a no-op report. In the sweep, trials run one at a time; each trial's wall time is the gap
between its last epoch result and the previous trial's, as the driver received them. Printed:
- once per sweep: from the driver's start to the first trial's end, less one plain trial (the worker process
  starts and imports torch and the model libraries; Tune sets up);
- per trial: the median over the later trials of (wall time - plain time per trial): Tune's scheduling, the
  copy of every epoch's checkpoint to storage, the driver's Parquet writes;
- per epoch: the change of the per-trial figure between the two epoch counts;
then extrapolated to 1-minute trials. Ray's own start (once per cluster) is printed apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OUTDATED_IGNORE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from orchestrator.driver import run_sweep  # noqa: E402
from orchestrator.results import read_epochs  # noqa: E402
from orchestrator.spec import SweepSpec, load_spec  # noqa: E402
from worker.config import TrialConfig  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-data"
LRS = [1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2]


def sweep_spec(args: argparse.Namespace, epochs: int) -> SweepSpec:
    return load_spec(
        {
            "models": [args.model],
            "datasets": [args.dataset],
            "methods": ["sgd"],
            "lrs": {"sgd": LRS[: args.trials]},
            "epochs": epochs,
            "max_train_images": args.train_images,
            "max_eval_images": args.eval_images,
            "pretrained": False,
            "data_root": str(CACHE),
            "threads_per_trial": 1,
            "max_concurrent_trials": 1,
            "resources": {"cpus": 1, "gpus": 0},
        }
    )


def plain_seconds(spec: SweepSpec) -> float:
    """The same trials back to back in this process (worker imported once, before timing)."""
    from worker.trial import run_trial

    trials = [TrialConfig.from_dict({**t.to_dict(), "device": "cpu", "threads": 1}) for t in spec.expand()]
    t0 = time.perf_counter()
    for t in trials:
        run_trial(t, lambda report, checkpoint_dir: None)
    return time.perf_counter() - t0


def sweep_timeline(spec: SweepSpec, storage: Path, sweep_id: str) -> tuple[float, list[float]]:
    """Seconds from the driver's start to the first trial's end, and the wall time of each later trial."""
    t0 = time.time()
    out = run_sweep(spec, sweep_id, storage, verbose=0)
    if out.state != "finished" or out.counts["completed"] != spec.grid_size():
        raise RuntimeError(f"the sweep did not complete every trial: {out}")
    ends: dict[str, float] = {}
    for r in read_epochs(storage / sweep_id).to_pylist():
        ends[r["trial_id"]] = max(ends.get(r["trial_id"], 0.0), r["reported_at"].timestamp())
    done = sorted(ends.values())
    return done[0] - t0, [b - a for a, b in zip(done, done[1:], strict=False)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=6, choices=range(3, len(LRS) + 1))
    p.add_argument("--epochs", type=int, nargs=2, default=[1, 4], help="two epoch counts (per-trial vs per-epoch)")
    p.add_argument("--model", default="tiny_vit")
    p.add_argument("--dataset", default="synth_style")
    p.add_argument("--train-images", type=int, default=128)
    p.add_argument("--eval-images", type=int, default=64)
    args = p.parse_args()

    import ray
    import torch

    from worker.synthetic import generate_benchmark

    torch.set_num_threads(1)
    generate_benchmark(args.dataset, CACHE, seed=0)
    work = Path(tempfile.mkdtemp(prefix="bench-orch-"))
    os.environ["HOME"] = str(work / "home")  # Ray 2.60 writes an auth token under HOME
    rows = []
    try:
        t0 = time.perf_counter()
        ray.init(_temp_dir=str(work / "ray"), num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        for epochs in args.epochs:
            spec = sweep_spec(args, epochs)
            plain = plain_seconds(spec) / args.trials
            first, walls = sweep_timeline(spec, work / "results", f"overhead-e{epochs}")
            rows.append((epochs, plain, first - plain, statistics.median(walls) - plain))
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.trials} trials of {args.model} on {args.dataset}, {args.train_images} train images, one at a time")
    print(f"local Ray start (once per cluster): {ray_start:.1f} s")
    print("epochs  plain s/trial  once per sweep s  overhead s/trial  overhead / trial time")
    for epochs, plain, once, per_trial in rows:
        print(f"{epochs:>6}  {plain:>13.2f}  {once:>16.1f}  {per_trial:>16.2f}  {per_trial / plain:>21.0%}")
    (e1, _, _, o1), (e2, _, _, o2) = rows
    per_epoch = max(0.0, (o2 - o1) / (e2 - e1))
    fixed = max(0.0, o1 - per_epoch * e1)
    print(f"fit: {fixed:.2f} s per trial + {per_epoch:.3f} s per epoch (tiny checkpoints; negative slopes read as 0)")
    for epochs in (5, 20):
        over = fixed + per_epoch * epochs
        print(f"a 60 s trial of {epochs} epochs: {over:.2f} s overhead per trial = {over / 60:.1%} of its time")


if __name__ == "__main__":
    main()
