"""Every table built from Parquet files written by hand, checked against numbers worked out by hand."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.tables import build_table, list_formats, list_tables, render_table
from tests.sweep_builder import SweepBuilder

MIB = 2**20
SGD_LRS = (1e-4, 3e-4, 1e-3)
ADAMW_LRS = (1e-6, 3e-6, 1e-5)

# (model, dataset, method) -> (id_test, ood_test) at the middle LR, which always has the best id_val
CELLS = {
    ("clip_vit_b16", "living17", "adamw"): (0.98, 0.83),
    ("clip_vit_b16", "living17", "sgd_freeze_embed"): (0.985, 0.84),
    ("clip_vit_b16", "waterbirds", "sgd"): (0.95, 0.60),
    ("clip_vit_b16", "waterbirds", "adamw"): (0.96, 0.70),
    ("clip_vit_b16", "waterbirds", "sgd_freeze_embed"): (0.97, 0.75),
    ("bit_r50", "living17", "sgd"): (0.975, 0.85),
    ("bit_r50", "living17", "adamw"): (0.97, 0.80),
    ("bit_r50", "living17", "sgd_freeze_embed"): (0.976, 0.86),
    ("bit_r50", "waterbirds", "sgd"): (0.98, 0.76),
    ("bit_r50", "waterbirds", "adamw"): (0.985, 0.70),
}
PEAK_MIB = {"sgd": 1000, "adamw": 1044, "sgd_freeze_embed": 900}
STATE_BYTES_PER_PARAM = {"sgd": 4, "adamw": 8, "sgd_freeze_embed": 4}


def _lrs(method: str) -> tuple[float, ...]:
    return ADAMW_LRS if method == "adamw" else SGD_LRS


def _add_cell(b: SweepBuilder, model: str, dataset: str, method: str, id_test: float, ood: float) -> None:
    for lr in _lrs(method):
        middle = lr == _lrs(method)[1]
        curve = [(0.9, id_test, ood)] if middle else [(0.8, 0.5, 0.99)]  # the edges: worse ID, better OOD
        peak = PEAK_MIB[method] * MIB if middle else PEAK_MIB[method] * MIB - 1
        b.add(
            model,
            dataset,
            method,
            lr,
            curve=curve,
            peak=peak,
            state=STATE_BYTES_PER_PARAM[method] * 1000,
            trainable=1000,
        )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    b = SweepBuilder()
    for (model, dataset, method), (id_test, ood) in CELLS.items():
        _add_cell(b, model, dataset, method, id_test, ood)
    # CLIP SGD on Living-17 with two seeds: OOD 78 and 82, ID 97 and 97
    for seed, ood in ((0, 0.78), (1, 0.82)):
        for lr in SGD_LRS:
            middle = lr == 3e-4
            curve = [(0.9, 0.97, ood)] if middle else [(0.8, 0.5, 0.99)]
            b.add(
                "clip_vit_b16",
                "living17",
                "sgd",
                lr,
                seed,
                curve=curve,
                peak=PEAK_MIB["sgd"] * MIB,
                state=4000,
                trainable=1000,
            )
    # BiT SGD freeze-embed on Waterbirds: nothing finished yet; a failed trial's huge peak must not count
    b.add("bit_r50", "waterbirds", "sgd_freeze_embed", 1e-4, status="pending")
    b.add("bit_r50", "waterbirds", "sgd_freeze_embed", 3e-4, status="failed", peak=5000 * MIB)
    b.add("bit_r50", "waterbirds", "sgd_freeze_embed", 1e-3, status="running")
    # probe: two embedding rows (the nearest to the input is used), five middle rows, a head
    for layer, kind, depth, grad in [
        ("visual.conv1", "embed", 0, 12.0),
        ("visual.ln_pre", "embed", 1, 50.0),
        ("blocks.0.attn", "attn", 2, 1.0),
        ("blocks.0.mlp", "mlp", 3, 4.0),
        ("blocks.1.attn", "attn", 4, 2.0),
        ("blocks.1.mlp", "mlp", 5, 5.0),
        ("blocks.2.attn", "attn", 6, 3.0),
        ("visual.ln_post", "norm", 7, 100.0),
        ("head", "head", 8, 7.0),
    ]:
        b.add_probe("clip_vit_b16", "living17", layer, kind, depth, grad)
    return b.write(tmp_path_factory.mktemp("sweep"))


def _rows(name: str, sweep: Path) -> list[dict]:
    return [dict(r) for r in build_table(name, sweep).rows]


def _row(rows: list[dict], **match: str) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_ood_table_matches_hand_computed_values(sweep: Path) -> None:
    rows = _rows("ood", sweep)
    clip_sgd = _row(rows, model="clip_vit_b16", method="sgd")
    assert clip_sgd["living17"] == pytest.approx(80.0)
    assert clip_sgd["living17_ci90"] == pytest.approx(1.645 * 100 * (0.02 * 2**0.5) / 2**0.5)
    assert clip_sgd["living17_n_seeds"] == 2 and clip_sgd["living17_lr"] == 3e-4
    assert clip_sgd["living17_paper"] == 80.0 and clip_sgd["living17_paper_ci90"] == 1.3
    assert clip_sgd["waterbirds_paper"] == 62.5
    assert clip_sgd["avg"] == pytest.approx(70.0)
    assert clip_sgd["avg_paper"] == pytest.approx((80.0 + 62.5) / 2)  # the paper over this sweep's datasets
    assert "living17_vs_sgd" not in clip_sgd
    clip_fe = _row(rows, model="clip_vit_b16", method="sgd_freeze_embed")
    assert (clip_fe["living17_vs_sgd"], clip_fe["waterbirds_vs_sgd"]) == pytest.approx((4.0, 15.0))
    assert clip_fe["avg"] == pytest.approx(79.5) and clip_fe["avg_vs_sgd"] == pytest.approx(9.5)
    assert clip_fe["living17_marks"] == ""
    bit_adamw = _row(rows, model="bit_r50", method="adamw")
    assert bit_adamw["avg_vs_sgd"] == pytest.approx(((80 - 85) + (70 - 76)) / 2)


def test_missing_cell_is_shown_and_the_average_says_so(sweep: Path) -> None:
    table = build_table("ood", sweep)
    bit_fe = _row([dict(r) for r in table.rows], model="bit_r50", method="sgd_freeze_embed")
    assert bit_fe.get("waterbirds") is None
    assert bit_fe["waterbirds_status"] == "no_result" and bit_fe["waterbirds_marks"] == "*"
    assert bit_fe["avg"] == pytest.approx(86.0)
    assert bit_fe["avg_marks"] == " (1/2)" and bit_fe["avg_missing"] == "waterbirds"
    assert bit_fe["avg_vs_sgd"] == pytest.approx(1.0) and bit_fe["avg_paper"] == 84.1
    notes = "\n".join(table.notes)
    assert (
        "BiT ResNet-50 (BiT-M) / SGD (freeze-embed) / Waterbirds: no LR has a result: 1 failed, 1 pending, 1 running"
        in notes
    )
    text = render_table("ood", sweep, "markdown")[0].decode()
    assert "—* [75.5]" in text and "86.0 (1/2) Δ+1.0 [84.1]" in text  # the paper's avg over Living-17 only


def test_mean_over_models_rows(sweep: Path) -> None:
    rows = _rows("ood", sweep)
    sgd = _row(rows, model="all", method="sgd")
    assert (sgd["living17"], sgd["waterbirds"]) == pytest.approx((82.5, 68.0))
    fe = _row(rows, model="all", method="sgd_freeze_embed")
    assert fe["waterbirds"] == pytest.approx(75.0) and fe["waterbirds_marks"] == "*"
    assert fe["living17_vs_sgd"] == pytest.approx(85.0 - 82.5)
    assert sgd.get("avg_paper") is None  # the sweep does not cover the paper's models and datasets


def test_id_table(sweep: Path) -> None:
    rows = _rows("id", sweep)
    clip_sgd = _row(rows, model="clip_vit_b16", method="sgd")
    assert clip_sgd["living17"] == pytest.approx(97.0) and clip_sgd["living17_ci90"] == pytest.approx(0.0)
    assert clip_sgd["living17_paper"] == 97.8
    clip_adamw = _row(rows, model="clip_vit_b16", method="adamw")
    assert clip_adamw["waterbirds_vs_sgd"] == pytest.approx(1.0)


def test_markdown_shows_ours_interval_delta_and_paper(sweep: Path) -> None:
    text, media = render_table("ood", sweep, "markdown")
    assert media.startswith("text/markdown")
    text = text.decode()
    assert "80.0 (±3.3) [80.0]" in text
    assert "84.0 Δ+4.0 [83.2]" in text
    assert text.startswith("## Table 1: OOD accuracy (%)")
    assert text.count("| CLIP ViT-B/16 ") == 1  # grouped: the model is named once


def test_edge_lr_is_marked(tmp_path: Path) -> None:
    b = SweepBuilder()
    for lr, v in zip(SGD_LRS, (0.5, 0.6, 0.9), strict=True):
        b.add("tiny_vit", "synth_style", "sgd", lr, curve=[(v, v, v)])
    b.add("tiny_vit", "synth_style", "adamw", 1e-5, status="diverged")
    b.add("tiny_vit", "synth_style", "adamw", 1e-6, curve=[(0.8, 0.8, 0.8)])
    b.add("tiny_vit", "synth_style", "adamw", 3e-6, curve=[(0.7, 0.7, 0.7)])
    t = build_table("ood", b.write(tmp_path))
    rows = [dict(r) for r in t.rows]
    assert _row(rows, method="sgd")["synth_style_marks"] == "†"
    assert _row(rows, method="adamw")["synth_style_marks"] == "†‡"
    low, high = [n for n in t.notes if "the chosen LR is the" in n]  # one line per edge, not one per cell
    assert high.startswith("† the chosen LR is the largest LR run, so the best may lie above the grid, in 1 of 2")
    assert high.endswith(": tiny ViT / SGD / Synthetic style shift (DomainNet layout) (1e-3)")
    assert low.endswith("in 1 of 2 cells: tiny ViT / AdamW / Synthetic style shift (DomainNet layout) (1e-6)")
    assert any(
        n.endswith("Synthetic style shift (DomainNet layout): diverged, never chosen: lr 1e-5 (1 of 1)")
        for n in t.notes
    )


def test_exact_ties_are_listed_in_one_line_with_the_tied_and_the_chosen_lr(tmp_path: Path) -> None:
    b = SweepBuilder()
    for lr, loss in zip(SGD_LRS, (0.3, 0.05, 0.1), strict=True):  # 100% at every LR: the lowest loss wins
        b.add("tiny_bit", "synth_spurious", "sgd", lr, curve=[(1.0, 1.0, 0.9)], losses=[loss])
    for lr in SGD_LRS:  # an older sweep's cell: no loss recorded, the smaller LR wins
        b.add("tiny_bit", "synth_spurious", "sgd_freeze_embed", lr, curve=[(1.0, 1.0, 0.9)])
    t = build_table("ood", b.write(tmp_path))
    by_loss, by_lr = [n for n in t.notes if n.startswith("Exact ties")]
    assert by_loss == (
        "Exact ties in mean ID validation, broken by the lower mean ID validation loss, in 1 of 2 cells: tiny BiT "
        "ResNetV2 / SGD / Synthetic spurious (Waterbirds layout) (1e-4, 3e-4, 1e-3 at 100.0%: 3e-4)"
    )
    assert by_lr.startswith("Exact ties in mean ID validation, broken by the smaller LR (no loss recorded), in 1 of 2")
    assert by_lr.endswith("(freeze-embed) / Synthetic spurious (Waterbirds layout) (1e-4, 3e-4, 1e-3 at 100.0%: 1e-4)")
    rows = [dict(r) for r in t.rows]
    assert _row(rows, method="sgd")["synth_spurious_marks"] == ""  # an interior LR, chosen by the loss


def _early_stopped_sweep(root: Path) -> Path:
    """sgd: the stopped LR's early epoch beats the full-length one; adamw: no LR ran to the end."""
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.5, 0.5, 0.5)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, status="stopped", curve=[(0.97, 0.97, 0.97)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.8, 0.8, 0.887)])
    for lr, v in zip(ADAMW_LRS, (0.6, 0.7, 0.65), strict=True):
        b.add("tiny_vit", "synth_style", "adamw", lr, status="stopped", curve=[(v, v, v)])
    return b.write(root)


