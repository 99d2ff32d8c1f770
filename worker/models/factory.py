"""`create_model`: the one door to a catalog model, with its parameter-name sets derived from its family."""

from __future__ import annotations

from pathlib import Path

import torch

from worker import catalog
from worker.models.builders import Source, build_classifier
from worker.models.built import BuiltModel
from worker.models.families import get_family
from worker.models.layout import layout
from worker.models.weights import HUB, resolve_weights_path


def create_model(
    key: str,
    num_classes: int,
    *,
    weights: str | Path | None = None,
    weights_root: str | Path | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
) -> BuiltModel:
    """Catalog model `key` with a new `num_classes`-way head.

    pretrained=True loads the backbone from `weights` (a file, or "hub" for the library's hub name read from a
    filled local cache with HF_HUB_OFFLINE=1), else from `<weights_root or $SHIFTSWEEP_WEIGHTS>/<weights_file>`;
    a missing file raises WeightsNotFoundError. pretrained=False builds a random backbone and ignores `weights`
    (tests, and device="meta" to inspect full-size models without allocating them).
    """
    entry = catalog.get_model(key)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    family = get_family(entry.family)
    dev = torch.device(device)
    if dev.type == "meta" and pretrained:
        raise ValueError("device='meta' holds no weights: use pretrained=False with it")
    source: Source = None
    if pretrained and weights is not None and str(weights) == HUB:
        source = HUB
    elif pretrained:
        source = resolve_weights_path(key, weights, weights_root)
    if dev.type == "meta":
        with torch.device("meta"):
            module = build_classifier(entry, family, num_classes, None)
    else:
        module = build_classifier(entry, family, num_classes, source).to(dev)
    parts = layout(family, module)
    return BuiltModel(
        module=module,
        entry=entry,
        family=family.name,
        embed_param_names=parts.embed,
        patch_only_param_names=parts.patch,
        head_param_names=parts.head,
        unfreeze_groups=parts.unfreeze_groups,
        probe_layers=parts.probe_layers,
        input_size=entry.input_size,
        mean=entry.mean,
        std=entry.std,
    )
