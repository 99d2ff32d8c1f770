"""Trials, epochs, Parquet downloads and tables of a sweep whose results the driver has written."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.server.settings import Settings
from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA
from tests.api.support import spec_body, write_results

SWEEPS = "/api/v1/sweeps"


@pytest.fixture
def sweep(client: TestClient, settings: Settings) -> tuple[str, list[str]]:
    r = client.post(SWEEPS, json=spec_body())
    sid = r.json()["id"]
    ids = write_results(settings.storage, sid, spec_body(), done=2, running=1)
    return sid, ids


def test_trials_are_paged_in_the_sweeps_order(client: TestClient, sweep):
    sid, ids = sweep
    page = client.get(f"{SWEEPS}/{sid}/trials", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 3 and [t["trial_id"] for t in page["data"]] == ids[1:3]
    assert "config_json" not in page["data"][0]
    beyond = client.get(f"{SWEEPS}/{sid}/trials", params={"offset": 50}).json()
    assert beyond == {"data": [], "count": 3}


def test_trials_filters(client: TestClient, sweep):
    sid, ids = sweep
    url = f"{SWEEPS}/{sid}/trials"
    assert client.get(url, params={"method": "adamw"}).json()["count"] == 1
    assert client.get(url, params={"method": "sgd", "status": "completed"}).json()["count"] == 2
    assert client.get(url, params={"status": "running"}).json()["data"][0]["trial_id"] == ids[2]
    assert client.get(url, params={"model": "tiny_bit"}).json()["count"] == 0
    r = client.get(url, params={"model": "resnet", "dataset": "mnist", "status": "sleeping"})
    assert r.status_code == 422
    fields = {p["field"]: p["message"] for p in r.json()["detail"]}
    assert set(fields) == {"query.status"}  # the declared enum is checked first
    r = client.get(url, params={"model": "resnet", "dataset": "mnist"})
    fields = {p["field"]: p["message"] for p in r.json()["detail"]}
    assert set(fields) == {"query.model", "query.dataset"} and "tiny_vit" in fields["query.model"]


def test_one_trial_and_its_epochs(client: TestClient, sweep):
    sid, ids = sweep
    t = client.get(f"{SWEEPS}/{sid}/trials/{ids[0]}").json()
    assert t["status"] == "completed" and t["best_epoch"] == 2 and t["config"]["model"] == "tiny_vit"
    assert t["id_val"] == pytest.approx(0.7)
    e = client.get(f"{SWEEPS}/{sid}/trials/{ids[0]}/epochs").json()
    assert e["count"] == 2 and [x["epoch"] for x in e["data"]] == [1, 2]
    assert e["data"][0]["split_metrics"] == {"id_val/acc": 0.6, "ood_test/acc": None}  # NaN shown as missing
    for path in (f"/trials/{'0' * 12}", f"/trials/{'0' * 12}/epochs"):
        r = client.get(f"{SWEEPS}/{sid}{path}")
        assert r.status_code == 404 and "000000000000" in r.json()["detail"]


def test_parquet_downloads(client: TestClient, sweep):
    sid, ids = sweep
    for name, schema, rows in (("trials", TRIALS_SCHEMA, 3), ("epochs", EPOCHS_SCHEMA, 5), ("probe", PROBE_SCHEMA, 0)):
        r = client.get(f"{SWEEPS}/{sid}/results/{name}.parquet")
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(r.content))
        assert table.num_rows == rows and table.schema.names == schema.names
    r = client.get(f"{SWEEPS}/{sid}/results/registry.sqlite3")
    assert r.status_code == 404 and "trials.parquet" in r.json()["detail"]


def test_tables(client: TestClient, sweep):
    sid, _ = sweep
    listing = client.get(f"{SWEEPS}/{sid}/tables").json()
    assert {"ood", "id"} <= set(listing["data"]) and "latex" in listing["formats"]
    r = client.get(f"{SWEEPS}/{sid}/tables/ood")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown") and "OOD" in r.text
    r = client.get(f"{SWEEPS}/{sid}/tables/id", params={"format": "json"})
    assert r.status_code == 200 and json.loads(r.content)["name"] == "id"
    r = client.get(f"{SWEEPS}/{sid}/tables/table9")
    assert r.status_code == 404 and "ood" in r.json()["detail"] and "table9" in r.json()["detail"]
    r = client.get(f"{SWEEPS}/{sid}/tables/ood", params={"format": "docx"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "query.format"
    assert "latex" in r.json()["detail"][0]["message"]


def test_catalog_and_health(anon: TestClient):
    cat = anon.get("/api/v1/catalog").json()
    assert "tiny_vit" in cat["models"] and "synth_style" in cat["datasets"] and "sgd" in cat["methods"]
    assert "demo" in cat["presets"] and "ood" in cat["tables"] and "csv" in cat["table_formats"]
    h = anon.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["ray"]["reachable"] is True


def test_health_reports_an_unreachable_cluster(anon: TestClient, backend):
    backend.reachable = False
    r = anon.get("/api/v1/health")
    assert r.status_code == 200 and r.json()["ray"] == {
        "reachable": False,
        "address": None,
        "dashboard_url": "http://127.0.0.1:8265",
        "error": "the fake cluster is set unreachable",
    }