def test_a_cell_chosen_among_early_stopped_lrs_is_marked_in_every_format(tmp_path: Path) -> None:
    sweep = _early_stopped_sweep(tmp_path)
    rows = [dict(r) for r in build_table("ood", sweep).rows]
    sgd, adamw = _row(rows, method="sgd"), _row(rows, method="adamw")
    assert sgd["synth_style"] == pytest.approx(88.7) and sgd["synth_style_lr"] == 1e-3  # not the stopped 97.0
    assert "§" not in sgd["synth_style_marks"] and adamw["synth_style_marks"] == "§"
    for fmt in list_formats():
        content, _ = render_table("ood", sweep, fmt)
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(content)).to_pylist()
            assert [r["synth_style_marks"] for r in table if r["method"] == "adamw"] == ["§"]
            notes = json.loads(pq.read_table(io.BytesIO(content)).schema.metadata[b"notes"])
            assert any("§ no LR ran to the end" in n for n in notes)
        elif fmt == "latex":
            assert r"\S{}" in content.decode()
        else:
            assert "§" in content.decode(), fmt
    best = {r["dataset"]: r for r in (dict(x) for x in build_table("best", sweep).rows)}
    assert best["synth_style"]["ood"] == pytest.approx(88.7)  # the stopped 97.0 is no one's result


