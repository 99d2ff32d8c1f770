"""Build a family's classifier with its library, from random init, a local weights file, or an offline hub cache.

- clip_vit (open_clip): the vision tower whole, final projection `proj` included, and a new linear head on the
  projected feature. A full CLIP checkpoint goes through `open_clip.create_model(name, pretrained=<path>)`;
  tiny towers are open_clip's own `VisionTransformer` built from the catalog's `vision_cfg` with QuickGELU.
- vit, convnext, resnetv2 (timm): `timm.create_model(name, pretrained=True,
  pretrained_cfg_overlay=dict(file=<path>, custom_load=<.npz?>), num_classes=n, **overrides)`, the classifier
  replaced. BiT's ResNetV2 builders hard-code their depth, so the tiny member goes through timm's
  `build_model_with_cfg(ResNetV2, ...)` with BiT's stem and weight-standardised convs: the same loader.
- Files written by `save_backbone_weights` hold every tensor but the head. timm reads them through the same
  `pretrained_cfg_overlay` path; open_clip cannot (it wants a whole CLIP), so they load straight into the tower.
- Every load is strict on all tensors but the head (timm relaxes strictness when it drops a classifier, so the
  names are checked here).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import open_clip
import timm
import torch
from open_clip.model import _build_vision_tower
from timm.layers import GroupNormAct, StdConv2d
from timm.models import build_model_with_cfg
from timm.models.resnetv2 import ResNetV2
from torch import nn

from worker.catalog import ModelEntry
from worker.models.families import Family
from worker.models.weights import (
    HUB,
    WeightsNotFoundError,
    backbone_file_metadata,
    check_backbone_keys,
    load_backbone_file,
)

Source = Path | str | None  # a weights file, HUB, or None for random init


class ClipClassifier(nn.Module):
    """open_clip's vision tower with its final projection, and a new linear head on the projected feature."""

    def __init__(self, visual: nn.Module, num_classes: int):
        super().__init__()
        self.visual = visual
        self.head = nn.Linear(visual.output_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(images))


def _hub_ready(key: str) -> None:
    """Refuse `weights="hub"` unless the hub is offline: nothing may be downloaded at run time."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() not in {"1", "ON", "YES", "TRUE"}:
        raise ValueError(
            f"model {key!r}: weights={HUB!r} reads a filled local Hugging Face cache and needs env HF_HUB_OFFLINE=1 "
            "set before the process starts (nothing is downloaded); or name a local file with `weights`"
        )


def _hub_error(key: str, hub_name: str, err: Exception) -> WeightsNotFoundError:
    from huggingface_hub.constants import HF_HUB_CACHE

    return WeightsNotFoundError(
        f"model {key!r}: {hub_name!r} is not in the offline hub cache {HF_HUB_CACHE} (set HF_HOME or HF_HUB_CACHE "
        f"to the filled cache): {err}",
        [Path(HF_HUB_CACHE)],
    )


# --- open_clip -------------------------------------------------------------------------------------------------


def _clip_tower(entry: ModelEntry) -> nn.Module:
    """A randomly initialised vision tower with the catalog's architecture."""
    b = entry.builder
    if "vision_cfg" in b:
        quick_gelu = bool(b.get("quick_gelu", True))  # as OpenAI CLIP
        return _build_vision_tower(int(b["embed_dim"]), dict(b["vision_cfg"]), quick_gelu=quick_gelu)
    cfg = open_clip.get_model_config(b["name"])
    if cfg is None:
        raise ValueError(f"model {entry.key!r}: open_clip has no model config {b['name']!r}")
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=bool(cfg.get("quick_gelu", False)))


def _build_clip(entry: ModelEntry, family: Family, num_classes: int, source: Source) -> nn.Module:
    name = entry.builder.get("name")
    if source == HUB:
        _hub_ready(entry.key)
        tag = entry.builder.get("pretrained_tag", "openai")
        try:
            visual = open_clip.create_model(name, pretrained=tag).visual
        except (OSError, RuntimeError, ValueError) as err:
            raise _hub_error(entry.key, f"{name}:{tag}", err) from err
        return ClipClassifier(visual, num_classes)
    path = Path(source) if source is not None else None
    if path is not None and name and backbone_file_metadata(path) is None:
        return ClipClassifier(open_clip.create_model(name, pretrained=str(path)).visual, num_classes)
    model = ClipClassifier(_clip_tower(entry), num_classes)
    if path is not None:
        if path.suffix != ".safetensors":
            raise ValueError(
                f"model {entry.key!r} reads backbone .safetensors files written by save_backbone_weights; got {path}"
            )
        load_backbone_file(model, path, family.head)
    return model


