"""Optimizers of the catalog's methods, built over exactly the parameters a phase trains.

Frozen parameters are never handed to the optimizer, so they hold no state. Parameter groups: the main
group first (its LR is the one reported), then the embedding layer when the method scales its LR, then the
head when the optimizer treats it apart (SPD, which has no pretrained value to pull the head towards).
Each group carries `base_lr`, which the schedules scale.

LARS and LAMB are timm's. Both are run with `always_adapt=True`, so that the layer-wise trust ratio applies
to every tensor as in the papers (timm otherwise skips it when weight decay is 0), and LAMB without timm's
default global gradient clipping, which the LAMB paper does not have. timm's LARS multiplies the LR outside
the momentum buffer (PyTorch SGD's convention) where the LARS paper multiplies it inside: the same update
while the LR is constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from timm.optim import Lamb, Lars

from worker.catalog import MethodEntry
from worker.method_options import resolve_options
from worker.methods.phases import BuiltModelLike, Phase
from worker.methods.spd import AdamSPD
from worker.methods.unfreeze import ever_trainable_names


def _param_groups(built: BuiltModelLike, method: MethodEntry, phase: Phase) -> list[dict[str, Any]]:
    if phase.schedule == "gradual_unfreeze":
        # every parameter the phase will ever open; the ones still frozen get no gradient, hence no state
        chosen = ever_trainable_names(built, phase)
    else:
        chosen = {n for n, p in built.module.named_parameters() if p.requires_grad}
    if not chosen:
        raise ValueError(f"method {method.key!r}, phase {phase.name!r}: no parameter is trainable")
    split_embed = method.embed_lr_mult != 1.0
    split_head = method.optimizer == "adam_spd"
    main: list[torch.nn.Parameter] = []
    embed: list[torch.nn.Parameter] = []
    head: list[torch.nn.Parameter] = []
    for name, p in built.module.named_parameters():
        if name not in chosen:
            continue
        if split_head and name in built.head_param_names:
            head.append(p)
        elif split_embed and name in built.embed_param_names:
            embed.append(p)
        else:
            main.append(p)
    groups = [
        {"name": "main", "params": main, "base_lr": phase.lr},
        {"name": "embed", "params": embed, "base_lr": phase.lr * method.embed_lr_mult},
        {"name": "head", "params": head, "base_lr": phase.lr, "spd": False},
    ]
    out = [g for g in groups if g["params"]]
    for g in out:
        g["lr"] = g["base_lr"]
    return out


def build_optimizer(
    built: BuiltModelLike, method: MethodEntry, phase: Phase, options: Mapping[str, Any] | None = None
) -> torch.optim.Optimizer:
    """The method's optimizer over the phase's trainable parameters, with `options` overriding the catalog's."""
    kwargs = resolve_options(method.key, method.optimizer, method.options, options)
    groups = _param_groups(built, method, phase)
    if method.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=phase.lr, **kwargs)
    if method.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=phase.lr, **kwargs)
    if method.optimizer == "lars":
        return Lars(groups, lr=phase.lr, always_adapt=True, **kwargs)
    if method.optimizer == "lamb":
        kwargs.setdefault("max_grad_norm", None)
        return Lamb(groups, lr=phase.lr, always_adapt=True, **kwargs)
    if method.optimizer == "adam_spd":
        return AdamSPD(groups, lr=phase.lr, **kwargs)
    raise ValueError(f"method {method.key!r}: {method.optimizer!r} is not a gradient optimizer (it has no phases)")


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by every tensor in the optimizer's per-parameter state (moments, momentum, SPD anchors)."""

    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.nbytes
        if isinstance(value, dict):
            return sum(size(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        return 0

    return sum(size(state) for state in optimizer.state.values())
