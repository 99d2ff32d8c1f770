"""The paper's numbers (configs/paper_reference.yaml, read through the catalog) as frozen records.

Every key in the file is checked when it is loaded: section names against the file's shape, models, datasets and
methods against the catalog. A typo there fails loudly, naming its line, instead of quietly leaving a table
without its reference column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from worker import catalog
from worker.strict_yaml import YamlMap

METRICS = ("ood", "id")
SECTIONS = ("source", "datasets", "results", "wilds_splits", "averages", "best", "memory", "seeds")


@dataclass(frozen=True)
class RefValue:
    """One of the paper's numbers in percent, with its 90% interval over seeds where the paper gives one."""

    value: float
    ci90: float | None = None


@dataclass(frozen=True)
class PaperBest:
    """Table 3: the paper's best OOD result on a dataset, which model and method got it, and the prior best."""

    dataset: str
    value: float
    model: str
    method: str
    prior_sota: float


@dataclass(frozen=True)
class PaperReference:
    """Lookups into the paper's tables; each returns None where the paper has no number."""

    source: str
    datasets: tuple[str, ...]
    results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, RefValue]]]]  # metric -> model -> method -> ds
    averages: Mapping[str, Mapping[str, Mapping[str, float]]]  # metric -> model -> method -> avg
    wilds_splits: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]  # model -> method -> ds -> split
    quoted_averages: Mapping[str, Mapping[str, float]]  # metric -> method
    grand_means: Mapping[str, Mapping[str, float]]  # metric -> method
    best_per_dataset: Mapping[str, PaperBest]
    adamw_overhead: Mapping[str, Mapping[str, float]]  # model -> method -> percent more memory for AdamW
    memory_notes: tuple[str, ...]
    micro_batch: int
    seeds: Mapping[str, int] = field(default_factory=dict)  # model -> seeds per LR behind its cells; "default"

    def paper_seeds(self, model: str) -> int | None:
        """How many seeds per LR the paper averaged in `model`'s cells; None when the paper has no such model."""
        if not any(model in self.results[m] for m in METRICS):
            return None
        return self.seeds.get(model, self.seeds.get("default"))

    def value(self, metric: str, model: str, method: str, dataset: str) -> RefValue | None:
        _check_metric(metric)
        return self.results[metric].get(model, {}).get(method, {}).get(dataset)

    def average(self, metric: str, model: str, method: str) -> float | None:
        """The paper's own five-dataset average for a row."""
        _check_metric(metric)
        return self.averages[metric].get(model, {}).get(method)

    def quoted_average(self, metric: str, method: str) -> float | None:
        """The paper's text's average over all models and datasets for a method."""
        _check_metric(metric)
        return self.quoted_averages.get(metric, {}).get(method)

    def best(self, dataset: str) -> PaperBest | None:
        return self.best_per_dataset.get(dataset)

    def adamw_overhead_pct(self, model: str, method: str) -> float | None:
        """How many percent more peak memory AdamW used than `method` on `model` (Table 4)."""
        return self.adamw_overhead.get(model, {}).get(method)

    def wilds_split(self, model: str, method: str, dataset: str, split: str) -> float | None:
        return self.wilds_splits.get(model, {}).get(method, {}).get(dataset, {}).get(split)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")


class ReferenceError(ValueError):
    """The reference file names something the catalog does not know, or has a malformed entry."""


def _known(kind: str, key: str, valid: list[str], where: str) -> str:
    if key not in valid:
        raise ReferenceError(f"{where}: unknown {kind} {key!r}; valid {kind}s: {', '.join(valid)}")
    return key


def _ref_value(raw: Any, where: str) -> RefValue:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return RefValue(float(raw))
    if isinstance(raw, Mapping) and set(raw) <= {"value", "ci90"} and "value" in raw:
        ci = raw.get("ci90")
        return RefValue(float(raw["value"]), None if ci is None else float(ci))
    raise ReferenceError(f"{where}: expected a number or {{value, ci90}}, got {raw!r}")


def _check(data: Any, allowed: tuple[str, ...], what: str, required: tuple[str, ...] = ()) -> YamlMap:
    try:
        return catalog.check_keys(data, allowed=allowed, required=required, what=what)
    except catalog.CatalogError as e:
        raise ReferenceError(str(e)) from None


