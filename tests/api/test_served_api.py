"""The service as an attacker or an unlucky operator meets it: `shiftsweep serve` in a subprocess, real SQLite,
raw HTTP, and a Ray dashboard that accepts connections and never answers (a hung cluster).

Every hostile input is answered with a 4xx naming its field and leaves nothing stored; nothing waits on the
hung cluster longer than the service's timeout; a tokenless service refuses foreign hosts, origins and non-JSON
bodies. The slow test at the end runs two API processes on one registry against a real local Ray.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.client.cli import main as cli
from orchestrator.local_cluster import free_port
from orchestrator.results import read_trials
from tests.api.support import TOKEN, spec_body, wait_until_up, write_results

REPO = Path(__file__).resolve().parents[2]
SWEEPS = "/api/v1/sweeps"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
RAY_TIMEOUT_S = 2  # the service's per-call limit on the cluster in these tests
REAL_RAY_TIMEOUT_S = "60"  # against a real Ray, whose job server may take seconds on a busy machine
BOUND_S = 15  # "answered, not hung": far above the timeouts, far below forever


@pytest.fixture(scope="module")
def hung_dashboard() -> Iterator[str]:
    """A TCP port that accepts every connection and never says a word, as a frozen Ray dashboard does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


class Served:
    """`shiftsweep serve` in its own process, on its own port."""

    def __init__(self, tmp: Path, env: dict[str, str], name: str = "api", args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}-{self.port}.log"
        self.env = env
        cmd = [sys.executable, "-m", "api.client.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += list(args)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"{self.url}/api/v1/openapi.json"
        wait_until_up(url, alive=lambda: self.proc.poll() is None, log=self.log, what="the API", timeout_s=60)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def kill(self) -> None:
        """kill -9: no shutdown handler runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _env(tmp: Path, ray_address: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIFTSWEEP_", "RAY_"))}
    (tmp / "home").mkdir(exist_ok=True)
    env.update(
        HOME=str(tmp / "home"),
        SHIFTSWEEP_STORAGE=str(tmp / "storage"),
        SHIFTSWEEP_BASE_DIR=str(tmp),
        SHIFTSWEEP_RAY_ADDRESS=ray_address,
        SHIFTSWEEP_RAY_TIMEOUT_S=str(RAY_TIMEOUT_S),
        SHIFTSWEEP_CHECK_DATA="false",
        SHIFTSWEEP_API_TOKEN=TOKEN,
        RAY_USAGE_STATS_ENABLED="0",
    )
    env.update({f"SHIFTSWEEP_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture(scope="module")
def served(hung_dashboard: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("served")
    api = Served(tmp, _env(tmp, hung_dashboard, node_cpus="2", max_trials="100", max_body_bytes="65536"))
    yield api
    api.stop()


def _stored(storage: Path) -> list[str]:
    """What the service keeps besides its registry: sweep directories and stored specs."""
    specs = storage / "_specs"
    return sorted(p.name for p in storage.iterdir() if not p.name.startswith("registry")) + (
        sorted(p.name for p in specs.iterdir()) if specs.exists() else []
    )


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("preset outside the catalog", json.dumps({"preset": "/etc/../etc/passwd"}).encode(), JSON, 422, "preset"),
    ("preset a relative path", json.dumps({"preset": "../../configs/models"}).encode(), JSON, 422, "preset"),
    ("preset not a string", json.dumps({"preset": ["demo"]}).encode(), JSON, 422, "preset"),
    ("array nested 30,000 deep", b"[" * 30_000 + b"]" * 30_000, JSON, 422, "body"),
    (
        "options nested 300 deep",
        json.dumps(spec_body(method_options={"sgd": _nested(300)})).encode(),
        JSON,
        422,
        "method_options.sgd",
    ),
    ("lone surrogate in the name", json.dumps(spec_body(name="\ud800")).encode(), JSON, 422, "name"),
    ("lone surrogate in data_root", json.dumps(spec_body(data_root="a\udfff")).encode(), JSON, 422, "data_root"),
    ("lone surrogate as an lrs key", json.dumps(spec_body(lrs={"\ud800": [0.1]})).encode(), JSON, 422, "lrs."),
    (
        "lone surrogate as an option value",
        json.dumps(spec_body(method_options={"sgd": {"momentum": "\ud800"}})).encode(),
        JSON,
        422,
        "method_options.sgd.momentum",
    ),
    ("epochs 2**63", json.dumps(spec_body(epochs=2**63)).encode(), JSON, 422, "epochs"),
    ("a seed of 2**64", json.dumps(spec_body(seeds=[2**64])).encode(), JSON, 422, "seeds[0]"),
    (
        "cpus Infinity",
        b'{"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"], "resources": {"cpus": Infinity}}',
        JSON,
        422,
        "resources.cpus",
    ),
    (
        "reduction_factor NaN",
        b'{"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"], '
        b'"early_stopping": {"reduction_factor": NaN}}',
        JSON,
        422,
        "early_stopping.reduction_factor",
    ),
    ("batch_size 1e30", json.dumps(spec_body(batch_size=1e30)).encode(), JSON, 422, "batch_size"),
    ("threads_per_trial 1e9", json.dumps(spec_body(threads_per_trial=10**9)).encode(), JSON, 422, "threads_per_trial"),
    (
        "an unknown optimizer option",
        json.dumps(spec_body(method_options={"sgd": {"momentun": 0.9}})).encode(),
        JSON,
        422,
        "method_options.sgd.momentun",
    ),
    ("an LR of true", json.dumps(spec_body(lrs={"sgd": [True], "adamw": [1e-3]})).encode(), JSON, 422, "lrs.sgd[0]"),
    ("max_trials 10**12", json.dumps(spec_body(max_trials=10**12)).encode(), JSON, 422, "max_trials"),
    ("20,000 seeds", json.dumps(spec_body(seeds=list(range(20_000)))).encode(), JSON, 413, ""),
    (
        "1,000 seeds: a grid over the ceiling",
        json.dumps(spec_body(seeds=list(range(1000)))).encode(),
        JSON,
        422,
        "max_trials",
    ),
    ("a 100 KB name", json.dumps(spec_body(name="x" * 100_000)).encode(), JSON, 413, ""),
    ("a 1,000-character name", json.dumps(spec_body(name="x" * 1000)).encode(), JSON, 422, "name"),
    (
        "a name with control characters",
        json.dumps(spec_body(name="\x1b]0;owned\x07\x1b[2J")).encode(),
        JSON,
        422,
        "name",
    ),
    (
        "64 CPUs per trial on 2-CPU nodes",
        json.dumps(spec_body(resources={"cpus": 64})).encode(),
        JSON,
        422,
        "resources.cpus",
    ),
    ("text/plain", json.dumps(spec_body()).encode(), {"Content-Type": "text/plain"}, 415, ""),
    ("form encoded", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415, ""),
    ("not JSON", b"{models: [", JSON, 422, "body"),
    ("not UTF-8", b'{"name": "\xff\xfe"}', JSON, 422, "body"),
    ("a JSON list", b"[1, 2]", JSON, 422, "body"),
    ("a key given twice", b'{"models": ["tiny_vit"], "models": ["vit_b16"]}', JSON, 422, "body"),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "field"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_a_4xx_that_names_its_field(
    served: Served, case: str, body: bytes, headers: dict[str, str], status: int, field: str
):
    with served.client(headers=AUTH) as http:
        r = http.post(SWEEPS, content=body, headers=headers)
        assert r.status_code == status, (case, r.text[:500])
        detail = r.json()["detail"]
        text = json.dumps(detail)
        if field:
            assert any(p["field"].startswith(field) for p in detail), (case, text[:500])
        assert len(text) < 5000, case  # an answer, not an echo of the attack
        assert http.get(SWEEPS).json()["count"] == 0
    assert _stored(Path(served.env["SHIFTSWEEP_STORAGE"])) == []


@pytest.mark.parametrize(
    "path",
    ["/" + "a" * 5000, "/%00/report", "/..%2F..%2Fetc/report", "/x/trials/" + "b" * 5000, "/x/results/" + "c" * 5000],
)
def test_hostile_paths_are_short_404s(served: Served, path: str):
    with served.client(headers=AUTH) as http:
        r = http.get(SWEEPS + path)
        assert r.status_code == 404 and len(r.text) < 300, r.text[:400]


def test_health_and_lists_answer_while_the_cluster_hangs(served: Served):
    with served.client(headers=AUTH) as http:
        r = http.post(SWEEPS, json=spec_body(name="stuck"))  # valid, and the cluster never answers the submit
        assert r.status_code == 503 and "recorded" in r.json()["detail"], r.text
        start = time.monotonic()
        health = http.get("/api/v1/health")
        took = time.monotonic() - start
        assert health.status_code == 200 and health.json()["ray"]["reachable"] is False, health.text
        assert took < BOUND_S, took
        assert "did not answer" in health.json()["ray"]["error"]
        (sweep,) = http.get(SWEEPS).json()["data"]
        assert sweep["status"] == "submitted" and sweep["job_id"] is None
        got = http.get(f"{SWEEPS}/{sweep['id']}")
        assert got.status_code == 200 and got.json()["job_status"] in ("unreachable", "unknown")
        assert http.post(f"{SWEEPS}/{sweep['id']}/cancel").status_code == 503  # cannot stop what it cannot see
        assert http.post(f"{SWEEPS}/{sweep['id']}/resume").status_code == 409
        assert http.get(SWEEPS).json()["count"] == 1


def test_a_served_failed_trial_shows_one_line_and_the_cli_escapes_control_characters(
    served: Served, capsys: pytest.CaptureFixture[str]
):
    """Rows as an older service or a driver wrote them, read through the served API and the CLI."""
    storage = Path(served.env["SHIFTSWEEP_STORAGE"])
    sid = "sleaked0001"
    spec = spec_body()
    ids = write_results(storage, sid, spec, done=1)
    trials = storage / sid / "trials.parquet"

    table = pq.read_table(trials).to_pylist()
    traceback = (
        'Traceback (most recent call last):\n  File "/home/ray/anaconda3/lib/python3.11/site-packages/ray/x.py", '
        "line 9\n\x1b[36m(pid=4242, ip=10.0.0.7, actor_id=abcdef)\x1b[0m\nRuntimeError: CUDA out of memory"
    )
    table[1].update(status="failed", error=traceback)
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(trials)), trials)
    now = "2026-11-26T00:00:00+00:00"
    with sqlite3.connect(storage / "registry.sqlite3") as db:
        db.execute(
            "INSERT INTO sweeps (id, name, spec_json, status, storage_dir, job_ids_json, error, created_at, updated_at)"
            " VALUES (?, ?, ?, 'failed', ?, '[]', ?, ?, ?)",
            (sid, "evil\x1b]0;owned\x07\x1b[2Jname", json.dumps(spec), str(storage / sid), traceback, now, now),
        )
    with served.client(headers=AUTH) as http:
        row = http.get(f"{SWEEPS}/{sid}/trials/{ids[1]}").json()
        assert row["error"] == "RuntimeError: CUDA out of memory"
        assert http.get(f"{SWEEPS}/{sid}").json()["error"] == "RuntimeError: CUDA out of memory"
    assert cli(["--url", served.url, "--token", TOKEN, "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b]0;owned\\x07\\x1b[2Jname" in out


def test_a_tokenless_service_answers_only_this_machine(hung_dashboard: str, tmp_path: Path):
    env = _env(tmp_path, hung_dashboard, node_cpus="2")
    env.pop("SHIFTSWEEP_API_TOKEN")
    api = Served(tmp_path, env)
    try:
        with api.client() as http:
            assert http.get(SWEEPS).status_code == 200
            body = json.dumps(spec_body())
            r = http.post(SWEEPS, content=body, headers={"Content-Type": "text/plain", "Origin": "http://evil.test"})
            assert r.status_code == 403 and "origin" in r.json()["detail"]
            r = http.post(SWEEPS, content=body, headers={"Content-Type": "text/plain"})  # a cross-site simple POST
            assert r.status_code == 415
            r = http.get(SWEEPS, headers={"Host": f"rebound.evil.test:{api.port}"})  # DNS rebinding
            assert r.status_code == 403 and "Host" in r.json()["detail"]
            r = http.post(f"{SWEEPS}/sx/cancel", content=b"x", headers={"Content-Type": "text/plain"})
            assert r.status_code == 415
            assert http.get(SWEEPS).json()["count"] == 0
    finally:
        api.stop()


@pytest.mark.parametrize("token", [" " * 16, "\t" * 20, "token-with\x07bell-char", "changeme"])
def test_a_service_with_a_blank_or_unprintable_token_does_not_start(hung_dashboard: str, tmp_path: Path, token: str):
    env = _env(tmp_path, hung_dashboard)
    env["SHIFTSWEEP_API_TOKEN"] = token
    cmd = [sys.executable, "-m", "api.client.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "SHIFTSWEEP_API_TOKEN" in done.stderr, done.stderr[-2000:]


def test_serve_with_worker_processes_on_a_postgresql_registry(hung_dashboard: str, tmp_path: Path, postgres_server):  # type: ignore[no-untyped-def]
    """`serve --workers 2 --registry postgresql://...`: the registry given on the command line reaches both uvicorn
    worker processes, and what one process stores every process reads."""
    from api.server.registry import SweepRecord, open_registry

    url = postgres_server.new_database()
    api = Served(tmp_path, _env(tmp_path, hung_dashboard), args=("--workers", "2", "--registry", url))
    try:
        open_registry(url).add(
            record=SweepRecord(id="sabc", name="stored", spec={}, status="finished", storage_dir=str(tmp_path))
        )
        with api.client(headers=AUTH) as http:
            seen = {http.get(SWEEPS).json()["data"][0]["id"] for _ in range(20)}  # answered by either process
            assert seen == {"sabc"}
        _until("both worker processes", lambda: api.log.read_text().count("Started server process") == 2, 60)
        assert postgres_server.password not in api.log.read_text()
    finally:
        api.stop()


def test_serve_says_plainly_when_the_registry_cannot_be_reached(hung_dashboard: str, tmp_path: Path):
    env = _env(tmp_path, hung_dashboard)
    cmd = [sys.executable, "-m", "api.client.cli", "serve", "--port", str(free_port())]
    cmd += ["--registry", f"postgresql://someone:hunter2@127.0.0.1:{free_port()}/registry"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cannot reach the PostgreSQL registry at postgresql://someone:***@127.0.0.1" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    done = subprocess.run(cmd[:-2] + ["--workers", "0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--workers must be at least 1" in done.stderr


def _resume(http: httpx.Client, sweep_id: str, gate: threading.Barrier, answers: list[int]) -> None:
    gate.wait()
    answers.append(http.post(f"{SWEEPS}/{sweep_id}/resume").status_code)


# ---- two API processes on one registry, a real Ray --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("registry", ["sqlite", "postgresql"])
def test_two_api_processes_resume_a_sweep_once(ray_dashboard: str, tmp_path: Path, registry: str, request):  # type: ignore[no-untyped-def]
    """Both processes are asked to resume one failed sweep at the same moment: one job starts, the other is 409.
    On one SQLite file (one host) and on a real PostgreSQL server (what replicas share)."""
    driver = tmp_path / "failing-driver"
    driver.write_text("#!/bin/sh\necho 'a driver that fails at once' >&2\nexit 3\n")
    driver.chmod(0o755)
    shared = {} if registry == "sqlite" else {"registry": request.getfixturevalue("postgres_server").new_database()}
    env = _env(tmp_path, ray_dashboard, python=str(driver), ray_timeout_s=REAL_RAY_TIMEOUT_S, **shared)
    one, other = Served(tmp_path, env, "one"), Served(tmp_path, env, "two")
    try:
        with one.client(headers=AUTH) as a, other.client(headers=AUTH) as b:
            r = a.post(SWEEPS, json=spec_body())
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            deadline = time.monotonic() + 120
            while (state := b.get(f"{SWEEPS}/{sid}").json())["status"] != "failed":
                assert time.monotonic() < deadline, state
                time.sleep(0.5)
            for _ in range(3):  # each round: both at once, exactly one wins
                answers: list[int] = []
                gate = threading.Barrier(2)
                threads = [threading.Thread(target=_resume, args=(h, sid, gate, answers)) for h in (a, b)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(120)
                assert sorted(answers) == [202, 409], answers
                while (state := a.get(f"{SWEEPS}/{sid}").json())["status"] != "failed":
                    assert time.monotonic() < deadline + 240, state
                    time.sleep(0.5)
            jobs = httpx.get(f"{ray_dashboard}/api/jobs/", timeout=30).json()
            ours = sorted(j["submission_id"] for j in jobs if j["submission_id"].startswith(sid))
            assert ours == [sid, f"{sid}-r1", f"{sid}-r2", f"{sid}-r3"], ours
            assert a.get(f"{SWEEPS}/{sid}").json()["job_ids"] == ours
    finally:
        one.stop()
        other.stop()


class HoldingProxy:
    """A TCP proxy to the Ray dashboard that passes everything, except that a connection which submits a job never
    gets the answer: the job starts on the cluster, and the API waits, as when a process dies mid-submit."""

    def __init__(self, target: str):
        self.target = ("127.0.0.1", int(target.rsplit(":", 1)[1]))
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.server.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            held = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, held, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, held, False), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, held: threading.Event, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and b"POST /api/jobs/" in data:
                    held.set()
                if from_client or not held.is_set():
                    dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def _until(what: str, check: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def _ray_jobs(dashboard: str) -> list[dict[str, Any]]:
    return httpx.get(f"{dashboard}/api/jobs/", timeout=30).json()


@pytest.mark.slow
def test_an_api_killed_mid_submit_leaves_a_sweep_the_next_start_adopts(ray_dashboard: str, tmp_path: Path):
    proxy = HoldingProxy(ray_dashboard)
    driver = _script(tmp_path / "long-driver", "sleep 300")
    env = _env(tmp_path, proxy.url, python=driver, node_cpus="2", ray_timeout_s=REAL_RAY_TIMEOUT_S)
    api = Served(tmp_path, env, "dies")
    registry = tmp_path / "storage" / "registry.sqlite3"
    try:
        with api.client(headers=AUTH) as http:
            threading.Thread(target=lambda: _post_quietly(http, spec_body()), daemon=True).start()
            job = _until(
                "the job on the cluster",
                lambda: [j for j in _ray_jobs(ray_dashboard) if j["entrypoint"].startswith(driver)],
            )[0]
            api.kill()
        with sqlite3.connect(registry) as db:
            row = db.execute("SELECT id, status, job_ids_json FROM sweeps").fetchone()
        assert row == (job["submission_id"], "submitted", "[]")  # recorded, its job not: the crash of the issue
        sid = row[0]
        restarted = _env(tmp_path, ray_dashboard, python=driver, node_cpus="2", ray_timeout_s=REAL_RAY_TIMEOUT_S)
        again = Served(tmp_path, restarted, "restarted")
        try:

            def adopted() -> bool:
                with sqlite3.connect(registry) as db:
                    return db.execute("SELECT job_ids_json FROM sweeps").fetchone()[0] == json.dumps([sid])

            _until("the start-up reconciliation", adopted, 60)  # no request asked for it
            with again.client(headers=AUTH) as http:
                assert http.get(f"{SWEEPS}/{sid}").json()["status"] in ("pending", "running")
                assert http.post(f"{SWEEPS}/{sid}/cancel").status_code == 202
                _until("the cancel", lambda: http.get(f"{SWEEPS}/{sid}").json()["status"] == "cancelled", 120)
        finally:
            again.stop()
    finally:
        api.stop()
        proxy.close()


def _post_quietly(http: httpx.Client, body: dict[str, Any]) -> None:
    try:
        http.post(SWEEPS, json=body)
    except httpx.HTTPError:
        pass  # the server is killed while it answers


@pytest.mark.slow
def test_a_driver_killed_on_ray_leaves_files_that_say_so(ray_dashboard: str, data_root: Path, tmp_path: Path):
    env = _env(tmp_path, ray_dashboard, node_cpus="2", ray_timeout_s=REAL_RAY_TIMEOUT_S)
    api = Served(tmp_path, env)
    spec = {
        **spec_body(datasets=["synth_style"], methods=["sgd"], lrs={"sgd": [1e-2, 3e-2]}),
        "epochs": 40,
        "max_train_images": 64,
        "max_eval_images": 32,
        "data_root": str(data_root),
        "threads_per_trial": 1,
        "resources": {"cpus": 1},
    }
    storage = tmp_path / "storage"
    try:
        with api.client(headers=AUTH) as http:
            r = http.post(SWEEPS, json=spec)
            assert r.status_code == 201, r.text
            sid = r.json()["id"]

            def a_trial_runs() -> bool:
                # read_trials opens the file once; a read by path can take one file's size and the next one's pages
                return "running" in read_trials(storage / sid).column("status").to_pylist()

            _until("a running trial", a_trial_runs, 240)
            driver = json.loads((storage / sid / "driver.json").read_text())
            os.kill(driver["pid"], signal.SIGKILL)
            got = _until(
                "the failed sweep", lambda: (s := http.get(f"{SWEEPS}/{sid}").json())["status"] == "failed" and s, 120
            )
            assert got["driver"]["state"] == "failed" and "\n" not in got["error"]
        driver = json.loads((storage / sid / "driver.json").read_text())
        assert driver["state"] == "failed" and driver["finished_at"] and sid in driver["error"]
        table = read_trials(storage / sid).to_pylist()
        assert "running" not in {t["status"] for t in table} and "pending" not in {t["status"] for t in table}
        assert any(t["status"] == "failed" and sid in t["error"] for t in table)
    finally:
        api.stop()
