"""Regenerate docs/screenshots/: a finished sweep's report in headless Chromium at laptop and phone widths.

    python docs/make_screenshots.py                        # newest finished sweep under demo_out/results/
    python docs/make_screenshots.py --sweep-dir results/demo
    python docs/make_screenshots.py --build /tmp/shots     # first run a small real sweep of tiny models

`--build DIR` makes its own sweep, end to end with the real pieces and no Ray: the synthetic shift benchmarks in
the real datasets' layouts, the demo's shipped tiny backbones, every trial
fine-tuned by `worker.trial.run_trial` (each in its own process, two at a time, so that each peak memory is its
own) and the layer-gradient probe by `worker.trial.run_probe`, all written through `orchestrator.results`
exactly as a sweep writes them. It takes several minutes on two cores.
Needs Chromium (Debian's `/usr/bin/chromium`, or `--chromium PATH`) and the `playwright` package (dev extra).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT_DIR = REPO / "docs" / "screenshots"
VIEWPORTS = {"laptop": (1366, 900), "phone": (390, 844)}
# (file suffix, section to scroll to or None for the top, clip height in CSS pixels)
SHOTS = (
    ("top", None, None),
    ("lr-curves", "#lr-curves", 1100),
    ("layer-gradients", "#layer-gradients", 900),
    ("memory", "#memory", 1000),
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# the small real sweep of --build: demo-like, shrunk to a few minutes on two cores
BUILD_MODELS = ("tiny_vit", "tiny_convnext", "tiny_bit")
BUILD_DATASETS = ("synth_spurious", "synth_style")
BUILD_METHODS = {
    "sgd": (3e-3, 1e-2, 3e-2),
    "adamw": (3e-4, 1e-3, 3e-3),
    "sgd_freeze_embed": (3e-3, 1e-2, 3e-2),
    "sgd_freeze_embed_nomom": (3e-3, 1e-2, 3e-2),
}
BUILD_EPOCHS, BUILD_TRAIN, BUILD_EVAL = 4, 256, 256


def newest_demo_sweep() -> Path | None:
    """The most recently written sweep under demo_out/results/ whose trials have all ended, if any."""
    from orchestrator import read_trials
    from worker.selection import sweep_progress

    candidates = sorted(
        (p.parent for p in (REPO / "demo_out" / "results").glob("*/trials.parquet")),
        key=lambda p: (p / "trials.parquet").stat().st_mtime,
        reverse=True,
    )
    for d in candidates:
        prog = sweep_progress(read_trials(d).to_pylist())
        if prog.total and prog.ended == prog.total:
            return d
    return None


def run_one_trial(config: dict) -> tuple[list, str | None]:
    """One trial, run in a worker process: its epoch reports, and its error if it failed (a result too)."""
    import torch

    from worker.config import TrialConfig
    from worker.trial import run_trial

    torch.set_num_threads(1)
    reports: list = []
    try:
        run_trial(TrialConfig.from_dict(config), lambda report, _ckpt: reports.append(report))
    except Exception as exc:
        return reports, f"{type(exc).__name__}: {exc}"
    return reports, None


def build_sweep(root: Path, sweep_id: str = "screenshots") -> Path:
    """Run the small real sweep described in the module docstring; returns its results directory."""
    import torch

    from orchestrator import ResultsStore, probe_table, write_probe
    from worker.config import TrialConfig
    from worker.probe import run_probe
    from worker.shipped_backbones import install
    from worker.synthetic import generate_benchmark

    torch.set_num_threads(1)
    data_root, weights_root, results = root / "data", root / "weights", root / "results" / sweep_id
    for key in BUILD_DATASETS:
        generate_benchmark(key, data_root, n_train=BUILD_TRAIN, n_eval=BUILD_EVAL)
    for key in BUILD_MODELS:
        res = install(key, weights_root)
        print(f"shipped {key}: source val acc {res.val_acc:.3f}", flush=True)
    common = dict(
        epochs=BUILD_EPOCHS,
        data_root=str(data_root),
        weights_root=str(weights_root),
        device="cpu",
        max_train_images=BUILD_TRAIN,
        max_eval_images=BUILD_EVAL,
        threads=1,
    )
    configs = [
        TrialConfig(model=m, dataset=d, method=x, lr=lr, seed=0, **common)
        for m in BUILD_MODELS
        for d in BUILD_DATASETS
        for x, lrs in BUILD_METHODS.items()
        for lr in lrs
    ]
    store = ResultsStore(results, sweep_id, configs, flush_interval_s=5.0)
    probes = [
        probe_table(
            sweep_id,
            m,
            d,
            run_probe(m, d, data_root=data_root, weights_root=str(weights_root), max_batches=4, device="cpu"),
        )
        for m in BUILD_MODELS
        for d in BUILD_DATASETS
    ]
    write_probe(results, probes)
    t0 = time.perf_counter()
    # every trial in a fresh process, as Ray runs them, so each one's peak memory is its own; two at a time
    with multiprocessing.get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        outcomes = pool.imap(run_one_trial, [c.to_dict() for c in configs])
        for i, (config, (reports, error)) in enumerate(zip(configs, outcomes, strict=True), start=1):
            tid = config.trial_id()
            store.start(tid)
            for report in reports:
                store.record_epoch(tid, report)
            store.finish(tid, error=error)
            store.maybe_flush()
            print(f"trial {i}/{len(configs)} {tid}: {store.status(tid)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    store.flush()
    return results


def take_screenshots(sweep_dir: Path, out_dir: Path, chromium: str) -> list[Path]:
    """Render the final report and save the SHOTS at every viewport as PNG files."""
    from playwright.sync_api import sync_playwright

    from analysis.report import render_report

    html = render_report(sweep_dir, sweep_id=sweep_dir.name, state="completed", dashboard_url=None, live=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        page_file = Path(tmp) / "report.html"
        page_file.write_text(html, encoding="utf-8")
        for name, (width, height) in VIEWPORTS.items():
            profile = Path(tmp) / f"profile-{name}"
            ctx = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height},
                device_scale_factor=1,
                is_mobile=name == "phone",
                has_touch=name == "phone",
            )
            page = ctx.new_page()
            page.goto(page_file.as_uri())
            for suffix, selector, clip_h in SHOTS:
                path = out_dir / f"report-{name}-{suffix}.png"
                if selector is None:
                    page.screenshot(path=str(path))
                else:
                    box = page.locator(selector).bounding_box()
                    clip = {"x": 0, "y": box["y"], "width": width, "height": min(box["height"], clip_h)}
                    page.screenshot(path=str(path), full_page=True, clip=clip)
                written.append(path)
            ctx.close()
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--sweep-dir", type=Path, help="a finished sweep's results directory (its Parquet files)")
    src.add_argument("--build", type=Path, metavar="DIR", help="run a small real sweep under DIR first")
    p.add_argument("--out", type=Path, default=OUT_DIR, help=f"where the PNG files go (default {OUT_DIR})")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not Path(args.chromium).exists():
        print(f"error: no Chromium at {args.chromium}; install Debian's chromium or pass --chromium", file=sys.stderr)
        return 2
    if args.build:
        sweep_dir = build_sweep(args.build.resolve())
    else:
        sweep_dir = args.sweep_dir or newest_demo_sweep()
        if sweep_dir is None:
            print("error: no finished sweep under demo_out/results/; pass --sweep-dir or --build DIR", file=sys.stderr)
            return 2
    for path in take_screenshots(sweep_dir.resolve(), args.out, args.chromium):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
