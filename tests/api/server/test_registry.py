"""The SQLite sweep registry: ids, uniqueness, paging, updates, and persistence across instances."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.server.registry import DuplicateKeyError, SqliteSweepRepository, SweepRecord, UnknownSweepError, new_sweep_id


def _record(sweep_id: str, key: str | None = None) -> SweepRecord:
    return SweepRecord(
        id=sweep_id, name="n", spec={"models": ["tiny_vit"]}, status="submitted", storage_dir="/s", idempotency_key=key
    )


def test_ids_are_short_url_safe_and_distinct():
    ids = {new_sweep_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"s[a-z0-9]{10}", i) for i in ids)


def test_add_get_update_page_delete(tmp_path: Path):
    repo = SqliteSweepRepository(tmp_path / "r.sqlite3")
    for i in range(5):
        repo.add(record=_record(f"s{i}", key=f"k{i}"))
    with pytest.raises(DuplicateKeyError):
        repo.add(record=_record("s0"))
    with pytest.raises(DuplicateKeyError):
        repo.add(record=_record("s9", key="k1"))
    assert repo.get(sweep_id="s2").spec == {"models": ["tiny_vit"]}
    assert repo.find_by_idempotency_key(key="k3").id == "s3"
    assert repo.find_by_idempotency_key(key="zz") is None
    rec = repo.update(sweep_id="s1", status="running", job_ids=("s1", "s1-r1"), error="x")
    assert rec.status == "running" and rec.job_id == "s1-r1" and rec.error == "x" and rec.updated_at > rec.created_at
    assert repo.update(sweep_id="s1", clear_error=True).error is None
    with pytest.raises(ValueError, match="valid"):
        repo.update(sweep_id="s1", status="sleeping")
    with pytest.raises(UnknownSweepError):
        repo.update(sweep_id="nope", status="running")
    rows, total = repo.page(limit=2, offset=0)
    assert total == 5 and [r.id for r in rows] == ["s4", "s3"]
    rows, total = repo.page(limit=10, offset=0, status="running")
    assert total == 1 and rows[0].id == "s1"
    repo.delete(sweep_id="s4")
    with pytest.raises(UnknownSweepError, match="s4"):
        repo.get(sweep_id="s4")


def test_survives_a_new_instance(tmp_path: Path):
    SqliteSweepRepository(tmp_path / "r.sqlite3").add(record=_record("s1", key="k"))
    again = SqliteSweepRepository(tmp_path / "r.sqlite3")
    assert again.get(sweep_id="s1").idempotency_key == "k"
