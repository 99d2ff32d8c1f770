"""The model registry: family declarations, weights files, and one smoke build of every catalog model."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from worker import catalog
from worker.models import (
    WEIGHTS_ENV,
    WeightsMismatchError,
    WeightsNotFoundError,
    create_model,
    list_families,
    resolve_weights_path,
    save_backbone_weights,
)
from worker.models.families import get_family
from worker.models.layout import layout

TINY = catalog.list_models(tiny=True)
FULL = catalog.list_models(tiny=False)
PROBE_KINDS = {"embed", "attn", "mlp", "block", "norm", "head", "other"}


@functools.cache
def _full_size(key: str, num_classes: int):
    """Full-size models live on the meta device (no memory, no weights); tests only read them, so build once."""
    return create_model(key, num_classes, pretrained=False, device="meta")


def build(key: str, num_classes: int = 3, seed: int = 0, **kw: object):
    if not catalog.get_model(key).tiny:
        assert not kw, "full-size models are built on the meta device only"
        return _full_size(key, num_classes)
    torch.manual_seed(seed)
    kw.setdefault("pretrained", False)
    return create_model(key, num_classes, device="cpu", **kw)


def param_names(built) -> list[str]:
    return [n for n, _ in built.module.named_parameters()]


def test_every_tiny_family_member_exists():
    assert sorted(catalog.get_model(k).family for k in TINY) == list_families()
    assert {catalog.get_model(k).family for k in FULL} == set(list_families())


# --- the embedding layer each family declares (PROTOCOL.md, "Models") -----------------------------------------


def test_clip_embedding_is_patch_conv_and_ln_pre():
    b = build("tiny_clip_vit")
    assert b.embed_param_names == {"visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias"}
    assert b.patch_only_param_names == {"visual.conv1.weight"}
    assert b.head_param_names == {"head.weight", "head.bias"}
    assert {n for n in param_names(b) if n.startswith(("visual.conv1.", "visual.ln_pre."))} == b.embed_param_names


def test_vit_embedding_is_patch_embed_only():
    b = build("tiny_vit")
    assert b.embed_param_names == {"patch_embed.proj.weight", "patch_embed.proj.bias"}
    assert {"pos_embed", "cls_token"}.isdisjoint(b.embed_param_names)
    assert b.patch_only_param_names == b.embed_param_names
    assert b.head_param_names == {"head.weight", "head.bias"}


@pytest.mark.parametrize(("key", "stem_weight"), [("tiny_convnext", "stem.0.weight"), ("tiny_bit", "stem.conv.weight")])
def test_conv_embedding_is_stem_and_first_stage(key: str, stem_weight: str):
    b = build(key)
    names = param_names(b)
    expected = {n for n in names if n.startswith(("stem.", "stages.0."))}
    assert b.embed_param_names == expected
    assert stem_weight in expected and any(n.startswith("stages.0.blocks.0.") for n in expected)
    assert not any(n.startswith("stages.1.") for n in b.embed_param_names)
    assert b.patch_only_param_names == b.embed_param_names
    assert b.head_param_names == {"head.fc.weight", "head.fc.bias"}


def fraction(built, names) -> float:
    total = sum(p.numel() for p in built.module.parameters())
    return sum(p.numel() for n, p in built.module.named_parameters() if n in names) / total


def test_full_size_embedding_fractions_match_the_paper():
    # PROTOCOL.md: patch embedding about 0.7% of ViT-B/16; ConvNeXt-B stem + first stage about 0.5%
    vit = build("vit_b16_in21k", num_classes=17)
    assert fraction(vit, vit.embed_param_names) == pytest.approx(0.007, abs=0.0005)
    convnext = build("convnext_b_in22k", num_classes=17)
    assert fraction(convnext, convnext.embed_param_names) == pytest.approx(0.005, abs=0.0005)
    assert all(p.is_meta for p in vit.module.parameters())


@pytest.mark.parametrize(("key", "proj_dim"), [("tiny_clip_vit", 64), ("clip_vit_b16", 512), ("clip_vit_l14", 768)])
def test_clip_head_sits_on_the_projection(key: str, proj_dim: int):
    b = build(key, num_classes=5)
    visual, head = b.module.visual, b.module.head
    assert visual.proj is not None and visual.proj.shape[1] == proj_dim
    assert (head.in_features, head.out_features) == (proj_dim, 5)
    assert "visual.proj" in b.unfreeze_groups[-2] and "visual.proj" not in b.embed_param_names
    if not visual.proj.is_meta:
        x = torch.randn(2, 3, 32, 32)
        assert visual(x).shape == (2, proj_dim)


# --- groups and probe layers cover every parameter ------------------------------------------------------------


@pytest.mark.parametrize("key", TINY + FULL)
def test_unfreeze_groups_cover_every_parameter_once(key: str):
    b = build(key)
    names = param_names(b)
    flat = [n for group in b.unfreeze_groups for n in group]
    assert sorted(flat) == sorted(names)  # each exactly once
    assert all(b.unfreeze_groups)
    assert b.embed_param_names <= set(b.unfreeze_groups[0])
    assert set(b.unfreeze_groups[-1]) == b.head_param_names
    assert len(b.unfreeze_groups) >= 4  # embedding, at least two middle groups, head


@pytest.mark.parametrize("key", TINY + FULL)
def test_probe_layers_partition_parameters_from_input_to_head(key: str):
    b = build(key)
    layers = b.probe_layers
    assert sorted(n for layer in layers for n in layer.param_names) == sorted(param_names(b))
    assert (layers[0].name, layers[0].kind, layers[0].depth) == ("embed", "embed", 0)
    assert set(layers[0].param_names) < b.embed_param_names or b.family == "vit"  # the conv, not the freeze set
    assert (layers[-1].kind, set(layers[-1].param_names)) == ("head", b.head_param_names)
    depths = [layer.depth for layer in layers]
    assert depths == sorted(depths) and depths[-1] == max(depths) > depths[-2]
    assert {layer.kind for layer in layers} <= PROBE_KINDS
    middle = {layer.kind for layer in layers[1:-1]}
    assert middle >= ({"attn", "mlp"} if b.family in ("clip_vit", "vit") else {"block"})


@pytest.mark.parametrize(
    ("key", "conv", "rest"),
    [
        ("tiny_clip_vit", {"visual.conv1.weight"}, {"embed_norm": {"visual.ln_pre.weight", "visual.ln_pre.bias"}}),
        ("tiny_vit", {"patch_embed.proj.weight", "patch_embed.proj.bias"}, {}),
        ("tiny_convnext", {"stem.0.weight", "stem.0.bias"}, {"embed_norm": {"stem.1.weight", "stem.1.bias"}}),
        ("tiny_bit", {"stem.conv.weight"}, {}),
    ],
)
def test_the_probes_embedding_is_the_patch_or_stem_conv_as_in_the_papers_figure_2(key: str, conv, rest) -> None:
    """No class token, position embedding or norm after it; stage 0's blocks are middle layers of their own."""
    b = build(key)
    by_name = {layer.name: layer for layer in b.probe_layers}
    assert set(by_name["embed"].param_names) == conv
    for name, names in rest.items():
        assert set(by_name[name].param_names) == names and by_name[name].kind == "norm"
    if b.family in ("convnext", "resnetv2"):
        stage0 = [layer for layer in b.probe_layers if layer.name.startswith("stages.0.")]
        assert stage0 and all(layer.kind == "block" and layer.depth > 0 for layer in stage0)
        assert {n for layer in stage0 for n in layer.param_names} < b.embed_param_names  # still frozen together
    assert by_name["embed"].param_names and set(by_name["embed"].param_names) <= b.embed_param_names


