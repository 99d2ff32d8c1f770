"""The layer-gradient probe (PROTOCOL.md, "The layer-gradient probe"; the paper's Figure 2).

At the current (pretrained) weights and before any update, for each of the model's probe layers:
G_layer = (1/m) * sum_t ||g_layer(B_t)||_2 over minibatches B_1..B_m, with g the gradient of the mean
cross-entropy loss with respect to all of that layer's parameters, plus the two normalisations the paper shows
(by the layer's parameter norm and by the square root of its parameter count).

The forward pass runs in train mode, as the first fine-tuning step sees it; the catalog's models have only
LayerNorm/GroupNorm and no dropout, so this equals eval mode for them. Gradients come from
`torch.autograd.grad`, so no `.grad` is written, no optimizer runs, the weights stay bit-identical, and
buffers a train-mode forward could change (BatchNorm running statistics) are restored afterwards.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from worker.loading import load_model_and_data, resolve_device, seed_everything
from worker.models import BuiltModel
from worker.records import LayerGradient


def _norm(tensors: Sequence[torch.Tensor]) -> float:
    """The 2-norm of all tensors taken together, accumulated in float64."""
    total = sum(float(t.detach().double().pow(2).sum()) for t in tensors)
    return math.sqrt(total)


def layer_gradient_probe(
    built: BuiltModel,
    batches: Iterable[Sequence[torch.Tensor]],
    *,
    max_batches: int = 8,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """A `LayerGradient` row (as a dict) for every probe layer, input first; `batches` yields (images, labels, ...)."""
    if max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    module = built.module.to(device)
    params = dict(module.named_parameters())
    unknown = [n for layer in built.probe_layers for n in layer.param_names if n not in params]
    if unknown:
        raise ValueError(f"probe layers name parameters the model does not have: {unknown[:5]}")
    names = list(dict.fromkeys(n for layer in built.probe_layers for n in layer.param_names))
    tensors = [params[n] for n in names]
    index = {n: i for i, n in enumerate(names)}

    requires_grad = {n: p.requires_grad for n, p in params.items()}
    buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
    was_training = module.training
    sums = [0.0] * len(built.probe_layers)
    seen = 0
    try:
        for p in tensors:
            p.requires_grad_(True)
        module.train()
        for batch in itertools.islice(batches, max_batches):
            images, labels = batch[0].to(device), batch[1].to(device)
            loss = F.cross_entropy(module(images), labels)
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for j, layer in enumerate(built.probe_layers):
                sums[j] += _norm([grads[index[n]] for n in layer.param_names if grads[index[n]] is not None])
            seen += 1
    finally:
        for n, p in params.items():
            p.requires_grad_(requires_grad[n])
        with torch.no_grad():
            for n, b in module.named_buffers():
                b.copy_(buffers[n])
        module.train(was_training)
    if seen == 0:
        raise ValueError("the probe got no batches: the training split is empty")

    rows = []
    for j, layer in enumerate(built.probe_layers):
        grad_norm = sums[j] / seen
        param_norm = _norm([params[n] for n in layer.param_names])
        numel = sum(params[n].numel() for n in layer.param_names)
        row = LayerGradient(
            layer=layer.name,
            kind=layer.kind,
            depth=layer.depth,
            num_params=numel,
            grad_norm=grad_norm,
            param_norm=param_norm,
            grad_norm_over_param_norm=grad_norm / param_norm if param_norm > 0 else math.nan,
            grad_norm_over_sqrt_numel=grad_norm / math.sqrt(numel) if numel else math.nan,
            batches=seen,
        )
        rows.append(row.to_dict())
    return rows


def run_probe(
    model: str,
    dataset: str,
    *,
    data_root: str | Path,
    weights: str | None = None,
    weights_root: str | None = None,
    pretrained: bool = True,
    max_batches: int = 8,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """The probe of `model` on `dataset`'s training split, at the pretrained initialisation."""
    dev = resolve_device(device)
    seed_everything(seed)
    built, bundle = load_model_and_data(
        model,
        dataset,
        data_root=data_root,
        device=dev,
        seed=seed,
        weights=weights,
        weights_root=weights_root,
        pretrained=pretrained,
        max_train_images=max_batches * batch_size,
    )
    gen = torch.Generator()
    gen.manual_seed(seed)
    loader = DataLoader(bundle.train, batch_size=batch_size, shuffle=True, generator=gen)
    return layer_gradient_probe(built, loader, max_batches=max_batches, device=dev)
