"""The one door to configs/: models, datasets, methods with their LR grids, sweep presets, the paper's numbers.

Entries are frozen records; everything else in the project asks this module for them by key, so that a name is
spelled in exactly one place (the YAML files) and an unknown key fails with the list of valid ones. The files
are read strictly: an unknown or duplicate key, a missing field or a bad value is an error that names the file,
the line and what is accepted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from configs import CONFIG_DIR
from worker.method_options import LOGREG, OPTIMIZERS, check_options
from worker.records import METRICS
from worker.strict_yaml import YamlError, YamlMap, load_file

PRESET_DIR = CONFIG_DIR / "sweeps"
LP_FT_KEYS = ("probe", "ft_lr_div", "last_epoch_on")
T = TypeVar("T")


class CatalogError(KeyError):
    """An unknown or malformed catalog entry. The message names what was asked and what is valid."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelEntry:
    key: str
    title: str
    family: str
    builder: Mapping[str, Any]
    weights_file: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretraining: Mapping[str, Any] = field(default_factory=dict)
    tiny: bool = False
    timm_name: str | None = None


@dataclass(frozen=True)
class DatasetEntry:
    key: str
    title: str
    loader: str
    root_subdir: str
    layout: str
    num_classes: int
    epochs: int
    image_size: int
    transforms: str
    metrics: Mapping[str, str]  # each of worker.records.METRICS -> "<split>/<metric>"
    synthetic: str | None = None
    domains: Mapping[str, str] = field(default_factory=dict)
    # split -> the two disjoint halves it is divided into (every other image), for a benchmark whose layout has
    # one ID evaluation split where selection and reporting each need their own
    split_halves: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # training flips images left-right, as the paper's pipelines do; off for glyphs, whose mirror images are
    # other shapes (a mirrored 2 is no digit), so the flip would teach shapes the test never shows
    horizontal_flip: bool = True

    def root(self, data_root: str | Path) -> Path:
        return Path(data_root) / self.root_subdir


@dataclass(frozen=True)
class MethodEntry:
    key: str
    title: str
    optimizer: str
    options: Mapping[str, Any]
    lr_grid: tuple[float, ...]
    freeze: str = "none"
    schedule: str = "cosine"
    embed_lr_mult: float = 1.0
    lp_ft: Mapping[str, Any] | None = None  # {probe: a logreg method, ft_lr_div, last_epoch_on: [datasets]}
    families: tuple[str, ...] | None = None

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families

    @property
    def is_linear_probe(self) -> bool:
        """A logistic regression on frozen features (the paper's linear probe): its grid values are C, not LRs."""
        return self.optimizer == LOGREG

    def reports_last_epoch(self, dataset: str) -> bool:
        """The paper's LP-FT reports Waterbirds at the last epoch, not at the best ID-validation epoch."""
        return bool(self.lp_ft) and dataset in self.lp_ft.get("last_epoch_on", ())


# ---- reading the files strictly --------------------------------------------------------------------------------


def _source(path: Path) -> str:
    """How errors name a catalog file: relative to the project, as people find it."""
    return f"configs/{path.relative_to(CONFIG_DIR).as_posix()}" if path.is_relative_to(CONFIG_DIR) else str(path)


def read_yaml(path: Path, *, top_keys: tuple[str, ...] | None = None) -> YamlMap:
    """A catalog file as a YamlMap; with `top_keys`, exactly those top-level keys (others are an error)."""
    try:
        data = load_file(path, _source(path))
    except (OSError, YamlError) as e:
        raise CatalogError(str(e)) from None
    if not isinstance(data, YamlMap):
        raise CatalogError(f"{_source(path)}: expected a mapping at the top, got {type(data).__name__}")
    if top_keys is not None:
        check_keys(data, allowed=top_keys, required=top_keys, what=_source(path))
    return data


