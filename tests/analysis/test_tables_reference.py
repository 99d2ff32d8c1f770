"""configs/paper_reference.yaml against an independent transcription of the paper's tables in Markdown
(docs/reference/paper_tables.md), and the loader's checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.reference import ReferenceError, RefValue, load_reference

MARKDOWN = Path(__file__).resolve().parents[2] / "docs" / "reference" / "paper_tables.md"
DATASETS = ["living17", "waterbirds", "domainnet", "fmow", "camelyon"]
MODELS = {
    "CLIP ViT-B/16": "clip_vit_b16",
    "CLIP ViT-L/14": "clip_vit_l14",
    'ViT-B/16 (IN-21k, "Sup ViT-B/16")': "vit_b16_in21k",
    "DINO ViT-B/16": "dino_vit_b16",
    "ConvNeXt-B (IN-22k)": "convnext_b_in22k",
    "BiT ResNet-50 (BiT-M)": "bit_r50",
    "BiT ResNet-101 (BiT-M)": "bit_r101",
}
METHODS = {
    "SGD": "sgd",
    "AdamW": "adamw",
    "SGD (freeze-embed)": "sgd_freeze_embed",
    "SGD (freeze-embed) [freeze conv1+ln_pre]": "sgd_freeze_embed",
    "Layer-wise (gradual unfreezing)": "gradual_unfreeze",
    "LAMB": "lamb",
    "LARS": "lars",
    "SGD (freeze only conv1 patch-embed, not ln_pre)": "sgd_freeze_patch_only",
    "SGD (no momentum, NOT frozen)": "sgd_nomom",
    "SGD (weight decay 0.01)": "sgd_wd",
}


def _sections(text: str) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:]
            out[current] = []
        elif current and line.startswith("|") and not line.startswith("|---"):
            out[current].append([c.strip() for c in line.strip().strip("|").split("|")])
    return out


def _cell(text: str) -> RefValue:
    m = re.fullmatch(r"([\d.]+)(?: \(([\d.]+)\))?", text)
    assert m, text
    return RefValue(float(m.group(1)), float(m.group(2)) if m.group(2) else None)


@pytest.fixture(scope="module")
def markdown() -> str:
    return MARKDOWN.read_text()


SECTIONS = {  # section title prefix -> (metric, is the ablation table)
    "OOD accuracy": ("ood", False),
    "ID accuracy": ("id", False),
    "CLIP ViT-B/16 ablations, OOD": ("ood", True),
    "CLIP ViT-B/16 ablations, ID": ("id", True),
}


def test_every_main_and_ablation_number_matches_the_markdown(markdown: str) -> None:
    ref = load_reference()
    checked = 0
    for title, rows in _sections(markdown).items():
        kind = next((v for prefix, v in SECTIONS.items() if title.startswith(prefix)), None)
        if kind is None:
            continue
        metric, ablation = kind
        for row in rows[1:]:
            if ablation:
                model, method, cells = "clip_vit_b16", METHODS[row[0]], row[1:]
            else:
                model, method, cells = MODELS[row[0]], METHODS[row[1]], row[2:]
            for d, text in zip(DATASETS, cells[:5], strict=True):
                assert ref.value(metric, model, method, d) == _cell(text), (metric, model, method, d)
                checked += 1
            assert ref.average(metric, model, method) == float(cells[5])
    assert checked == 2 * (21 + 9) * 5


def test_wilds_split_columns_match(markdown: str) -> None:
    ref = load_reference()
    rows = next(r for t, r in _sections(markdown).items() if t.startswith("Extra WILDS"))
    for row in rows[1:]:
        model, method = MODELS[row[0]], METHODS[row[1]]
        v = [float(x) for x in row[2:]]
        got = [ref.wilds_split(model, method, "fmow", s) for s in ("id_val", "ood_val", "ood_test", "africa_test")]
        got += [ref.wilds_split(model, method, "camelyon", s) for s in ("id_val", "ood_val", "ood_test")]
        assert got == v, (model, method)


def test_spot_checks(markdown: str) -> None:
    ref = load_reference()
    assert "| CLIP ViT-B/16 | SGD | 80.0 (1.3) | 62.5 (5.0) | 72.8 (18.0) |" in markdown
    assert ref.value("ood", "clip_vit_b16", "sgd", "domainnet") == RefValue(72.8, 18.0)
    assert ref.value("id", "bit_r101", "sgd_freeze_embed", "fmow") == RefValue(65.9)
    assert "OOD 83.3 / 71.7 / 85.7 / 38.7 / 95.7 (avg 75.0)" in markdown
    assert ref.value("ood", "clip_vit_b16", "sgd_embed_lr_0.2", "waterbirds") == RefValue(71.7)
    assert ref.average("id", "clip_vit_b16", "sgd_embed_lr_0.2") == 91.7
    assert "| best prior result | 87.6 | 89.3 | 87.2 | 47.6 | 93.3 |" in markdown
    best = ref.best("waterbirds")
    assert (best.value, best.model, best.method, best.prior_sota) == (89.8, "convnext_b_in22k", "adamw", 89.3)
    assert "76.9 OOD / 91.2 ID" in markdown and "76.5 OOD / 91.5 ID" in markdown
    assert ref.quoted_average("ood", "sgd_freeze_embed_nomom") == 76.9
    assert ref.quoted_average("id", "adamw_freeze_embed") == 91.5
    assert "OOD SGD 71.97, AdamW 76.04, SGD (freeze-embed) 76.74" in markdown
    assert ref.grand_means["ood"] == {"sgd": 71.97, "adamw": 76.04, "sgd_freeze_embed": 76.74}


def test_memory_percentages_and_missing_cells() -> None:
    ref = load_reference()
    assert ref.adamw_overhead_pct("clip_vit_b16", "sgd_freeze_embed") == 16
    assert ref.adamw_overhead_pct("clip_vit_b16", "sgd_freeze_embed_nomom") == 36
    assert ref.adamw_overhead_pct("clip_vit_l14", "sgd_freeze_embed") == 18
    assert ref.adamw_overhead_pct("clip_vit_l14", "sgd_freeze_embed_nomom") == 48
    assert ref.micro_batch == 1 and any("ViT-H/14" in n for n in ref.memory_notes)
    assert ref.value("ood", "bit_r50", "lamb", "living17") is None
    assert ref.value("ood", "tiny_vit", "sgd", "synth_style") is None
    with pytest.raises(ValueError, match="valid metrics: ood, id"):
        ref.value("test", "clip_vit_b16", "sgd", "living17")


def test_loader_rejects_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "ref.yaml"
    bad.write_text("datasets: [living17]\nresults:\n  ood:\n    clip_vit_b99:\n      sgd: {living17: 1.0}\n  id: {}\n")
    with pytest.raises(ReferenceError, match=r"unknown model 'clip_vit_b99'; valid models: .*clip_vit_b16"):
        load_reference(bad)
    bad.write_text(
        "datasets: [living17]\nresults:\n  ood:\n    clip_vit_b16:\n      sgd: {living17: [1, 2]}\n  id: {}\n"
    )
    with pytest.raises(ReferenceError, match=r"expected a number or \{value, ci90\}"):
        load_reference(bad)
    bad.write_text("datasets: [living17]\nresults: {ood: {}, id: {}}\nsoruce: typo\n")
    with pytest.raises(ReferenceError, match=r"ref.yaml:3: .*unknown key 'soruce'; valid keys: source, datasets"):
        load_reference(bad)
    bad.write_text("datasets: [living17]\nresults: {ood: {}, id: {}}\ndatasets: [fmow]\n")
    with pytest.raises(ReferenceError, match=r"ref.yaml:3: duplicate key 'datasets' \(first at line 1\)"):
        load_reference(bad)
