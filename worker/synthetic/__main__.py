"""`python -m worker.synthetic --data-root DIR [--seed N] [--only KEY] [--force]`: write the synthetic benchmarks."""

from __future__ import annotations

import argparse
import sys
import time

from worker import catalog
from worker.synthetic.generate import generate_benchmark, read_manifest


def main(argv: list[str] | None = None) -> int:
    keys = catalog.list_datasets(synthetic=True)
    p = argparse.ArgumentParser(prog="python -m worker.synthetic", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--data-root", required=True, help="the data root; each benchmark goes to its catalog subfolder")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--only", choices=keys, help="write only this benchmark")
    p.add_argument("--n-train", type=int, default=None, help="ID training images (default: per benchmark)")
    p.add_argument("--n-eval", type=int, default=None, help="images per evaluation split (default: per benchmark)")
    p.add_argument("--force", action="store_true", help="rewrite even when an identical benchmark is there")
    args = p.parse_args(argv)
    for key in [args.only] if args.only else keys:
        t0 = time.perf_counter()
        try:
            root = generate_benchmark(
                key, args.data_root, seed=args.seed, n_train=args.n_train, n_eval=args.n_eval, force=args.force
            )
        except (ValueError, FileExistsError) as e:
            print(f"error: {key}: {e}", file=sys.stderr)
            return 2
        counts = (read_manifest(root) or {}).get("counts", {})
        summary = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"{key}: {root} ({summary}) in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
