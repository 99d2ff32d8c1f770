"""Which parameters train when: a method's phases, and the requires_grad flags each phase sets.

A method is one or two phases (LP-FT: a linear probe, then fine-tuning at a lower LR). A phase names the set
of parameters it trains by a word (`head`, `all_but_embed`, ...), and the model's own declarations
(`embed_param_names`, `patch_only_param_names`, `head_param_names`) say which parameters those are, so no
method hard-codes a layer name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from worker.catalog import MethodEntry
from worker.config import learning_rate

PHASE_FINETUNE = "finetune"
PHASE_LINEAR_PROBE = "linear_probe"

TRAINABLE_SETS = ("head", "all_but_embed", "all_but_patch", "all")
SCHEDULES = ("cosine", "gradual_unfreeze")

# catalog `freeze` -> the parameters a fine-tuning phase trains
_TRAINABLE_FOR_FREEZE = {
    "none": "all",
    "embed": "all_but_embed",
    "patch_only": "all_but_patch",
    "backbone": "head",
}
_LP_FT_KEYS = ("lp_epochs", "lp_epochs_fraction", "ft_lr_div")


class BuiltModelLike(Protocol):
    """The parts of `worker.models.BuiltModel` that the methods read."""

    module: nn.Module
    family: str
    embed_param_names: frozenset[str]
    patch_only_param_names: frozenset[str]
    head_param_names: frozenset[str]
    unfreeze_groups: list[tuple[str, ...]]


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs trained with one optimizer, one schedule and one set of trainable parameters."""

    name: str  # "finetune", or "linear_probe" then "finetune" for lp_ft_*
    start_epoch: int  # 0-based, inclusive
    end_epoch: int  # exclusive
    lr: float  # base LR of this phase (LP-FT: fine-tuning runs at lr / ft_lr_div)
    trainable: str  # one of TRAINABLE_SETS
    schedule: str  # one of SCHEDULES

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.start_epoch


def _lp_epochs(method: MethodEntry, lp_ft: dict[str, Any], epochs: int) -> int:
    if "lp_epochs" in lp_ft:
        lp = int(lp_ft["lp_epochs"])
    elif "lp_epochs_fraction" in lp_ft:
        lp = max(1, round(epochs * float(lp_ft["lp_epochs_fraction"])))
    else:
        raise ValueError(f"method {method.key!r}: lp_ft needs 'lp_epochs' or 'lp_epochs_fraction'")
    if not 1 <= lp < epochs:
        raise ValueError(
            f"method {method.key!r}: the linear-probe phase must last 1..{epochs - 1} of the {epochs} epochs "
            f"so that fine-tuning also runs; got {lp} (LP-FT needs at least 2 epochs)"
        )
    return lp


def plan_phases(method: MethodEntry, epochs: int, lr: float) -> list[Phase]:
    """The phases of one trial of `method` over `epochs` epochs at grid LR `lr`."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    lr = learning_rate(lr)
    if method.freeze not in _TRAINABLE_FOR_FREEZE:
        raise ValueError(
            f"method {method.key!r}: unknown freeze {method.freeze!r}; accepted: {', '.join(_TRAINABLE_FOR_FREEZE)}"
        )
    if method.schedule not in SCHEDULES:
        raise ValueError(
            f"method {method.key!r}: unknown schedule {method.schedule!r}; accepted: {', '.join(SCHEDULES)}"
        )
    trainable = _TRAINABLE_FOR_FREEZE[method.freeze]
    if not method.lp_ft:
        return [Phase(PHASE_FINETUNE, 0, epochs, lr, trainable, method.schedule)]

    lp_ft = dict(method.lp_ft)
    unknown = sorted(set(lp_ft) - set(_LP_FT_KEYS))
    if unknown:
        raise ValueError(f"method {method.key!r}: unknown lp_ft keys {unknown}; accepted: {', '.join(_LP_FT_KEYS)}")
    div = float(lp_ft.get("ft_lr_div", 10.0))
    if not (math.isfinite(div) and div > 0):
        raise ValueError(f"method {method.key!r}: lp_ft.ft_lr_div must be a finite number > 0, got {div}")
    lp = _lp_epochs(method, lp_ft, epochs)
    return [
        Phase(PHASE_LINEAR_PROBE, 0, lp, lr, "head", "cosine"),
        Phase(PHASE_FINETUNE, lp, epochs, lr / div, trainable, method.schedule),
    ]


def _declared(built: BuiltModelLike, attr: str, names: set[str]) -> frozenset[str]:
    declared = frozenset(getattr(built, attr))
    missing = sorted(declared - names)
    if missing:
        raise ValueError(f"model family {built.family!r} declares {attr} that are not parameters: {missing[:5]}")
    return declared


def trainable_names(built: BuiltModelLike, trainable: str) -> frozenset[str]:
    """The names of the parameters that the trainable set `trainable` trains on this model."""
    names = {n for n, _ in built.module.named_parameters()}
    if trainable == "all":
        return frozenset(names)
    if trainable == "head":
        head = _declared(built, "head_param_names", names)
        if not head:
            raise ValueError(f"model family {built.family!r} declares no head parameters")
        return head
    if trainable == "all_but_embed":
        embed = _declared(built, "embed_param_names", names)
        if not embed:
            raise ValueError(f"model family {built.family!r} declares no embedding parameters to freeze")
        return frozenset(names - embed)
    if trainable == "all_but_patch":
        patch = _declared(built, "patch_only_param_names", names)
        if not patch:
            raise ValueError(
                f"model family {built.family!r} declares no patch-conv parameters; freezing the patch conv only "
                "applies to families that declare one (clip_vit)"
            )
        return frozenset(names - patch)
    raise ValueError(f"unknown trainable set {trainable!r}; accepted: {', '.join(TRAINABLE_SETS)}")


def apply_trainable(built: BuiltModelLike, phase: Phase) -> None:
    """Turn requires_grad on for exactly the phase's trainable parameters, off for every other one.

    Frozen parameters then get no gradient and, since optimizers are built from trainable parameters only,
    no optimizer state: that is where freezing saves memory.
    """
    keep = trainable_names(built, phase.trainable)
    for name, p in built.module.named_parameters():
        p.requires_grad_(name in keep)


def trainable_param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def frozen_param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if not p.requires_grad)
