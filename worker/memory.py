"""Peak memory of a trial: the CUDA allocator's peak on GPU, the process's resident high-water mark on CPU.

A worker process may run several trials one after another (Ray reuses its actors), so on Linux the resident
high-water mark (VmHWM) is reset at the start of each trial by writing 5 to /proc/self/clear_refs; elsewhere
the figure falls back to the process-lifetime maximum.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_device: torch.device | None = None
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    global _device
    _device = device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass  # not Linux, or not permitted: the lifetime maximum is reported instead


def _vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_memory_bytes() -> int:
    if _device is not None and _device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(_device))
    hwm = _vm_hwm_bytes()
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB, macOS bytes
