"""The layer-gradient probe: one row per layer, exact gradient norms, and the model left exactly as it was."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from orchestrator.schema import PROBE_SCHEMA
from worker import catalog
from worker.models import BuiltModel, ProbeLayer, create_model
from worker.probe import layer_gradient_probe
from worker.records import LayerGradient, record_fields


def batches(n: int, num_classes: int = 3, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(4, 3, size, size, generator=g), torch.randint(0, num_classes, (4,), generator=g)) for _ in range(n)
    ]


def built(key: str) -> BuiltModel:
    torch.manual_seed(0)
    return create_model(key, 3, pretrained=False)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


ROW_KEYS = tuple(name for name, _, _ in record_fields(LayerGradient))


def test_probe_schema_is_the_record_with_the_sweep_identity():
    assert ("sweep_id", "model", "dataset", *ROW_KEYS) == tuple(PROBE_SCHEMA.names)


@pytest.mark.parametrize(("key", "middle"), [("tiny_vit", {"attn", "mlp"}), ("tiny_bit", {"block"})])
def test_rows_cover_embedding_middle_layers_and_head(key: str, middle: set[str]):
    b = built(key)
    rows = layer_gradient_probe(b, batches(2), max_batches=8)
    assert [tuple(r) for r in rows] == [ROW_KEYS] * len(b.probe_layers)
    assert [r["layer"] for r in rows] == [layer.name for layer in b.probe_layers]
    assert (rows[0]["layer"], rows[0]["kind"], rows[0]["depth"]) == ("embed", "embed", 0)
    assert rows[-1]["kind"] == "head"
    assert {r["kind"] for r in rows[1:-1]} >= middle
    for r in rows:
        assert r["batches"] == 2 and r["num_params"] > 0
        assert r["grad_norm"] > 0 and math.isfinite(r["grad_norm"])
        assert r["grad_norm_over_param_norm"] == pytest.approx(r["grad_norm"] / r["param_norm"])
        assert r["grad_norm_over_sqrt_numel"] == pytest.approx(r["grad_norm"] / math.sqrt(r["num_params"]))


def test_grad_norm_is_the_mean_over_batches_of_each_batch_norm():
    b = built("tiny_clip_vit")
    data = batches(3)
    rows = {r["layer"]: r for r in layer_gradient_probe(b, data)}
    params = dict(b.module.named_parameters())
    for layer in (b.probe_layers[0], b.probe_layers[3], b.probe_layers[-1]):
        tensors = [params[n] for n in layer.param_names]
        per_batch = []
        for x, y in data:
            grads = torch.autograd.grad(nn.functional.cross_entropy(b.module(x), y), tensors)
            per_batch.append(torch.sqrt(sum(g.double().pow(2).sum() for g in grads)).item())
        assert rows[layer.name]["grad_norm"] == pytest.approx(sum(per_batch) / 3, rel=1e-5)
        param_norm = torch.sqrt(sum(p.detach().double().pow(2).sum() for p in tensors)).item()
        assert rows[layer.name]["param_norm"] == pytest.approx(param_norm, rel=1e-9)
        assert rows[layer.name]["num_params"] == sum(p.numel() for p in tensors)


def test_model_is_left_exactly_as_it_was():
    b = built("tiny_convnext")
    for n, p in b.module.named_parameters():
        p.requires_grad_(n not in b.embed_param_names)  # as under freeze-embed
    b.module.eval()
    before = snapshot(b.module)
    rows = layer_gradient_probe(b, batches(2))
    assert rows[0]["grad_norm"] > 0  # frozen or not, the embedding's gradient is measured
    after = b.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in b.module.parameters())
    assert all(p.requires_grad == (n not in b.embed_param_names) for n, p in b.module.named_parameters())
    assert not b.module.training


def test_takes_at_most_max_batches_from_the_iterator():
    b = built("tiny_bit")
    stream = iter(batches(5))
    rows = layer_gradient_probe(b, stream, max_batches=2)
    assert rows[0]["batches"] == 2
    assert len(list(stream)) == 3


class _BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x)).mean(dim=(2, 3)))


def test_running_statistics_are_restored():
    torch.manual_seed(0)
    module = _BatchNormNet()
    layers = [
        ProbeLayer("embed", "embed", 0, ("conv.weight", "conv.bias")),
        ProbeLayer("norm", "norm", 1, ("bn.weight", "bn.bias")),
        ProbeLayer("head", "head", 2, ("head.weight", "head.bias")),
    ]
    entry = catalog.get_model("tiny_bit")
    b = BuiltModel(
        module, entry, "resnetv2", frozenset(), frozenset(), frozenset(), [], layers, 8, entry.mean, entry.std
    )
    before = snapshot(module)
    layer_gradient_probe(b, batches(2, size=8))
    assert all(torch.equal(before[k], module.state_dict()[k]) for k in before)


def test_bad_input_is_refused():
    b = built("tiny_bit")
    with pytest.raises(ValueError, match="no batches"):
        layer_gradient_probe(b, [])
    with pytest.raises(ValueError, match="max_batches"):
        layer_gradient_probe(b, batches(1), max_batches=0)
