"""The sweep registry in PostgreSQL: what several API processes (replicas, rolling updates, `--workers 2`) share.

The SQL and the contract are `SqlSweepRepository`'s, the same as SQLite's: one short transaction per call, and
conditional updates (`expect_status`, `expect_job_ids`) decided by the UPDATE's own WHERE, which PostgreSQL
re-checks on the row it locks, so two processes never both start a job for one sweep. JSON is kept as JSONB,
times as TIMESTAMPTZ.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.server.registry import RegistryUnavailableError, SqlSweepRepository, redact_url

# Any fixed number: every process creating the schema takes this lock first, so two that start together do not
# race on CREATE TABLE (PostgreSQL's IF NOT EXISTS is not safe against a concurrent creator).
_SCHEMA_LOCK = 0x5EEF5EEF

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec_json JSONB NOT NULL,
    status TEXT NOT NULL,
    storage_dir TEXT NOT NULL,
    job_ids_json JSONB NOT NULL DEFAULT '[]'::jsonb,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS sweeps_created ON sweeps (created_at DESC, id);
CREATE INDEX IF NOT EXISTS sweeps_status ON sweeps (status);
"""


class PostgresSweepRepository(SqlSweepRepository):
    """One connection per server thread, reopened when the server dropped it (a restart, a failover)."""

    placeholder = "%s"
    duplicate_error = pg_errors.UniqueViolation

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

    def _to_json(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def _from_json(self, stored: Any) -> Any:
        return stored  # psycopg has parsed the JSONB already

    def _to_time(self, value: datetime) -> datetime:
        return value

    def _from_time(self, stored: Any) -> datetime:
        return stored
