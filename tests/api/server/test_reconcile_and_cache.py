"""Pure pieces: a sweep's state from its job and driver.json, and the cache of files read from storage."""

from __future__ import annotations

import pytest

from api.server.file_cache import FileCache
from api.server.reconcile import decide


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