# --- timm ------------------------------------------------------------------------------------------------------

_BIT_VARIANT = "resnetv2_50x1_bit"  # the registered BiT architecture whose pretrained config the tiny one borrows


def _resnetv2_kwargs(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """BiT's settings (timm `_create_resnetv2_bit`): fixed 7x7 stem, weight-standardised convs, GroupNorm."""
    kw = dict(overrides)
    groups = kw.pop("norm_groups", 32)
    kw.setdefault("norm_layer", partial(GroupNormAct, num_groups=int(groups)))
    kw.setdefault("stem_type", "fixed")
    kw.setdefault("conv_layer", partial(StdConv2d, eps=1e-8))
    return kw


_TIMM_CLASSES = {"ResNetV2": (ResNetV2, _BIT_VARIANT, _resnetv2_kwargs)}


def _timm_create(entry: ModelEntry, num_classes: int, pretrained: bool, overlay: dict[str, Any] | None) -> nn.Module:
    b = entry.builder
    overrides = dict(b.get("overrides") or {})
    if "class" in b:
        if b["class"] not in _TIMM_CLASSES:
            raise ValueError(f"model {entry.key!r}: unknown timm class {b['class']!r}; valid: {sorted(_TIMM_CLASSES)}")
        cls, variant, to_kwargs = _TIMM_CLASSES[b["class"]]
        return build_model_with_cfg(
            cls,
            variant,
            pretrained,
            pretrained_cfg_overlay=overlay,
            feature_cfg=dict(flatten_sequential=True),
            num_classes=num_classes,
            **to_kwargs(overrides),
        )
    return timm.create_model(
        b["name"], pretrained=pretrained, pretrained_cfg_overlay=overlay, num_classes=num_classes, **overrides
    )


def _file_keys(model: nn.Module, path: Path) -> list[str]:
    """Tensor names of a weights file as timm loads them (after the architecture's checkpoint filter)."""
    if backbone_file_metadata(path) is not None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    state = timm.models.load_state_dict(str(path))
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    return list(state)


def _build_timm(entry: ModelEntry, family: Family, num_classes: int, source: Source) -> nn.Module:
    # The checkpoint's classifier is never kept: declaring it 0-class makes timm drop it and keep the new head.
    if source is None:
        return _timm_create(entry, num_classes, False, None)
    if source == HUB:
        if entry.tiny or "name" not in entry.builder:
            raise ValueError(f"model {entry.key!r} has no hub weights; name a weights file instead")
        _hub_ready(entry.key)
        try:
            return _timm_create(entry, num_classes, True, {"num_classes": 0})
        except (OSError, RuntimeError, ValueError) as err:
            raise _hub_error(entry.key, entry.builder["name"], err) from err
    path = Path(source)
    npz = path.suffix == ".npz"  # Google's original BiT/ViT files: timm's custom loader addresses every tensor
    model = _timm_create(entry, num_classes, True, {"file": str(path), "custom_load": npz, "num_classes": 0})
    if not npz:
        check_backbone_keys(model, _file_keys(model, path), family.head, path)
    return model


_BUILDERS = {"open_clip": _build_clip, "timm": _build_timm}


def build_classifier(entry: ModelEntry, family: Family, num_classes: int, source: Source) -> nn.Module:
    """The classifier of catalog `entry` with `num_classes` outputs, its backbone from `source`."""
    library = entry.builder.get("library")
    if library != family.library:
        raise ValueError(
            f"model {entry.key!r}: builder library {library!r} does not build family {family.name!r} "
            f"(which needs {family.library!r})"
        )
    return _BUILDERS[library](entry, family, num_classes, source)
