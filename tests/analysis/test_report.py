"""The sweep report from hand-built Parquet files: its tables against the selection code, its plots, its modes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis import load_sweep
from analysis.reference import load_reference
from analysis.report import (
    REPORT_FILE,
    list_assets,
    list_plots,
    read_asset,
    render_plot,
    render_report,
    write_report,
)
from tests.sweep_builder import SweepBuilder
from worker.selection import CellResult

MIB = 2**20
MODELS = ("clip_vit_b16", "bit_r50")
DATASETS = ("living17", "waterbirds")
LRS = {"sgd": (1e-4, 3e-4, 1e-3), "adamw": (1e-6, 3e-6, 1e-5), "sgd_freeze_embed": (1e-4, 3e-4, 1e-3)}
TWO_SEEDS = ("clip_vit_b16", "living17", "sgd")
DIVERGED = ("bit_r50", "waterbirds", "adamw", 1e-5)
PEAK_MIB = {"sgd": 1000, "adamw": 1160, "sgd_freeze_embed": 990}


def trial_curve(
    model: str, dataset: str, method: str, k: int, seed: int, epochs: int
) -> list[tuple[float, float, float]]:
    """Distinct, deterministic metrics per trial: the middle LR has the best ID validation; OOD varies by cell."""
    base = 0.6 + 0.05 * MODELS.index(model) + 0.03 * DATASETS.index(dataset) + 0.02 * list(LRS).index(method)
    peak = 0.1 if k == 1 else 0.0
    return [
        (
            base + peak + 0.02 * e + 0.004 * seed,
            base + peak + 0.015 * e + 0.003 * seed,
            base - 0.2 + 0.03 * k + 0.01 * e + 0.007 * seed,
        )
        for e in range(epochs)
    ]


def add_losses(b: SweepBuilder) -> None:
    for row in b.epochs:
        row["train_loss"] = 2.0 / row["epoch"]


def build_finished_sweep(root: Path) -> Path:
    """Two models x two datasets x three methods x three LRs, one cell with two seeds, a diverged LR, a probe."""
    b = SweepBuilder()
    for model in MODELS:
        for dataset in DATASETS:
            for method, lrs in LRS.items():
                seeds = (0, 1) if (model, dataset, method) == TWO_SEEDS else (0,)
                for k, lr in enumerate(lrs):
                    for seed in seeds:
                        if (model, dataset, method, lr) == DIVERGED:
                            b.add(model, dataset, method, lr, seed, status="diverged")
                            continue
                        b.add(
                            model,
                            dataset,
                            method,
                            lr,
                            seed,
                            curve=trial_curve(model, dataset, method, k, seed, 3),
                            peak=PEAK_MIB[method] * MIB,
                            state=(8 if method == "adamw" else 4) * 1000,
                            trainable=1000,
                        )
    add_losses(b)
    for model, ratio in (("clip_vit_b16", 30.0), ("bit_r50", 0.8)):
        for layer, kind, depth, grad in [
            ("stem", "embed", 0, 2.0 * ratio),
            ("blocks.0.attn", "attn", 1, 1.0),
            ("blocks.0.mlp", "mlp", 2, 3.0),
            ("blocks.1.attn", "attn", 3, 2.0),
            ("blocks.1.mlp", "mlp", 4, 2.5),
            ("head", "head", 5, 5.0),
        ]:
            b.add_probe(model, "living17", layer, kind, depth, grad)
    return b.write(root)


def build_running_sweep(root: Path) -> Path:
    """The same grid part-way: finished, running (some epochs) and pending trials; no probe yet."""
    b = SweepBuilder()
    n = 0
    for model in MODELS:
        for dataset in DATASETS:
            for method, lrs in LRS.items():
                for k, lr in enumerate(lrs):
                    n += 1
                    if n % 3 == 0:
                        b.add(model, dataset, method, lr, status="pending")
                    elif n % 3 == 1:
                        b.add(
                            model,
                            dataset,
                            method,
                            lr,
                            status="running",
                            curve=trial_curve(model, dataset, method, k, 0, 1),
                        )
                    else:
                        curve = trial_curve(model, dataset, method, k, 0, 3)
                        b.add(model, dataset, method, lr, curve=curve, peak=PEAK_MIB[method] * MIB, state=4000)
    add_losses(b)
    return b.write(root)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_finished_sweep(tmp_path_factory.mktemp("finished"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_running_sweep(tmp_path_factory.mktemp("running"))


@pytest.fixture(scope="module")
def final_html(finished: Path) -> str:
    return render_report(finished, sweep_id="s-final", state="completed", dashboard_url=None, live=False)


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.items if (tag is None or t == tag) and all(a.get(k) == v for k, v in want.items())]


def _cells(sweep: Path) -> dict[tuple[str, str, str], CellResult]:
    return {c.key: c for c in load_sweep(sweep).cells}


# ---- tables -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "field", "paper_metric"), [("ood", "ood_test", "ood"), ("id", "id_test", "id")])
def test_table_cells_carry_the_selected_values_and_the_papers(
    finished: Path, final_html: str, table: str, field: str, paper_metric: str
) -> None:
    page = Elements(final_html)
    ref = load_reference()
    cells = _cells(finished)
    assert len(cells) == len(MODELS) * len(DATASETS) * len(LRS)
    for (model, dataset, method), c in cells.items():
        ours = page.find("td", data_table=table, data_source="ours", data_model=model, data_dataset=dataset,
                         data_method=method)  # fmt: skip
        assert len(ours) == 1, (model, dataset, method)
        assert ours[0]["data-metric"] == field
        assert float(ours[0]["data-value"]) == pytest.approx(100 * c.mean(field))
        assert float(ours[0]["data-lr"]) == c.chosen_lr
        sgd = cells[(model, dataset, "sgd")]
        delta = re.search(r'data-delta="([^"]+)"', _cell_html(final_html, table, "ours", model, dataset, method))
        if method == "sgd":
            assert delta is None
        else:
            assert float(delta.group(1)) == pytest.approx(100 * (c.mean(field) - sgd.mean(field)))
        paper = page.find("td", data_table=table, data_source="paper", data_model=model, data_dataset=dataset,
                          data_method=method)  # fmt: skip
        want = ref.value(paper_metric, model, method, dataset)
        assert len(paper) == 1
        if want is None:
            assert "data-value" not in paper[0]
        else:
            assert float(paper[0]["data-value"]) == pytest.approx(want.value)


def _cell_html(html: str, table: str, source: str, model: str, dataset: str, method: str) -> str:
    pattern = (
        rf'<td[^>]*data-table="{table}" data-source="{source}" data-model="{model}" data-method="{method}"'
        rf' data-dataset="{dataset}"[^>]*>.*?</td>'
    )
    m = re.search(pattern, html)
    assert m, (table, source, model, dataset, method)
    return m.group(0)


def test_seed_interval_and_gains_are_signed_and_coloured(finished: Path, final_html: str) -> None:
    c = _cells(finished)[TWO_SEEDS]
    cell = _cell_html(final_html, "ood", "ours", *TWO_SEEDS[:2], TWO_SEEDS[2])
    assert c.n_seeds == 2 and c.ci90("ood_test") is not None
    assert f"±{100 * c.ci90('ood_test'):.1f}" in cell
    for m in re.finditer(r'<span class="d (gain|loss|same)"[^>]*data-delta="([^"]+)">([^<]+)</span>', final_html):
        cls, value, text = m.group(1), float(m.group(2)), m.group(3)
        sign = text[0]
        assert {"gain": "+", "loss": "\u2212", "same": "±"}[cls] == sign, m.group(0)
        assert (value > 0) == (cls == "gain") or cls == "same"


def test_average_and_mean_rows_are_present(final_html: str) -> None:
    page = Elements(final_html)
    avg = page.find("td", data_table="ood", data_source="ours", data_dataset="avg", data_model="all", data_method="sgd")
    assert len(avg) == 1 and float(avg[0]["data-value"]) > 0


def test_memory_and_probe_tables_carry_raw_values(final_html: str) -> None:
    page = Elements(final_html)
    mem = [a for t, a in page.items if t == "td" and a.get("data-col") == "peak_memory_mib"]
    assert sorted(float(a["data-value"]) for a in mem) == sorted(float(v) for v in PEAK_MIB.values() for _ in MODELS)
    ratios = [float(a["data-value"]) for t, a in page.items if a.get("data-col") == "embed_over_middle_median"]
    assert ratios and max(ratios) == pytest.approx(60.0 / 2.25)  # clip: embed 60 over median middle 2.25


# ---- progress and modes -------------------------------------------------------------------------------------


def test_progress_counts_trials_by_status(running: Path) -> None:
    html = render_report(running, sweep_id="s", state="running", dashboard_url="http://127.0.0.1:8265", live=True)
    page = Elements(html)
    counts = {a["data-status"]: int(a["data-count"]) for a in page.find("li") if "data-status" in a}
    assert counts["pending"] == 12 and counts["running"] == 12 and counts["completed"] == 12
    assert sum(counts.values()) == 36
    assert page.find("a", href="http://127.0.0.1:8265")
    assert page.find("div", data_percent="33.3")


def test_live_page_refreshes_itself_and_final_page_does_not(running: Path, final_html: str) -> None:
    live = render_report(running, sweep_id="s", state="running", dashboard_url=None, live=True, refresh_s=7)
    assert '<body data-live="true" data-refresh-s="7"' in live
    assert "updates every 7 s" in live and "DOMParser" in live and "<script>" in live
    assert '<body data-live="false"' in final_html
    assert "<script" not in final_html and "Final report" in final_html
    for html in (live, final_html):  # the sections the script swaps are marked and named
        ids = re.findall(r'<section id="([^"]+)" data-swap>', html)
        assert ids == ["progress", "table-ood", "table-id", "lr-curves", "id-vs-ood", "training", "layer-gradients",
                       "memory"]  # fmt: skip


def test_asset_base_links_the_css_and_script_instead_of_inlining(running: Path) -> None:
    html = render_report(running, sweep_id="s", state="running", dashboard_url=None, live=True, asset_base="/static/")
    assert '<link rel="stylesheet" href="/static/report.css">' in html
    assert '<script src="/static/report.js" defer></script>' in html
    assert "<style>" not in html
    assert list_assets() == ["report.css", "report.js"]
    css, media = read_asset("report.css")
    assert media.startswith("text/css") and b".grid" in css
    with pytest.raises(ValueError, match="report.css, report.js"):
        read_asset("evil.js")


def test_page_loads_nothing_from_elsewhere(final_html: str) -> None:
    assert "@import" not in final_html and "url(http" not in final_html and "@font-face" not in final_html
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', final_html)


def test_every_inline_svg_is_well_formed(final_html: str) -> None:
    svgs = re.findall(r"<svg\b.*?</svg>", final_html, flags=re.S)
    assert len(svgs) > 50
    for s in svgs:
        ET.fromstring(s)


def test_bad_arguments_are_refused(finished: Path) -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="refresh_s"):
            render_report(finished, sweep_id="s", state="running", dashboard_url=None, live=True, refresh_s=bad)
    with pytest.raises(ValueError, match="sweep_id"):
        render_report(finished, sweep_id="", state="running", dashboard_url=None, live=True)


# ---- plots --------------------------------------------------------------------------------------------------


def test_lr_curves_mark_the_chosen_lr_and_show_seed_bands(finished: Path, final_html: str) -> None:
    cells = _cells(finished)
    page = Elements(final_html)
    for (model, dataset, method), c in cells.items():
        svg = page.find("svg", data_plot="lr_curves", data_model=model, data_dataset=dataset, data_method=method)
        assert len(svg) == 1
        assert float(svg[0]["data-chosen-lr"]) == c.chosen_lr
    block = re.search(
        r'<svg[^>]*data-model="clip_vit_b16" data-dataset="living17" data-method="sgd".*?</svg>', final_html, re.S
    ).group(0)
    assert block.count("<polygon") >= 2  # ID and OOD seed bands
    pts = re.findall(r'data-series="ood_test" data-lr="([^"]+)" data-value="([^"]+)"', block)
    by_lr = {s.lr: s for s in cells[TWO_SEEDS].per_lr}
    assert len(pts) == 3
    for lr, v in pts:
        assert float(v) == pytest.approx(100 * by_lr[float(lr)].mean("ood_test"))
    diverged = re.search(
        r'<svg[^>]*data-model="bit_r50" data-dataset="waterbirds" data-method="adamw".*?</svg>', final_html, re.S
    ).group(0)
    assert 'data-series="diverged" data-lr="1e-05"' in diverged


def test_training_and_gradient_panels_cover_the_sweep(final_html: str) -> None:
    page = Elements(final_html)
    assert len(page.find("svg", data_plot="training_curves")) == 2 * 2 * 3 * 3 + 3  # every trial; one cell has 2 seeds
    assert len(page.find("svg", data_plot="layer_gradients")) == 2 * 3  # two probed pairs x three measures
    assert len(page.find("svg", data_plot="id_vs_ood")) == 3
    assert len(page.find("svg", data_plot="memory")) == 2 * 2


def build_small_sweep(root: Path) -> Path:
    """One model, one dataset, two methods, three LRs, two seeds, a diverged LR and a probe: every kind of mark."""
    b = SweepBuilder()
    for method in ("sgd", "adamw"):
        for k, lr in enumerate(LRS[method]):
            for seed in (0, 1):
                if method == "adamw" and k == 2:
                    b.add("clip_vit_b16", "living17", method, lr, seed, status="diverged")
                    continue
                curve = trial_curve("clip_vit_b16", "living17", method, k, seed, 3)
                b.add(
                    "clip_vit_b16", "living17", method, lr, seed, curve=curve, peak=PEAK_MIB[method] * MIB, state=4000
                )
    add_losses(b)
    for layer, kind, depth, grad in [
        ("stem", "embed", 0, 9.0),
        ("blocks.0.mlp", "mlp", 1, 1.0),
        ("head", "head", 2, 3.0),
    ]:
        b.add_probe("clip_vit_b16", "living17", layer, kind, depth, grad)
    return b.write(root)


def test_every_plot_renders_as_png_and_svg(tmp_path: Path) -> None:
    small = build_small_sweep(tmp_path / "small")
    for name in list_plots():
        png, media = render_plot(small, name, "png")
        assert media == "image/png" and png.startswith(b"\x89PNG") and len(png) > 2000, name
        svg, media = render_plot(small, name, "svg")
        assert media == "image/svg+xml" and b"<svg" in svg, name
        ET.fromstring(svg)


def test_unknown_plot_or_format_names_the_valid_ones(finished: Path) -> None:
    with pytest.raises(ValueError, match="valid plots: lr_curves, id_vs_ood, training_curves"):
        render_plot(finished, "pie", "png")
    with pytest.raises(ValueError, match="valid formats: png, svg"):
        render_plot(finished, "memory", "jpeg")


def test_plots_of_an_empty_sweep_say_so(tmp_path: Path) -> None:
    for name in list_plots():
        png, _ = render_plot(tmp_path / "nothing", name, "png")
        assert png.startswith(b"\x89PNG")


# ---- missing data -------------------------------------------------------------------------------------------


def test_running_sweep_without_probe_renders_with_notes(running: Path) -> None:
    live = render_report(running, sweep_id="s", state="running", dashboard_url=None, live=True)
    page = Elements(live)
    placeholders = page.find("svg", data_plot="layer_gradients")
    assert len(placeholders) == 4 * 3  # every (model, dataset) pair keeps its place until the probe arrives
    assert all(a["class"] == "plot empty" and a["aria-label"].endswith("not measured (yet)") for a in placeholders)
    assert "no epoch reported yet (pending)" in live
    assert page.find("td", data_table="ood", data_source="ours", data_status="incomplete")
    final = render_report(running, sweep_id="s", state="failed", dashboard_url=None, live=False)
    assert "No probe rows: run the sweep with `probe: true`" in final
    assert "not measured (yet)" not in final


def test_empty_sweep_renders_with_notes(tmp_path: Path) -> None:
    html = render_report(tmp_path / "new", sweep_id="s", state="pending", dashboard_url=None, live=True)
    assert "No trials yet" in html and "No results yet." in html
    assert 'data-total="0"' in html


# ---- writing ------------------------------------------------------------------------------------------------


def test_write_report_replaces_report_html_beside_the_parquet(finished: Path) -> None:
    path = write_report(finished, sweep_id="s", state="completed", dashboard_url=None, live=False)
    assert path == finished.resolve() / REPORT_FILE
    first = path.read_text(encoding="utf-8")
    assert first.startswith("<!DOCTYPE html>") and "Sweep <code>s</code>" in first
    write_report(finished, sweep_id="s2", state="completed", dashboard_url=None, live=False)
    assert "Sweep <code>s2</code>" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in finished.iterdir() if p.name.startswith(".")) == []  # no temporary files left
    with pytest.raises(TypeError):
        write_report(finished, sweep_id="s", state="completed", dashboard_url=None, live=False, colour="red")


def test_a_cell_chosen_among_early_stopped_lrs_is_marked_in_the_report(tmp_path: Path) -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-4, curve=[(0.5, 0.5, 0.5)])
    b.add("tiny_vit", "synth_style", "sgd", 3e-4, status="stopped", curve=[(0.97, 0.97, 0.97)])
    for lr, v in ((1e-6, 0.6), (3e-6, 0.7)):
        b.add("tiny_vit", "synth_style", "adamw", lr, status="stopped", curve=[(v, v, v)])
    html = render_report(b.write(tmp_path), sweep_id="s", state="completed", dashboard_url=None, live=False)
    assert "§ no LR ran to the end" in html
    table = html.split('id="table-ood"', 1)[1].split("</table>", 1)[0]
    assert '<span class="v">70.0</span><span class="marks">†§</span>' in table  # adamw: chosen among the stopped
    assert '<span class="v">50.0</span><span class="marks">†</span>' in table  # sgd: the full-length LR
    assert "97.0" not in table  # the stopped LR's early epoch is no one's result


def test_a_bf16_sweep_says_so_under_its_progress(tmp_path: Path) -> None:
    b = SweepBuilder()
    b.add("tiny_vit", "synth_style", "sgd", 1e-3, curve=[(0.8, 0.8, 0.7)], precision="bf16")
    html = render_report(b.write(tmp_path), sweep_id="s", state="completed", dashboard_url=None, live=False)
    progress = html[html.index('id="progress"') : html.index("</section>", html.index('id="progress"'))]
    assert "Precision: every trial ran its forward passes under bf16 autocast" in progress
