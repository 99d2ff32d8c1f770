"""Shared test setup: one CPU thread per test process, no network version checks, no user HOME side effects,
and the small synthetic benchmark the end-to-end tests train on."""

from __future__ import annotations

import os

os.environ.setdefault("OUTDATED_IGNORE", "1")  # wilds' import-time version check would try the network
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.postgres_server import INSTALL_HINT, PostgresServer, find_pg_bin  # noqa: E402

# the linear probe's feature cache: per test session, never the user's (Ray workers inherit it)
os.environ["SHIFTSWEEP_CACHE"] = tempfile.mkdtemp(prefix="shiftsweep-test-cache-")


@pytest.fixture(autouse=True, scope="session")
def _feature_cache() -> Iterator[None]:
    yield
    shutil.rmtree(os.environ["SHIFTSWEEP_CACHE"], ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth_style in its real (DomainNet) layout, 64 training and 32 evaluation images per split."""
    from worker.synthetic import generate_benchmark

    root = tmp_path_factory.mktemp("data")
    generate_benchmark("synth_style", root, seed=0, n_train=64, n_eval=32)
    return root


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session; the tests that ask for it skip where it is not installed."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip(INSTALL_HINT)
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.stop()