def _precision_sweep(root: Path, precisions: list[str | None]) -> Path:
    b = SweepBuilder()
    for lr, precision in zip((1e-4, 3e-4, 1e-3), precisions, strict=True):
        b.add("tiny_vit", "synth_style", "sgd", lr, curve=[(0.8, 0.8, 0.7)], precision=precision)
    return b.write(root)


@pytest.mark.parametrize(
    ("precisions", "says"),
    [
        (["bf16"] * 3, "every trial ran its forward passes under bf16 autocast"),
        (
            ["fp32", "bf16", None],
            "mixes precisions (1 in fp32, 1 under bf16 autocast, 1 recorded before precision was)",
        ),
        ([None] * 3, "recorded before precision was: on CUDA they ran under bf16 autocast"),
    ],
)
def test_a_sweep_that_departs_from_the_papers_fp32_says_so_in_every_table_and_format(
    tmp_path: Path, precisions: list[str | None], says: str
) -> None:
    sweep = _precision_sweep(tmp_path, precisions)
    for name in list_tables():
        assert sum(says in n for n in build_table(name, sweep).notes) == 1, name
    for fmt in list_formats():
        content, _ = render_table("ood", sweep, fmt)
        if fmt == "parquet":
            notes = json.loads(pq.read_table(io.BytesIO(content)).schema.metadata[b"notes"])
            assert any(says in n for n in notes)
        elif fmt != "csv":  # CSV is the header and the rows only, by design
            assert "Precision:" in content.decode(), fmt


