"""The forward passes' arithmetic, one switch for the trial loop, the feature extraction and the benchmarks."""

from __future__ import annotations

import torch


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast when asked for, else full fp32 (the paper's)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)
