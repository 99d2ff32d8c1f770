"""Bearer-token auth on mutating endpoints (and reads when asked), and no path outside the storage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.server.jobs import FakeJobBackend
from api.server.main import create_app
from api.server.paths import UnsafePathError, inside
from api.server.settings import Settings, get_settings
from tests.api.support import TOKEN, spec_body, write_results

SWEEPS = "/api/v1/sweeps"


def test_mutations_need_the_token(anon: TestClient, client: TestClient):
    sid = client.post(SWEEPS, json=spec_body()).json()["id"]
    for method, path in (("POST", SWEEPS), ("POST", f"{SWEEPS}/{sid}/cancel"), ("POST", f"{SWEEPS}/{sid}/resume")):
        r = anon.request(method, path, json=spec_body())
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"], path
        assert r.headers["www-authenticate"] == "Bearer"
        r = anon.request(method, path, json=spec_body(), headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid token"
        r = anon.request(method, path, json=spec_body(), headers={"Authorization": "Basic " + TOKEN})
        assert r.status_code == 401
    assert anon.get(f"{SWEEPS}/{sid}").status_code == 200  # reads are open by default
    assert client.get(SWEEPS).json()["count"] == 1  # the refused submissions left nothing


def test_reads_can_be_protected(tmp_path: Path):
    s = get_settings(storage=tmp_path / "st", api_token=TOKEN, protect_reads=True, check_data=False)
    with TestClient(create_app(s, backend=FakeJobBackend())) as c:
        assert c.get(SWEEPS).status_code == 401
        assert c.get("/api/v1/catalog").status_code == 401
        assert c.get(SWEEPS, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/v1/health").status_code == 200  # probes stay open


def test_placeholder_tokens_are_refused():
    for bad in ("changethis", "short"):
        with pytest.raises(ValueError, match="SHIFTSWEEP_API_TOKEN"):
            get_settings(api_token=bad)
    assert get_settings(api_token="").api_token is None


def test_inside_refuses_escapes(tmp_path: Path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    assert inside(root, "a", "b.parquet") == (root / "a" / "b.parquet").resolve()
    for parts in (("..",), ("a", "../../x"), ("/etc/passwd",), ("a", ""), ("link",), ("link", "x"), ("a\\..",)):
        with pytest.raises(UnsafePathError):
            inside(root, *parts)


def test_traversal_over_http_is_refused(client: TestClient, settings: Settings, tmp_path: Path):
    sid = client.post(SWEEPS, json=spec_body()).json()["id"]
    for path in (
        f"{SWEEPS}/{sid}/results/..%2F..%2Fregistry.sqlite3",
        f"{SWEEPS}/{sid}/results/%2E%2E",
        f"{SWEEPS}/%2E%2E/results/trials.parquet",
        f"{SWEEPS}/{sid}/tables/..%2F..%2Fetc",
        f"{SWEEPS}/..%2F..%2Fetc%2Fpasswd",
    ):
        r = client.get(path)
        assert r.status_code in (404, 400), path
        assert "root:" not in r.text

    secret = tmp_path / "secret.parquet"
    write_results(tmp_path, "other", spec_body(), done=1)
    (tmp_path / "other" / "trials.parquet").rename(secret)
    sweep_dir = settings.storage / sid
    sweep_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, sweep_dir / "trials.parquet")  # a link out of the storage
    for path in ("/results/trials.parquet", "/trials", "/tables/ood", ""):
        r = client.get(f"{SWEEPS}/{sid}{path}")
        assert r.status_code == 400 and "outside the storage" in r.json()["detail"], path


def test_the_docs_page_works_offline(anon: TestClient):
    """Swagger UI's files are the service's own: no CDN, so /docs is not a blank page without internet."""
    page = anon.get("/docs")
    assert page.status_code == 200 and "/api/v1/openapi.json" in page.text
    assert "cdn.jsdelivr" not in page.text and "https://" not in page.text.split("<body>", 1)[-1]
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        r = anon.get(f"/docs-assets/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 10_000, asset
    assert anon.get("/redoc").status_code == 404  # FastAPI's ReDoc page would load from a CDN: not served
