"""The four model families, each declared exactly once.

A declaration says which parameters form the embedding layer that freeze-embed freezes (PROTOCOL.md, "Models"),
which form the patch or stem convolution that the paper's Figure 2 calls the embedding layer (the probe's `embed`
row: no class token, position embedding or norm after it), which form the patch conv alone, which form the new
head, and how the rest divides into layers from the input upwards. Freeze-embed, the embedding LR multiplier,
gradual unfreezing and the layer-gradient probe all read these declarations through `worker.models.layout`, so
changing what "embedding" means is a one-line edit here.

Paths are module or parameter paths inside the built classifier (`name` or `name.<anything>`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

# (probe layer name, kind, module paths) of one unit inside a block
UnitSpec = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class Family:
    name: str
    library: str  # open_clip | timm: who builds the architecture and reads its weight files
    embed: tuple[str, ...]  # what freeze-embed freezes
    embed_conv: tuple[str, ...]  # the paper's Figure 2 embedding layer: the patch or stem convolution alone
    patch: tuple[str, ...]  # the patch conv alone (CLIP's sgd_freeze_patch_only); other families: == embed
    head: tuple[str, ...]  # the new, randomly initialised classifier
    tokens: tuple[str, ...]  # input-side parameters left trainable by freeze-embed (positional embedding, class token)
    final: tuple[UnitSpec, ...]  # final norms and projection, between the last block and the head
    blocks: Callable[[nn.Module], list[list[UnitSpec]]]  # the middle, one list of units per block, input first


def _clip_blocks(module: nn.Module) -> list[list[UnitSpec]]:
    """open_clip VisionTransformer: each residual block is a pre-norm attention then a pre-norm MLP."""
    out = []
    for i in range(len(module.visual.transformer.resblocks)):
        p = f"visual.transformer.resblocks.{i}"
        out.append(
            [
                (f"blocks.{i}.attn", "attn", (f"{p}.ln_1", f"{p}.attn", f"{p}.ls_1")),
                (f"blocks.{i}.mlp", "mlp", (f"{p}.ln_2", f"{p}.mlp", f"{p}.ls_2")),
            ]
        )
    return out


def _vit_blocks(module: nn.Module) -> list[list[UnitSpec]]:
    """timm VisionTransformer: the same two sub-layers, named norm1/attn/ls1 and norm2/mlp/ls2."""
    out = []
    for i in range(len(module.blocks)):
        p = f"blocks.{i}"
        out.append(
            [
                (f"{p}.attn", "attn", (f"{p}.norm1", f"{p}.attn", f"{p}.ls1")),
                (f"{p}.mlp", "mlp", (f"{p}.norm2", f"{p}.mlp", f"{p}.ls2")),
            ]
        )
    return out


def _staged_blocks(module: nn.Module) -> list[list[UnitSpec]]:
    """timm ConvNeXt and ResNetV2: every residual block of every stage; a stage's downsampling layer goes with
    its first block. Blocks already inside the embedding (stage 0) are claimed by it and drop out."""
    out = []
    for k, stage in enumerate(module.stages):
        for j in range(len(stage.blocks)):
            paths = (f"stages.{k}.blocks.{j}",) + ((f"stages.{k}.downsample",) if j == 0 else ())
            out.append([(f"stages.{k}.blocks.{j}", "block", paths)])
    return out


_FAMILIES = (
    Family(
        name="clip_vit",
        library="open_clip",
        embed=("visual.conv1", "visual.ln_pre"),
        embed_conv=("visual.conv1",),
        patch=("visual.conv1",),
        head=("head",),
        tokens=("visual.class_embedding", "visual.positional_embedding"),
        final=(("norm", "norm", ("visual.ln_post",)), ("proj", "other", ("visual.proj",))),
        blocks=_clip_blocks,
    ),
    Family(
        name="vit",
        library="timm",
        embed=("patch_embed",),
        embed_conv=("patch_embed.proj",),
        patch=("patch_embed",),
        head=("head",),
        tokens=("cls_token", "reg_token", "pos_embed", "norm_pre"),
        final=(("norm", "norm", ("norm", "fc_norm", "attn_pool")),),
        blocks=_vit_blocks,
    ),
    Family(
        name="convnext",
        library="timm",
        embed=("stem", "stages.0"),
        embed_conv=("stem.0",),
        patch=("stem", "stages.0"),
        head=("head.fc",),
        tokens=(),
        final=(("norm", "norm", ("norm_pre", "head.norm")),),
        blocks=_staged_blocks,
    ),
    Family(
        name="resnetv2",
        library="timm",
        embed=("stem", "stages.0"),
        embed_conv=("stem.conv",),
        patch=("stem", "stages.0"),
        head=("head.fc",),
        tokens=(),
        final=(("norm", "norm", ("norm",)),),
        blocks=_staged_blocks,
    ),
)


def _registry() -> dict[str, Family]:
    out: dict[str, Family] = {}
    for fam in _FAMILIES:
        if fam.name in out:
            raise ValueError(f"model family {fam.name!r} is declared twice")
        out[fam.name] = fam
    return out


_REGISTRY = _registry()


def get_family(name: str) -> Family:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_families() -> list[str]:
    return sorted(_REGISTRY)
