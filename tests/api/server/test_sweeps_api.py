"""POST/GET /sweeps, cancel and resume, against the real app with the fake job backend, on each registry (a SQLite
file and a real PostgreSQL server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from api.server.jobs import FakeJobBackend
from api.server.main import create_app
from api.server.settings import Settings, get_settings
from orchestrator import NodeCapacity
from tests.api.support import TOKEN, spec_body, write_driver, write_results

SWEEPS = "/api/v1/sweeps"


@pytest.fixture
def settings(tmp_path: Path, registry_target: str) -> Settings:
    return get_settings(
        storage=tmp_path / "storage", registry=registry_target, base_dir=tmp_path, api_token=TOKEN, check_data=False
    )


def _submit(client: TestClient, body: dict | None = None, **headers: str) -> dict:
    r = client.post(SWEEPS, json=body or spec_body(), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_submit_starts_one_job_with_the_driver_command(client: TestClient, backend: FakeJobBackend, settings: Settings):
    sweep = _submit(client)
    assert sweep["status"] == "pending" and sweep["total_trials"] == 3 and sweep["counts"]["pending"] == 3
    job = backend.jobs[sweep["id"]]
    assert job.args[:3] == [settings.python, "-m", "orchestrator.run"] and Path(job.args[0]).is_absolute()
    assert job.args[job.args.index("--sweep-id") + 1] == sweep["id"]
    assert job.args[job.args.index("--storage") + 1] == str(settings.storage)
    assert "--resume" not in job.args
    assert job.env["RAY_JOB_STOP_SIGNAL"] == "SIGINT" and job.env["RAY_JOB_STOP_WAIT_TIME_S"] == "30"
    stored = yaml.safe_load(Path(job.args[job.args.index("--spec") + 1]).read_text())
    assert stored["models"] == ["tiny_vit"] and stored["data_root"] == str(settings.base_dir / "data")
    assert sweep["dashboard_url"].endswith(f"/#/jobs/{sweep['id']}")
    assert sweep["id"].isalnum() and len(sweep["id"]) <= 12


def test_preset_with_overrides(client: TestClient):
    r = client.post(SWEEPS, json={"preset": "demo", "overrides": {"epochs": 1, "models": ["tiny_vit"]}})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["epochs"] == 1 and r.json()["spec"]["models"] == ["tiny_vit"]


def test_idempotency_key_returns_the_first_sweep(client: TestClient, backend: FakeJobBackend):
    first = _submit(client, spec_body(), **{"Idempotency-Key": "abc-1"})
    again = client.post(SWEEPS, json=spec_body(), headers={"Idempotency-Key": "abc-1"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert len(backend.jobs) == 1
    other = client.post(SWEEPS, json=spec_body(epochs=3), headers={"Idempotency-Key": "abc-1"})
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    assert client.get(SWEEPS).json()["count"] == 1


def test_every_problem_is_named(client: TestClient):
    body = spec_body(models=["tiny_vit", "resnet9000"], methods=["sgd", "nope"], lrs={})
    r = client.post(SWEEPS, json=body)
    assert r.status_code == 422
    fields = {p["field"]: p["message"] for p in r.json()["detail"]}
    assert "resnet9000" in fields["models[1]"] and "tiny_vit" in fields["models[1]"]  # names the valid ones
    assert "nope" in fields["methods[1]"]
    r = client.post(SWEEPS, json={**spec_body(), "epochs": 0, "colour": "red"})
    fields = {p["field"] for p in r.json()["detail"]}
    assert r.status_code == 422 and {"epochs", "colour"} <= fields


def test_method_options_and_lrs_are_checked_before_anything_is_stored(client: TestClient, backend: FakeJobBackend):
    body = spec_body(
        method_options={"sgd": {"momentun": 0.9}, "adamw": {"betas": [0.9]}},
        lrs={"sgd": [0.01, True], "adamw": [0.0]},
    )
    r = client.post(SWEEPS, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    fields = {p["field"]: p["message"] for p in r.json()["detail"]}
    assert set(fields) == {"lrs.sgd[1]", "lrs.adamw[0]"}  # type problems come first, each with its path
    assert "a learning rate must be a finite number > 0, got True" in fields["lrs.sgd[1]"]
    r = client.post(SWEEPS, json=spec_body(method_options={"sgd": {"momentun": 0.9}, "adamw": {"betas": [0.9]}}))
    assert r.status_code == 422
    fields = {p["field"]: p["message"] for p in r.json()["detail"]}
    assert set(fields) == {"method_options.sgd.momentun", "method_options.adamw.betas"}
    assert "valid options: momentum, nesterov, weight_decay" in fields["method_options.sgd.momentun"]
    assert client.get(SWEEPS).json()["count"] == 0 and backend.jobs == {}


def test_bad_bodies_get_422_naming_the_body(client: TestClient):
    for content in (b"{not json", b"[1, 2]", b"", b'"text"'):
        r = client.post(SWEEPS, content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, content
        assert r.json()["detail"][0]["field"] == "body"
    r = client.post(SWEEPS, json={"preset": "nope"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "preset"
    assert "demo" in r.json()["detail"][0]["message"]
    r = client.post(SWEEPS, json={"preset": "demo", "overrides": [1], "x": 1})
    assert r.status_code == 422 and {p["field"] for p in r.json()["detail"]} == {"overrides", "x"}
    r = client.post(SWEEPS, json=spec_body(storage="/elsewhere"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "storage"
    r = client.post(SWEEPS, json=spec_body(), headers={"Idempotency-Key": "k" * 500})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "header.Idempotency-Key"


def test_gpus_asked_of_a_gpu_less_cluster(client: TestClient, backend: FakeJobBackend):
    backend.nodes = [NodeCapacity(cpus=8, gpus=0)]
    r = client.post(SWEEPS, json=spec_body(resources={"cpus": 1, "gpus": 0.5}))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "resources.gpus"
    backend.nodes = [NodeCapacity(cpus=8, gpus=0), NodeCapacity(cpus=4, gpus=1)]
    assert client.post(SWEEPS, json=spec_body(resources={"cpus": 1, "gpus": 0.5})).status_code == 201


def test_data_is_checked_when_asked(tmp_path: Path, backend: FakeJobBackend):
    from api.server.settings import get_settings

    s = get_settings(storage=tmp_path / "st", base_dir=tmp_path, check_data=True)
    with TestClient(create_app(s, backend=backend), base_url="http://127.0.0.1") as c:
        r = c.post(SWEEPS, json=spec_body(data_root="nowhere"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "datasets[0]"
    assert "synth_spurious" in r.json()["detail"][0]["message"]


def test_unreachable_cluster_is_503_and_leaves_nothing(client: TestClient, backend: FakeJobBackend):
    backend.reachable = False
    r = client.post(SWEEPS, json=spec_body())
    assert r.status_code == 503 and "cannot check the cluster's nodes" in r.json()["detail"]
    assert client.get(SWEEPS).json()["count"] == 0


def test_unknown_sweep_is_404(client: TestClient):
    for path in ("/nope", "/nope/trials", "/nope/tables/ood", "/nope/results/trials.parquet"):
        r = client.get(SWEEPS + path)
        assert r.status_code == 404 and "nope" in r.json()["detail"], path
    for action in ("cancel", "resume"):
        assert client.post(f"{SWEEPS}/nope/{action}").status_code == 404


def test_state_follows_the_job_and_driver(client: TestClient, backend: FakeJobBackend, settings: Settings):
    sweep = _submit(client)
    sid = sweep["id"]
    backend.set_status(sid, "RUNNING")
    write_driver(settings.storage, sid, "running")
    write_results(settings.storage, sid, spec_body(), done=1, running=1)
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "running" and got["job_status"] == "RUNNING"
    assert got["counts"]["completed"] == 1 and got["counts"]["running"] == 1 and got["counts"]["pending"] == 1
    assert got["finished_trials"] == 1 and 0 < got["percent_done"] < 100
    assert got["percent_done"] == 50.0  # (2 + 1 + 0) of 6 planned epochs
    assert got["eta_seconds"] == 30.0  # 1.5 trials left x 20 s per completed trial / 1 running
    assert got["driver"]["state"] == "running"

    write_driver(settings.storage, sid, "finished")
    backend.set_status(sid, "SUCCEEDED")
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "finished" and got["eta_seconds"] is None


def test_a_cancelled_driver_exits_non_zero_but_is_cancelled(client: TestClient, backend: FakeJobBackend, settings):
    sid = _submit(client)["id"]
    write_driver(settings.storage, sid, "cancelled")
    backend.set_status(sid, "FAILED")
    assert client.get(f"{SWEEPS}/{sid}").json()["status"] == "cancelled"


def test_failed_job_reports_the_driver_error(client: TestClient, backend: FakeJobBackend, settings: Settings):
    sid = _submit(client)["id"]
    write_driver(settings.storage, sid, "failed", error="RuntimeError: boom")
    backend.set_status(sid, "FAILED")
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "failed" and got["error"] == "RuntimeError: boom"


def test_cancel_then_resume(client: TestClient, backend: FakeJobBackend, settings: Settings):
    sid = _submit(client)["id"]
    backend.set_status(sid, "RUNNING")
    r = client.post(f"{SWEEPS}/{sid}/resume")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    r = client.post(f"{SWEEPS}/{sid}/cancel")
    assert r.status_code == 202 and backend.jobs[sid].stop_requested
    assert r.json()["status"] == "cancelled"
    r = client.post(f"{SWEEPS}/{sid}/cancel")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]

    r = client.post(f"{SWEEPS}/{sid}/resume")
    assert r.status_code == 202, r.text
    assert r.json()["job_ids"] == [sid, f"{sid}-r1"] and r.json()["status"] == "pending"
    job = backend.jobs[f"{sid}-r1"]
    assert "--resume" in job.args and job.args[job.args.index("--sweep-id") + 1] == sid
    # the previous run's driver.json does not speak for the new job
    write_driver(settings.storage, sid, "cancelled", runs=1)
    backend.set_status(f"{sid}-r1", "FAILED")
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "failed" and f"{sid}-r1" in got["error"]
    assert client.post(f"{SWEEPS}/{sid}/resume").json()["job_id"] == f"{sid}-r2"


def test_a_job_the_cluster_forgot_fails_the_sweep(client: TestClient, backend: FakeJobBackend):
    sid = _submit(client)["id"]
    del backend.jobs[sid]
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "failed" and "resume" in got["error"] and got["job_status"] == "unknown"


def test_unreachable_cluster_keeps_the_last_state(client: TestClient, backend: FakeJobBackend):
    sid = _submit(client)["id"]
    backend.reachable = False
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "pending" and got["job_status"] == "unreachable"
    assert client.post(f"{SWEEPS}/{sid}/cancel").status_code == 503


def test_list_is_paged_and_filtered(client: TestClient, backend: FakeJobBackend):
    ids = [_submit(client)["id"] for _ in range(5)]
    backend.set_status(ids[0], "SUCCEEDED")
    page = client.get(SWEEPS, params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 5 and [s["id"] for s in page["data"]] == ids[::-1][1:3]
    assert client.get(SWEEPS, params={"status": "finished"}).json()["count"] == 1
    r = client.get(SWEEPS, params={"limit": 0, "status": "sleeping"})
    assert r.status_code == 422 and {p["field"] for p in r.json()["detail"]} == {"query.limit", "query.status"}


def test_restart_keeps_every_sweep(settings: Settings, backend: FakeJobBackend, client: TestClient):
    sid = _submit(client)["id"]
    backend.set_status(sid, "RUNNING")
    with TestClient(create_app(settings, backend=backend)) as again:  # a new app on the same registry
        assert again.get(f"{SWEEPS}/{sid}").json()["status"] == "running"
        backend.set_status(sid, "SUCCEEDED")
        assert again.get(SWEEPS).json()["data"][0]["status"] == "finished"


def test_a_registry_server_that_is_gone_answers_503_and_recovers(tmp_path: Path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    url = postgres_server.new_database()
    settings = get_settings(storage=tmp_path / "st", registry=url, base_dir=tmp_path, api_token=TOKEN, check_data=False)
    with TestClient(create_app(settings, backend=FakeJobBackend()), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        sweep = _submit(c)
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:  # the database goes away
            admin.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} ALLOW_CONNECTIONS false")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'shiftsweep-api'"
            )
        for path in ("/api/v1/health", f"{SWEEPS}/{sweep['id']}"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            assert "PostgreSQL registry" in r.json()["detail"] and postgres_server.password not in r.text
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} ALLOW_CONNECTIONS true")
        assert c.get(f"{SWEEPS}/{sweep['id']}").json()["id"] == sweep["id"]
