"""`python -m worker`: run one trial (or the layer-gradient probe) and print one JSON line per epoch."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from worker import catalog
from worker.config import TrialConfig
from worker.records import EpochReport, TrialStatus


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option takes key=value (e.g. weight_decay=0.0), got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    p.add_argument("--model", required=True, help=f"one of: {', '.join(catalog.list_models())}")
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(catalog.list_datasets())}")
    p.add_argument("--method", help=f"one of: {', '.join(catalog.list_methods())} (not needed with --probe)")
    p.add_argument("--lr", type=float, help="learning rate (not needed with --probe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="default: the dataset's catalog epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-root", default="data")
    p.add_argument("--weights", help="a weights file (default: <weights root>/<catalog weights_file>)")
    p.add_argument("--weights-root", help="default: env SHIFTSWEEP_WEIGHTS")
    p.add_argument("--random-init", action="store_true", help="no pretrained weights (smoke tests only)")
    p.add_argument("--max-train-images", type=int)
    p.add_argument("--max-eval-images", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument(
        "--option",
        action="append",
        type=_parse_option,
        default=[],
        help="override a method option, key=value (repeatable)",
    )
    p.add_argument("--checkpoint-dir", type=Path, help="keep the latest epoch's checkpoint here")
    p.add_argument("--resume", type=Path, help="resume from a checkpoint directory written by --checkpoint-dir")
    p.add_argument("--probe", action="store_true", help="run the layer-gradient probe instead of training")
    p.add_argument("--probe-batches", type=int, default=8)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (catalog.CatalogError, FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from worker.probe import run_probe  # torch-heavy; imported after argument errors are out
    from worker.trial import run_trial

    if args.probe:
        rows = run_probe(
            args.model,
            args.dataset,
            data_root=args.data_root,
            weights=args.weights,
            weights_root=args.weights_root,
            pretrained=not args.random_init,
            max_batches=args.probe_batches,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
        )
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    if args.method is None or args.lr is None:
        print("error: --method and --lr are required unless --probe is given", file=sys.stderr)
        return 2
    config = TrialConfig(
        model=args.model,
        dataset=args.dataset,
        method=args.method,
        lr=args.lr,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        data_root=args.data_root,
        weights=args.weights,
        weights_root=args.weights_root,
        pretrained=not args.random_init,
        device=args.device,
        max_train_images=args.max_train_images,
        max_eval_images=args.max_eval_images,
        method_options=dict(args.option),
        threads=args.threads,
    )

    def report(epoch: EpochReport, checkpoint_dir: Path | None) -> None:
        print(json.dumps({"trial_id": config.trial_id(), **epoch.to_dict()}), flush=True)
        if args.checkpoint_dir is not None and checkpoint_dir is not None:
            shutil.rmtree(args.checkpoint_dir, ignore_errors=True)
            shutil.copytree(checkpoint_dir, args.checkpoint_dir)

    summary = run_trial(config, report, resume_from=args.resume)
    print(json.dumps({"summary": {"trial_id": config.trial_id(), **summary.to_dict()}}), flush=True)
    return 0 if summary.status in (TrialStatus.COMPLETED, TrialStatus.DIVERGED) else 1


if __name__ == "__main__":
    sys.exit(main())