def test_an_all_fp32_sweep_has_no_precision_note(tmp_path: Path) -> None:
    sweep = _precision_sweep(tmp_path, ["fp32"] * 3)
    assert not any("Precision" in n for name in list_tables() for n in build_table(name, sweep).notes)


def test_a_cell_with_other_seeds_than_the_papers_says_so(tmp_path: Path) -> None:
    b = SweepBuilder()
    for seed in (0, 1, 2):
        b.add("clip_vit_b16", "living17", "sgd", 1e-3, seed, curve=[(0.8, 0.8, 0.7)])
    b.add("clip_vit_b16", "living17", "adamw", 1e-5, curve=[(0.8, 0.8, 0.7)])
    b.add("bit_r50", "living17", "sgd", 1e-3, curve=[(0.8, 0.8, 0.7)])
    b.add("tiny_vit", "living17", "sgd", 1e-3, curve=[(0.8, 0.8, 0.7)])
    sweep = b.write(tmp_path)
    for name in ("ood", "id", "ablation"):
        seeds = [n for n in build_table(name, sweep).notes if n.startswith("Seeds:")]
        assert seeds == [
            "Seeds: CLIP ViT-B/16 cells average 1-3 seed(s) at the chosen LR, the paper's 3 (its intervals are over "
            "3 seeds)."
        ], name  # BiT R50 ran 1 seed as the paper did; the tiny ViT has no paper cell


def test_a_linear_probe_row_says_its_lr_is_c(tmp_path: Path) -> None:
    b = SweepBuilder()
    for c, v in ((1e-2, 0.6), (1.0, 0.8), (100.0, 0.7)):
        b.add("tiny_vit", "synth_style", "linear_probe", c, curve=[(v, v, v)])
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.5, 0.5, 0.5)])
    sweep = b.write(tmp_path)
    t = build_table("ood", sweep)
    row = _row([dict(r) for r in t.rows], method="linear_probe")
    assert row["synth_style_lr"] == 1.0 and row["synth_style"] == pytest.approx(80.0)
    assert sum("Linear probe: a logistic regression on frozen features" in n for n in t.notes) == 1
    assert not any("logistic" in n for n in build_table("ood", _precision_sweep(tmp_path / "x", ["fp32"] * 3)).notes)


