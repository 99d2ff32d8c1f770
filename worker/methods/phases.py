"""Which parameters train when: a method's phases, and the requires_grad flags each phase sets.

A method trained by gradient steps is one phase (LP-FT's linear probe is a logistic regression fitted before it,
`worker.linear_probe`, so its phase is the fine-tuning at the lower LR). A phase names the set
of parameters it trains by a word (`head`, `all_but_embed`, ...), and the model's own declarations
(`embed_param_names`, `patch_only_param_names`, `head_param_names`) say which parameters those are, so no
method hard-codes a layer name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import nn

from worker.catalog import MethodEntry
from worker.config import learning_rate

PHASE_FINETUNE = "finetune"

TRAINABLE_SETS = ("head", "all_but_embed", "all_but_patch", "all")
SCHEDULES = ("cosine", "gradual_unfreeze")

# catalog `freeze` -> the parameters a fine-tuning phase trains
_TRAINABLE_FOR_FREEZE = {
    "none": "all",
    "embed": "all_but_embed",
    "patch_only": "all_but_patch",
    "backbone": "head",
}


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

    name: str  # "finetune"
    start_epoch: int  # 0-based, inclusive
    end_epoch: int  # exclusive
    lr: float  # base LR of this phase (LP-FT: fine-tuning runs at lr / ft_lr_div)
    trainable: str  # one of TRAINABLE_SETS
    schedule: str  # one of SCHEDULES

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.start_epoch


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
    if method.is_linear_probe:
        raise ValueError(f"method {method.key!r} is a logistic regression on frozen features, not trained in phases")
    trainable = _TRAINABLE_FOR_FREEZE[method.freeze]
    ft_lr = lr / method.lp_ft["ft_lr_div"] if method.lp_ft else lr  # LP-FT fine-tunes at the grid LR / 10
    return [Phase(PHASE_FINETUNE, 0, epochs, ft_lr, trainable, method.schedule)]


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