def test_transformer_blocks_split_into_attention_and_mlp():
    b = build("tiny_vit")
    by_name = {layer.name: layer for layer in b.probe_layers}
    assert set(by_name["blocks.0.attn"].param_names) == {
        n for n in param_names(b) if n.startswith(("blocks.0.norm1.", "blocks.0.attn."))
    }
    assert set(by_name["blocks.0.mlp"].param_names) == {
        n for n in param_names(b) if n.startswith(("blocks.0.norm2.", "blocks.0.mlp."))
    }
    assert by_name["blocks.0.attn"].depth == by_name["blocks.0.mlp"].depth == 1


def test_a_family_declaration_that_misses_parameters_fails_the_build():
    b = build("tiny_vit")
    gap = dataclasses.replace(get_family("vit"), tokens=())
    with pytest.raises(ValueError, match="cls_token"):
        layout(gap, b.module)


# --- weights files ----------------------------------------------------------------------------------------------


def assert_backbone_equal(src, dst) -> None:
    want = src.backbone_state_dict()
    got = dst.module.state_dict()
    assert set(want) == set(got) - dst.head_state_keys()
    for k, v in want.items():
        assert torch.equal(v, got[k]), k


@pytest.mark.parametrize("key", TINY)
def test_backbone_round_trip_through_the_weights_root(key: str, tmp_path):
    src = build(key, num_classes=4, seed=0)
    entry = catalog.get_model(key)
    path = save_backbone_weights(src, tmp_path / entry.weights_file)
    with safe_open(str(path), framework="pt") as f:
        assert not any(k in src.head_param_names for k in f.keys())

    loaded = build(key, num_classes=3, seed=1, pretrained=True, weights_root=tmp_path)
    assert_backbone_equal(src, loaded)
    fresh = build(key, num_classes=3, seed=1)  # same seed, random init: the head is the new random head
    for name in loaded.head_param_names:
        assert torch.equal(loaded.module.get_parameter(name), fresh.module.get_parameter(name))
    first = next(iter(fresh.backbone_state_dict()))
    assert not torch.equal(loaded.backbone_state_dict()[first], fresh.backbone_state_dict()[first])
    x = torch.randn(2, 3, 32, 32)
    assert loaded.module(x).shape == (2, 3)


