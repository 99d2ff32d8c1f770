"""Why the catalog's LARS uses trust coefficient 1.0 (timm's and the LARS paper's default is 0.001).

    python bench/lars_trust.py [--model tiny_vit]

The paper runs LARS and LAMB on AdamW's LR grid (3e-7 .. 1e-4). LARS scales each tensor's step to
`lr * trust * |w| / |g|`, so one step moves a tensor by `lr * trust` of its norm; LAMB has no trust coefficient
(it is 1) and moves each tensor by `lr` of its norm. This measures the first step's relative change
`|dw| / |w|` per tensor (median and largest) through the worker's own optimizer builder, from the same weights
and batch of the generated demo benchmark, for AdamW, LAMB, and LARS at trust 1.0 and 0.001, at the top, middle
and bottom of that grid.

The last lines say how far LARS at 0.001 moves the weights compared with LAMB at the same LR.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("OUTDATED_IGNORE", "1")

import torch  # noqa: E402

from worker import catalog  # noqa: E402
from worker.loading import load_model_and_data  # noqa: E402
from worker.methods import apply_trainable, build_optimizer, plan_phases  # noqa: E402
from worker.synthetic import generate_benchmark  # noqa: E402

DATA = Path(".cache/bench-data")
DATASET = "synth_style"
SETTINGS = [
    ("adamw", {}),
    ("lamb", {}),
    ("lars", {"trust_coefficient": 1.0}),
    ("lars", {"trust_coefficient": 0.001}),
]


def _label(method: str, options: dict) -> str:
    return f"{method} trust {options['trust_coefficient']:g}" if options else method


def first_step_changes(model: str, lr: float, method: str, options: dict) -> list[float]:
    """|dw| / |w| of every trained tensor after one step from the same weights and batch."""
    torch.manual_seed(0)
    built, bundle = load_model_and_data(
        model, DATASET, data_root=DATA, device=torch.device("cpu"), seed=0, pretrained=False, max_train_images=64
    )
    entry = catalog.get_method(method)
    phase = plan_phases(entry, 1, lr)[0]
    apply_trainable(built, phase)
    optimizer = build_optimizer(built, entry, phase, options)
    x = torch.stack([bundle.train[i][0] for i in range(32)])
    y = torch.tensor([bundle.train[i][1] for i in range(32)])
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    torch.nn.functional.cross_entropy(built.module(x), y).backward()
    optimizer.step()
    changes = []
    for n, p in built.module.named_parameters():
        w = before[n].norm().item()
        if w > 0:
            changes.append((p.detach() - before[n]).norm().item() / w)
    return changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny_vit")
    args = ap.parse_args()
    generate_benchmark(DATASET, DATA, n_train=512, n_eval=256)
    grid = catalog.get_method("adamw").lr_grid
    lrs = [max(grid), grid[len(grid) // 2], min(grid)]

    print(f"first step, {args.model} (random init), one batch of 32: |dw|/|w| per tensor, median and largest")
    print(f"{'optimizer':<22}" + "".join(f"{f'lr {lr:g}':>24}" for lr in lrs))
    medians: dict[str, float] = {}
    for method, options in SETTINGS:
        cells = []
        for lr in lrs:
            changes = first_step_changes(args.model, lr, method, options)
            cells.append(f"{statistics.median(changes):10.2e} / {max(changes):9.2e}")
            if lr == lrs[0]:
                medians[_label(method, options)] = statistics.median(changes)
        print(f"{_label(method, options):<22}" + "".join(f"{c:>24}" for c in cells))

    lamb, small, one = medians["lamb"], medians["lars trust 0.001"], medians["lars trust 1"]
    print(
        f"\nat lr {lrs[0]:g} LARS moves a tensor by a median {one:.2e} of its norm at trust 1.0, {small:.2e} at 0.001;"
    )
    print(
        f"LAMB on the same grid moves it by {lamb:.2e}: trust 1.0 is {one / lamb:.2f}x LAMB, 0.001 {small / lamb:.1e}x"
    )


if __name__ == "__main__":
    main()
