"""What `create_model` returns: the classifier plus the parameter-name sets that methods and the probe read."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worker.catalog import ModelEntry


@dataclass
class ProbeLayer:
    """One layer of the layer-gradient probe (PROTOCOL.md, Figure 2)."""

    name: str  # e.g. "embed", "blocks.0.attn", "blocks.0.mlp", "stages.1.blocks.0", "norm", "head"
    kind: str  # embed | attn | mlp | block | norm | head | other
    depth: int  # 0 for the embedding, increasing to the head
    param_names: tuple[str, ...]


@dataclass
class BuiltModel:
    module: torch.nn.Module  # images (N, 3, H, W), normalised -> logits (N, num_classes)
    entry: ModelEntry
    family: str
    embed_param_names: frozenset[str]  # frozen by freeze-embed (the family's one declaration)
    patch_only_param_names: frozenset[str]  # CLIP: the patch conv only; other families: same as embed
    head_param_names: frozenset[str]  # the new, randomly initialised head
    unfreeze_groups: list[tuple[str, ...]]  # input first (embedding group), head last; together: every parameter
    probe_layers: list[ProbeLayer]  # embedding, every middle layer, final norms, head
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def head_state_keys(self) -> frozenset[str]:
        """State-dict keys of the head: its parameters and anything else registered in the head's modules."""
        prefixes = {name.rsplit(".", 1)[0] + "." for name in self.head_param_names if "." in name}
        keys = self.module.state_dict(keep_vars=True)
        return frozenset(k for k in keys if k in self.head_param_names or any(k.startswith(p) for p in prefixes))

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the head: what a pretrained-weights file holds."""
        head = self.head_state_keys()
        return {k: v for k, v in self.module.state_dict().items() if k not in head}
