"""The sweep registry's contract, run against each implementation: a SQLite file and a real PostgreSQL server.

Ids, uniqueness, paging, updates, conditional updates under contention, persistence across instances; then what
only a server registry meets: lost connections, a server that is gone, two processes creating the schema.
"""

from __future__ import annotations

import multiprocessing
import re
import threading
from pathlib import Path

import pytest

from api.server.registry import (
    DuplicateKeyError,
    RegistryUnavailableError,
    StaleRecordError,
    SweepRecord,
    SweepRepository,
    UnknownSweepError,
    new_sweep_id,
    open_registry,
)
from api.server.settings import get_settings


def _record(sweep_id: str, key: str | None = None, status: str = "submitted") -> SweepRecord:
    return SweepRecord(
        id=sweep_id, name="n", spec={"models": ["tiny_vit"]}, status=status, storage_dir="/s", idempotency_key=key
    )


def test_ids_are_short_url_safe_and_distinct():
    ids = {new_sweep_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"s[a-z0-9]{10}", i) for i in ids)


def test_add_get_update_page_delete(registry_target: str):
    repo = open_registry(registry_target)
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
    rows, total = repo.page(limit=2, offset=4)
    assert total == 5 and [r.id for r in rows] == ["s0"]
    rows, total = repo.page(limit=10, offset=0, status="running")
    assert total == 1 and rows[0].id == "s1"
    repo.delete(sweep_id="s4")
    with pytest.raises(UnknownSweepError, match="s4"):
        repo.get(sweep_id="s4")
    assert repo.page(limit=10, offset=0)[1] == 4


def test_records_round_trip_exactly(registry_target: str):
    """Specs keep nesting, types, key order irrelevant, and any Unicode; times keep their zone."""
    repo = open_registry(registry_target)
    spec = {"name": "Zürich ✓", "lrs": [1e-5, 3e-4], "seeds": [0, 1], "nested": {"a": None, "b": True}, "q": "'\"--"}
    rec = SweepRecord(id="s1", name="Zürich ✓", spec=spec, status="queued", storage_dir="/r/s1", request_hash="h")
    repo.add(record=rec)
    got = repo.get(sweep_id="s1")
    assert got == rec
    assert got.created_at.utcoffset() is not None
    grown = repo.update(sweep_id="s1", spec={**spec, "name": "grown", "seeds": [0, 1, 2]})
    assert grown.name == "grown" and grown.spec["seeds"] == [0, 1, 2]


def test_conditional_updates(registry_target: str):
    repo = open_registry(registry_target)
    repo.add(record=_record("s1", status="cancelled"))
    with pytest.raises(StaleRecordError, match="now cancelled"):
        repo.update(sweep_id="s1", status="running", expect_status={"failed", "finished"})
    started = repo.update(sweep_id="s1", status="running", job_ids=("s1",), expect_status={"cancelled", "failed"})
    assert started.status == "running"
    with pytest.raises(StaleRecordError):
        repo.update(sweep_id="s1", job_ids=("s1", "s1-r1"), expect_job_ids=())
    assert repo.update(sweep_id="s1", job_ids=("s1", "s1-r1"), expect_job_ids=("s1",)).job_ids == ("s1", "s1-r1")
    with pytest.raises(UnknownSweepError):
        repo.update(sweep_id="gone", status="running", expect_status={"cancelled"})


def _resume_once(target: str, barrier: threading.Barrier | None) -> str:
    repo = open_registry(target)
    if barrier is not None:
        barrier.wait()
    try:
        repo.update(sweep_id="s1", status="running", job_ids=("s1", "s1-r1"), expect_status={"cancelled"})
        return "won"
    except StaleRecordError:
        return "stale"


def _resume_in_process(target: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    start.wait()
    out.put(_resume_once(target, None))


def test_only_one_of_many_concurrent_resumes_wins(registry_target: str):
    """Eight threads and four processes, each its own connection, race to resume one stopped sweep."""
    open_registry(registry_target).add(record=_record("s1", status="cancelled"))
    barrier = threading.Barrier(8)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(_resume_once(registry_target, barrier))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["stale"] * 7 + ["won"]

    repo = open_registry(registry_target)
    repo.update(sweep_id="s1", status="cancelled")
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_resume_in_process, args=(registry_target, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcomes = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert outcomes == ["stale"] * 3 + ["won"]
    assert repo.get(sweep_id="s1").status == "running"


def test_survives_a_new_instance(registry_target: str):
    open_registry(registry_target).add(record=_record("s1", key="k"))
    again = open_registry(registry_target)
    assert again.get(sweep_id="s1").idempotency_key == "k"


def test_the_setting_picks_the_registry(tmp_path: Path):
    settings = get_settings(storage=tmp_path / "st")
    assert settings.registry == str(tmp_path / "st" / "registry.sqlite3")
    url = "postgresql://u:pw@db.example:5432/shiftsweep"
    assert get_settings(storage=tmp_path, registry=url).registry == url
    with pytest.raises(ValueError, match=r"unsupported scheme.*postgresql://") as e:
        get_settings(storage=tmp_path, registry="mysql://u:hunter2@db/x")
    assert "hunter2" not in str(e.value)
    with pytest.raises(ValueError, match="not a file"):
        _ = get_settings(storage=tmp_path, registry=url).registry_file
    for broken, why in (
        ("postgresql://u:hunter2@db.example:54x2/reg", "cannot be parsed"),
        ("postgresql://u:hunter2@/reg", "names no host"),
        ("postgresql://u:hunter2@db.example:5432", "names no database"),
    ):
        with pytest.raises(ValueError, match=why) as e:
            get_settings(storage=tmp_path, registry=broken)
        assert "hunter2" not in str(e.value), broken


# ---- what only a server registry has to survive --------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_server) -> str:  # type: ignore[no-untyped-def]
    return postgres_server.new_database()


def test_a_dropped_connection_is_reopened(pg_url: str):
    import psycopg

    repo = open_registry(pg_url)
    repo.add(record=_record("s1"))
    with psycopg.connect(pg_url, autocommit=True) as admin:  # what a server restart or failover does to us
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'shiftsweep-api' AND pid <> pg_backend_pid()"
        )
    with pytest.raises(RegistryUnavailableError, match="lost the PostgreSQL registry"):
        repo.get(sweep_id="s1")
    assert repo.get(sweep_id="s1").id == "s1"  # the next call reconnects


def test_an_unreachable_server_is_said_plainly_without_the_password(postgres_server):  # type: ignore[no-untyped-def]
    url = f"postgresql://someone:hunter2@127.0.0.1:{postgres_server.port}/no_such_db"
    with pytest.raises(RegistryUnavailableError, match="cannot reach the PostgreSQL registry") as e:
        open_registry(url)
    assert "hunter2" not in str(e.value) and "someone:***@127.0.0.1" in str(e.value)


def test_processes_starting_together_create_the_schema_once(pg_url: str):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=open_registry, args=(pg_url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    repo: SweepRepository = open_registry(pg_url)
    repo.add(record=_record("s1"))
    assert repo.page(limit=5, offset=0)[1] == 1
