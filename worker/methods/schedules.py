"""Learning-rate schedules of a phase, stepped once per optimizer step.

Every parameter group carries its own `base_lr` (the phase LR times any per-group multiplier), and the
schedule only multiplies it by a factor, so a slower embedding group stays slower all the way.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from worker.methods.phases import SCHEDULES, Phase

GRADUAL_UNFREEZE_LOG_SPAN = 3.73  # the first epoch runs at base * exp(3.73), about 42x; the last at base


def cosine_factor(step: int, total_steps: int) -> float:
    """From 1 at step 0 to 0 at `total_steps`, along half a cosine, with no warm-up."""
    progress = min(step, total_steps) / total_steps
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def gradual_unfreeze_factor(epoch: int, epochs: int) -> float:
    """exp(3.73 (1 - t / (T - 1))) at epoch t of T, constant within the epoch; 1 when there is only one epoch."""
    if epochs == 1:
        return 1.0
    t = min(epoch, epochs - 1)
    return math.exp(GRADUAL_UNFREEZE_LOG_SPAN * (1.0 - t / (epochs - 1)))


class Scheduler:
    """Sets every group's LR to its `base_lr` times the phase schedule's factor at the current step."""

    def __init__(self, optimizer: torch.optim.Optimizer, phase: Phase, steps_per_epoch: int):
        if phase.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {phase.schedule!r}; accepted: {', '.join(SCHEDULES)}")
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
        if phase.epochs < 1:
            raise ValueError(f"phase {phase.name!r} has no epochs ({phase.start_epoch}..{phase.end_epoch})")
        missing = [i for i, g in enumerate(optimizer.param_groups) if "base_lr" not in g]
        if missing:
            raise ValueError(f"optimizer param groups {missing} carry no 'base_lr'; build them with build_optimizer")
        self.optimizer = optimizer
        self.schedule = phase.schedule
        self.epochs = phase.epochs
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = phase.epochs * steps_per_epoch
        self.last_step = 0  # optimizer steps taken in this phase
        self._apply()

    def factor(self, step: int) -> float:
        if self.schedule == "cosine":
            return cosine_factor(step, self.total_steps)
        return gradual_unfreeze_factor(step // self.steps_per_epoch, self.epochs)

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f

    def step(self) -> None:
        """Advance one optimizer step."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("schedule", "epochs", "steps_per_epoch"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"scheduler state is for {key}={state.get(key)!r}, but this phase has {key}={mine[key]!r}"
                )
        self.last_step = int(state["last_step"])
        self._apply()


def build_scheduler(optimizer: torch.optim.Optimizer, phase: Phase, steps_per_epoch: int) -> Scheduler:
    """The phase's schedule over its own steps: cosine to 0, or the gradual-unfreezing epoch ladder."""
    return Scheduler(optimizer, phase, steps_per_epoch)