def test_a_cell_no_better_than_a_constant_prediction_is_marked_in_every_format(tmp_path: Path) -> None:
    """OOD 55.5 where 55.5% of the OOD images are one class: marked; its ID (above the constant's) is not."""
    b = SweepBuilder()
    chance = (0.5, 0.5, 0.555)
    b.add("tiny_vit", "synth_stain", "sgd", 1e-3, curve=[(0.9, 0.9, 0.555)], chance=chance)
    b.add("tiny_vit", "synth_stain", "adamw", 1e-4, curve=[(0.9, 0.9, 0.70)], chance=chance)
    b.add("tiny_vit", "synth_spurious", "sgd", 1e-3, curve=[(0.9, 0.9, 0.0)])  # an older sweep: no levels
    sweep = b.write(tmp_path)
    ood = {(r["method"], r["model"]): r for r in (dict(x) for x in build_table("ood", sweep).rows)}
    assert "○" in ood[("sgd", "tiny_vit")]["synth_stain_marks"]
    assert "○" not in ood[("adamw", "tiny_vit")]["synth_stain_marks"]
    assert "○" not in ood[("sgd", "tiny_vit")]["synth_spurious_marks"]  # no recorded level, no claim
    assert not any("○" in (r["synth_stain_marks"] or "") for r in build_table("id", sweep).rows)
    for fmt in list_formats():
        content, _ = render_table("ood", sweep, fmt)
        if fmt == "parquet":
            marks = pq.read_table(io.BytesIO(content)).column("synth_stain_marks").to_pylist()
            assert any("○" in (m or "") for m in marks)
        elif fmt == "latex":
            assert r"$\circ$" in content.decode()
        else:
            assert "○" in content.decode(), fmt
    assert "○ at or below chance" in build_table("ood", sweep).notes[0]
    best = {r["dataset"]: r for r in (dict(x) for x in build_table("best", sweep).rows)}
    assert "○" not in best["synth_stain"]["marks"]  # the best cell is AdamW's 70.0


def test_ablation_table_for_one_model_of_several(sweep: Path) -> None:
    t = build_table("ablation", sweep)
    rows = [dict(r) for r in t.rows]
    assert [r["split"] for r in rows] == ["OOD"] * 3 + ["ID"] * 3
    assert {r["model"] for r in rows} == {"clip_vit_b16"}
    assert _row(rows, split="ID", method="sgd_freeze_embed")["living17"] == pytest.approx(98.5)
    assert _row(rows, split="ID", method="sgd_freeze_embed")["living17_paper"] == 98.2
    assert any("shows clip_vit_b16 only (others: bit_r50)" in n for n in t.notes)


def test_ablation_table_carries_the_ablation_methods_paper_numbers(tmp_path: Path) -> None:
    b = SweepBuilder()
    _add_cell(b, "clip_vit_b16", "living17", "sgd", 0.98, 0.85)
    for lr in ADAMW_LRS:
        b.add("clip_vit_b16", "living17", "lamb", lr, curve=[(0.9, 0.9, 0.1 if lr == 1e-6 else 0.8)])
    t = build_table("ablation", b.write(tmp_path))
    rows = [dict(r) for r in t.rows]
    lamb = _row(rows, split="OOD", method="lamb")
    # id_val ties at every LR: the smallest LR wins (an edge), so OOD is 10.0, beside the paper's 79.5 for LAMB
    assert lamb["living17"] == pytest.approx(10.0) and lamb["living17_paper"] == 79.5
    assert lamb["living17_marks"] == "†" and lamb["living17_vs_sgd"] == pytest.approx(10.0 - 85.0)
    assert _row(rows, split="ID", method="lamb")["living17_paper"] == 98.2
    assert not any("others" in n for n in t.notes)


def test_best_table(sweep: Path) -> None:
    rows = _rows("best", sweep)
    living = _row(rows, dataset="living17")
    assert (living["model"], living["method"]) == ("bit_r50", "sgd_freeze_embed")
    assert living["ood"] == pytest.approx(86.0) and living["id"] == pytest.approx(97.6)
    assert living["paper_best"] == 90.5 and living["paper_model"] == "clip_vit_l14"
    assert living["vs_paper"] == pytest.approx(86.0 - 90.5) and living["vs_prior"] == pytest.approx(86.0 - 87.6)
    assert living["cells_compared"] == 6
    water = _row(rows, dataset="waterbirds")
    assert (water["model"], water["method"], water["ood"]) == ("bit_r50", "sgd", pytest.approx(76.0))
    assert water["prior_sota"] == 89.3


