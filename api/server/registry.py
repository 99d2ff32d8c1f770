"""The sweep registry: what the service knows of each sweep, kept in a database so that a restart loses nothing.

`SweepRepository` is the interface the rest of the service uses. `SqliteSweepRepository` (one file, the embedded
default for one API process) and `PostgresSweepRepository` (api.server.registry_postgres, for several API
processes) implement it with one short transaction per call; `open_registry` picks one from the setting.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import string
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
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


def changed_fields(
    *,
    status: str | None,
    job_ids: tuple[str, ...] | None,
    error: str | None,
    clear_error: bool,
    spec: dict[str, Any] | None,
) -> dict[str, Any]:
    """The fields an update sets (`status`, `job_ids`, `error`, `spec`, `name`), checked: the one reading of
    `SweepRepository.update`'s arguments that every registry applies in its own SQL."""
    if status is not None and status not in SWEEP_STATES:
        raise ValueError(f"unknown sweep status {status!r}; valid: {', '.join(SWEEP_STATES)}")
    out: dict[str, Any] = {}
    if status is not None:
        out["status"] = status
    if job_ids is not None:
        out["job_ids"] = list(job_ids)
    if error is not None or clear_error:
        out["error"] = error
    if spec is not None:
        out |= {"spec": spec, "name": str(spec.get("name") or "sweep")}
    return out


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


_COLUMNS = (
    "id, name, spec_json, status, storage_dir, job_ids_json, idempotency_key, request_hash, error, "
    "created_at, updated_at"
)
_JSON_FIELDS = {"spec": "spec_json", "job_ids": "job_ids_json"}  # record fields kept as JSON, and their columns


