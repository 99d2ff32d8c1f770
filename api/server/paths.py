"""The one way the service turns names into paths: always inside the configured storage.

Every endpoint that touches a file goes through `inside`, which refuses `..`, absolute parts, empty parts and
anything (symlinks included) that resolves outside the root.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A name that would leave the storage root."""


@lru_cache(maxsize=16)
def _resolved(root: Path) -> Path:
    """The storage root, resolved once: it is the service's own configuration, not user input."""
    return root.resolve()


def inside(root: Path, *parts: str) -> Path:
    """`root / parts...`, resolved, or UnsafePathError when any part could escape `root`."""
    base = _resolved(root)
    for part in parts:
        if not part or "\x00" in part or "\\" in part:
            raise UnsafePathError(f"invalid path component {part!r}: empty, NUL or backslash")
        pure = PurePosixPath(part)
        if pure.is_absolute() or Path(part).is_absolute():
            raise UnsafePathError(f"invalid path component {part!r}: absolute paths are not accepted")
        if any(p in ("..", ".") for p in pure.parts):
            raise UnsafePathError(f"invalid path component {part!r}: '.' and '..' are not accepted")
    candidate = base.joinpath(*parts)
    resolved = candidate.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} resolves outside the storage directory")
    return resolved