def _parse(raw: YamlMap, where: str) -> PaperReference:
    models, datasets, methods = catalog.list_models(), catalog.list_datasets(), catalog.list_methods()
    _check(raw, SECTIONS, where, required=("datasets", "results"))
    _check(raw["results"], METRICS, f"{where} results", required=METRICS)
    _check(raw.get("averages", YamlMap()), ("quoted", "grand_mean"), f"{where} averages")
    for d, b in raw.get("best", {}).items():
        keys = ("value", "model", "method", "prior_sota")
        _check(b, keys, f"{where} best.{d}", required=keys)
    _check(raw.get("memory", YamlMap()), ("micro_batch", "adamw_overhead_pct", "notes"), f"{where} memory")
    ds_order = tuple(_known("dataset", d, datasets, f"{where} datasets") for d in raw["datasets"])
    results: dict[str, dict] = {}
    averages: dict[str, dict] = {}
    for metric in METRICS:
        results[metric], averages[metric] = {}, {}
        for model, rows in raw["results"][metric].items():
            _known("model", model, models, f"{where} results.{metric}")
            for method, cells in rows.items():
                here = f"{where} results.{metric}.{model}.{method}"
                _known("method", method, methods, here)
                cells = dict(cells)
                if "avg" in cells:
                    averages[metric].setdefault(model, {})[method] = float(cells.pop("avg"))
                results[metric].setdefault(model, {})[method] = {
                    _known("dataset", d, datasets, here): _ref_value(v, f"{here}.{d}") for d, v in cells.items()
                }
    wilds: dict[str, dict] = {}
    for model, rows in raw.get("wilds_splits", {}).items():
        for method, per_ds in rows.items():
            here = f"{where} wilds_splits.{model}.{method}"
            _known("model", model, models, here)
            _known("method", method, methods, here)
            wilds.setdefault(model, {})[method] = {
                _known("dataset", d, datasets, here): {s: float(v) for s, v in splits.items()}
                for d, splits in per_ds.items()
            }
    avg_raw = raw.get("averages", {})

    def per_method(block: Mapping[str, Any], name: str) -> dict[str, dict[str, float]]:
        out = {}
        for metric, vals in block.items():
            _check_metric(metric)
            out[metric] = {
                _known("method", m, methods, f"{where} averages.{name}.{metric}"): float(v) for m, v in vals.items()
            }
        return out

    best = {}
    for d, b in raw.get("best", {}).items():
        here = f"{where} best.{d}"
        best[_known("dataset", d, datasets, here)] = PaperBest(
            dataset=d,
            value=float(b["value"]),
            model=_known("model", b["model"], models, here),
            method=_known("method", b["method"], methods, here),
            prior_sota=float(b["prior_sota"]),
        )
    mem = raw.get("memory", {})
    overhead = {
        _known("model", model, models, f"{where} memory"): {
            _known("method", m, methods, f"{where} memory.{model}"): float(v) for m, v in per.items()
        }
        for model, per in mem.get("adamw_overhead_pct", {}).items()
    }
    return PaperReference(
        source=str(raw.get("source", "")),
        datasets=ds_order,
        results=results,
        averages=averages,
        wilds_splits=wilds,
        quoted_averages=per_method(avg_raw.get("quoted", {}), "quoted"),
        grand_means=per_method(avg_raw.get("grand_mean", {}), "grand_mean"),
        best_per_dataset=best,
        adamw_overhead=overhead,
        memory_notes=tuple(mem.get("notes", ())),
        micro_batch=int(mem.get("micro_batch", 1)),
        seeds=_seeds(raw.get("seeds", YamlMap()), models, f"{where} seeds"),
    )


def _seeds(raw: Mapping[str, Any], models: list[str], where: str) -> dict[str, int]:
    out = {}
    for key, n in raw.items():
        if key != "default":
            _known("model", key, models, where)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ReferenceError(f"{where}.{key}: expected a whole number of seeds >= 1, got {n!r}")
        out[key] = n
    return out


def load_reference(path: str | Path | None = None) -> PaperReference:
    """The paper's numbers from `path`, or from the catalog's configs/paper_reference.yaml (read once) when None."""
    if path is None:
        return _default_reference()
    try:
        raw = catalog.read_yaml(Path(path))
    except catalog.CatalogError as e:
        raise ReferenceError(str(e)) from None
    return _parse(raw, Path(path).name)


@lru_cache(maxsize=1)
def _default_reference() -> PaperReference:
    return _parse(catalog.paper_reference(), "paper_reference.yaml")
