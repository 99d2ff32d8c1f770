"""A few-hundred-parameter stand-in for `worker.models.BuiltModel`, with a CLIP-like embedding layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


class TinyPatchNet(nn.Module):
    """Patch conv -> positional embedding -> layer norm -> two blocks -> linear head, on 8x8 images."""

    def __init__(self, num_classes: int = 3, width: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(3, width, kernel_size=4, stride=4, bias=False)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 4, width))
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.blocks(self.ln_pre(tokens)).mean(dim=1))


@dataclass
class FakeBuilt:
    module: nn.Module
    family: str = "clip_vit"
    embed_param_names: frozenset[str] = frozenset({"patch.weight", "ln_pre.weight", "ln_pre.bias"})
    patch_only_param_names: frozenset[str] = frozenset({"patch.weight"})
    head_param_names: frozenset[str] = frozenset({"head.weight", "head.bias"})
    unfreeze_groups: list[tuple[str, ...]] = field(
        default_factory=lambda: [
            ("patch.weight", "pos", "ln_pre.weight", "ln_pre.bias"),
            ("blocks.0.weight", "blocks.0.bias"),
            ("blocks.2.weight", "blocks.2.bias"),
            ("head.weight", "head.bias"),
        ]
    )


def make_built(seed: int = 0, **overrides: object) -> FakeBuilt:
    torch.manual_seed(seed)
    return FakeBuilt(module=TinyPatchNet(), **overrides)


def batch(seed: int = 1, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def train_step(built: FakeBuilt, optimizer: torch.optim.Optimizer, seed: int = 1) -> float:
    """One forward/backward/step, clearing grads to None as the trial loop does."""
    x, y = batch(seed)
    loss = nn.functional.cross_entropy(built.module(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
