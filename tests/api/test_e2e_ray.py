"""End to end on a real local Ray head with its job server: submit over REST, restart the API mid-sweep,
watch with the CLI until the sweep ends, read its trials and tables; then cancel a running sweep and resume it.

The head runs as `ray start --head --block` in its own process tree, with its own HOME and temp dir (so no
Ray auth token of the user is picked up) and is ended by signalling the processes of that tree only.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.client.cli import main as cli
from api.server.main import create_app
from api.server.settings import Settings, get_settings
from orchestrator.local_cluster import free_port
from tests.api.support import TOKEN

pytestmark = pytest.mark.slow

DATASET = "synth_style"
SWEEPS = "/api/v1/sweeps"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ray_settings(ray_dashboard: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return get_settings(storage=tmp_path / "results", base_dir=tmp_path, api_token=TOKEN, ray_address=ray_dashboard)


def _spec(data_root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "e2e",
        "models": ["tiny_vit"],
        "datasets": [DATASET],
        "methods": ["sgd"],
        "lrs": {"sgd": [1e-2, 3e-2]},
        "epochs": 2,
        "batch_size": 32,
        "max_train_images": 64,
        "max_eval_images": 32,
        "pretrained": False,
        "data_root": str(data_root),
        "threads_per_trial": 1,
        **extra,
    }


def _wait(client: TestClient, sweep_id: str, done: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = client.get(f"{SWEEPS}/{sweep_id}").json()
        if done(sweep):
            return sweep
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} never reached the expected state: {sweep}")


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def test_submit_restart_watch_tables(ray_settings: Settings, data_root: Path, capsys: pytest.CaptureFixture[str]):
    with TestClient(create_app(ray_settings), headers=AUTH) as first:
        health = first.get("/api/v1/health").json()
        assert health["ray"]["reachable"] is True, health
        r = first.post(SWEEPS, json=_spec(data_root, resources={"cpus": 1, "gpus": 1}))
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "resources.gpus"
        r = first.post(SWEEPS, json=_spec(data_root))
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        _wait(first, sweep_id, lambda s: s["status"] in ("running", "finished"))

    # the API goes away mid-sweep; a new instance on the same registry finds the sweep and follows it
    server, thread, url = _serve(ray_settings)
    try:
        code = cli(["--url", url, "--token", TOKEN, "watch", sweep_id, "--interval", "1", "--timeout", "400"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "finished" in out.splitlines()[-1]
        assert cli(["--url", url, "tables", sweep_id, "ood"]) == 0
        assert "Table 1" in capsys.readouterr().out
        assert cli(["--url", url, "list"]) == 0 and sweep_id in capsys.readouterr().out
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    with TestClient(create_app(ray_settings), headers=AUTH) as again:
        sweep = again.get(f"{SWEEPS}/{sweep_id}").json()
        assert sweep["status"] == "finished" and sweep["counts"]["completed"] == 2 and sweep["percent_done"] == 100.0
        assert sweep["driver"]["state"] == "finished" and sweep["dashboard_url"].endswith(sweep_id)
        trials = again.get(f"{SWEEPS}/{sweep_id}/trials").json()
        assert trials["count"] == 2 and all(t["id_val"] is not None for t in trials["data"])
        epochs = again.get(f"{SWEEPS}/{sweep_id}/trials/{trials['data'][0]['trial_id']}/epochs").json()
        assert [e["epoch"] for e in epochs["data"]] == [1, 2]
        assert again.post(f"{SWEEPS}/{sweep_id}/cancel").status_code == 409

        # one more seed: the two new trials run as the sweep's next job, the two old ones are not run again
        before = {e["epoch"]: e["reported_at"] for e in epochs["data"]}
        r = again.post(f"{SWEEPS}/{sweep_id}/extend", json={"seeds": [0, 1]})
        assert r.status_code == 202, r.text
        assert r.json()["total_trials"] == 4 and r.json()["counts"]["completed"] == 2
        grown = _wait(again, sweep_id, lambda s: s["status"] in ("finished", "failed"))
        assert grown["status"] == "finished" and grown["counts"]["completed"] == 4, grown
        assert len(grown["history"]) == 2 and "+2 trials: seeds 1 for" in grown["history"][1]
        first_trial = trials["data"][0]["trial_id"]
        epochs = again.get(f"{SWEEPS}/{sweep_id}/trials/{first_trial}/epochs").json()
        assert {e["epoch"]: e["reported_at"] for e in epochs["data"]} == before


def test_cancel_then_resume_on_the_cluster(ray_settings: Settings, data_root: Path):
    spec = _spec(data_root, epochs=6, max_concurrent_trials=1)
    with TestClient(create_app(ray_settings), headers=AUTH) as client:
        sweep_id = client.post(SWEEPS, json=spec).json()["id"]
        _wait(client, sweep_id, lambda s: s["counts"]["running"] + s["counts"]["completed"] > 0)
        r = client.post(f"{SWEEPS}/{sweep_id}/cancel")
        assert r.status_code == 202 and r.json()["status"] in ("cancelling", "cancelled")
        cancelled = _wait(client, sweep_id, lambda s: s["status"] != "cancelling", timeout=120)
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["driver"]["state"] == "cancelled"  # SIGINT reached the driver, which saved its state

        r = client.post(f"{SWEEPS}/{sweep_id}/resume")
        assert r.status_code == 202 and r.json()["job_id"] == f"{sweep_id}-r1"
        done = _wait(client, sweep_id, lambda s: s["status"] not in ("submitted", "pending", "running"), timeout=400)
        assert done["status"] == "finished", done
        assert done["counts"]["completed"] == 2 and done["driver"]["runs"] == 2