def test_memory_table(sweep: Path) -> None:
    t = build_table("memory", sweep)
    rows = [dict(r) for r in t.rows]
    fe = _row(rows, model="clip_vit_b16", method="sgd_freeze_embed")
    assert fe["peak_memory_bytes"] == 900 * MIB and fe["peak_memory_mib"] == pytest.approx(900.0)
    assert fe["adamw_overhead_pct"] == pytest.approx(16.0) and fe["adamw_overhead_paper_pct"] == 16
    sgd = _row(rows, model="clip_vit_b16", method="sgd")
    assert sgd["adamw_overhead_pct"] == pytest.approx(4.4) and sgd["adamw_overhead_paper_pct"] is None
    adamw = _row(rows, model="clip_vit_b16", method="adamw")
    assert adamw["state_bytes_per_param"] == 8.0 and adamw.get("adamw_overhead_pct") is None
    # model state, 1000 trained weights: 4 B weights + 4 B gradients + the optimizer's (4 B SGD, 8 B AdamW)
    assert fe["model_state_bytes"] == 12_000 and adamw["model_state_bytes"] == 16_000
    assert fe["adamw_state_overhead_pct"] == pytest.approx(100 / 3) and adamw.get("adamw_state_overhead_pct") is None
    assert "on CPU its AdamW overhead is noise" in " ".join(t.notes)
    pending = _row(rows, model="bit_r50", method="sgd_freeze_embed")
    assert pending["completed_trials"] == 3 and pending["trials"] == 3 + 3
    assert pending["peak_memory_bytes"] == 900 * MIB  # Living-17's completed trials; the failed 5000 MiB is ignored
    assert "ViT-H/14" in " ".join(t.notes)


def test_probe_table(sweep: Path) -> None:
    rows = _rows("probe", sweep)
    assert [r["measure"] for r in rows] == ["grad_norm", "grad_norm_over_param_norm", "grad_norm_over_sqrt_numel"]
    raw = rows[0]
    assert raw["embed_layer"] == "visual.conv1" and raw["embed"] == 12.0
    assert raw["middle_layers"] == 5 and raw["middle_median"] == 3.0 and raw["middle_mean"] == 3.0
    assert raw["head"] == 7.0 and raw["embed_over_middle_median"] == pytest.approx(4.0)
    by_param = rows[1]
    assert by_param["embed"] == 6.0 and by_param["middle_median"] == 1.5 and by_param["head"] == 3.5


def test_lr_curves_table(sweep: Path) -> None:
    rows = _rows("lr_curves", sweep)
    assert len(rows) == 12 * 3
    clip_sgd = [r for r in rows if (r["model"], r["dataset"], r["method"]) == ("clip_vit_b16", "living17", "sgd")]
    assert [r["lr"] for r in clip_sgd] == list(SGD_LRS)
    middle = clip_sgd[1]
    assert middle["chosen"] and middle["n"] == 2 and middle["ood_test"] == pytest.approx(80.0)
    assert middle["ood_test_sd"] == pytest.approx(100 * 0.02 * 2**0.5)
    assert clip_sgd[0]["id_val"] == pytest.approx(80.0) and not clip_sgd[0]["chosen"]
    assert clip_sgd[0]["statuses"] == "2 completed"


@pytest.mark.parametrize("name", ["ood", "id", "ablation", "best", "memory", "probe", "lr_curves"])
def test_every_format_renders_and_parses_back(name: str, sweep: Path) -> None:
    table = build_table(name, sweep)
    keys, n = table.column_keys(), len(table.rows)
    assert n > 0
    csv_bytes, media = render_table(name, sweep, "csv")
    assert media.startswith("text/csv")
    df = pd.read_csv(io.BytesIO(csv_bytes))
    assert list(df.columns) == keys and len(df) == n
    doc = json.loads(render_table(name, sweep, "json")[0])
    assert doc["title"] == table.title and len(doc["rows"]) == n and doc["notes"] == list(table.notes)
    assert list(doc["rows"][0]) == keys
    pq_table = pq.read_table(io.BytesIO(render_table(name, sweep, "parquet")[0]))
    assert pq_table.column_names == keys and pq_table.num_rows == n
    assert pq_table.schema.metadata[b"title"].decode() == table.title
    md = render_table(name, sweep, "markdown")[0].decode()
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table_lines) == n + 2 and len({line.count("|") for line in table_lines}) == 1
    tex, media = render_table(name, sweep, "latex")
    tex = tex.decode()
    assert media.startswith("application/x-latex")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and tex.isascii()
    assert sum(line.endswith("\\\\") and "&" in line for line in tex.splitlines()) == n + 1


