"""A sweep spec is checked once, with one spelling of field paths: catalog keys, LRs, options, presets' lines."""

from __future__ import annotations

import pytest

from orchestrator import SweepSpecError, field_path, load_preset, load_spec, validate_spec
from orchestrator.halving import Stage, Window
from worker import catalog
from worker.config import TrialConfig, learning_rate
from worker.strict_yaml import load_text


def _spec(**extra) -> dict:
    return {"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd", "adamw"], **extra}


def _fields(problems) -> dict[str, str]:
    return {p.field: p.message for p in problems}


def test_field_paths_are_spelled_one_way() -> None:
    assert field_path(("models", 1)) == "models[1]"
    assert field_path(("lrs", "sgd", 0)) == "lrs.sgd[0]"
    assert field_path(("query", "limit")) == "query.limit"
    # a type problem (pydantic) and a catalog problem of the same list name the item the same way
    with pytest.raises(SweepSpecError) as e:
        load_spec(_spec(models=["tiny_vit", 3]))
    assert "models[1]" in _fields(e.value.problems)
    problems = validate_spec(load_spec(_spec(models=["tiny_vit", "resnet9000"])), check_data=False)
    assert "models[1]" in _fields(problems)


@pytest.mark.parametrize("bad", [True, 0, -1e-3, float("inf"), float("nan"), "0.1", None])
def test_an_lr_is_checked_by_one_rule_in_a_spec_and_in_a_trial(bad) -> None:
    with pytest.raises(SweepSpecError) as e:
        load_spec(_spec(lrs={"sgd": [0.01, bad]}))
    assert "a learning rate must be a finite number > 0" in _fields(e.value.problems)["lrs.sgd[1]"]
    with pytest.raises(ValueError, match="a learning rate must be a finite number > 0"):
        TrialConfig(model="tiny_vit", dataset="synth_style", method="sgd", lr=bad)
    assert learning_rate(3) == 3.0 and isinstance(learning_rate(3), float)


def test_expanded_trials_carry_the_lr_as_a_float() -> None:
    spec = load_spec(_spec(lrs={"sgd": [1, 0.5], "adamw": [1e-3]}))
    assert [t.lr for t in spec.expand()] == [1.0, 0.5, 1e-3]
    assert all(type(t.lr) is float for t in spec.expand())


def test_method_options_are_checked_when_the_spec_is(tmp_path) -> None:
    spec = load_spec(_spec(method_options={"sgd": {"momentun": 0.9, "weight_decay": -1}, "lamb": {"eps": 1}}))
    fields = _fields(validate_spec(spec, check_data=False))
    assert set(fields) == {"method_options.sgd.momentun", "method_options.sgd.weight_decay", "method_options.lamb"}
    assert "valid options: momentum, nesterov, weight_decay" in fields["method_options.sgd.momentun"]
    assert "must be >= 0" in fields["method_options.sgd.weight_decay"]
    good = load_spec(_spec(method_options={"sgd": {"momentum": 0.0, "nesterov": False}}))
    assert validate_spec(good, check_data=False) == []


def test_precision_is_fp32_unless_bf16_is_asked_for() -> None:
    assert {t.precision for t in load_spec(_spec()).expand()} == {"fp32"}
    assert {t.precision for t in load_spec(_spec(precision="bf16")).expand()} == {"bf16"}
    with pytest.raises(SweepSpecError) as e:
        load_spec(_spec(precision="fp16"))
    assert "precision" in _fields(e.value.problems) and "'fp32' or 'bf16'" in _fields(e.value.problems)["precision"]
    for preset in ("paper_main", "clip_ablations", "memory", "probe"):
        assert load_preset(preset).precision == "fp32", preset


def test_model_seeds_override_the_seeds_of_one_model() -> None:
    spec = load_spec(
        {**_spec(methods=["sgd"]), "models": ["tiny_vit", "tiny_bit"], "model_seeds": {"tiny_bit": [3, 4]}}
    )
    seeds = {(t.model, t.seed) for t in spec.expand()}
    assert seeds == {("tiny_vit", 0), ("tiny_bit", 3), ("tiny_bit", 4)}
    assert spec.grid_size() == len(spec.expand()) == 6 * 3
    bad = load_spec({**_spec(), "model_seeds": {"tiny_bit": [1], "tiny_vit": [2, 2]}})
    problems = _fields(validate_spec(bad, check_data=False))
    assert "which is not in models" in problems["model_seeds.tiny_bit"]
    assert problems["model_seeds.tiny_vit"] == "has duplicates"
    assert (
        "must name at least one seed"
        in _fields(validate_spec(load_spec({**_spec(), "model_seeds": {"tiny_vit": []}}), check_data=False))[
            "model_seeds.tiny_vit"
        ]
    )


