"""The sweep registry: what the service knows of each sweep, kept in a database so that a restart loses nothing.

`SweepRepository` is the interface the rest of the service uses. `SqliteSweepRepository` (one file, the embedded
default for one API process) and `PostgresSweepRepository` (api.server.registry_postgres, for several API
processes) implement it with one short transaction per call; `open_registry` picks one from the setting.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from api import ACTIVE_STATES, SWEEP_STATES

_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 10


def new_sweep_id() -> str:
    """Short, URL-safe and valid as a Ray submission id and a directory name: `s` + 10 of [a-z0-9]."""
    return "s" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DuplicateKeyError(Exception):
    """A sweep with this id or idempotency key exists already."""


class StaleRecordError(Exception):
    """A conditional update found the record changed by someone else (another request or API process)."""


class RegistryUnavailableError(Exception):
    """The registry's database cannot be reached (a server registry that is down or refuses us)."""


class UnknownSweepError(KeyError):
    """No sweep has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SweepRecord:
    id: str
    name: str
    spec: dict[str, Any]
    status: str
    storage_dir: str
    job_ids: tuple[str, ...] = ()
    idempotency_key: str | None = None
    request_hash: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def job_id(self) -> str | None:
        """The job of the latest run (the first submission or the latest resume)."""
        return self.job_ids[-1] if self.job_ids else None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    def evolve(self, **changes: Any) -> SweepRecord:
        return replace(self, **changes)


class SweepRepository(ABC):
    """Persistence of sweep records; every write is atomic."""

    @abstractmethod
    def add(self, *, record: SweepRecord) -> None:
        """Insert a new record; DuplicateKeyError if its id or idempotency key is taken."""

    @abstractmethod
    def get(self, *, sweep_id: str) -> SweepRecord:
        """The record, or UnknownSweepError."""

    @abstractmethod
    def find_by_idempotency_key(self, *, key: str) -> SweepRecord | None: ...

    @abstractmethod
    def page(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[SweepRecord], int]:
        """A page of records, newest first, and the total count."""

    @abstractmethod
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
        """Change some fields of a record and stamp `updated_at`; returns the new record. `spec`: the grown spec of
        an extended sweep.

        With `expect_status` / `expect_job_ids` the change is made only if the stored record still has one of
        those states / exactly those jobs, in the same transaction (else StaleRecordError): how two requests,
        or two API processes on one registry, never both start a job for one sweep.
        """

    @abstractmethod
    def delete(self, *, sweep_id: str) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot be read."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    status TEXT NOT NULL,
    storage_dir TEXT NOT NULL,
    job_ids_json TEXT NOT NULL DEFAULT '[]',
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sweeps_created ON sweeps (created_at DESC, id);
"""

_COLUMNS = (
    "id, name, spec_json, status, storage_dir, job_ids_json, idempotency_key, request_hash, error, "
    "created_at, updated_at"
)


def _row_to_record(row: sqlite3.Row) -> SweepRecord:
    return SweepRecord(
        id=row["id"],
        name=row["name"],
        spec=json.loads(row["spec_json"]),
        status=row["status"],
        storage_dir=row["storage_dir"],
        job_ids=tuple(json.loads(row["job_ids_json"])),
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        error=row["error"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


class SqliteSweepRepository(SweepRepository):
    """SQLite in WAL mode, one connection per thread (threads of the server never share one)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # one connection per server thread, reused across requests
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        with conn:  # one transaction: committed on success, rolled back on error
            yield conn

    def add(self, *, record: SweepRecord) -> None:
        try:
            with self._connect() as conn:
                conn.execute(
                    f"INSERT INTO sweeps ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.name,
                        json.dumps(record.spec, sort_keys=True),
                        record.status,
                        record.storage_dir,
                        json.dumps(list(record.job_ids)),
                        record.idempotency_key,
                        record.request_hash,
                        record.error,
                        record.created_at.isoformat(),
                        record.updated_at.isoformat(),
                    ),
                )
        except sqlite3.IntegrityError as e:
            raise DuplicateKeyError(str(e)) from None

    def get(self, *, sweep_id: str) -> SweepRecord:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise UnknownSweepError(f"no sweep with id {sweep_id!r}")
        return _row_to_record(row)

    def find_by_idempotency_key(self, *, key: str) -> SweepRecord | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM sweeps WHERE idempotency_key = ?", (key,)).fetchone()
        return None if row is None else _row_to_record(row)

    def page(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[SweepRecord], int]:
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._connect() as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM sweeps {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM sweeps {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_row_to_record(r) for r in rows], int(total)

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
        sets, args = ["updated_at = ?"], [utcnow().isoformat()]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
        if job_ids is not None:
            sets.append("job_ids_json = ?")
            args.append(json.dumps(list(job_ids)))
        if error is not None or clear_error:
            sets.append("error = ?")
            args.append(error)  # type: ignore[arg-type]
        if spec is not None:
            sets += ["spec_json = ?", "name = ?"]
            args += [json.dumps(spec, sort_keys=True), str(spec.get("name") or "sweep")]
        where, where_args = ["id = ?"], [sweep_id]
        if expect_status is not None:
            states = sorted(expect_status)
            where.append(f"status IN ({', '.join('?' * len(states))})")
            where_args += states
        if expect_job_ids is not None:
            where.append("job_ids_json = ?")
            where_args.append(json.dumps(list(expect_job_ids)))
        with self._connect() as conn:
            cur = conn.execute(f"UPDATE sweeps SET {', '.join(sets)} WHERE {' AND '.join(where)}", (*args, *where_args))
            row = conn.execute(f"SELECT {_COLUMNS} FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise UnknownSweepError(f"no sweep with id {sweep_id!r}")
        if cur.rowcount == 0:
            raise StaleRecordError(f"sweep {sweep_id} changed meanwhile: it is now {row['status']}")
        return _row_to_record(row)

    def delete(self, *, sweep_id: str) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,))

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1").fetchone()


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + host))


def open_registry(target: str | Path) -> SweepRepository:
    """The registry at `target`: a `postgresql://` URL, or the path of a SQLite file (created if missing)."""
    if is_postgres_url(target):
        from api.server.registry_postgres import PostgresSweepRepository  # psycopg only where it is used

        return PostgresSweepRepository(str(target))
    return SqliteSweepRepository(Path(target))