def test_empty_sweep_builds_every_table(tmp_path: Path) -> None:
    for name in list_tables():
        table = build_table(name, tmp_path)
        assert table.rows == () and table.notes
        for fmt in list_formats():
            content, _ = render_table(name, tmp_path, fmt)
            assert content


def test_unknown_table_or_format_names_the_valid_ones(sweep: Path) -> None:
    assert set(list_tables()) == {"ood", "id", "ablation", "best", "memory", "probe", "lr_curves"}
    with pytest.raises(ValueError, match="unknown table 'table9'; valid tables: .*ood.*lr_curves"):
        build_table("table9", sweep)
    with pytest.raises(ValueError, match="unknown table 'x'"):
        render_table("x", sweep, "csv")
    with pytest.raises(
        ValueError, match="unknown table format 'xlsx'; valid formats: markdown, csv, latex, json, parquet, text"
    ):
        render_table("ood", sweep, "xlsx")


def test_full_paper_grid_uses_the_papers_own_averages(tmp_path: Path) -> None:
    b = SweepBuilder()
    models = [
        "clip_vit_b16",
        "clip_vit_l14",
        "vit_b16_in21k",
        "dino_vit_b16",
        "convnext_b_in22k",
        "bit_r50",
        "bit_r101",
    ]
    for model in models:
        for dataset in ("living17", "waterbirds", "domainnet", "fmow", "camelyon"):
            for method in ("sgd", "sgd_freeze_embed_nomom"):
                b.add(model, dataset, method, 1e-3, curve=[(0.9, 0.9, 0.5)])
    rows = _rows("ood", b.write(tmp_path))
    assert _row(rows, model="clip_vit_l14", method="sgd")["avg_paper"] == 66.8
    assert _row(rows, model="clip_vit_l14", method="sgd_freeze_embed_nomom").get("avg_paper") is None
    assert _row(rows, model="all", method="sgd")["avg_paper"] == 71.9
    nomom = _row(rows, model="all", method="sgd_freeze_embed_nomom")
    assert nomom["avg_paper"] == 76.9 and nomom["avg"] == pytest.approx(50.0) and nomom["avg_vs_sgd"] == 0.0


def test_the_text_format_fits_a_120_column_terminal_for_the_demos_grid(tmp_path: Path) -> None:
    """3 small models x 4 methods x 3 benchmarks with 2 seeds (every cell with an interval) and a probe."""
    b = SweepBuilder()
    models, datasets = ("tiny_vit", "tiny_convnext", "tiny_bit"), ("synth_spurious", "synth_style", "synth_stain")
    methods = ("sgd", "adamw", "sgd_freeze_embed", "sgd_freeze_embed_nomom")
    for i, (model, dataset, method) in enumerate((m, d, x) for m in models for d in datasets for x in methods):
        for lr in (3e-3, 1e-2, 3e-2):
            for seed in (0, 1):
                ood = (0.3 + 0.01 * i + 0.07 * seed) % 1.0
                b.add(
                    model,
                    dataset,
                    method,
                    lr,
                    seed,
                    curve=[(0.6 + lr, 0.9, ood)],
                    peak=2**30,
                    state=2**20,
                    trainable=10,
                )
        b.add_probe(model, dataset, "patch_embed.proj", "embed", 0, 2.5)
        b.add_probe(model, dataset, "blocks.0.attn", "attn", 1, 1.0)
    sweep = b.write(tmp_path / "demo-like")
    for name in list_tables():
        text = render_table(name, sweep, "text")[0].decode()
        assert max(len(line) for line in text.splitlines()) <= 120, (name, text)
    ood = render_table("ood", sweep, "text")[0].decode()
    assert "synth_spurious" in ood and "Δ" not in ood.split("\n- ")[0]  # short headers; no deltas in the cells
    assert "(±" in ood and ood.rstrip().endswith("are in the other formats.")
