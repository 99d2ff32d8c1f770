"""A submitted body as the service accepts it: JSON only, bounded in size and nesting, and text that is Unicode.

Read before anything else looks at the request, so that no later step (the spec's validation, the registry,
an error message) ever meets a payload it cannot hold: a 1 GB body, a 100,000-level array, or a string with a
lone surrogate that UTF-8 cannot encode.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from api.server.errors import Invalid, PayloadTooLarge, UnsupportedMediaType
from orchestrator import field_path

MAX_DEPTH = 32  # a spec nests 4 deep (method_options.<method>.<option>: value); anything far deeper is not a spec
JSON_TYPES = ("application/json",)


def is_json_media(content_type: str | None) -> bool:
    """application/json, or any application/<x>+json type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


class _NonFinite:
    """Where the body wrote NaN, Infinity or -Infinity (Python's json reads them; JSON has no such numbers)."""

    def __init__(self, name: str):
        self.name = name


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are unique: JSON parsers disagree on which of two equal keys wins, so neither does."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"the key {_printable(key)!r} appears twice in one object")
        out[key] = value
    return out


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_tree(data: Any) -> None:
    """Invalid naming every place where `data` holds text that is not Unicode or a number that is not finite, or
    the first where it nests deeper than MAX_DEPTH."""
    problems: list[dict[str, str]] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            raise Invalid.one(_where(loc[:MAX_DEPTH]), f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, _NonFinite):
            problems.append({"field": _where(loc), "message": f"{value.name} is not a JSON number; give a finite one"})
        elif isinstance(value, str):
            problems += _text_problems(value, loc)
        elif isinstance(value, dict):
            for key, item in value.items():
                problems += _text_problems(key, (*loc, key))
                stack.append((item, (*loc, key)))
        elif isinstance(value, list):
            stack.extend((item, (*loc, i)) for i, item in reversed(list(enumerate(value))))
    if problems:
        raise Invalid(problems)


def _where(loc: tuple[str | int, ...]) -> str:
    return _printable(field_path(loc)) or "body"


def _text_problems(text: str, loc: tuple[str | int, ...]) -> list[dict[str, str]]:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = _printable(text[e.start : e.end])
        message = f"text must be valid Unicode; a lone surrogate {bad} is at position {e.start}"
        return [{"field": _where(loc), "message": message}]
    return []


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`, checked by check_tree; Invalid (422) says what is wrong with it."""
    if not raw.strip():
        raise Invalid.one("body", "empty body; expected a JSON object")
    try:
        data = json.loads(raw, parse_constant=_NonFinite, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise Invalid.one("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except _DuplicateKey as e:
        raise Invalid.one("body", str(e)) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise Invalid.one("body", f"not valid JSON: {e}") from None
    check_tree(data)
    return data


async def read_json(request: Request, *, max_bytes: int) -> Any:
    """The request's JSON body, read no further than `max_bytes`."""
    content_type = request.headers.get("content-type")
    if not is_json_media(content_type):
        raise UnsupportedMediaType(
            f"the body must be JSON sent with 'Content-Type: application/json'; got {content_type or 'no type'!r}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body is {int(declared)} bytes; this service accepts at most {max_bytes}")
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is over {max_bytes} bytes, the most this service accepts")
        chunks.append(chunk)
    return parse_json(b"".join(chunks))
