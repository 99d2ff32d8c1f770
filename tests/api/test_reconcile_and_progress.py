"""Pure pieces: a sweep's state from its job and driver.json, and its progress from its trials table."""

from __future__ import annotations

import pyarrow as pa
import pytest

from api.file_cache import FileCache
from api.progress import summarize
from api.reconcile import decide
from orchestrator.schema import TRIALS_SCHEMA


@pytest.mark.parametrize(
    ("status", "job", "driver", "runs", "expected"),
    [
        ("submitted", "PENDING", None, 1, "pending"),
        ("pending", "RUNNING", {"state": "running", "runs": 1}, 1, "running"),
        ("cancelling", "RUNNING", None, 1, "cancelling"),
        ("running", "SUCCEEDED", {"state": "finished", "runs": 1}, 1, "finished"),
        ("running", "SUCCEEDED", None, 1, "finished"),
        ("running", "FAILED", {"state": "cancelled", "runs": 1}, 1, "cancelled"),
        ("cancelling", "FAILED", None, 1, "cancelled"),
        ("running", "STOPPED", None, 1, "cancelled"),
        ("running", "FAILED", {"state": "failed", "runs": 1, "error": "E: x"}, 1, "failed"),
        ("running", "FAILED", {"state": "cancelled", "runs": 1}, 2, "failed"),  # an earlier run's record
        ("running", None, {"state": "finished", "runs": 1}, 1, "finished"),
        ("running", None, None, 1, "failed"),
        ("running", "FAILED", {"state": "cancelled", "runs": "garbage"}, 1, "failed"),
    ],
)
def test_decide(status, job, driver, runs, expected):
    state, error = decide(status, "j", job, driver, runs)
    assert state == expected
    assert (error is not None) == (expected == "failed")


def _trials(rows: list[tuple[str, int, int, float | None]]) -> pa.Table:
    base = {name: None for name in TRIALS_SCHEMA.names}
    data = [
        {**base, "status": s, "epochs_planned": p, "epochs_done": d, "wall_time_s": w, "trial_id": str(i)}
        for i, (s, p, d, w) in enumerate(rows)
    ]
    return pa.Table.from_pylist(data, schema=TRIALS_SCHEMA)


def test_progress_before_any_result():
    p = summarize(TRIALS_SCHEMA.empty_table(), expected_total=12)
    assert p.counts["pending"] == 12 and p.total == 12 and p.percent_done == 0.0 and p.eta_seconds is None


def test_progress_weighs_epochs_and_estimates_time_left():
    t = _trials(
        [
            ("completed", 4, 4, 100.0),
            ("completed", 4, 4, 300.0),
            ("stopped", 4, 1, 50.0),  # stopped early: counts in full, not in the mean
            ("running", 4, 2, None),
            ("running", 4, 0, None),
            ("pending", 4, 0, None),
            ("failed", 4, 0, None),
        ]
    )
    p = summarize(t)
    assert p.finished == 4 and p.total == 7
    assert p.percent_done == pytest.approx(100 * (4 + 4 + 4 + 2 + 0 + 0 + 4) / 28, abs=0.01)
    assert p.eta_seconds == pytest.approx((0.5 + 1 + 1) * 200.0 / 2)
    assert summarize(t, active=False).eta_seconds is None


def test_file_cache_reloads_when_the_file_changes(tmp_path):
    path = tmp_path / "f"
    cache = FileCache(maxsize=2)
    loads = []

    def load() -> str:
        loads.append(1)
        return path.read_text() if path.exists() else "missing"

    assert cache.get(path, "k", load) == "missing"
    path.write_text("one")
    assert cache.get(path, "k", load) == "one" and cache.get(path, "k", load) == "one"
    tmp = tmp_path / "g"
    tmp.write_text("two!")
    tmp.replace(path)  # how the driver writes: a new file renamed over the old
    assert cache.get(path, "k", load) == "two!"
    assert len(loads) == 3
    with pytest.raises(ValueError, match="maxsize"):
        FileCache(maxsize=0)
