"""Adam with Selective Projection Decay (Tian, Huang, Kira, NeurIPS 2024).

Plain Adam proposes theta'. For every tensor whose raw gradient g points back towards its pretrained value
theta_0 (c = -<g, theta - theta_0> < 0), the part of the step that moved it further from theta_0 is projected
away: r = clip((|theta' - theta_0| - |theta - theta_0|) / |theta' - theta_0|, 0, 1) and
theta' <- theta' - lambda r (theta' - theta_0). lambda is not scaled by the LR; lambda = 1 keeps the deviation
of such a tensor from growing that step. theta_0 is one extra copy per tensor, kept in the optimizer state
so that it survives a checkpoint. Groups with `spd=False` (a new head, which has no pretrained value) get
plain Adam and no copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class AdamSPD(torch.optim.Optimizer):
    """Adam (bias-corrected, no weight decay) followed by Selective Projection Decay towards the start."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        spd_lambda: float = 1.0,
    ):
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"AdamSPD: lr must be a finite number >= 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamSPD: betas must be two numbers in [0, 1), got {betas}")
        if not eps >= 0:
            raise ValueError(f"AdamSPD: eps must be >= 0, got {eps}")
        if not spd_lambda >= 0:
            raise ValueError(f"AdamSPD: spd_lambda must be >= 0, got {spd_lambda}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "spd_lambda": spd_lambda, "spd": True}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Register a group, and remember the starting value of each of its tensors when it takes part in SPD."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["spd"]:
            for p in group["params"]:
                self.state[p]["theta0"] = p.detach().clone(memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, lam = group["lr"], group["eps"], group["spd_lambda"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamSPD does not support sparse gradients")
                state = self.state[p]
                if "exp_avg" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self._adam_spd_update(p, p.grad, state, lr, beta1, beta2, eps, lam, group["spd"])
        return loss

    @staticmethod
    def _adam_spd_update(
        p: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, Any],
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        lam: float,
        spd: bool,
    ) -> None:
        state["step"] += 1
        t = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bc1 = 1 - beta1**t
        bc2 = 1 - beta2**t
        denom = (exp_avg_sq.sqrt() / math.sqrt(bc2)).add_(eps)
        if not (spd and lam > 0):
            p.addcdiv_(exp_avg, denom, value=-lr / bc1)
            return
        theta0 = state["theta0"]
        dev_before = p - theta0
        c = -(grad * dev_before).sum()
        norm_before = torch.linalg.vector_norm(dev_before)
        p.addcdiv_(exp_avg, denom, value=-lr / bc1)
        dev_after = p - theta0
        norm_after = torch.linalg.vector_norm(dev_after)
        tiny = torch.finfo(norm_after.dtype).tiny
        r = ((norm_after - norm_before) / norm_after.clamp_min(tiny)).clamp_(0.0, 1.0)
        # tensor arithmetic rather than `if c < 0`, so that a GPU step never waits on the host
        scale = torch.where(c < 0, lam * r, torch.zeros_like(r))
        p.sub_(dev_after.mul_(scale))
