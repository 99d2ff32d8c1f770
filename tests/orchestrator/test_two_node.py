"""A real two-node Ray cluster on this machine: a sweep spreads over both nodes, survives losing one of them
mid-trial, and ends with every trial's results exactly once.

Each node is its own `ray start --block` process tree with its own temp dir, ports and a custom resource that
names it, so node B can be stopped as `ray stop` would stop its machine (SIGTERM to each of its processes, then
SIGKILL for stragglers) while node A runs on. Which node ran which attempt of a trial is read from Tune's
result.json (the reporting process's pid) and the nodes' own process trees and log files. Token auth is on, as
on a production cluster; HOME is a temp dir so no token file is written under the user's home.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from orchestrator.local_cluster import LocalRayNode
from orchestrator.results import read_epochs, read_trials

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATASET = "synth_style"
EPOCHS = 6
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::IDLE")
STORE = "--object-store-memory=100000000"
SPEC = {
    "name": "two-node",
    "models": ["tiny_vit"],
    "datasets": [DATASET],
    "methods": ["sgd", "adamw"],
    "lrs": {"sgd": [1e-2, 3e-2], "adamw": [1e-3, 3e-3]},
    "epochs": EPOCHS,
    "batch_size": 32,
    "max_train_images": 128,
    "max_eval_images": 32,
    "pretrained": False,
    "resources": {"cpus": 1, "gpus": 0},
    "threads_per_trial": 1,
    "max_failures": 3,
    "checkpoint_every_s": 0,  # every epoch: the trial cut off with its node must go on from its last one
}


@dataclass
class RayNode(LocalRayNode):
    """A local node plus what this test reads from it: which of its processes run trials."""

    seen_pids: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.temp_dir.name

    def work_pids(self) -> set[int]:
        """Pids of this node's worker processes that run actors or tasks (Tune trials among them)."""
        pids = set()
        for p in self.processes():
            try:
                title = (p.cmdline() or [p.name()])[0]  # Ray sets a worker's title: ray::<actor class or task>
            except psutil.Error:
                continue
            if title.startswith("ray::") and not title.startswith(AGENTS):
                pids.add(p.pid)
        self.seen_pids |= pids
        return pids

    def logged_worker_pids(self) -> set[int]:
        """Pids of every worker process this node ever started, from its session's log file names."""
        names = (p.name for p in self.temp_dir.glob("session_*/logs/*"))
        return {
            int(m.group(1))
            for n in names
            if (m := re.match(r"(?:python-core-)?worker-.*[-_](\d+)\.(?:log|out|err)$", n))
        }