def test_seeds_outside_int64_are_refused() -> None:
    with pytest.raises(SweepSpecError) as e:
        load_spec(_spec(seeds=[0, 2**64]))
    assert "seeds[1]" in _fields(e.value.problems)


def test_a_spec_file_with_a_duplicate_key_is_refused(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [tiny_vit]\ndatasets: [synth_style]\nmethods: [sgd]\nmodels: [tiny_bit]\n")
    with pytest.raises(SweepSpecError, match=r"s.yaml:4: duplicate key 'models' \(first at line 1\)"):
        load_spec(path)


def test_a_preset_problem_names_the_presets_file_and_line(monkeypatch) -> None:
    text = "name: p\nmodels: [tiny_vit]\ndatasets: [synth_style]\nmethods: [sgd]\nepochs: 0\ncolour: red\n"
    monkeypatch.setattr(catalog, "get_preset", lambda name: load_text(text, "configs/sweeps/p.yaml"))
    with pytest.raises(SweepSpecError) as e:
        load_preset("p")
    fields = _fields(e.value.problems)
    assert fields["epochs"].startswith("configs/sweeps/p.yaml:5: ")
    assert fields["colour"].startswith("configs/sweeps/p.yaml:6: ")
    with pytest.raises(SweepSpecError) as e:
        load_preset("p", {"epochs": -1})  # an override is the caller's, not the file's
    assert not _fields(e.value.problems)["epochs"].startswith("configs/")
    with pytest.raises(SweepSpecError, match="valid presets"):
        monkeypatch.undo()
        load_preset("nope")


def test_yaml_text_is_told_from_a_file_name() -> None:
    one_line = "{models: [tiny_vit], datasets: [synth_style], methods: [sgd], data_root: " + "x" * 400 + "}"
    assert load_spec(one_line).data_root == "x" * 400  # far too long for a file name: read as YAML
    assert load_spec("models: [tiny_vit]\ndatasets: [synth_style]\nmethods: [sgd]\n").models == ["tiny_vit"]
    with pytest.raises(SweepSpecError, match="No such file"):
        load_spec("missing.yaml")


def test_early_stopping_needs_room_for_a_whole_cell_at_its_rung() -> None:
    es = {"enabled": True, "rungs": [0.25, 0.5]}
    grid = {"methods": ["sgd"], "lrs": {"sgd": [1e-3, 1e-2, 1e-1]}}
    spec = load_spec({**_spec(**grid), "early_stopping": es, "max_concurrent_trials": 2})
    problems = _fields(validate_spec(spec, check_data=False))
    assert "at least 3 (the most trials of a cell, LRs x seeds), or 0" in problems["max_concurrent_trials"]
    two_seeds = validate_spec(spec.model_copy(update={"seeds": [0, 1], "max_concurrent_trials": 3}), check_data=False)
    assert "at least 6" in _fields(two_seeds)["max_concurrent_trials"]
    for fine in (0, 3):
        assert validate_spec(spec.model_copy(update={"max_concurrent_trials": fine}), check_data=False) == []
    with pytest.raises(SweepSpecError, match=r"early_stopping.rungs\[1\]"):
        load_spec({**_spec(), "early_stopping": {"enabled": True, "rungs": [0.5, 1.0]}})


def test_the_early_stopping_rule_is_one_of_two_and_its_settings_are_bounded() -> None:
    es = load_spec({**_spec(), "early_stopping": {"enabled": True, "rule": "neighbours", "margin": 0.02}})
    assert (es.early_stopping.rule, es.early_stopping.neighbours, es.early_stopping.margin) == ("neighbours", 1, 0.02)
    assert load_spec(_spec()).early_stopping.rule == "halving"
    for bad, where, words in (
        ({"rule": "asha"}, "early_stopping.rule", "'halving' or 'neighbours'"),
        ({"neighbours": -1}, "early_stopping.neighbours", "greater than or equal to 0"),
        ({"margin": 2.0}, "early_stopping.margin", "less than or equal to 1"),
        ({"noise": -1}, "early_stopping.noise", "greater than or equal to 0"),
        ({"late": {"start": 1.5}}, "early_stopping.late[0].start", "less than 1"),
        ({"late": {"below": -1}}, "early_stopping.late[0].below", "greater than or equal to 0"),
        ({"late": {"from": 0.5}}, "early_stopping.late[0].from", "Extra inputs are not permitted"),
        ({"late": {"above": -1}}, "early_stopping.late[0].above", "greater than or equal to 0"),
        ({"late": [{"start": 0.7}, {"start": 0.3}]}, "early_stopping.late", "increasing fractions"),
        ({"late": [{"start": 0.3, "noise": 11}]}, "early_stopping.late[0].noise", "less than or equal to 10"),
        ({"paired": "seeds"}, "early_stopping.paired", "valid boolean"),
    ):
        with pytest.raises(SweepSpecError) as e:
            load_spec({**_spec(), "early_stopping": {"enabled": True, **bad}})
        assert where in str(e.value) and words in str(e.value), str(e.value)


def test_the_driver_hands_the_specs_rule_to_the_scheduler() -> None:
    from orchestrator.driver import early_stopping_scheduler

    spec = load_spec({**_spec(), "early_stopping": {"enabled": True, "rule": "neighbours", "margin": 0.02}})
    rule = early_stopping_scheduler(spec, "s")._rule
    assert (rule.neighbours, rule.margin, rule.noise, rule.stages) == (1, 0.02, 0.0, ())
    late = {"enabled": True, "rule": "neighbours", "noise": 2, "late": {"start": 0.5}}
    rule = early_stopping_scheduler(load_spec({**_spec(), "early_stopping": late}), "s")._rule
    assert (rule.noise, rule.stages, rule.paired) == (2.0, (Stage(0.5, below=0),), False)
    rule = early_stopping_scheduler(load_spec({**_spec(), "early_stopping": {**late, "paired": True}}), "s")._rule
    assert rule.paired
    assert (rule.window_at(0.125).below, rule.window_at(0.5).below) == (1, 0)
    staged = {
        "enabled": True,
        "rule": "neighbours",
        "margin": 0.01,
        "late": [{"start": 0.3, "noise": 2}, {"start": 0.7, "above": 0}],
    }
    rule = early_stopping_scheduler(load_spec({**_spec(), "early_stopping": staged}), "s")._rule
    assert rule.stages == (Stage(0.3, below=0, noise=2.0), Stage(0.7, below=0, above=0))
    assert rule.window_at(0.75) == Window(0, 0, 0.01, 2.0)
    halving = load_spec({**_spec(), "early_stopping": {"enabled": True, "reduction_factor": 2, "margin": 0.02}})
    rule = early_stopping_scheduler(halving, "s")._rule
    assert (rule.neighbours, rule.reduction_factor) == (None, 2.0)  # margin belongs to the neighbours rule only
    assert early_stopping_scheduler(load_spec(_spec()), "s") is None


def test_trials_checkpoint_at_the_schedulers_rungs_and_every_checkpoint_every_s() -> None:
    from orchestrator.driver import _checkpoint_policy, early_stopping_scheduler

    spec = load_spec(
        {**_spec(), "epochs": 8, "checkpoint_every_s": 30, "early_stopping": {"enabled": True, "rungs": [0.125, 0.5]}}
    )
    trials = spec.expand()
    policy = _checkpoint_policy(spec, trials, early_stopping_scheduler(spec, "s"))
    assert policy.every_s == 30.0 and policy.pause_at == ((8, (1, 4)),)
    plain = load_spec(_spec(epochs=8))
    assert plain.checkpoint_every_s == 60.0
    assert _checkpoint_policy(plain, plain.expand(), None).pause_at == ()
    for bad, words in ((-1, "greater than or equal to 0"), (float("inf"), "finite number"), ("often", "number")):
        with pytest.raises(SweepSpecError) as e:
            load_spec(_spec(checkpoint_every_s=bad))
        assert "checkpoint_every_s" in str(e.value) and words in str(e.value), str(e.value)
