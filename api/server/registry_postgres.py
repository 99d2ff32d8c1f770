"""The sweep registry in PostgreSQL: what several API processes (replicas, rolling updates, `--workers 2`) share.

Same contract as the SQLite registry: one short transaction per call, and conditional updates (`expect_status`,
`expect_job_ids`) decided inside the UPDATE itself, so two processes never both start a job for one sweep.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api import SWEEP_STATES
from api.server.registry import (
    DuplicateKeyError,
    RegistryUnavailableError,
    StaleRecordError,
    SweepRecord,
    SweepRepository,
    UnknownSweepError,
    redact_url,
    utcnow,
)

# Any fixed number: every process creating the schema takes this lock first, so two that start together do not
# race on CREATE TABLE (PostgreSQL's IF NOT EXISTS is not safe against a concurrent creator).
_SCHEMA_LOCK = 0x5EEF5EEF

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec JSONB NOT NULL,
    status TEXT NOT NULL,
    storage_dir TEXT NOT NULL,
    job_ids JSONB NOT NULL DEFAULT '[]'::jsonb,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS sweeps_created ON sweeps (created_at DESC, id);
CREATE INDEX IF NOT EXISTS sweeps_status ON sweeps (status);
"""

_COLUMNS = "id, name, spec, status, storage_dir, job_ids, idempotency_key, request_hash, error, created_at, updated_at"


def _row_to_record(row: dict[str, Any]) -> SweepRecord:
    return SweepRecord(
        id=row["id"],
        name=row["name"],
        spec=row["spec"],
        status=row["status"],
        storage_dir=row["storage_dir"],
        job_ids=tuple(row["job_ids"]),
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class PostgresSweepRepository(SweepRepository):
    """One connection per server thread, reopened when the server dropped it (a restart, a failover)."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0):
        self.url = url
        self._connect_timeout_s = connect_timeout_s
        self._local = threading.local()
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"PostgresSweepRepository({redact_url(self.url)!r})"

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            try:
                conn = psycopg.connect(
                    self.url,
                    row_factory=dict_row,
                    connect_timeout=max(1, round(self._connect_timeout_s)),
                    application_name="shiftsweep-api",
                )
            except psycopg.OperationalError as e:
                raise RegistryUnavailableError(
                    f"cannot reach the PostgreSQL registry at {redact_url(self.url)}: {str(e).strip()}"
                ) from None
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as e:
            conn.close()  # the next call opens a fresh connection
            raise RegistryUnavailableError(
                f"lost the PostgreSQL registry at {redact_url(self.url)}: {str(e).strip()}"
            ) from None

    def add(self, *, record: SweepRecord) -> None:
        try:
            with self._transaction() as cur:
                cur.execute(
                    f"INSERT INTO sweeps ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        record.id,
                        record.name,
                        Jsonb(record.spec),
                        record.status,
                        record.storage_dir,
                        Jsonb(list(record.job_ids)),
                        record.idempotency_key,
                        record.request_hash,
                        record.error,
                        record.created_at,
                        record.updated_at,
                    ),
                )
        except pg_errors.UniqueViolation as e:
            raise DuplicateKeyError(str(e).strip()) from None

    def get(self, *, sweep_id: str) -> SweepRecord:
        with self._transaction() as cur:
            row = cur.execute(f"SELECT {_COLUMNS} FROM sweeps WHERE id = %s", (sweep_id,)).fetchone()
        if row is None:
            raise UnknownSweepError(f"no sweep with id {sweep_id!r}")
        return _row_to_record(row)

    def find_by_idempotency_key(self, *, key: str) -> SweepRecord | None:
        with self._transaction() as cur:
            row = cur.execute(f"SELECT {_COLUMNS} FROM sweeps WHERE idempotency_key = %s", (key,)).fetchone()
        return None if row is None else _row_to_record(row)

    def page(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[SweepRecord], int]:
        where, args = ("WHERE status = %s", (status,)) if status else ("", ())
        with self._transaction() as cur:
            total = cur.execute(f"SELECT COUNT(*) AS n FROM sweeps {where}", args).fetchone()
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM sweeps {where} ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
                (*args, limit, offset),
            ).fetchall()
        return [_row_to_record(r) for r in rows], int(total["n"] if total else 0)

    def update(
        self,
        *,
        sweep_id: str,
        status: str | None = None,
        job_ids: tuple[str, ...] | None = None,
        error: str | None = None,
        clear_error: bool = False,
        spec: dict[str, Any] | None = None,
        expect_status: Collection[str] | None = None,
        expect_job_ids: tuple[str, ...] | None = None,
    ) -> SweepRecord:
        if status is not None and status not in SWEEP_STATES:
            raise ValueError(f"unknown sweep status {status!r}; valid: {', '.join(SWEEP_STATES)}")
        sets, args = ["updated_at = %s"], [utcnow()]
        if status is not None:
            sets.append("status = %s")
            args.append(status)
        if job_ids is not None:
            sets.append("job_ids = %s")
            args.append(Jsonb(list(job_ids)))
        if error is not None or clear_error:
            sets.append("error = %s")
            args.append(error)
        if spec is not None:
            sets += ["spec = %s", "name = %s"]
            args += [Jsonb(spec), str(spec.get("name") or "sweep")]
        where, where_args = ["id = %s"], [sweep_id]
        if expect_status is not None:
            where.append("status = ANY(%s)")
            where_args.append(sorted(expect_status))
        if expect_job_ids is not None:
            where.append("job_ids = %s")
            where_args.append(Jsonb(list(expect_job_ids)))
        with self._transaction() as cur:
            updated = cur.execute(
                f"UPDATE sweeps SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING {_COLUMNS}",
                (*args, *where_args),
            ).fetchone()
            current = updated or cur.execute("SELECT status FROM sweeps WHERE id = %s", (sweep_id,)).fetchone()
        if current is None:
            raise UnknownSweepError(f"no sweep with id {sweep_id!r}")
        if updated is None:
            raise StaleRecordError(f"sweep {sweep_id} changed meanwhile: it is now {current['status']}")
        return _row_to_record(updated)

    def delete(self, *, sweep_id: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM sweeps WHERE id = %s", (sweep_id,))

    def ping(self) -> None:
        with self._transaction() as cur:
            cur.execute("SELECT 1").fetchone()
