"""The catalog is the one strict door to configs/: every entry loads, and every mistake names file, line and fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from configs import CONFIG_DIR
from worker import catalog
from worker.records import METRICS
from worker.strict_yaml import YamlError, load_text


def _clear() -> None:
    for cached in (catalog._models, catalog._datasets, catalog._methods, catalog.paper_reference):
        cached.cache_clear()


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str, str], None]]:
    """A copy of configs/ the catalog reads instead; `edit(file, old, new)` changes one of its files."""
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, root)
    monkeypatch.setattr(catalog, "CONFIG_DIR", root)
    monkeypatch.setattr(catalog, "PRESET_DIR", root / "sweeps")
    _clear()

    def edit(name: str, old: str, new: str) -> None:
        path = root / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new, 1))

    yield edit
    _clear()


def _line(name: str, text: str, *, exact: bool = False) -> int:
    """The 1-based line of the first line of the real configs/ file `name` that holds (or is) `text`."""
    for i, line in enumerate((CONFIG_DIR / name).read_text().splitlines(), start=1):
        if line == text if exact else text in line:
            return i
    raise AssertionError(f"{text!r} not in {name}")


def test_every_entry_and_preset_loads() -> None:
    assert "clip_vit_b16" in catalog.list_models() and "tiny_vit" in catalog.list_models(tiny=True)
    assert set(catalog.list_datasets(synthetic=True)) == {"synth_spurious", "synth_style", "synth_stain"}
    assert "adam_spd" in catalog.list_methods()
    for key in catalog.list_datasets():
        assert set(catalog.get_dataset(key).metrics) == set(METRICS)
    for name in catalog.list_presets():
        assert {"models", "datasets", "methods"} <= set(catalog.get_preset(name)), name
    assert "results" in catalog.paper_reference()


def test_unknown_key_in_an_entry_names_file_line_and_valid_keys(configs) -> None:
    configs("models.yaml", "    weights_file: tiny_vit.safetensors\n", "    weights_flie: tiny_vit.safetensors\n")
    line = _line("models.yaml", "weights_file: tiny_vit.safetensors")
    with pytest.raises(catalog.CatalogError) as e:
        catalog.get_model("tiny_vit")
    assert str(e.value).startswith(f"configs/models.yaml:{line}: model 'tiny_vit': unknown key 'weights_flie'")
    assert "valid keys: title, family, builder, weights_file" in str(e.value)


def test_duplicate_key_names_both_lines(configs) -> None:
    configs("methods.yaml", "  sgd_wd:\n", "  sgd:\n")
    first, second = _line("methods.yaml", "  sgd:", exact=True), _line("methods.yaml", "  sgd_wd:")
    with pytest.raises(
        catalog.CatalogError, match=rf"methods.yaml:{second}: duplicate key 'sgd' \(first at line {first}\)"
    ):
        catalog.list_methods()


def test_unknown_top_level_section_is_refused(configs) -> None:
    configs("datasets.yaml", "datasets:\n", "datsets:\n")
    with pytest.raises(catalog.CatalogError, match=r"configs/datasets.yaml:\d+: .*unknown key 'datsets'; valid keys"):
        catalog.list_datasets()


def test_an_empty_section_is_refused_by_name(configs) -> None:
    (catalog.CONFIG_DIR / "models.yaml").write_text("models:\n")
    with pytest.raises(catalog.CatalogError, match="models: expected a mapping of named entries, got None"):
        catalog.list_models()


def test_missing_field_and_bad_value_name_the_entry(configs) -> None:
    configs("datasets.yaml", "    epochs: 20\n", "    epochs: twenty\n")
    with pytest.raises(catalog.CatalogError, match=r"datasets.yaml:\d+: dataset 'living17': epochs: expected a whole"):
        catalog.list_datasets()


def test_dataset_metrics_must_name_every_metric(configs) -> None:
    configs("datasets.yaml", "ood_test: target_val/acc", "ood_tset: target_val/acc")
    with pytest.raises(catalog.CatalogError, match=r"metrics: unknown key 'ood_tset'; valid keys: id_val, id_test"):
        catalog.list_datasets()


def test_a_bad_optimizer_option_in_the_catalog_names_its_line(configs) -> None:
    configs(
        "methods.yaml", "options: {momentum: 0.0, weight_decay: 0.0}", "options: {momentun: 0.0, weight_decay: 0.0}"
    )
    line = _line("methods.yaml", "options: {momentum: 0.0, weight_decay: 0.0}")
    with pytest.raises(catalog.CatalogError, match=rf"methods.yaml:{line}: unknown option 'momentun'"):
        catalog.list_methods()


def test_an_unknown_lr_grid_lists_the_grids(configs) -> None:
    configs("methods.yaml", "    lr_grid: logreg_c\n", "    lr_grid: linear\n")
    with pytest.raises(catalog.CatalogError, match=r"unknown LR grid 'linear'; valid LR grids: sgd, adaptive"):
        catalog.list_methods()


def test_the_linear_probes_grid_is_the_papers_logspace_of_c() -> None:
    probe = catalog.get_method("linear_probe")
    assert probe.is_linear_probe and probe.lr_grid == pytest.approx(tuple(np.logspace(-7, 2, 50)))
    assert catalog.get_method("lp_ft_adamw").lp_ft == {
        "probe": "linear_probe",
        "ft_lr_div": 10.0,
        "last_epoch_on": ("waterbirds",),
    }
    assert catalog.get_method("lp_ft_sgd").reports_last_epoch("waterbirds")
    assert not catalog.get_method("lp_ft_sgd").reports_last_epoch("camelyon")
    assert not catalog.get_method("sgd").reports_last_epoch("waterbirds")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("logreg_c: {logspace: [-7, 2, 50]}", "logreg_c: {logspace: [-7, 2]}", "logspace: \\[start, stop, num\\]"),
        ("logreg_c: {logspace: [-7, 2, 50]}", "logreg_c: {linspace: [1, 2, 3]}", "a generated grid is"),
        (
            "lp_ft: {probe: linear_probe, ft_lr_div: 10.0, last_epoch_on: [waterbirds]}",
            "lp_ft: {probe: sgd, ft_lr_div: 10.0, last_epoch_on: [waterbirds]}",
            "lp_ft.probe must name a logistic-regression method \\(linear_probe\\), got 'sgd'",
        ),
        (
            "lp_ft: {probe: linear_probe, ft_lr_div: 10.0, last_epoch_on: [waterbirds]}",
            "lp_ft: {probe: linear_probe, ft_lr_div: 10.0, last_epoch_on: [waterbird]}",
            "unknown dataset 'waterbird' in lp_ft.last_epoch_on",
        ),
        (
            "lp_ft: {probe: linear_probe, ft_lr_div: 10.0, last_epoch_on: [waterbirds]}",
            "lp_ft: {probe: linear_probe, lp_epochs_fraction: 0.25, ft_lr_div: 10.0}",
            "unknown key 'lp_epochs_fraction'",
        ),
    ],
)
def test_a_bad_probe_grid_or_lp_ft_names_its_line(configs, old: str, new: str, message: str) -> None:
    text = (catalog.CONFIG_DIR / "methods.yaml").read_text()
    assert old in text
    configs("methods.yaml", old, new)
    with pytest.raises(catalog.CatalogError, match=r"methods.yaml:\d+: .*" + message):
        catalog.list_methods()


@pytest.mark.parametrize("name", ["../models", "/etc/passwd", "sweeps/demo", "", "demo.yaml"])
def test_presets_are_found_only_by_their_listed_names(name: str) -> None:
    with pytest.raises(catalog.CatalogError, match="valid presets: clip_ablations, demo"):
        catalog.get_preset(name)


def test_method_option_problems_name_each_option() -> None:
    problems = dict(catalog.method_option_problems("adamw", {"momentum": 0.9, "betas": [0.9], "eps": 1e-8}))
    assert set(problems) == {"momentum", "betas"}
    assert "valid options: betas, eps, weight_decay" in problems["momentum"]
    assert catalog.method_option_problems("sgd", {"momentum": 0.5, "nesterov": True}) == []


def test_strict_yaml_keeps_lines_and_refuses_duplicates() -> None:
    data = load_text("a: 1\nb:\n  c: 2\n", "x.yaml")
    assert data == {"a": 1, "b": {"c": 2}} and data.where("b") == "x.yaml:2" and data["b"].where("c") == "x.yaml:3"
    with pytest.raises(YamlError, match=r"x.yaml:3: duplicate key 'c' \(first at line 2\)"):
        load_text("b:\n  c: 1\n  c: 2\n", "x.yaml")
    with pytest.raises(YamlError, match="x.yaml: not valid YAML"):
        load_text("a: [1\n", "x.yaml")


def test_a_horizontal_flip_that_is_not_a_boolean_names_its_line(configs) -> None:
    configs("datasets.yaml", "horizontal_flip: false", "horizontal_flip: no-flip")
    line = _line("datasets.yaml", "horizontal_flip: false")
    expected = rf"datasets.yaml:{line}: dataset 'synth_style': horizontal_flip: expected true or false"
    with pytest.raises(catalog.CatalogError, match=expected):
        catalog.list_datasets()
