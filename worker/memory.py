"""Peak memory of a trial: the CUDA allocator's peak on GPU, the process's resident high-water mark on CPU."""

from __future__ import annotations

import resource
import sys

import torch

_device: torch.device | None = None


def reset_peak_memory(device: torch.device) -> None:
    global _device
    _device = device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes() -> int:
    if _device is not None and _device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(_device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB, macOS bytes
