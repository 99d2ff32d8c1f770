"""Latency of the REST API under a bounded local load, on a registry the size of a busy deployment.

    python bench/api_latency.py [--requests 200] [--concurrency 4]

Builds a registry of 1,000 sweeps and one running sweep of the paper's main grid (7 models x 5 datasets x
4 methods x 6 LRs = 840 trials) with its trials.parquet and an epochs.parquet of every epoch each dataset plans
(about 16,000 rows), written by the driver's own ResultsStore. Serves the real app with uvicorn on 127.0.0.1 in
a separate process, with the in-memory job backend (so no Ray cluster's latency is measured), and times
`GET /sweeps/{id}` (status) and `GET /sweeps/{id}/trials?limit=100` (a trial page) with httpx; `GET /health`
is timed first as the floor that any request pays on the machine at hand.
Targets: p99 < 50 ms for status, < 200 ms for a trial page. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

os.environ.setdefault("OUTDATED_IGNORE", "1")

N_SWEEPS = 1000
TARGETS_MS = {"status": 50.0, "trial page": 200.0}
GRID = {
    "name": "paper-main",
    "models": [
        "clip_vit_b16",
        "clip_vit_l14",
        "vit_b16_in21k",
        "dino_vit_b16",
        "convnext_b_in22k",
        "bit_r50",
        "bit_r101",
    ],
    "datasets": ["living17", "waterbirds", "domainnet", "fmow", "camelyon"],
    "methods": ["sgd", "adamw", "sgd_freeze_embed", "sgd_freeze_embed_nomom"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(root: Path) -> str:
    """The registry and the big sweep's files; returns the big sweep's id."""
    from api.server.registry import SqliteSweepRepository, SweepRecord, new_sweep_id
    from orchestrator import Location, ResultsStore, load_spec
    from orchestrator.driver_state import DriverState
    from worker.records import EpochReport, TrialStatus

    storage = root / "storage"
    repo = SqliteSweepRepository(storage / "registry.sqlite3")
    small = load_spec({"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"]}).model_dump(mode="json")
    for _ in range(N_SWEEPS - 1):
        sid = new_sweep_id()
        repo.add(record=SweepRecord(id=sid, name="old", spec=small, status="finished", storage_dir=str(storage / sid)))
    spec = load_spec(GRID)
    trials = spec.expand()
    assert len(trials) == 840, len(trials)
    big = new_sweep_id()
    repo.add(
        record=SweepRecord(
            id=big,
            name="paper-main",
            spec=spec.model_dump(mode="json"),
            status="running",
            storage_dir=str(storage / big),
        ),
    )
    repo.update(sweep_id=big, job_ids=(big,))
    rng = random.Random(0)
    store = ResultsStore(storage / big, big, trials, flush_interval_s=1e9)
    for i, t in enumerate(trials):
        tid = t.trial_id()
        if i > 700:
            continue  # still pending
        store.start(tid)
        planned = t.epochs_planned()
        last = planned if i < 680 else max(1, planned // 2)
        for epoch in range(1, last + 1):
            acc = min(0.99, 0.5 + 0.4 * epoch / planned + rng.uniform(-0.05, 0.05))
            report = EpochReport(
                epoch=epoch,
                train_loss=2.0 / epoch,
                lr_now=t.lr,
                id_val=acc,
                id_test=acc - 0.01,
                ood_test=acc - 0.2,
                split_metrics={"id_val/acc": acc, "id_test/acc": acc - 0.01, "ood_test/acc": acc - 0.2},
                epoch_time_s=rng.uniform(30, 300),
                train_time_s=25.0,
                train_images_per_s=400.0,
                optimizer_state_bytes=344_000_000,
                peak_memory_bytes=9_000_000_000,
                status=TrialStatus.COMPLETED if epoch == planned else TrialStatus.RUNNING,
                is_best=True,
            )
            store.record_epoch(tid, report)
        if i < 680:
            store.finish(tid)
    store.flush()
    state = DriverState(Location(storage / big), big, total_trials=len(trials))
    state.update_counts(store.counts())
    return big


def serve(root: Path, port: int) -> None:
    """The app, in its own process, with jobs kept in memory and the big sweep's job running."""
    import uvicorn

    from api.server.jobs import FakeJobBackend
    from api.server.main import create_app
    from api.server.settings import get_settings

    backend = FakeJobBackend()
    settings = get_settings(storage=root / "storage", check_data=False)
    app = create_app(settings, backend=backend)
    for record in app.state.service.repository.page(limit=10, offset=0, status="running")[0]:
        backend.submit(record.id, ["python"], {})
        backend.set_status(record.id, "RUNNING")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _load(url: str, paths: list[str], concurrency: int) -> list[float]:
    times: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return times


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="api-latency-"))
    t0 = time.perf_counter()
    big = build(root)
    print(f"built {N_SWEEPS} sweeps and an 840-trial sweep in {time.perf_counter() - t0:.1f} s ({root})")
    port = _free_port()
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(root, port), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not proc.is_alive():
                print("error: the API did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
        count = httpx.get(f"{url}/sweeps", params={"limit": 1}).json()["count"]
        rows = httpx.get(f"{url}/sweeps/{big}/trials", params={"limit": 1}).json()["count"]
        print(f"registry: {count} sweeps; sweep {big}: {rows} trials")
        status_paths = [f"/sweeps/{big}"] * args.requests
        page_paths = [f"/sweeps/{big}/trials?limit=100&offset={100 * (i % 8)}" for i in range(args.requests)]
        asyncio.run(_load(url, status_paths[:10] + page_paths[:10], args.concurrency))  # warm-up
        missed = False
        runs = (("health", ["/health"] * args.requests), ("status", status_paths), ("trial page", page_paths))
        for name, paths in runs:
            times = asyncio.run(_load(url, paths, args.concurrency))
            med, p99 = statistics.median(times), _p(times, 0.99)
            line = f"{name:10s}: {len(times)} requests, {args.concurrency} concurrent: "
            line += f"median {med:.1f} ms, p99 {p99:.1f} ms"
            if name in TARGETS_MS:
                ok = p99 < TARGETS_MS[name]
                missed |= not ok
                line += f" (target p99 < {TARGETS_MS[name]:.0f} ms: {'met' if ok else 'MISSED'})"
            else:
                line += " (the framework's floor: no storage, no registry)"
            print(line)
        return 1 if missed else 0
    finally:
        proc.terminate()
        proc.join(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
