"""The one loader of the catalog in `configs/`: models, datasets, methods and their LR grids.

Entries are frozen records; everything else in the project asks this module for them by key, so that a
name is spelled in exactly one place (the YAML files) and an unknown key fails with the list of valid ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from configs import CONFIG_DIR


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
    metrics: Mapping[str, str]  # id_val / id_test / ood_test -> "<split>/<metric>"
    synthetic: str | None = None
    domains: Mapping[str, str] = field(default_factory=dict)

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
    lp_ft: Mapping[str, float] | None = None
    families: tuple[str, ...] | None = None

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families


def _read_yaml(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / name
    with path.open() as f:
        return yaml.safe_load(f)


def _pick(kind: str, table: Mapping[str, Any], key: str) -> Any:
    if key not in table:
        valid = ", ".join(sorted(table))
        raise CatalogError(f"unknown {kind} {key!r}; valid {kind}s: {valid}")
    return table[key]


@lru_cache(maxsize=1)
def _models() -> dict[str, ModelEntry]:
    raw = _read_yaml("models.yaml")["models"]
    out = {}
    for key, e in raw.items():
        out[key] = ModelEntry(
            key=key,
            title=e["title"],
            family=e["family"],
            builder=e["builder"],
            weights_file=e["weights_file"],
            input_size=int(e["input_size"]),
            mean=tuple(e["mean"]),
            std=tuple(e["std"]),
            pretraining=e.get("pretraining", {}),
            tiny=bool(e.get("tiny", False)),
            timm_name=e.get("timm_name"),
        )
    return out


@lru_cache(maxsize=1)
def _datasets() -> dict[str, DatasetEntry]:
    raw = _read_yaml("datasets.yaml")["datasets"]
    out = {}
    for key, e in raw.items():
        missing = {"id_val", "id_test", "ood_test"} - set(e["metrics"])
        if missing:
            raise CatalogError(f"dataset {key!r} lacks metrics {sorted(missing)}")
        out[key] = DatasetEntry(
            key=key,
            title=e["title"],
            loader=e["loader"],
            root_subdir=e["root_subdir"],
            layout=e["layout"],
            num_classes=int(e["num_classes"]),
            epochs=int(e["epochs"]),
            image_size=int(e["image_size"]),
            transforms=e["transforms"],
            metrics=dict(e["metrics"]),
            synthetic=e.get("synthetic"),
            domains=dict(e.get("domains", {})),
        )
    return out


@lru_cache(maxsize=1)
def _methods() -> dict[str, MethodEntry]:
    raw = _read_yaml("methods.yaml")
    grids = raw["lr_grids"]
    out = {}
    for key, e in raw["methods"].items():
        grid = _pick("LR grid", grids, e["lr_grid"])
        fams = e.get("families")
        out[key] = MethodEntry(
            key=key,
            title=e["title"],
            optimizer=e["optimizer"],
            options=dict(e.get("options", {})),
            lr_grid=tuple(float(x) for x in grid),
            freeze=e.get("freeze", "none"),
            schedule=e.get("schedule", "cosine"),
            embed_lr_mult=float(e.get("embed_lr_mult", 1.0)),
            lp_ft=e.get("lp_ft"),
            families=tuple(fams) if fams else None,
        )
    return out


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