def check_keys(data: Any, *, allowed: tuple[str, ...], required: tuple[str, ...] = (), what: str) -> YamlMap:
    """`data` as a mapping with only `allowed` keys and every `required` one; errors name the file and line."""
    if not isinstance(data, YamlMap):
        raise CatalogError(f"{what}: expected a mapping, got {data!r}")
    for k in data:
        if k not in allowed:
            raise CatalogError(f"{data.where(k)}: {what}: unknown key {k!r}; valid keys: {', '.join(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise CatalogError(f"{data.where()}: {what}: missing {', '.join(map(repr, missing))}")
    return data


def _table(data: Any, what: str) -> YamlMap:
    """A section of named entries (any names): it must be a mapping."""
    if not isinstance(data, YamlMap):
        raise CatalogError(f"{what}: expected a mapping of named entries, got {data!r}")
    return data


def _entries(raw: Any, cls: type[T], what: str, convert: Mapping[str, Callable[[Any], Any]]) -> dict[str, T]:
    """Every entry of a section as a frozen record, keyed by its name."""
    return {key: _entry(cls, key, e, what, convert) for key, e in _table(raw, f"{what}s").items()}


def _entry(cls: type[T], key: str, raw: Any, what: str, convert: Mapping[str, Callable[[Any], Any]]) -> T:
    """A frozen record from one YAML entry: unknown keys, missing fields and bad values each name their line."""
    fields = [f for f in dataclasses.fields(cls) if f.name != "key"]
    required = tuple(
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    entry = check_keys(raw, allowed=tuple(f.name for f in fields), required=required, what=f"{what} {key!r}")
    values: dict[str, Any] = {"key": key}
    for name, value in entry.items():
        try:
            values[name] = convert[name](value) if name in convert else value
        except CatalogError:
            raise  # a nested mapping's error already names its own line
        except (TypeError, ValueError) as e:
            raise CatalogError(f"{entry.where(name)}: {what} {key!r}: {name}: {e}") from None
    return cls(**values)


def _triple(v: Any) -> tuple[float, float, float]:
    if not isinstance(v, list) or len(v) != 3:
        raise ValueError(f"expected three numbers, got {v!r}")
    return (float(v[0]), float(v[1]), float(v[2]))


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"expected a whole number >= 1, got {v!r}")
    return v


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _mapping(v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"expected a mapping, got {v!r}")
    return dict(v)


def _pick(kind: str, table: Mapping[str, T], key: str) -> T:
    if not isinstance(key, str) or key not in table:
        valid = ", ".join(sorted(table))
        raise CatalogError(f"unknown {kind} {key!r}; valid {kind}s: {valid}")
    return table[key]


@lru_cache(maxsize=1)
def _models() -> dict[str, ModelEntry]:
    raw = read_yaml(CONFIG_DIR / "models.yaml", top_keys=("models",))["models"]
    convert = {
        "builder": _mapping,
        "pretraining": _mapping,
        "input_size": _positive_int,
        "mean": _triple,
        "std": _triple,
        "tiny": _flag,
    }
    return _entries(raw, ModelEntry, "model", convert)


def _metrics(v: Any) -> dict[str, str]:
    m = check_keys(v, allowed=METRICS, required=METRICS, what="metrics")
    return {k: str(s) for k, s in m.items()}


def _split_halves(v: Any) -> dict[str, tuple[str, str]]:
    out = {}
    for split, halves in _mapping(v).items():
        if not (isinstance(halves, list) and len(halves) == 2 and all(isinstance(h, str) and h for h in halves)):
            raise ValueError(f"split_halves.{split} must list the two halves' split names, got {halves!r}")
        if halves[0] == halves[1]:
            raise ValueError(f"split_halves.{split} names one split twice: {halves[0]!r}")
        out[str(split)] = (halves[0], halves[1])
    return out


@lru_cache(maxsize=1)
def _datasets() -> dict[str, DatasetEntry]:
    raw = read_yaml(CONFIG_DIR / "datasets.yaml", top_keys=("datasets",))["datasets"]
    convert = {
        "num_classes": _positive_int,
        "epochs": _positive_int,
        "image_size": _positive_int,
        "metrics": _metrics,
        "domains": _mapping,
        "split_halves": _split_halves,
        "horizontal_flip": _flag,
    }
    return _entries(raw, DatasetEntry, "dataset", convert)


@lru_cache(maxsize=1)
def _methods() -> dict[str, MethodEntry]:
    raw = read_yaml(CONFIG_DIR / "methods.yaml", top_keys=("lr_grids", "methods"))
    grids = _table(raw["lr_grids"], "lr_grids")

    def grid(name: Any) -> tuple[float, ...]:
        if not isinstance(name, str) or name not in grids:
            raise ValueError(f"unknown LR grid {name!r}; valid LR grids: {', '.join(grids)}")
        values = grids[name]
        if isinstance(values, Mapping):
            values = _logspace(name, values)
        if not isinstance(values, list) or not values or not all(isinstance(x, (int, float)) and x > 0 for x in values):
            raise ValueError(
                f"LR grid {name!r} must be a non-empty list of numbers > 0 or {{logspace: [start, stop, num]}}, "
                f"got {values!r}"
            )
        return tuple(float(x) for x in values)

    def optimizer(name: Any) -> str:
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        return name

    def lp_ft(v: Any) -> dict[str, Any]:
        entry = check_keys(v, allowed=LP_FT_KEYS, required=("probe", "ft_lr_div"), what="lp_ft")
        div = entry["ft_lr_div"]
        if isinstance(div, bool) or not isinstance(div, (int, float)) or not div > 0:
            raise ValueError(f"ft_lr_div must be a number > 0, got {div!r}")
        last = entry.get("last_epoch_on", [])
        if not isinstance(last, list) or not all(isinstance(d, str) for d in last):
            raise ValueError(f"last_epoch_on must be a list of dataset keys, got {last!r}")
        return {"probe": str(entry["probe"]), "ft_lr_div": float(div), "last_epoch_on": tuple(last)}

    def embed_lr_mult(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"expected a number > 0, got {v!r}")
        return float(v)

    convert = {
        "optimizer": optimizer,
        "options": _mapping,
        "lr_grid": grid,
        "embed_lr_mult": embed_lr_mult,
        "lp_ft": lp_ft,
        "families": lambda v: tuple(v) if v else None,
    }
    methods = _entries(raw["methods"], MethodEntry, "method", convert)
    for key, entry in methods.items():
        problems = check_options(key, entry.optimizer, entry.options)
        if problems:
            options = raw["methods"][key]["options"]
            raise CatalogError(f"{options.where(problems[0].option)}: {problems[0]}")
        if entry.lp_ft:
            probe = methods.get(entry.lp_ft["probe"])
            if probe is None or probe.optimizer != LOGREG:
                where = raw["methods"][key]["lp_ft"].where("probe")
                probes = [k for k, m in methods.items() if m.optimizer == LOGREG]
                raise CatalogError(
                    f"{where}: method {key!r}: lp_ft.probe must name a logistic-regression method "
                    f"({', '.join(probes)}), got {entry.lp_ft['probe']!r}"
                )
            for d in entry.lp_ft["last_epoch_on"]:
                if d not in _datasets():
                    where = raw["methods"][key]["lp_ft"].where("last_epoch_on")
                    raise CatalogError(f"{where}: method {key!r}: unknown dataset {d!r} in lp_ft.last_epoch_on")
    return methods


def _logspace(name: str, spec: Mapping[str, Any]) -> list[float]:
    """`{logspace: [start, stop, num]}`: numpy.logspace(start, stop, num), as the paper's probe grid is given."""
    if set(spec) != {"logspace"} or not isinstance(spec["logspace"], list) or len(spec["logspace"]) != 3:
        raise ValueError(f"LR grid {name!r}: a generated grid is {{logspace: [start, stop, num]}}, got {dict(spec)!r}")
    start, stop, num = spec["logspace"]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (start, stop)) or not (
        isinstance(num, int) and not isinstance(num, bool) and 1 <= num <= 1000
    ):
        raise ValueError(f"LR grid {name!r}: logspace needs two numbers and a count from 1 to 1000, got {spec!r}")
    return [float(x) for x in np.logspace(start, stop, num)]


