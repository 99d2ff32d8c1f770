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

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from timm.optim import Lamb, Lars

from worker.catalog import MethodEntry
from worker.methods.phases import BuiltModelLike, Phase
from worker.methods.spd import AdamSPD
from worker.methods.unfreeze import ever_trainable_names


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"option {name!r} must be a finite number, got {value!r}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    v = _number(name, value)
    if v < 0:
        raise ValueError(f"option {name!r} must be >= 0, got {value!r}")
    return v


def _positive(name: str, value: Any) -> float:
    v = _number(name, value)
    if v <= 0:
        raise ValueError(f"option {name!r} must be > 0, got {value!r}")
    return v


def _fraction(name: str, value: Any) -> float:
    v = _number(name, value)
    if not 0 <= v < 1:
        raise ValueError(f"option {name!r} must be in [0, 1), got {value!r}")
    return v


def _betas(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"option {name!r} must be two numbers in [0, 1), such as [0.9, 0.999]; got {value!r}")
    return (_fraction(name, value[0]), _fraction(name, value[1]))


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"option {name!r} must be true or false, got {value!r}")
    return value


def _optional_positive(name: str, value: Any) -> float | None:
    return None if value is None else _positive(name, value)


# per optimizer: option name -> (checker, the optimizer constructor's keyword)
_OPTIONS: dict[str, dict[str, tuple[Callable[[str, Any], Any], str]]] = {
    "sgd": {
        "momentum": (_fraction, "momentum"),
        "weight_decay": (_non_negative, "weight_decay"),
        "nesterov": (_flag, "nesterov"),
    },
    "adamw": {
        "betas": (_betas, "betas"),
        "eps": (_non_negative, "eps"),
        "weight_decay": (_non_negative, "weight_decay"),
    },
    "lars": {
        "momentum": (_fraction, "momentum"),
        "weight_decay": (_non_negative, "weight_decay"),
        "trust_coefficient": (_positive, "trust_coeff"),
        "eps": (_non_negative, "eps"),
        "nesterov": (_flag, "nesterov"),
    },
    "lamb": {
        "betas": (_betas, "betas"),
        "eps": (_non_negative, "eps"),
        "weight_decay": (_non_negative, "weight_decay"),
        "max_grad_norm": (_optional_positive, "max_grad_norm"),
    },
    "adam_spd": {
        "betas": (_betas, "betas"),
        "eps": (_non_negative, "eps"),
        "spd_lambda": (_non_negative, "spd_lambda"),
    },
}

OPTIMIZERS = tuple(_OPTIONS)


def valid_options(optimizer: str) -> tuple[str, ...]:
    """Option names that a method using `optimizer` accepts (catalog `options` and sweep overrides)."""
    if optimizer not in _OPTIONS:
        raise ValueError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
    return tuple(sorted(_OPTIONS[optimizer]))


def resolve_options(method: MethodEntry, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Catalog options overridden by `options`, checked, as the optimizer constructor's keywords."""
    valid = valid_options(method.optimizer)
    merged = {**dict(method.options), **dict(options or {})}
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method {method.key!r} (optimizer {method.optimizer!r}); "
            f"valid options: {', '.join(valid)}"
        )
    spec = _OPTIONS[method.optimizer]
    out: dict[str, Any] = {}
    for name, value in merged.items():
        check, keyword = spec[name]
        try:
            out[keyword] = check(name, value)
        except ValueError as e:
            raise ValueError(f"method {method.key!r}: {e}") from None
    return out


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
    if split_embed and not (_number("embed_lr_mult", method.embed_lr_mult) > 0):
        raise ValueError(f"method {method.key!r}: embed_lr_mult must be > 0, got {method.embed_lr_mult}")
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
    kwargs = resolve_options(method, options)
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
    return AdamSPD(groups, lr=phase.lr, **kwargs)


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
