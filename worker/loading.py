"""What a trial and the probe both start from: a device, seeded generators, a model and its dataset."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from worker import catalog
from worker.config import TrialConfig
from worker.data import DatasetBundle, load_dataset
from worker.memory import reset_peak_memory
from worker.models import BuiltModel, create_model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_model_and_data(
    model: str,
    dataset: str,
    *,
    data_root: str | Path,
    device: torch.device,
    seed: int,
    weights: str | None = None,
    weights_root: str | None = None,
    pretrained: bool = True,
    max_train_images: int | None = None,
    max_eval_images: int | None = None,
) -> tuple[BuiltModel, DatasetBundle]:
    """The catalog model with a head for the dataset's classes, and the dataset in that model's transforms."""
    dset = catalog.get_dataset(dataset)
    built = create_model(
        model, dset.num_classes, weights=weights, weights_root=weights_root, pretrained=pretrained, device=device
    )
    bundle = load_dataset(
        dataset,
        data_root,
        input_size=built.input_size,
        mean=built.mean,
        std=built.std,
        max_train_images=max_train_images,
        max_eval_images=max_eval_images,
        seed=seed,
    )
    return built, bundle


def start_trial(config: TrialConfig) -> tuple[torch.device, BuiltModel, DatasetBundle]:
    """A trial's start, whatever trains it: its device and threads, seeded generators, a fresh memory peak, and
    the model and data its config names (the seed also picks the data subsets and a random init)."""
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    reset_peak_memory(device)
    built, bundle = load_model_and_data(
        config.model,
        config.dataset,
        data_root=config.data_root,
        device=device,
        seed=config.seed,
        weights=config.weights,
        weights_root=config.weights_root,
        pretrained=config.pretrained,
        max_train_images=config.max_train_images,
        max_eval_images=config.max_eval_images,
    )
    return device, built, bundle