def test_explicit_file_and_env_root_load_the_same_weights(tmp_path, monkeypatch):
    src = build("tiny_convnext", seed=0)
    path = save_backbone_weights(src, tmp_path / "elsewhere" / "b.safetensors")
    assert_backbone_equal(src, build("tiny_convnext", seed=2, pretrained=True, weights=path))
    save_backbone_weights(src, tmp_path / "tiny_convnext.safetensors")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert resolve_weights_path("tiny_convnext") == tmp_path / "tiny_convnext.safetensors"
    assert_backbone_equal(src, build("tiny_convnext", seed=3, pretrained=True))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_checkpoint_with_its_own_classifier_loads_with_a_new_head(suffix: str, tmp_path):
    """A library-format file (classifier included, as timm's hub files) goes through the same loader."""
    torch.manual_seed(0)
    src = build("tiny_vit", num_classes=1000)
    state = {k: v.clone() for k, v in src.module.state_dict().items()}
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    loaded = build("tiny_vit", num_classes=7, seed=1, pretrained=True, weights=path)
    assert_backbone_equal(src, loaded)
    assert loaded.module.head.weight.shape == (7, 96)


def test_missing_file_under_root_names_the_path(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        create_model("tiny_vit", 3, weights_root=tmp_path)
    assert str(tmp_path / "tiny_vit.safetensors") in str(err.value)
    assert err.value.tried == (tmp_path / "tiny_vit.safetensors",)
    with pytest.raises(WeightsNotFoundError, match="clip_vit_b16/open_clip_pytorch_model.bin"):
        create_model("clip_vit_b16", 3, weights_root=tmp_path)


def test_missing_explicit_file_names_it(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nothing.safetensors"):
        create_model("tiny_bit", 3, weights=tmp_path / "nothing.safetensors")


def test_no_weights_location_names_the_setting_and_env_var(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError) as err:
        create_model("tiny_bit", 3)
    assert WEIGHTS_ENV in str(err.value) and "weights_root" in str(err.value)
    assert "tiny_bit.safetensors" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def rewrite(path, drop: str | None = None, add: str | None = None) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != drop}
    if add:
        tensors[add] = torch.zeros(3)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("key", "victim"),
    [("tiny_vit", "blocks.3.mlp.fc2.weight"), ("tiny_clip_vit", "visual.ln_post.bias"), ("tiny_bit", "norm.weight")],
)
def test_loading_is_strict_on_every_tensor_but_the_head(key: str, victim: str, tmp_path):
    path = save_backbone_weights(build(key), tmp_path / "w.safetensors")
    rewrite(path, drop=victim)
    with pytest.raises(WeightsMismatchError, match=victim.replace(".", r"\.")):
        build(key, pretrained=True, weights=path)
    path = save_backbone_weights(build(key), tmp_path / "w.safetensors")
    rewrite(path, add="extra.weight")
    with pytest.raises(WeightsMismatchError, match="extra"):
        build(key, pretrained=True, weights=path)


