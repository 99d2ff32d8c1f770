"""Peak memory is per trial even when one process runs several trials (Ray reuses its workers)."""

from __future__ import annotations

import sys

import pytest
import torch

from worker.memory import peak_memory_bytes, reset_peak_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-trial reset uses /proc/self/clear_refs")
def test_the_cpu_peak_follows_an_allocation_and_resets_between_trials() -> None:
    cpu = torch.device("cpu")
    reset_peak_memory(cpu)
    before = peak_memory_bytes()
    big = torch.ones(50_000_000)  # 200 MB, touched
    during = peak_memory_bytes()
    del big
    reset_peak_memory(cpu)
    after = peak_memory_bytes()
    assert during - before > 150e6
    assert after < during - 150e6
