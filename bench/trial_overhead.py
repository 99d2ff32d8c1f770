"""Training throughput of the trial loop against a minimal plain PyTorch loop, same model and data, one run.

    python bench/trial_overhead.py [--model tiny_convnext] [--dataset synth_style] [--rounds 3]

Both loops train the same tiny model on the same synthetic benchmark (generated on first use under
.cache/bench-data) with the same batch size; evaluation is excluded from the trial loop's figure (it reports
training time separately). Rounds alternate plain and trial runs so that machine noise hits both alike; the
median images/s of each is compared. The ratio (trial / plain) is printed last; the target is >= 0.95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OUTDATED_IGNORE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from worker.config import TrialConfig  # noqa: E402
from worker.loading import load_model_and_data  # noqa: E402
from worker.synthetic import generate_benchmark  # noqa: E402
from worker.trial import run_trial  # noqa: E402


def plain_loop(model_key: str, dataset_key: str, data_root: Path, epochs: int, batch_size: int, n_train: int) -> float:
    """The shortest honest loop: SGD with momentum, cross-entropy, no evaluation. Returns images/s."""
    torch.manual_seed(0)
    built, bundle = load_model_and_data(
        model_key,
        dataset_key,
        data_root=data_root,
        device=torch.device("cpu"),
        seed=0,
        pretrained=False,
        max_train_images=n_train,
        max_eval_images=8,
    )
    loader = DataLoader(bundle.train, batch_size=batch_size, shuffle=True)
    model = built.module
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    rates = []
    for _ in range(epochs):
        model.train()
        seen, t0 = 0, time.perf_counter()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            seen += y.shape[0]
        rates.append(seen / (time.perf_counter() - t0))
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def trial_loop(model_key: str, dataset_key: str, data_root: Path, epochs: int, batch_size: int, n_train: int) -> float:
    rates: list[float] = []
    config = TrialConfig(
        model=model_key,
        dataset=dataset_key,
        method="sgd",
        lr=1e-3,
        epochs=epochs,
        batch_size=batch_size,
        data_root=str(data_root),
        pretrained=False,
        max_train_images=n_train,
        max_eval_images=8,
        device="cpu",
    )
    run_trial(config, lambda report, _c: rates.append(report.train_images_per_s))
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny_convnext")
    p.add_argument("--dataset", default="synth_style")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-images", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", type=Path, default=Path(".cache/bench-data"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    generate_benchmark(args.dataset, args.data_root)
    plain, trial = [], []
    for r in range(args.rounds):
        plain.append(
            plain_loop(args.model, args.dataset, args.data_root, args.epochs, args.batch_size, args.train_images)
        )
        trial.append(
            trial_loop(args.model, args.dataset, args.data_root, args.epochs, args.batch_size, args.train_images)
        )
        print(f"round {r + 1}: plain {plain[-1]:.1f} img/s, trial {trial[-1]:.1f} img/s")
    p_med, t_med = statistics.median(plain), statistics.median(trial)
    print(f"model={args.model} dataset={args.dataset} batch={args.batch_size} threads={args.threads}")
    print(f"plain loop median: {p_med:.1f} img/s")
    print(f"trial loop median: {t_med:.1f} img/s")
    print(f"ratio trial/plain: {t_med / p_med:.3f}")


if __name__ == "__main__":
    main()
