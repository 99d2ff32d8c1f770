"""The sweep's outcome in plain words: what was compared, and each of the paper's findings with its numbers,
said as the numbers show it (whether or not the paper's effect appears)."""

from __future__ import annotations

from pathlib import Path

from analysis.findings import findings
from analysis.sweep_data import load_sweep
from tests.sweep_builder import SweepBuilder

DATASETS = ("synth_style", "synth_stain")


def _sweep(
    tmp_path: Path,
    ood: dict[tuple[str, str], float],
    embed: dict[str, float | tuple[float, ...]],
    seeds: int = 1,
    embed_weights: dict[str, float] | None = None,
) -> Path:
    """Middle layers have gradient 1 and weights 2; an embedding has gradient `embed[model]` and weights
    `embed_weights[model]` (default 2), so its relative ratio is the raw one times 2 / its weights."""
    b = SweepBuilder()
    for (model, method), value in ood.items():
        for d in DATASETS:
            for seed in range(seeds):
                b.add(model, d, method, 1e-2, seed, curve=[(0.8, 0.8, value / 100)])
    for model, ratios in embed.items():
        for d, ratio in zip(DATASETS, ratios if isinstance(ratios, tuple) else [ratios] * len(DATASETS), strict=True):
            b.add_probe(model, d, "patch_embed.proj", "embed", 0, ratio, (embed_weights or {}).get(model, 2.0))
            for depth, layer in enumerate(("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn"), start=1):
                b.add_probe(model, d, layer, layer.split(".")[-1], depth, 1.0)
    return b.write(tmp_path / "s")


def test_the_papers_findings_are_said_with_their_numbers(tmp_path: Path) -> None:
    ood = {
        ("tiny_vit", "sgd"): 40.0,
        ("tiny_vit", "adamw"): 50.0,
        ("tiny_vit", "sgd_freeze_embed"): 48.0,
        ("tiny_bit", "sgd"): 60.0,
        ("tiny_bit", "adamw"): 55.0,
        ("tiny_bit", "sgd_freeze_embed"): 59.0,
    }
    # the ViT's embedding: raw 3x, relative 12x (small weights, as AdamW's weight decay leaves them)
    sweep = _sweep(tmp_path, ood, {"tiny_vit": 3.0, "tiny_bit": 0.5}, embed_weights={"tiny_vit": 0.5})
    said = findings(load_sweep(sweep))
    assert said[0].startswith("Compared 3 fine-tuning methods (SGD, AdamW, SGD (freeze-embed)) on 2 backbones")
    assert "12 trials" in said[0] and "1 seed, so differences of a few points are noise" in said[0]
    assert "raw, tiny ViT (AdamW-pretrained) 3x; tiny BiT ResNetV2 (SGD-pretrained) 0.5x: no outlier (>= 5x)" in said[1]
    assert "weights (the size of an SGD step), tiny ViT (AdamW-pretrained) 12x; tiny BiT" in said[1]
    assert "(SGD-pretrained) 0.5x: an outlier (>= 5x) on tiny ViT." in said[1]
    assert said[1].endswith("not on SGD-pretrained BiT.")
    assert "tiny ViT 40.0 vs 50.0 (AdamW ahead by 10.0); tiny BiT ResNetV2 60.0 vs 55.0 (SGD ahead by 5.0)" in said[2]
    assert "tiny ViT +8.0 (closes 80% of AdamW's 10.0-point lead); tiny BiT ResNetV2 -1.0" in said[3]


def test_no_outlier_and_no_probe_are_said_as_they_are(tmp_path: Path) -> None:
    ood = {("tiny_vit", "sgd"): 40.0, ("tiny_vit", "adamw"): 38.0}
    said = findings(load_sweep(_sweep(tmp_path, ood, {"tiny_vit": 2.0}, seeds=2)))
    assert said[0].endswith("2 seeds.")
    assert said[1].count("no outlier (>= 5x)") == 2 and "tiny ViT (AdamW-pretrained) 2x" in said[1]
    assert "(SGD ahead by 2.0)" in said[2] and len(said) == 3  # no freeze-embed in this sweep
    assert len(findings(load_sweep(_sweep(tmp_path / "p", ood, {})))) == 2  # no probe: no gradient sentence
    said = findings(load_sweep(_sweep(tmp_path / "h", ood, {"tiny_vit": (6.0, 2.0)})))  # one benchmark of two
    assert "tiny ViT (AdamW-pretrained) 2-6x: an outlier (>= 5x) on tiny ViT (1 of 2 benchmarks)" in said[1]
