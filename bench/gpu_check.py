"""The GPU path measured: throughput through the trial loop and a plain loop, the share of the bf16 peak, the
paper's Table 4 rebuilt, and a 2-trial Ray Tune sweep with its Parquet rows checked.

    python bench/gpu_check.py               # one CUDA GPU: the whole check, random-init weights (< 8 min on an H100)
    python bench/gpu_check.py --reduced     # no GPU: tiny models and few steps, the same code paths

1. Throughput at batch 32 of ViT-B/16 and ConvNeXt-B (`vit_b16_in21k`, `convnext_b_in22k`, random init), in fp32
   and bf16: the trial loop (`worker.trial.run_trial`, one epoch of the generated demo benchmark upsampled to
   224 px, its own `train_images_per_s`), a plain loop over the same loader (ratio trial / plain), and a plain
   loop on random tensors already on the GPU (the model alone). ViT-B/16 is about 17.6 GMACs per image forward,
   so about 106 GFLOP per image for forward and backward; ConvNeXt-B 15.4 GMACs, about 92 GFLOP. The model-alone
   figure in bf16 is also shown as a share of the card's dense bf16 peak.
2. Table 4: peak CUDA memory of one training step at micro-batch 1 in fp32 for SGD, AdamW, SGD freeze-embed and
   SGD freeze-embed without momentum on CLIP ViT-B/16, ViT-L/14 and OpenCLIP ViT-H/14, through the worker's own
   freezing and optimizers, with AdamW's overhead beside the paper's (B/16: +16% / +36% over SGD freeze-embed
   with / without momentum; L/14: +18% / +48%; H/14: AdamW did not fit the paper's GPU).
3. A 2-trial sweep through Ray Tune on the GPU (`orchestrator.driver.run_sweep`), its trials.parquet and
   epochs.parquet rows checked; skipped, saying so, where Ray is not installed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OUTDATED_IGNORE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from worker import catalog  # noqa: E402
from worker.config import TrialConfig  # noqa: E402
from worker.loading import load_model_and_data  # noqa: E402
from worker.methods import apply_trainable, build_optimizer, plan_phases  # noqa: E402
from worker.models import create_model  # noqa: E402
from worker.precision import autocast_for
from worker.synthetic import generate_benchmark  # noqa: E402
from worker.trial import run_trial  # noqa: E402

DATASET = "synth_style"
GFLOP_PER_IMAGE = {"vit_b16_in21k": 106.0, "convnext_b_in22k": 92.0, "tiny_vit": None, "tiny_convnext": None}
BF16_DENSE_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
PAPER_ADAMW_OVER = {
    "clip_vit_b16": {"sgd_freeze_embed": "+16%", "sgd_freeze_embed_nomom": "+36%"},
    "clip_vit_l14": {"sgd_freeze_embed": "+18%", "sgd_freeze_embed_nomom": "+48%"},
    "clip_vit_h14": {"sgd_freeze_embed": "OOM", "sgd_freeze_embed_nomom": "OOM"},
}
TABLE4_METHODS = ("sgd", "adamw", "sgd_freeze_embed", "sgd_freeze_embed_nomom")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sgd_step_fn(model: torch.nn.Module, precision: str, device: torch.device, channels_last: bool) -> Callable:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, precision):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _timed(step: Callable, batches: Callable, steps: int, warmup: int, device: torch.device) -> float:
    """Images per second over `steps` steps after `warmup` untimed ones."""
    it = batches()
    for _ in range(warmup):
        step(*next(it))
    _sync(device)
    t0, seen = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(it)
        step(x, y)
        seen += y.shape[0]
    _sync(device)
    return seen / (time.perf_counter() - t0)


def throughput(model_key: str, precision: str, device: torch.device, data_root: Path, args) -> dict[str, float]:
    """Trial loop, plain loop over the same loader, and plain loop on random GPU tensors, in images/s."""
    n_train = args.batch * (args.steps + args.warmup)
    config = TrialConfig(
        model=model_key,
        dataset=DATASET,
        method="sgd",
        lr=1e-4,
        epochs=2,  # the second epoch's rate: the first pays for loader workers and kernel selection
        batch_size=args.batch,
        data_root=str(data_root),
        pretrained=False,
        max_train_images=n_train,
        max_eval_images=args.batch,
        device=device.type,
        num_workers=args.workers,
        precision=precision,
    )
    reports = []
    run_trial(config, lambda r, _ckpt: reports.append(r))
    trial_ips = reports[-1].train_images_per_s

    torch.manual_seed(0)
    built, bundle = load_model_and_data(
        model_key, DATASET, data_root=data_root, device=device, seed=0, pretrained=False, max_train_images=n_train
    )
    channels_last = device.type == "cuda" and built.family in ("convnext", "resnetv2")
    if channels_last:
        built.module.to(memory_format=torch.channels_last)
    built.module.train()
    step = _sgd_step_fn(built.module, precision, device, channels_last)
    loader = DataLoader(
        bundle.train,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )

    def from_loader():
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    plain_ips = _timed(step, from_loader, args.steps, args.warmup, device)
    size = built.input_size
    x = torch.randn(args.batch, 3, size, size, device=device)
    y = torch.randint(0, bundle.num_classes, (args.batch,), device=device)

    def tensors():
        while True:
            yield x, y

    model_ips = _timed(step, tensors, args.steps, args.warmup, device)
    del built, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"trial": trial_ips, "plain": plain_ips, "model": model_ips}


def _peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "CPU", None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_DENSE_PEAK_TFLOPS.items():
        if key in name:
            return name, peak
    return name, None


def table4_peak(model_key: str, method_key: str, device: torch.device, built) -> tuple[int, int]:
    """(peak bytes, optimizer-state bytes) of two fp32 training steps at micro-batch 1 (the second holds the state)."""
    from worker.methods import optimizer_state_bytes

    method = catalog.get_method(method_key)
    phase = plan_phases(method, 1, method.lr_grid[0])[0]
    apply_trainable(built, phase)
    opt = build_optimizer(built, method, phase)
    size = built.input_size
    x = torch.randn(1, 3, size, size, device=device)
    y = torch.zeros(1, dtype=torch.long, device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        torch.nn.functional.cross_entropy(built.module(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    state = optimizer_state_bytes(opt)
    del opt
    return peak, state


def table4(models: list[str], device: torch.device) -> None:
    print("\n== Table 4: one fp32 training step at micro-batch 1 (random init), peak CUDA memory")
    print(f"{'model':<14}{'method':<26}{'peak MiB':>10}{'state MiB':>11}   AdamW more (ours / paper)")
    for model_key in models:
        try:
            built = create_model(model_key, 10, pretrained=False, device=device)
        except Exception as e:  # noqa: BLE001 - a missing library or memory: say which and go on
            print(f"{model_key:<14}could not be built: {type(e).__name__}: {str(e)[:100]}")
            continue
        built.module.train()
        peaks: dict[str, int] = {}
        for method_key in TABLE4_METHODS:
            try:
                peak, state = table4_peak(model_key, method_key, device, built)
            except torch.OutOfMemoryError:
                print(f"{model_key:<14}{method_key:<26}{'OOM':>10}")
                continue
            peaks[method_key] = peak
            shown = f"{peak / 2**20:>10.0f}" if device.type == "cuda" else f"{'(no CUDA)':>10}"
            print(f"{model_key:<14}{method_key:<26}{shown}{state / 2**20:>11.2f}")
        adamw = peaks.get("adamw")
        for other in ("sgd_freeze_embed", "sgd_freeze_embed_nomom"):
            mine = peaks.get(other)
            ours = f"{100 * (adamw / mine - 1):+.0f}%" if adamw and mine else "n/a"
            paper = PAPER_ADAMW_OVER.get(model_key, {}).get(other, "n/a")
            print(f"{'':<14}AdamW over {other:<26} ours {ours:>6}   paper {paper}")
        del built
        if device.type == "cuda":
            torch.cuda.empty_cache()


def ray_sweep(data_root: Path, device: torch.device, model_key: str) -> None:
    print("\n== a 2-trial sweep through Ray Tune")
    try:
        import ray  # noqa: F401

        from orchestrator.driver import run_sweep
        from orchestrator.results import read_epochs, read_trials
        from orchestrator.spec import load_spec
    except ImportError as e:
        print(f"skipped: {e} (install the project, ray[tune] included, to run it)")
        return
    gpus = 1 if device.type == "cuda" else 0
    spec = load_spec(
        {
            "models": [model_key],
            "datasets": [DATASET],
            "methods": ["sgd"],
            "lrs": {"sgd": [1e-3, 1e-2]},
            "epochs": 2,
            "batch_size": 32,
            "max_train_images": 128,
            "max_eval_images": 64,
            "pretrained": False,
            "data_root": str(data_root),
            "resources": {"cpus": 1, "gpus": gpus},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        import ray as ray_module

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster: no token in the user's HOME
        ray_module.init(num_cpus=4, num_gpus=gpus, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
        try:
            t0 = time.perf_counter()
            out = run_sweep(spec, "gpu-check", Path(tmp) / "results", verbose=0)
            trials = read_trials(Path(tmp) / "results" / "gpu-check").to_pylist()
            epochs = read_epochs(Path(tmp) / "results" / "gpu-check").num_rows
        finally:
            ray_module.shutdown()
    ok = out.state == "finished" and len(trials) == 2 and epochs == 4
    ok = ok and all(t["status"] == "completed" and t["id_val"] is not None for t in trials)
    print(f"state {out.state}, {len(trials)} trial rows, {epochs} epoch rows, {time.perf_counter() - t0:.1f} s")
    print("rows check: " + ("ok" if ok else f"FAILED {trials}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reduced", action="store_true", help="no GPU: tiny models and a few steps")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "table4", "ray"])
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.reduced else "cpu")
    reduced = args.reduced or device.type == "cpu"
    args.steps = args.steps or (3 if reduced else 30)
    args.warmup = args.warmup or (1 if reduced else 5)
    args.workers = args.workers if args.workers is not None else (0 if reduced else min(8, os.cpu_count() or 1))
    throughput_models = ["tiny_vit", "tiny_convnext"] if reduced else ["vit_b16_in21k", "convnext_b_in22k"]
    table4_models = ["tiny_clip_vit"] if reduced else ["clip_vit_b16", "clip_vit_l14", "clip_vit_h14"]
    name, peak = _peak_tflops(device)
    print(f"device: {name}; torch {torch.__version__}; {'reduced (CPU) mode' if reduced else 'full mode'}")

    data_root = Path(tempfile.mkdtemp(prefix="gpu-check-data-"))
    generate_benchmark(DATASET, data_root, n_train=max(256, args.batch * (args.steps + args.warmup)), n_eval=64)
    t_start = time.perf_counter()
    if "throughput" not in args.skip:
        print(f"\n== throughput at batch {args.batch}, images/s ({args.steps} timed steps after {args.warmup})")
        print(
            f"{'model':<18}{'precision':<10}{'trial loop':>11}{'plain loop':>11}{'ratio':>7}{'model only':>12}"
            f"{'TFLOPS':>8}{'of peak':>9}"
        )
        for model_key in throughput_models:
            for precision in ("fp32", "bf16"):
                r = throughput(model_key, precision, device, data_root, args)
                gflop = GFLOP_PER_IMAGE.get(model_key)
                tflops = r["model"] * gflop / 1e3 if gflop else None
                share = f"{100 * tflops / peak:.0f}%" if tflops and peak and precision == "bf16" else ""
                tf = f"{tflops:.0f}" if tflops else ""
                print(
                    f"{model_key:<18}{precision:<10}{r['trial']:>11.1f}{r['plain']:>11.1f}"
                    f"{r['trial'] / r['plain']:>7.2f}{r['model']:>12.1f}{tf:>8}{share:>9}"
                )
    if "table4" not in args.skip:
        table4(table4_models, device)
    if "ray" not in args.skip:
        ray_sweep(data_root, device, throughput_models[0])
    print(f"\ngpu check done in {time.perf_counter() - t_start:.0f} s on {name}")


if __name__ == "__main__":
    main()