def test_a_file_for_another_architecture_is_refused(tmp_path):
    path = save_backbone_weights(build("tiny_convnext"), tmp_path / "w.safetensors")
    with pytest.raises((WeightsMismatchError, RuntimeError)):
        build("tiny_bit", pretrained=True, weights=path)


# --- arguments --------------------------------------------------------------------------------------------------


def test_hub_weights_need_an_offline_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        create_model("vit_b16_in21k", 3, weights="hub")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        create_model("clip_vit_b16", 3, weights="hub")
    with pytest.raises(ValueError, match="no hub weights"):
        create_model("tiny_vit", 3, weights="hub")


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match="valid models"):
        create_model("resnet9000", 3, pretrained=False)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("tiny_vit", 0, pretrained=False)
    with pytest.raises(ValueError, match="meta"):
        create_model("tiny_vit", 3, device="meta")
    with pytest.raises(ValueError, match="meta device"):
        save_backbone_weights(build("vit_b16_in21k"), "/nonexistent/x.safetensors")


# --- every catalog model builds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", TINY + FULL)
def test_every_catalog_model_builds(key: str):
    entry = catalog.get_model(key)
    b = build(key, num_classes=3)
    assert (b.family, b.input_size, b.mean, b.std) == (entry.family, entry.input_size, entry.mean, entry.std)
    head = dict(b.module.named_parameters())
    assert all(head[n].shape[0] == 3 for n in b.head_param_names)
    if entry.tiny:
        logits = b.module(torch.randn(2, 3, entry.input_size, entry.input_size))
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_full_clip_checkpoint_goes_through_open_clip(tmp_path, monkeypatch):
    """A whole open_clip checkpoint is read by open_clip.create_model(name, pretrained=<path>); the tower is kept
    with its projection. (Real weights are not available here, so open_clip's call is recorded, not run.)"""
    import worker.models.builders as builders

    path = tmp_path / catalog.get_model("clip_vit_b16").weights_file
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not read")
    tower = build("tiny_clip_vit").module.visual
    calls = []

    def fake_create_model(name: str, pretrained: str):
        calls.append((name, pretrained))
        return type("Clip", (), {"visual": tower})()

    monkeypatch.setattr(builders.open_clip, "create_model", fake_create_model)
    b = create_model("clip_vit_b16", 6, weights_root=tmp_path)
    assert calls == [("ViT-B-16-quickgelu", str(path))]
    assert b.module.visual is tower and b.module.head.in_features == tower.proj.shape[1]
