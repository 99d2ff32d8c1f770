"""The results sinks of the sweeps this process drives, by key (the sweep id).

Tune pickles its callbacks and scheduler into the experiment and restores them from there, so they hold only a
key and look the sink (the driver's `ResultsStore`) up here.
"""

from __future__ import annotations

from typing import Any

_SINKS: dict[str, Any] = {}


def register(key: str, sink: Any) -> None:
    _SINKS[key] = sink


def unregister(key: str) -> None:
    _SINKS.pop(key, None)


def lookup(key: str) -> Any:
    if key not in _SINKS:
        raise RuntimeError(f"no results sink registered under {key!r}; registered: {sorted(_SINKS)}")
    return _SINKS[key]


def find(key: str | None) -> Any | None:
    """The sink under `key`, or None (no key, or none registered: a scheduler driven without a driver)."""
    return _SINKS.get(key) if key is not None else None
