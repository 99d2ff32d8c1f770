"""The real app over a temporary storage and registry, with the fake job backend (the cluster's test double)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.server.jobs import FakeJobBackend
from api.server.main import create_app
from api.server.settings import Settings, get_settings
from tests.api.support import TOKEN


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test alone, never from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("SHIFTSWEEP_"):
            monkeypatch.delenv(name)


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
