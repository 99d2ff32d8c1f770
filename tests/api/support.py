"""Helpers for the API tests: a small spec, and a sweep's results written the way the driver writes them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from orchestrator import DRIVER_FILE, ResultsStore, load_spec
from worker.records import EpochReport, TrialStatus

TOKEN = "test-token-0123456789abcdef"


def wait_until_up(url: str, *, alive: Callable[[], bool], log: Path, what: str, timeout_s: float) -> None:
    """Return once `url` answers 200; raise with the last of `log` when the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def spec_body(**extra: Any) -> dict[str, Any]:
    """3 trials: tiny_vit on synth_spurious, sgd at two LRs and adamw at one, 2 epochs."""
    return {
        "name": "small",
        "models": ["tiny_vit"],
        "datasets": ["synth_spurious"],
        "methods": ["sgd", "adamw"],
        "lrs": {"sgd": [0.01, 0.03], "adamw": [0.001]},
        "epochs": 2,
        "pretrained": False,
        **extra,
    }


def write_results(storage: Path, sweep_id: str, spec: dict[str, Any], *, done: int, running: int = 0) -> list[str]:
    """Trials and epochs Parquet for `spec`: the first `done` trials completed (2 epochs), the next `running`
    trials one epoch in. Returns the trial ids in the sweep's order."""
    trials = load_spec(spec).expand()
    store = ResultsStore(storage / sweep_id, sweep_id, trials)
    ids = [t.trial_id() for t in trials]
    for i, tid in enumerate(ids[: done + running]):
        store.start(tid)
        last = 2 if i < done else 1
        for epoch in range(1, last + 1):
            final = i < done and epoch == last
            report = EpochReport(
                epoch=epoch,
                train_loss=1.0 / epoch,
                lr_now=0.01,
                id_val=0.5 + 0.1 * epoch + 0.01 * i,
                id_test=0.5 + 0.1 * epoch,
                ood_test=0.4 + 0.05 * epoch,
                split_metrics={"id_val/acc": 0.6, "ood_test/acc": float("nan")},
                epoch_time_s=10.0,
                train_time_s=8.0,
                status=TrialStatus.COMPLETED if final else TrialStatus.RUNNING,
                is_best=True,
            )
            store.record_epoch(tid, report)
        if i < done:
            store.finish(tid)
    store.flush()
    return ids


def write_driver(storage: Path, sweep_id: str, state: str, *, runs: int = 1, error: str | None = None) -> None:
    d = storage / sweep_id
    d.mkdir(parents=True, exist_ok=True)
    doc = {"sweep_id": sweep_id, "state": state, "runs": runs, "error": error, "started_at": "2026-01-01T00:00:00"}
    (d / DRIVER_FILE).write_text(json.dumps(doc))
