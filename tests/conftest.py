"""Shared test setup: one CPU thread per test process, no network version checks, no user HOME side effects."""

from __future__ import annotations

import os

os.environ.setdefault("OUTDATED_IGNORE", "1")  # wilds' import-time version check would try the network
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
