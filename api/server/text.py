"""Text from the cluster as the service shows it: one clean line.

A failed trial's or driver's error is a full Ray traceback (file paths, the node's IP, actor ids, ANSI colour
codes). The Parquet tables and the logs keep all of it; a client is shown the line that says what went wrong.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

MAX_ERROR_CHARS = 300
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:|$)")


def one_line(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """The line of `text` that says what went wrong (the last `SomeError: message` line, else the last line),
    without colour codes or control characters, cut to `limit` characters."""
    if text is None:
        return None
    lines = [ln.strip() for ln in _ANSI.sub("", str(text)).splitlines() if ln.strip()]
    if not lines:
        return None
    exceptions = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    line = (exceptions or lines)[-1]
    line = "".join(c if c.isprintable() else " " for c in line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


PublicError = Annotated[str | None, BeforeValidator(one_line)]
