"""How the service holds when the cluster hangs and a client attacks: latency and memory, measured.

    python bench/service_limits.py

Serves `shiftsweep serve` in a subprocess against a Ray dashboard that accepts connections and never answers
(a frozen cluster), with 20 sweeps still active in its registry, and measures:
- `GET /health`: 20 calls one after another, then 200 calls 50 at a time (target: every call under 2 s);
- `GET /sweeps`, which reconciles every active sweep with the hung cluster (target: under 2 x the Ray timeout);
- a 129 KB spec of every model x dataset x method x 20,000 seeds: answer, time, and the server's peak memory
  growth (it once took 18 s and 2.4 GB);
- a 1 GB body streamed in chunks: answer and time (the server stops reading at its limit).
Prints one line per figure and the targets on the last lines; exit status 1 if a target is missed.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.local_cluster import free_port  # noqa: E402
from worker import catalog  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAY_TIMEOUT_S = 5.0
HEALTH_TARGET_S = 2.0


def hung_dashboard() -> str:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}"


def active_sweeps(registry: Path, n: int) -> None:
    """n sweeps recorded as submitted long ago, as a crashed process leaves them (the table as the service makes it)."""
    from api.server.registry import SqliteSweepRepository, SweepRecord

    repo = SqliteSweepRepository(registry)
    for i in range(n):
        spec = {"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"]}
        repo.add(
            record=SweepRecord(
                id=f"sbench{i:05d}",
                name="stuck",
                spec=spec,
                status="running",
                storage_dir="/x",
                job_ids=(f"sbench{i:05d}",),
            )
        )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def chunks(n: int) -> Iterator[bytes]:
    yield b'{"name": "'
    for _ in range(n):
        yield b"x" * 65536
    yield b'"}'


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="limits-"))
    active_sweeps(tmp / "storage" / "registry.sqlite3", 20)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIFTSWEEP_", "RAY_"))}
    env.update(
        HOME=str(tmp),
        SHIFTSWEEP_STORAGE=str(tmp / "storage"),
        SHIFTSWEEP_RAY_ADDRESS=hung_dashboard(),
        SHIFTSWEEP_API_TOKEN=TOKEN,
        SHIFTSWEEP_CHECK_DATA="false",
        SHIFTSWEEP_NODE_CPUS="2",
        SHIFTSWEEP_RAY_TIMEOUT_S=str(RAY_TIMEOUT_S),
    )
    log = (tmp / "api.log").open("wb")
    cmd = [sys.executable, "-m", "api.client.cli", "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"the API did not start; its log: {tmp / 'api.log'}")
        missed = []

        def timed(method: str, path: str, **kw: object) -> tuple[httpx.Response, float]:
            start = time.monotonic()
            r = httpx.request(method, url + path, timeout=120, **kw)  # type: ignore[arg-type]
            return r, time.monotonic() - start

        one = [timed("GET", "/health")[1] for _ in range(20)]
        print(f"GET /health, cluster hung, 20 in a row: median {statistics.median(one):.3f} s, max {max(one):.3f} s")
        with ThreadPoolExecutor(50) as pool:
            burst = list(pool.map(lambda _: timed("GET", "/health"), range(200)))
        codes = sorted({r.status_code for r, _ in burst})
        worst = max(t for _, t in burst)
        print(f"GET /health, 200 calls 50 at a time: status {codes}, max {worst:.3f} s")
        if max(max(one), worst) >= HEALTH_TARGET_S:
            missed.append("/health")
        time.sleep(RAY_TIMEOUT_S)  # let the service ask the cluster again
        r, took = timed("GET", "/sweeps", headers=AUTH)
        print(
            f"GET /sweeps with 20 active sweeps, cluster hung: {r.status_code} in {took:.2f} s "
            f"(Ray timeout {RAY_TIMEOUT_S:g} s)"
        )
        if took >= 2 * RAY_TIMEOUT_S:
            missed.append("/sweeps")
        body = {
            "models": catalog.list_models(),
            "datasets": catalog.list_datasets(),
            "methods": catalog.list_methods(),
            "seeds": list(range(20_000)),
        }
        raw = json.dumps(body).encode()
        before = peak_rss_mb(proc.pid)
        r, took = timed("POST", "/sweeps", content=raw, headers={**AUTH, "Content-Type": "application/json"})
        growth = peak_rss_mb(proc.pid) - before
        print(
            f"POST /sweeps, {len(raw) / 1e3:.0f} KB, 20,000 seeds: {r.status_code} in {took:.2f} s, "
            f"server peak memory +{growth:.0f} MB: {r.json()['detail'][0]['message'][:70]}"
        )
        r, took = timed("POST", "/sweeps", content=chunks(16_000), headers={**AUTH, "Content-Type": "application/json"})
        print(f"POST /sweeps, 1 GB streamed: {r.status_code} in {took:.2f} s")
        verdict = {name: "missed" if name in missed else "met" for name in ("/health", "/sweeps")}
        print(f"target /health under {HEALTH_TARGET_S:g} s whatever the cluster does: {verdict['/health']}")
        print(f"target /sweeps under {2 * RAY_TIMEOUT_S:g} s with a hung cluster: {verdict['/sweeps']}")
        return 1 if missed else 0
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
