"""Writing what the server sent to a terminal: every control character escaped.

A sweep's name, an error or a table cell can hold escape sequences that retitle, recolour or clear the user's
terminal; the CLI shows them as `\\x1b` instead. Newlines and tabs of multi-line text (a table) are kept.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

_KEPT = "\n\t"


def safe(text: str) -> str:
    """`text` with every non-printable character but newline and tab written as a Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in _KEPT else c.encode("unicode_escape").decode("ascii") for c in text)


def say(*parts: Any, file: TextIO | None = None) -> None:
    """print(), with the text made safe for a terminal."""
    print(safe(" ".join(str(p) for p in parts)), file=file or sys.stdout)
