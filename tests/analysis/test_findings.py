"""The sweep's outcome in plain words: what was compared, and each of the paper's findings with its numbers,
said as the numbers show it (whether or not the paper's effect appears)."""

from __future__ import annotations

from pathlib import Path

from analysis.findings import findings
from analysis.sweep_data import load_sweep
from tests.sweep_builder import SweepBuilder

DATASETS = ("synth_style", "synth_stain")


def _sweep(tmp_path: Path, ood: dict[tuple[str, str], float], embed: dict[str, float], seeds: int = 1) -> Path:
    b = SweepBuilder()
    for (model, method), value in ood.items():
        for d in DATASETS:
            for seed in range(seeds):
                b.add(model, d, method, 1e-2, seed, curve=[(0.8, 0.8, value / 100)])
    for model, ratio in embed.items():
        for d in DATASETS:
            b.add_probe(model, d, "patch_embed.proj", "embed", 0, ratio)
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
    said = findings(load_sweep(_sweep(tmp_path, ood, {"tiny_vit": 6.0, "tiny_bit": 0.5})))
    assert said[0].startswith("Compared 3 fine-tuning methods (SGD, AdamW, SGD (freeze-embed)) on 2 backbones")
    assert "12 trials" in said[0] and "1 seed, so differences of a few points are noise" in said[0]
    assert "tiny ViT (AdamW-pretrained) 6x; tiny BiT ResNetV2 (SGD-pretrained) 0.5x" in said[1]
    assert said[1].endswith("an outlier (>= 5x, as the paper finds on AdamW-pretrained models) on tiny ViT.")
    assert "tiny ViT 40.0 vs 50.0 (AdamW ahead by 10.0); tiny BiT ResNetV2 60.0 vs 55.0 (SGD ahead by 5.0)" in said[2]
    assert "tiny ViT +8.0 (closes 80% of AdamW's 10.0-point lead); tiny BiT ResNetV2 -1.0" in said[3]


def test_no_outlier_and_no_probe_are_said_as_they_are(tmp_path: Path) -> None:
    ood = {("tiny_vit", "sgd"): 40.0, ("tiny_vit", "adamw"): 38.0}
    said = findings(load_sweep(_sweep(tmp_path, ood, {"tiny_vit": 2.0}, seeds=2)))
    assert said[0].endswith("2 seeds.")
    assert "no outlier of the paper's size" in said[1] and "tiny ViT (AdamW-pretrained) 2x" in said[1]
    assert "(SGD ahead by 2.0)" in said[2] and len(said) == 3  # no freeze-embed in this sweep
    assert len(findings(load_sweep(_sweep(tmp_path / "p", ood, {})))) == 2  # no probe: no gradient sentence
