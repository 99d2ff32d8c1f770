"""Errors the service answers with, each a status code and a `detail` that says what was wrong.

Raised anywhere below the routers; `api.server.main` turns them into `{"detail": ...}` JSON responses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator import ValidationProblem


def quoted(value: str, limit: int = 80) -> str:
    """A client's value as an error quotes it: its repr, cut short, so that an answer never echoes a payload."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: Any, *, headers: dict[str, str] | None = None):
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail
        self.headers = headers


class Unauthorized(ApiError):
    status_code = 401

    def __init__(self, detail: str):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Invalid(ApiError):
    """422 with every problem, each naming its field."""

    status_code = 422

    def __init__(self, problems: Iterable[ValidationProblem | dict[str, str]]):
        items = [p.model_dump() if isinstance(p, ValidationProblem) else dict(p) for p in problems]
        super().__init__(items)

    @classmethod
    def one(cls, field: str, message: str) -> Invalid:
        return cls([{"field": field, "message": message}])


class Unavailable(ApiError):
    """The cluster (or another service this one needs) did not answer."""

    status_code = 503


class Forbidden(ApiError):
    status_code = 403


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMediaType(ApiError):
    status_code = 415
