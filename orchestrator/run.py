"""`python -m orchestrator.run`: the entry point a Ray Job runs for one sweep.

    python -m orchestrator.run --spec configs/sweeps/demo.yaml --sweep-id demo-1 --storage results
    python -m orchestrator.run --sweep-id demo-1 --storage results --resume      # continue where it stopped
    python -m orchestrator.run --spec grown.yaml --sweep-id demo-1 --storage results --extend  # add to its grid

Exit status: 0 finished, 1 failed, 2 bad arguments or spec, 130 cancelled (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from orchestrator.driver import SweepExistsError, SweepFailedError, run_sweep
from orchestrator.spec import SweepSpecError, load_spec
from orchestrator.tune_runner import DEFAULT_TRIAL_FN

EXIT_CODES = {"finished": 0, "failed": 1, "cancelled": 130}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.run", description="Run or resume one sweep on Ray Tune.")
    p.add_argument("--spec", help="sweep spec YAML; optional with --resume (the stored spec.yaml is used)")
    p.add_argument("--sweep-id", required=True, help="names the sweep's directory under --storage")
    p.add_argument("--storage", required=True, help="results root: a directory or a URI such as s3://bucket/prefix")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep with the same id and storage")
    p.add_argument(
        "--extend",
        action="store_true",
        help="with --spec: grow the stored sweep to this spec (more seeds, LRs, models, datasets or methods); "
        "only trials not yet done run, into the same result files. With the stored spec it is a resume",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no Tune progress tables")
    p.add_argument(
        "--trial-fn",
        default=DEFAULT_TRIAL_FN,
        help="the trial function, 'module:function' with worker.trial.run_trial's signature (default: %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.spec is None and not args.resume:
        parser.error("--spec is required unless --resume is given")
    if args.extend and args.spec is None:
        parser.error("--extend needs --spec: the grown spec")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OUTDATED_IGNORE", "1")  # wilds otherwise asks PyPI for its latest version at import
    try:
        spec = load_spec(args.spec) if args.spec else None
        outcome = run_sweep(
            spec,
            args.sweep_id,
            args.storage,
            resume=args.resume,
            extend=args.extend,
            address=args.address,
            verbose=0 if args.quiet else 1,
            trial_fn=args.trial_fn,
        )
    except SweepSpecError as e:
        print(f"error: invalid sweep spec: {e}", file=sys.stderr)
        return 2
    except (SweepExistsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SweepFailedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items() if v)
    print(f"sweep {args.sweep_id}: {outcome.state} ({counts}); results in {outcome.sweep_dir}", flush=True)
    return EXIT_CODES[outcome.state]


if __name__ == "__main__":
    sys.exit(main())
