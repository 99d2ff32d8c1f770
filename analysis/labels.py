"""Catalog titles and order for table rows and columns, so tables list things the way the catalog does.

Keys the catalog does not know (results of a sweep run against an older catalog) keep their key as title and
sort after the known ones instead of failing the whole table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from worker import catalog

Kind = Literal["model", "dataset", "method"]

_GETTERS: dict[str, Callable[[str], Any]] = {
    "model": catalog.get_model,
    "dataset": catalog.get_dataset,
    "method": catalog.get_method,
}
_LISTS: dict[str, Callable[[], list[str]]] = {
    "model": catalog.list_models,
    "dataset": catalog.list_datasets,
    "method": catalog.list_methods,
}


def title(kind: Kind, key: str) -> str:
    try:
        return _GETTERS[kind](key).title
    except catalog.CatalogError:
        return key


def ordered(kind: Kind, keys: Iterable[str]) -> list[str]:
    """Distinct `keys` in catalog order; unknown ones last, alphabetically."""
    known = {k: i for i, k in enumerate(_LISTS[kind]())}
    return sorted(set(keys), key=lambda k: (known.get(k, len(known)), k))


def metric_title(metric: str) -> str:
    """'id_val' -> 'ID val', 'ood_test' -> 'OOD test': a metric of worker.records.METRICS as a column title."""
    scope, _, split = metric.partition("_")
    return f"{scope.upper()} {split}".strip()