class SqlSweepRepository(SweepRepository):
    """The registry's SQL, written once for every database: one table `sweeps`, one short transaction per call,
    conditional updates decided by the UPDATE's own WHERE. A database supplies its connection (`_transaction`,
    yielding something with `execute`), its placeholder, and how it stores JSON and times."""

    placeholder = "?"
    duplicate_error: type[Exception] = Exception  # what the driver raises on a UNIQUE violation

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def _to_json(self, value: Any) -> Any: ...

    @abstractmethod
    def _from_json(self, stored: Any) -> Any: ...

    @abstractmethod
    def _to_time(self, value: datetime) -> Any: ...

    @abstractmethod
    def _from_time(self, stored: Any) -> datetime: ...

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _record(self, row: Any) -> SweepRecord:
        return SweepRecord(
            id=row["id"],
            name=row["name"],
            spec=self._from_json(row["spec_json"]),
            status=row["status"],
            storage_dir=row["storage_dir"],
            job_ids=tuple(self._from_json(row["job_ids_json"])),
            idempotency_key=row["idempotency_key"],
            request_hash=row["request_hash"],
            error=row["error"],
            created_at=self._from_time(row["created_at"]),
            updated_at=self._from_time(row["updated_at"]),
        )

    def _row(self, db: Any, sweep_id: str) -> Any:
        return db.execute(self._sql(f"SELECT {_COLUMNS} FROM sweeps WHERE id = ?"), (sweep_id,)).fetchone()

    def add(self, *, record: SweepRecord) -> None:
        values = (
            record.id,
            record.name,
            self._to_json(record.spec),
            record.status,
            record.storage_dir,
            self._to_json(list(record.job_ids)),
            record.idempotency_key,
            record.request_hash,
            record.error,
            self._to_time(record.created_at),
            self._to_time(record.updated_at),
        )
        try:
            with self._transaction() as db:
                db.execute(self._sql(f"INSERT INTO sweeps ({_COLUMNS}) VALUES ({', '.join('?' * 11)})"), values)
        except self.duplicate_error as e:
            raise DuplicateKeyError(str(e).strip()) from None

    def get(self, *, sweep_id: str) -> SweepRecord:
        with self._transaction() as db:
            row = self._row(db, sweep_id)
        if row is None:
            raise UnknownSweepError(f"no sweep with id {sweep_id!r}")
        return self._record(row)

    def find_by_idempotency_key(self, *, key: str) -> SweepRecord | None:
        with self._transaction() as db:
            row = db.execute(self._sql(f"SELECT {_COLUMNS} FROM sweeps WHERE idempotency_key = ?"), (key,)).fetchone()
        return None if row is None else self._record(row)

    def page(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[SweepRecord], int]:
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._transaction() as db:
            total = db.execute(self._sql(f"SELECT COUNT(*) AS n FROM sweeps {where}"), args).fetchone()["n"]
            rows = db.execute(
                self._sql(f"SELECT {_COLUMNS} FROM sweeps {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?"),
                (*args, limit, offset),
            ).fetchall()
        return [self._record(r) for r in rows], int(total)

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
        sets, args = ["updated_at = ?"], [self._to_time(utcnow())]
        fields = changed_fields(status=status, job_ids=job_ids, error=error, clear_error=clear_error, spec=spec)
        for name, value in fields.items():
            sets.append(f"{_JSON_FIELDS.get(name, name)} = ?")
            args.append(self._to_json(value) if name in _JSON_FIELDS else value)
        where, where_args = ["id = ?"], [sweep_id]
        if expect_status is not None:
            states = sorted(expect_status)
            where.append(f"status IN ({', '.join('?' * len(states))})")
            where_args += states
        if expect_job_ids is not None:
            where.append("job_ids_json = ?")
            where_args.append(self._to_json(list(expect_job_ids)))
        with self._transaction() as db:
            sql = f"UPDATE sweeps SET {', '.join(sets)} WHERE {' AND '.join(where)}"
            changed = db.execute(self._sql(sql), (*args, *where_args)).rowcount
            row = self._row(db, sweep_id)
        if row is None:
            raise UnknownSweepError(f"no sweep with id {sweep_id!r}")
        if changed == 0:
            raise StaleRecordError(f"sweep {sweep_id} changed meanwhile: it is now {row['status']}")
        return self._record(row)

    def delete(self, *, sweep_id: str) -> None:
        with self._transaction() as db:
            db.execute(self._sql("DELETE FROM sweeps WHERE id = ?"), (sweep_id,))

    def ping(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT 1").fetchone()


_SQLITE_SCHEMA = """
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


class SqliteSweepRepository(SqlSweepRepository):
    """SQLite in WAL mode, one connection per thread (threads of the server never share one); JSON as text,
    times as ISO 8601 text."""

    duplicate_error = sqlite3.IntegrityError

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # one connection per server thread, reused across requests
        with self._transaction() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SQLITE_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        with conn:  # one transaction: committed on success, rolled back on error
            yield conn

    def _to_json(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def _from_json(self, stored: Any) -> Any:
        return json.loads(stored)

    def _to_time(self, value: datetime) -> str:
        return value.isoformat()

    def _from_time(self, stored: Any) -> datetime:
        return datetime.fromisoformat(stored)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs; a URL too broken to parse loses all it has between
    `://` and the last `@`."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # an unparsable port, a bad IPv6 literal
        return re.sub(r"://[^/]*@", "://***@", url)
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + host))


def postgres_url_problem(url: str) -> str | None:
    """What is wrong with a postgresql:// URL before any connection is tried, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parses the port: raises on one that is not a number)
    except ValueError as e:
        return f"cannot be parsed ({e})"
    if not parts.hostname:
        return "names no host"
    if not parts.path.strip("/"):
        return "names no database (postgresql://user:password@host:5432/database)"
    return None


def open_registry(target: str | Path) -> SweepRepository:
    """The registry at `target`: a `postgresql://` URL, or the path of a SQLite file (created if missing)."""
    if is_postgres_url(target):
        from api.server.registry_postgres import PostgresSweepRepository  # psycopg only where it is used

        return PostgresSweepRepository(str(target))
    return SqliteSweepRepository(Path(target))