def ray_snippet(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


def wait_for_cluster(address: str, env: dict[str, str], nodes: list[RayNode], timeout: float = 120) -> None:
    """Until the head answers with node_b's resource registered (each node's process must stay up meanwhile)."""
    code = (
        "import ray, time\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        f"end = time.monotonic() + {timeout}\n"
        "while ray.cluster_resources().get('node_b', 0) < 1 and time.monotonic() < end: time.sleep(0.5)\n"
        "print(sorted(k for k in ray.cluster_resources() if k.startswith('node_')))\n"
    )
    res = ray_snippet(code, env, timeout=timeout + 60)
    for node in nodes:
        assert node.alive(), f"node {node.name} exited:\n{node.log.read_text()[-3000:]}"
    assert res.returncode == 0 and "'node_b'" in res.stdout, res.stdout + res.stderr[-3000:]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    head: RayNode
    node_b: RayNode


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Nodes A (head) and B for this file; the test that stops node B runs last."""
    base = Path(tempfile.mkdtemp(prefix="rtn-"))  # short: Ray's socket paths must stay under ~107 characters
    (base / "home").mkdir()
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(32).hex(),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "OUTDATED_IGNORE": "1",
    }
    env.pop("RAY_ADDRESS", None)
    nodes: list[RayNode] = []
    try:
        head_args = ['--resources={"node_a": 1}', STORE]
        nodes.append(RayNode.start_head(base / "a", base / "a.log", env=env, num_cpus=1, extra_args=head_args))
        address = nodes[0].gcs_address
        _wait_port(int(address.rsplit(":", 1)[1]), nodes[0])
        b_args = ['--resources={"node_b": 1}', STORE]
        nodes.append(RayNode.start_worker(address, base / "b", base / "b.log", env=env, num_cpus=1, extra_args=b_args))
        wait_for_cluster(address, env, nodes)
        yield Cluster(address, env, nodes[0], nodes[1])
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


def _wait_port(port: int, node: RayNode, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert node.alive(), f"node {node.name} exited:\n{node.log.read_text()[-3000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"the head's GCS did not open port {port} within {timeout} s")


def result_rows(sweep: Path) -> dict[str, list[dict[str, Any]]]:
    """Tune's result.json rows per trial directory (each row carries the reporting process's pid)."""
    out = {}
    for f in (sweep / "tune").glob("*/result.json"):
        rows = []
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
        out[f.parent.name] = rows
    return out


def test_wrong_token_is_refused(cluster: Cluster) -> None:
    env = {**cluster.env, "RAY_AUTH_TOKEN": "0" * 64}
    res = ray_snippet(f"import ray; ray.init(address={cluster.address!r}, log_to_driver=False)", env, timeout=90)
    assert res.returncode != 0
    assert "auth" in (res.stdout + res.stderr).lower()


def test_sweep_survives_losing_a_node(cluster: Cluster, tmp_path: Path) -> None:
    from worker.synthetic import generate_benchmark

    data_root = tmp_path / "data"
    generate_benchmark(DATASET, data_root, seed=0, n_train=128, n_eval=32)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "data_root": str(data_root)}))
    storage = tmp_path / "results"
    sweep = storage / "two-node"

    cmd = [sys.executable, "-m", "orchestrator.run", "--spec", str(spec_file), "--sweep-id", "two-node"]
    cmd += ["--storage", str(storage), "--address", cluster.address, "--quiet"]
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(
            cmd, cwd=ROOT, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        killed_trial = _stop_node_b_mid_trial(cluster, sweep, driver, log)
        driver.wait(timeout=600)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    assert driver.returncode == 0, log.read_text()[-6000:]

    # Every trial finished, each exactly once, each epoch exactly once.
    trials = read_trials(sweep)
    assert trials.num_rows == 4 and len(set(trials.column("trial_id").to_pylist())) == 4
    assert set(trials.column("status").to_pylist()) == {"completed"}, trials.to_pylist()
    assert trials.column("epochs_done").to_pylist() == [EPOCHS] * 4
    epochs = read_epochs(sweep)
    pairs = list(zip(epochs.column("trial_id").to_pylist(), epochs.column("epoch").to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs)) == 4 * EPOCHS
    assert {e for _, e in pairs} == set(range(1, EPOCHS + 1))

    # Trials ran on both nodes, and the trial cut off on node B went on from its checkpoint on node A.
    b_pids = cluster.node_b.seen_pids | cluster.node_b.logged_worker_pids()
    a_pids = cluster.head.seen_pids | cluster.head.logged_worker_pids()
    rows = result_rows(sweep)
    assert len(rows) == 4
    where = {
        name: {("b" if r["pid"] in b_pids else "a" if r["pid"] in a_pids else "?") for r in rs}
        for name, rs in rows.items()
    }
    assert "?" not in set().union(*where.values()), where
    assert set().union(*where.values()) == {"a", "b"}, where
    moved = rows[killed_trial]
    trace = [(r["epoch"], r["pid"]) for r in moved]
    assert moved[0]["pid"] in b_pids and moved[-1]["pid"] in a_pids, (killed_trial, trace, b_pids, a_pids)
    assert moved[-1]["epoch"] == EPOCHS
    assert sorted({r["epoch"] for r in moved}) == list(range(1, EPOCHS + 1))
    last_on_b = max(r["epoch"] for r in moved if r["pid"] in b_pids)
    first_on_a = min(r["epoch"] for r in moved if r["pid"] in a_pids)
    assert 1 < first_on_a <= last_on_b + 1, trace  # resumed from a checkpoint, not started over


def _stop_node_b_mid_trial(
    cluster: Cluster, sweep: Path, driver: subprocess.Popen, log: Path, timeout: float = 400
) -> str:
    """Once a trial running on node B has reported an epoch but not its last, stop node B; that trial's name."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.poll() is not None:
            raise AssertionError(
                f"the driver ended (rc {driver.returncode}) before node B ran a trial:\n{log.read_text()[-6000:]}"
            )
        cluster.head.work_pids()
        b_now = cluster.node_b.work_pids()
        for name, rows in result_rows(sweep).items():
            if rows and rows[-1]["pid"] in b_now and rows[-1]["epoch"] <= EPOCHS - 3:
                stopped = cluster.node_b.stop()
                assert len(stopped) > 3 and not any(p.is_running() for p in stopped), "node B left processes behind"
                assert cluster.head.alive(), "stopping node B stopped the head too"
                return name
        time.sleep(0.2)
    raise AssertionError(f"no trial ran on node B within {timeout} s:\n{log.read_text()[-6000:]}")
