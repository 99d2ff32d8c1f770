"""End to end on a local Ray: a sweep of the real trial engine (tiny random-init models, tiny synthetic data) runs to
completion; a driver that is killed (SIGKILL) or stopped (SIGTERM) mid-run resumes and ends with exactly one row
per (trial, epoch) and every trial completed. The interruptions use the gated test double of the worker
(tests/orchestrator/fake_trial.py), so that each signal lands while work is certainly left, on any machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.driver import run_sweep
from orchestrator.driver_state import read_driver_state
from orchestrator.results import read_epochs, read_probe, read_trials
from orchestrator.spec import load_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATASET = "synth_style"


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray for this file, with its own temp dir and HOME (Ray 2.60 writes an auth token under HOME)."""
    import ray

    base = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths must stay under ~107 characters
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(base / "home")
    ray.init(_temp_dir=str(base / "t"), num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
        shutil.rmtree(base, ignore_errors=True)


def _spec(data_root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "models": ["tiny_vit"],
        "datasets": [DATASET],
        "methods": ["sgd", "adamw"],
        "lrs": {"sgd": [1e-2, 3e-2], "adamw": [1e-3, 3e-3]},
        "epochs": 2,
        "batch_size": 32,
        "max_train_images": 64,
        "max_eval_images": 32,
        "pretrained": False,
        "data_root": str(data_root),
        **extra,
    }


def _pairs(sweep_dir: Path) -> list[tuple[str, int]]:
    t = read_epochs(sweep_dir)
    return list(zip(t.column("trial_id").to_pylist(), t.column("epoch").to_pylist(), strict=True))


def test_small_sweep_runs_to_completion(ray_address: str, data_root: Path, tmp_path: Path) -> None:
    # A second dataset whose files are not there: its trials fail in the worker, each with its error kept, its probe
    # fails too, and the sweep still finishes. Early stopping is on with its only rung at the last epoch: it runs,
    # never stops.
    extra = {
        "datasets": [DATASET, "synth_spurious"],
        "max_failures": 0,
        "early_stopping": {"enabled": True, "grace_period": 2, "reduction_factor": 2},
        "probe": True,
        "probe_batches": 1,
    }
    spec = load_spec(_spec(data_root, **extra))
    out = run_sweep(spec, "small", tmp_path, address=ray_address, verbose=0)
    sweep = tmp_path / "small"
    assert out.state == "finished", read_driver_state(sweep)
    rows = read_trials(sweep).to_pylist()
    assert sorted(r["trial_id"] for r in rows) == sorted(t.trial_id() for t in spec.expand())
    status = {(r["dataset"], r["status"]) for r in rows}
    assert status == {(DATASET, "completed"), ("synth_spurious", "failed")} and len(rows) == 8
    failed = [r for r in rows if r["status"] == "failed"]
    assert all("synth_spurious" in r["error"] or "waterbirds" in r["error"] for r in failed), failed[0]["error"]
    done = [r for r in rows if r["status"] == "completed"]
    assert all(r["id_val"] is not None and r["epochs_done"] == 2 for r in done)
    pairs = _pairs(sweep)
    assert len(pairs) == len(set(pairs)) == 8
    probe = read_probe(sweep)
    assert probe.num_rows > 0 and set(probe.column("dataset").to_pylist()) == {DATASET}
    driver = read_driver_state(sweep)
    assert driver["state"] == "finished" and list(driver["probe_errors"]) == ["tiny_vit/synth_spurious"]
    assert (sweep / "spec.yaml").exists() and (sweep / "tune").is_dir()
    assert not list((sweep / "tune").glob("*/checkpoint_*"))  # ended trials keep no checkpoint; failed ones had none


def test_a_linear_probe_and_lp_ft_run_through_tune(ray_address: str, data_root: Path, tmp_path: Path) -> None:
    spec = load_spec(
        _spec(data_root, methods=["linear_probe", "lp_ft_sgd"], lrs={"linear_probe": [1e-2, 1.0], "lp_ft_sgd": [1e-2]})
    )
    out = run_sweep(spec, "lp", tmp_path, address=ray_address, verbose=0)
    assert out.state == "finished", read_driver_state(tmp_path / "lp")
    rows = {(r["method"], r["lr"]): r for r in read_trials(tmp_path / "lp").to_pylist()}
    assert {k: (r["status"], r["epochs_planned"], r["epochs_done"]) for k, r in rows.items()} == {
        ("linear_probe", 1e-2): ("completed", 1, 1),
        ("linear_probe", 1.0): ("completed", 1, 1),
        ("lp_ft_sgd", 1e-2): ("completed", 2, 2),
    }
    assert all(r["id_val"] is not None and r["ood_test"] is not None for r in rows.values())
    cache = Path(os.environ["SHIFTSWEEP_CACHE"]) / "features"
    assert len(list(cache.glob(f"tiny_vit-{DATASET}-*.npz"))) >= 1


FAKE_TRIAL = "tests.orchestrator.fake_trial:run_trial"


def _driver(spec_file: Path | None, storage: Path, address: str, *, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "orchestrator.run", "--sweep-id", "k", "--storage", str(storage)]
    cmd += ["--address", address, "--quiet", "--trial-fn", FAKE_TRIAL]
    cmd += ["--resume"] if resume else ["--spec", str(spec_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_epochs(sweep: Path, at_least: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = len(_pairs(sweep)) if (sweep / "epochs.parquet").exists() else 0
        if n >= at_least:
            return n
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended (rc {proc.returncode}) first:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} epoch results within {timeout} s")


def test_killed_and_stopped_driver_resume_without_losing_or_duplicating(ray_address: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the fake trial's data root: `budget` caps the (trial, epoch) pairs that may start
    gate.mkdir()
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(gate, epochs=3, max_concurrent_trials=1)))
    storage = tmp_path / "results"
    sweep = storage / "k"

    (gate / "budget").write_text("2")  # the first trial runs 2 of its 3 epochs, then waits
    first = _driver(spec_file, storage, ray_address, resume=False)
    _wait_for_epochs(sweep, 2, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    (gate / "budget").write_text("5")  # its last epoch and 2 of the next trial's: 7 of 12 stay unrun
    second = _driver(None, storage, ray_address, resume=True)
    _wait_for_epochs(sweep, 3, second)
    second.send_signal(signal.SIGTERM)  # handled like a Ray Job stop: a clean, resumable cancel
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 130, out[-4000:]
    state = read_driver_state(sweep)
    assert state["state"] == "cancelled" and state["runs"] == 2
    statuses = set(read_trials(sweep).column("status").to_pylist())
    assert "running" not in statuses and "cancelled" in statuses

    (gate / "budget").unlink()
    third = _driver(None, storage, ray_address, resume=True)
    out, _ = third.communicate(timeout=420)
    assert third.returncode == 0, out[-4000:]
    trials = read_trials(sweep)
    assert set(trials.column("status").to_pylist()) == {"completed"}
    assert trials.column("epochs_done").to_pylist() == [3, 3, 3, 3]
    pairs = _pairs(sweep)
    assert len(pairs) == len(set(pairs)) == 12
    assert read_driver_state(sweep)["state"] == "finished"


def test_an_extension_killed_midway_resumes_with_every_row_once_and_a_reusing_sweep_runs_nothing(
    ray_address: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    storage = tmp_path / "results"
    sweep = storage / "k"
    first = load_spec(_spec(gate, max_concurrent_trials=1))
    assert run_sweep(first, "k", storage, address=ray_address, verbose=0, trial_fn=FAKE_TRIAL).state == "finished"
    assert len(_pairs(sweep)) == 8
    before = {(r["trial_id"], r["epoch"]): r["reported_at"] for r in read_epochs(sweep).to_pylist()}

    grown_file = tmp_path / "grown.yaml"  # one more seed: 4 new trials; the 4 done ones must not run again
    grown_file.write_text(yaml.safe_dump(_spec(gate, max_concurrent_trials=1, seeds=[0, 1])))
    cmd = [sys.executable, "-m", "orchestrator.run", "--sweep-id", "k", "--storage", str(storage), "--quiet"]
    cmd += ["--address", ray_address, "--trial-fn", FAKE_TRIAL, "--spec", str(grown_file), "--resume", "--extend"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    (gate / "budget").write_text("11")  # 8 ran in the first run; 3 epochs of the new trials, then they wait
    extension = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_epochs(sweep, 10, extension)
    extension.send_signal(signal.SIGKILL)
    extension.wait(timeout=30)

    (gate / "budget").unlink()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    trials = read_trials(sweep)
    assert trials.num_rows == 8 and set(trials.column("status").to_pylist()) == {"completed"}
    assert sorted(trials.column("seed").to_pylist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    pairs = _pairs(sweep)
    assert len(pairs) == len(set(pairs)) == 16
    after = {(r["trial_id"], r["epoch"]): r["reported_at"] for r in read_epochs(sweep).to_pylist()}
    assert {k: after[k] for k in before} == before  # the first run's epochs were not run again
    events = [e["event"] for e in yaml.safe_load((sweep / "history.json").read_text())]
    assert events == ["started", "extended"]

    reusing = load_spec(_spec(gate, seeds=[0, 1], reuse=True))
    out = run_sweep(reusing, "copy", storage, address=ray_address, verbose=0, trial_fn=FAKE_TRIAL)
    assert out.state == "finished" and out.counts.get("completed") == 8
    copied = read_trials(storage / "copy")
    assert set(copied.column("reused_from").to_pylist()) == {"k"}
    assert len(_pairs(storage / "copy")) == 16 and len(list((gate / "started").iterdir())) == 16  # nothing ran


def test_early_stopping_pauses_at_the_rung_and_a_killed_sweep_resumes_to_the_same_stops(
    ray_address: str, tmp_path: Path
) -> None:
    """One cell of three LRs, 4 epochs, reduction factor 3: one rung, at epoch 1. The fake trial's best LR is 1e-2
    at every epoch, so 1e-3 and 1e-1 stop at the rung and 1e-2 runs to the end, whatever the interruption."""
    gate = tmp_path / "gate"
    gate.mkdir()
    extra = {
        "methods": ["sgd"],
        "lrs": {"sgd": [1e-3, 1e-2, 1e-1]},
        "epochs": 4,
        "max_concurrent_trials": 3,
        "early_stopping": {"enabled": True, "reduction_factor": 3},
    }
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(gate, **extra)))
    storage = tmp_path / "results"
    sweep = storage / "k"

    (gate / "budget").write_text("2")  # two LRs reach the rung and wait there; the third cannot start
    first = _driver(spec_file, storage, ray_address, resume=False)
    _wait_for_epochs(sweep, 2, first)
    time.sleep(2.0)  # time for Tune to pause them (save, stop); the outcome must not depend on whether it did
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    ran_first = {p.name.rsplit("-", 1)[0] for p in (gate / "started").iterdir()}  # which two got the budget

    (gate / "budget").unlink()
    again = _driver(None, storage, ray_address, resume=True)
    out, _ = again.communicate(timeout=420)
    assert again.returncode == 0, out[-4000:]
    rows = {r["lr"]: r for r in read_trials(sweep).to_pylist()}
    assert {lr: r["status"] for lr, r in rows.items()} == {1e-3: "stopped", 1e-2: "completed", 1e-1: "stopped"}
    assert rows[1e-2]["epochs_done"] == 4
    for lr in (1e-3, 1e-1):
        # The three start together and any two may pass the gate. One that waited at the rung when the driver died
        # resumes from its rung checkpoint and may run one epoch before waiting; one that never started stops at
        # the rung.
        most = 2 if rows[lr]["trial_id"] in ran_first else 1
        assert 1 <= rows[lr]["epochs_done"] <= most, (lr, rows[lr]["epochs_done"], ran_first)
    pairs = _pairs(sweep)
    assert len(pairs) == len(set(pairs))


def test_early_stopping_pauses_and_unpauses_through_tune(ray_address: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    extra = {
        "methods": ["sgd"],
        "lrs": {"sgd": [1e-1, 1e-2, 1e-3, 3e-3]},
        "epochs": 4,
        "early_stopping": {"enabled": True, "reduction_factor": 2},
    }
    spec = load_spec(_spec(gate, **extra))
    out = run_sweep(spec, "h", tmp_path, address=ray_address, verbose=0, trial_fn=FAKE_TRIAL)
    assert out.state == "finished", read_driver_state(tmp_path / "h")
    rows = {r["lr"]: (r["status"], r["epochs_done"]) for r in read_trials(tmp_path / "h").to_pylist()}
    # rungs at epochs 1 and 2 (4 / 2**k): 4 -> 2 (1e-2, 3e-3) -> 1 (1e-2)
    assert rows == {1e-1: ("stopped", 1), 1e-2: ("completed", 4), 1e-3: ("stopped", 1), 3e-3: ("stopped", 2)}
    assert not list((tmp_path / "h" / "tune").glob("*/checkpoint_*"))


def test_the_neighbours_rule_stops_the_lrs_far_from_the_leader_through_tune(ray_address: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    extra = {
        "methods": ["sgd"],
        "lrs": {"sgd": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]},
        "epochs": 4,
        "early_stopping": {"enabled": True, "rule": "neighbours", "neighbours": 1, "rungs": [0.25]},
    }
    spec = load_spec(_spec(gate, **extra))
    out = run_sweep(spec, "n", tmp_path, address=ray_address, verbose=0, trial_fn=FAKE_TRIAL)
    assert out.state == "finished", read_driver_state(tmp_path / "n")
    rows = {r["lr"]: (r["status"], r["epochs_done"]) for r in read_trials(tmp_path / "n").to_pylist()}
    # one rung, at epoch 1: the fake trial peaks at 1e-2, so it and one grid step either side run on
    assert rows == {
        1e-3: ("stopped", 1),
        3e-3: ("completed", 4),
        1e-2: ("completed", 4),
        3e-2: ("completed", 4),
        1e-1: ("stopped", 1),
    }
