"""The service's settings: one typed object read from the environment (prefix `SHIFTSWEEP_`).

Created by `get_settings()` when the app is built, never at import time, so tests build apps with their own.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.server.registry import is_postgres_url, postgres_url_problem, redact_url

# Tokens that appear in examples and templates; a service guarded by one of them is not guarded at all.
PLACEHOLDER_TOKENS = frozenset({"changethis", "changeme", "secret", "token", "password", "test", "xxx"})
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Everything the service is configured by; each field is the env variable `SHIFTSWEEP_<NAME>`."""

    # hide_input_in_errors: a rejected token or registry URL with its password is never echoed in an error
    model_config = SettingsConfigDict(env_prefix="SHIFTSWEEP_", extra="ignore", hide_input_in_errors=True)

    storage: Path = Field(Path("results"), description="results root: one directory per sweep lives here")
    registry: str | None = Field(
        None,
        description="the sweep registry: a SQLite file (default <storage>/registry.sqlite3), or a "
        "postgresql://user:password@host:5432/db URL when several API processes share it",
    )
    base_dir: Path = Field(
        default_factory=Path.cwd, description="relative data_root / weights_root of a spec are resolved against this"
    )
    api_token: str | None = Field(None, description="bearer token required by mutating endpoints; None: open")
    protect_reads: bool = Field(False, description="also require the token for read endpoints")
    ray_address: str | None = Field(
        None, description="Ray dashboard address for job submission (http://host:8265); None: RAY_ADDRESS or local"
    )
    dashboard_url: str | None = Field(None, description="public dashboard URL shown to users; None: ray_address")
    python: str = Field(sys.executable, description="absolute interpreter path the Ray Job runs the driver with")
    node_cpus: float | None = Field(
        None, gt=0, description="CPUs of the cluster's largest node, for validation; None: ask the cluster"
    )
    node_gpus: float | None = Field(
        None, ge=0, description="GPUs of the cluster's largest node, for validation; None: ask the cluster"
    )
    max_trials: int = Field(20_000, ge=1, description="the most trials one sweep may have, whatever it asks")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="the largest request body accepted")
    ray_timeout_s: float = Field(10.0, gt=0, description="seconds any one call to the Ray cluster may take")
    submit_grace_s: float = Field(
        120.0,
        gt=0,
        description="seconds a sweep may wait for its job to appear on the cluster before it is called failed",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Host names a service without a token answers to (guards against DNS rebinding)",
    )
    check_data: bool = Field(True, description="check each dataset's on-disk layout before submitting")
    stop_wait_s: int = Field(30, ge=1, description="seconds Ray waits after SIGINT before killing a cancelled driver")

    @field_validator("api_token")
    @classmethod
    def _real_token(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.isprintable() or any(c.isspace() for c in v):
            raise ValueError("SHIFTSWEEP_API_TOKEN must be printable, with no spaces or control characters")
        if v.lower() in PLACEHOLDER_TOKENS or len(v) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"SHIFTSWEEP_API_TOKEN must be a real secret of at least {MIN_TOKEN_LENGTH} characters, "
                "not a placeholder; generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return v

    @field_validator("python")
    @classmethod
    def _absolute_python(cls, v: str) -> str:
        if not Path(v).is_absolute():
            raise ValueError(f"SHIFTSWEEP_PYTHON must be an absolute interpreter path, got {v!r}")
        return v

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        self.storage = self.storage.expanduser().resolve()
        self.base_dir = self.base_dir.expanduser().resolve()
        if not self.registry:
            self.registry = str(self.storage / "registry.sqlite3")
        elif is_postgres_url(self.registry):
            problem = postgres_url_problem(self.registry)
            if problem:
                raise ValueError(f"SHIFTSWEEP_REGISTRY {redact_url(self.registry)!r} {problem}")
        else:
            if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", self.registry):
                raise ValueError(
                    f"SHIFTSWEEP_REGISTRY {redact_url(self.registry)!r}: unsupported scheme; accepted: a SQLite "
                    "file path, or postgresql://user:password@host:5432/database"
                )
            self.registry = str(Path(self.registry).expanduser().resolve())
        return self

    @property
    def registry_file(self) -> Path:
        """The SQLite file of the registry; only for a registry that is one."""
        assert self.registry is not None  # filled by the validator
        if is_postgres_url(self.registry):
            raise ValueError("the registry is a PostgreSQL database, not a file")
        return Path(self.registry)


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides (tests, the `serve` command)."""
    return Settings(**overrides)  # type: ignore[arg-type]