# ---- the doors -------------------------------------------------------------------------------------------------


def get_model(key: str) -> ModelEntry:
    return _pick("model", _models(), key)


def get_dataset(key: str) -> DatasetEntry:
    return _pick("dataset", _datasets(), key)


def get_method(key: str) -> MethodEntry:
    return _pick("method", _methods(), key)


def list_models(*, tiny: bool | None = None) -> list[str]:
    return [k for k, e in _models().items() if tiny is None or e.tiny == tiny]


def list_datasets(*, synthetic: bool | None = None) -> list[str]:
    return [k for k, e in _datasets().items() if synthetic is None or (e.synthetic is not None) == synthetic]


def list_methods() -> list[str]:
    return list(_methods())


def method_option_problems(method: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, message) for every option of `options` that `method`'s optimizer would refuse."""
    entry = get_method(method)
    return [(p.option or "", str(p)) for p in check_options(method, entry.optimizer, options)]


def list_presets() -> list[str]:
    """Sweep presets, by the names a submission may use: the files of configs/sweeps/ without `.yaml`."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def get_preset(name: str) -> YamlMap:
    """A preset's raw fields (the sweep spec checks them); only a name that `list_presets` gives is ever opened."""
    _pick("preset", dict.fromkeys(list_presets()), name)
    return read_yaml(PRESET_DIR / f"{name}.yaml")


@lru_cache(maxsize=1)
def paper_reference() -> YamlMap:
    """configs/paper_reference.yaml, read strictly; `analysis.tables.reference` checks what it holds."""
    return read_yaml(CONFIG_DIR / "paper_reference.yaml")


@lru_cache(maxsize=1)
def living17_split() -> list[dict[str, Any]]:
    """BREEDS Living-17 (split `rand`): 17 classes, each with 2 source and 2 target ImageNet wnids."""
    with (CONFIG_DIR / "living17_split.json").open() as f:
        return json.load(f)


def catalog_dict() -> dict[str, Any]:
    """The whole catalog as plain data, for the API's catalog endpoint and the docs."""

    def plain(rec: Any) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.__dict__.items()}

    return {
        "models": {k: plain(v) for k, v in _models().items()},
        "datasets": {k: plain(v) for k, v in _datasets().items()},
        "methods": {k: plain(v) for k, v in _methods().items()},
    }
