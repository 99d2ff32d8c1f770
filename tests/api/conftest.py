"""The real app over a temporary storage and registry, with the fake job backend (the cluster's test double)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.server.jobs import FakeJobBackend
from api.server.main import create_app
from api.server.settings import Settings, get_settings
from orchestrator.local_cluster import LocalRayNode
from tests.api.support import TOKEN, wait_until_up


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test alone, never from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("SHIFTSWEEP_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each registry the service can use: a SQLite file, and a fresh database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "registry.sqlite3")
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return get_settings(storage=tmp_path / "storage", base_dir=tmp_path, api_token=TOKEN, check_data=False)


@pytest.fixture
def backend() -> FakeJobBackend:
    return FakeJobBackend()


@pytest.fixture
def app(settings: Settings, backend: FakeJobBackend) -> FastAPI:
    return create_app(settings, backend=backend)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def ray_dashboard() -> Iterator[str]:
    """A real Ray head with its dashboard and job server, for the slow tests of a module."""
    base = Path(tempfile.mkdtemp(prefix="rayapi-"))  # short: Ray's socket paths must stay under ~107 characters
    env = {**os.environ, "HOME": str(base / "home"), "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    (base / "home").mkdir()
    head = LocalRayNode.start_head(base / "t", base / "ray.log", env=env, num_cpus=2)
    assert head.dashboard_url is not None
    try:
        url = f"{head.dashboard_url}/api/version"
        wait_until_up(url, alive=head.alive, log=head.log, what="the Ray head", timeout_s=120)
        yield head.dashboard_url
    finally:
        head.stop()  # the processes this fixture started, nothing else
        shutil.rmtree(base, ignore_errors=True)
