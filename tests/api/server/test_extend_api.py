"""POST /sweeps/{id}/extend and GET /sweeps/{id}/suggestions against the real app with the fake job backend:
a grown grid runs as the sweep's next job, a grid that drops or changes trials is a 422 naming the field and
leaves the sweep as it was, a running sweep is a 409, and the suggestions can be submitted as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from api.server.jobs import FakeJobBackend
from api.server.settings import Settings
from orchestrator import Location, load_spec
from orchestrator.extension import grid_growth, record_extension, record_start
from tests.api.support import spec_body, write_driver, write_results

SWEEPS = "/api/v1/sweeps"


def _finished(client: TestClient, backend: FakeJobBackend, settings: Settings) -> tuple[str, dict[str, Any]]:
    """A sweep of 3 trials that ran to its end: sgd at 0.01 and 0.03 (0.03 chosen), adamw at 0.001."""
    r = client.post(SWEEPS, json=spec_body())
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    write_results(settings.storage, sid, r.json()["spec"], done=3)
    write_driver(settings.storage, sid, "finished")
    backend.set_status(sid, "SUCCEEDED")
    got = client.get(f"{SWEEPS}/{sid}").json()
    assert got["status"] == "finished"
    return sid, got["spec"]


def _spec_file(job_args: list[str]) -> dict[str, Any]:
    return yaml.safe_load(Path(job_args[job_args.index("--spec") + 1]).read_text())


def test_a_grown_grid_runs_as_the_next_job_and_the_history_shows_it(
    client: TestClient, backend: FakeJobBackend, settings: Settings
) -> None:
    sid, old = _finished(client, backend, settings)
    r = client.post(
        f"{SWEEPS}/{sid}/extend", json={"seeds": [0, 1], "lrs": {"sgd": [0.01, 0.03, 0.1], "adamw": [0.001]}}
    )
    assert r.status_code == 202, r.text
    sweep = r.json()
    assert sweep["job_ids"] == [sid, f"{sid}-r1"] and sweep["status"] == "pending"
    assert sweep["spec"]["seeds"] == [0, 1] and sweep["total_trials"] == 8
    assert sweep["counts"]["completed"] == 3  # the old trials stay done
    job = backend.jobs[f"{sid}-r1"]
    assert "--resume" in job.args and "--extend" in job.args
    assert _spec_file(job.args)["lrs"]["sgd"] == [0.01, 0.03, 0.1]

    loc = Location(settings.storage / sid)  # what the extension's driver writes
    record_start(loc, load_spec(old))
    record_extension(
        loc, load_spec(old), load_spec(sweep["spec"]), grid_growth(load_spec(old), load_spec(sweep["spec"]))
    )
    history = client.get(f"{SWEEPS}/{sid}").json()["history"]
    assert len(history) == 2 and "started with 3 trials" in history[0]
    assert "extended, +5 trials: seeds 1 for tiny_vit; LRs 1e-1 for sgd; 8 trials in all" in history[1]
    assert "History" in client.get(f"{SWEEPS}/{sid}/report").text


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"seeds": [1]}, "seeds", "drops tiny_vit's seed(s) 0"),
        ({"epochs": 5}, "epochs", "submit it as a new sweep"),
        ({"methods": ["sgd"], "lrs": {"sgd": [0.01, 0.03]}}, "methods", "drops method(s) 'adamw'"),
        ({"data_root": "/elsewhere"}, "data_root", "trained on the data found there"),
        ({"storage": "/tmp/x"}, "storage", "service's storage"),
        ({"preset": "demo"}, "preset", "replaces fields of the sweep's spec"),
        ({"models": ["no_such_model"]}, "models[0]", "unknown model"),
        ([1, 2], "body", "JSON object"),
    ],
)
def test_a_grid_that_drops_or_changes_trials_is_refused_and_the_sweep_stays(
    client: TestClient, backend: FakeJobBackend, settings: Settings, body: Any, field: str, words: str
) -> None:
    sid, old = _finished(client, backend, settings)
    r = client.post(f"{SWEEPS}/{sid}/extend", json=body)
    assert r.status_code == 422, r.text
    problems = {p["field"]: p["message"] for p in r.json()["detail"]}
    assert field in problems and words in problems[field], problems
    after = client.get(f"{SWEEPS}/{sid}").json()
    assert after["spec"] == old and after["job_ids"] == [sid] and after["status"] == "finished"
    assert list(backend.jobs) == [sid]


def test_a_running_sweep_is_not_extended_and_an_unknown_one_is_404(
    client: TestClient, backend: FakeJobBackend, settings: Settings
) -> None:
    sid = client.post(SWEEPS, json=spec_body()).json()["id"]
    backend.set_status(sid, "RUNNING")
    r = client.post(f"{SWEEPS}/{sid}/extend", json={"seeds": [0, 1]})
    assert r.status_code == 409 and "after it has ended" in r.json()["detail"]
    assert client.post(f"{SWEEPS}/nope/extend", json={"seeds": [0, 1]}).status_code == 404
    assert client.get(f"{SWEEPS}/nope/suggestions").status_code == 404


def test_an_extension_the_cluster_refuses_leaves_the_old_spec(
    client: TestClient, backend: FakeJobBackend, settings: Settings
) -> None:
    sid, old = _finished(client, backend, settings)
    backend.reachable = False
    r = client.post(f"{SWEEPS}/{sid}/extend", json={"seeds": [0, 1]})
    assert r.status_code == 503, r.text
    backend.reachable = True
    after = client.get(f"{SWEEPS}/{sid}").json()
    assert after["spec"] == old and after["job_ids"] == [sid] and after["status"] == "finished"
    r = client.post(f"{SWEEPS}/{sid}/resume")  # a resume runs the old grid, from the registry's spec
    assert r.status_code == 202 and _spec_file(backend.jobs[f"{sid}-r1"].args)["seeds"] == [0]


def test_suggestions_widen_the_edge_lr_and_add_seeds_and_submit_as_they_are(
    client: TestClient, backend: FakeJobBackend, settings: Settings
) -> None:
    sid, _ = _finished(client, backend, settings)
    found = client.get(f"{SWEEPS}/{sid}/suggestions").json()
    kinds = [s["kind"] for s in found["data"]]
    assert kinds == ["widen_lrs", "add_seeds"], found
    assert found["extension"] == {"lrs": {"sgd": [0.01, 0.03, 0.09], "adamw": [0.001]}, "seeds": [0, 1, 2]}
    assert found["trials_added"] == 4 * 3 - 3
    assert "sgd chose its largest LR 3e-2" in found["data"][0]["reason"]
    r = client.post(f"{SWEEPS}/{sid}/extend", json=found["extension"])
    assert r.status_code == 202, r.text
    assert r.json()["total_trials"] == 12
