"""Sweep presets, the spec additions the driver uses, and the driver's checks that need no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.driver import (
    SPEC_FILE,
    SweepExistsError,
    _check_start,
    runtime_trial,
    stored_spec,
    sweep_location,
)
from orchestrator.driver_state import DriverState, read_driver_state
from orchestrator.run import main
from orchestrator.spec import SweepSpecError, load_preset, load_spec, validate_spec
from orchestrator.storage import Location
from worker.catalog import PRESET_DIR, list_presets
from worker.config import TrialConfig
from worker.records import EpochReport

PRESET_SIZES = {"paper_main": 1080, "clip_ablations": 2010, "memory": 12, "probe": 210, "demo": 360}


def test_presets_exist_validate_and_have_the_expected_grids() -> None:
    assert set(PRESET_SIZES) <= set(list_presets())
    for name, size in PRESET_SIZES.items():
        spec = load_preset(name)
        assert validate_spec(spec, check_data=False) == [], name
        assert spec.grid_size() == size, name


def test_presets_hold_the_papers_rows_seeds_and_models() -> None:
    main_seeds = {(t.model, t.seed) for t in load_preset("paper_main").expand()}
    assert {s for m, s in main_seeds if m == "clip_vit_b16"} == {0, 1, 2}  # the paper's intervals are over 3
    assert {s for m, s in main_seeds if m != "clip_vit_b16"} == {0}
    ablations = set(load_preset("clip_ablations").methods)
    assert {"sgd_freeze_embed_nomom", "linear_probe", "lp_ft_sgd", "lp_ft_adamw"} <= ablations
    memory = load_preset("memory")
    assert memory.models == ["clip_vit_b16", "clip_vit_l14", "clip_vit_h14"] and memory.batch_size == 1


def test_preset_files_carry_their_run_command() -> None:
    for name in PRESET_SIZES:
        text = (PRESET_DIR / f"{name}.yaml").read_text()
        assert "python -m orchestrator.run --spec configs/sweeps/" + name + ".yaml" in text, name


def test_every_trial_runs_to_the_end_in_the_paper_presets_and_the_demo() -> None:
    for name in ("paper_main", "clip_ablations", "demo"):
        assert not load_preset(name).early_stopping.enabled, name
    assert load_preset("demo").probe
    assert load_preset("probe").probe_only


def test_probe_only_needs_probe() -> None:
    spec = load_spec({"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"], "probe_only": True})
    assert [p.field for p in validate_spec(spec, check_data=False)] == ["probe_only"]


def test_pretrained_flag_reaches_the_trials() -> None:
    spec = load_spec({"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"], "pretrained": False})
    assert all(not t.pretrained for t in spec.expand())


def test_runtime_trial_makes_paths_absolute_without_changing_the_id(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(
        {"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"], "data_root": "d", "weights_root": "w"}
    )
    trial = spec.expand()[0]
    d = runtime_trial(trial, spec)
    assert d["data_root"] == str(tmp_path / "d") and d["weights_root"] == str(tmp_path / "w")
    assert d["device"] == "cpu" and d["threads"] == 1
    assert TrialConfig.from_dict(d).trial_id() == trial.trial_id()


def test_a_new_sweep_refuses_an_existing_id_and_a_resume_refuses_another_spec(tmp_path: Path) -> None:
    spec = load_spec({"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"]})
    loc = sweep_location(tmp_path, "s1")
    assert _check_start(spec, loc, resume=False) == (spec, None)
    loc.write_bytes(SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json")).encode())
    assert stored_spec(loc).fingerprint() == spec.fingerprint()
    with pytest.raises(SweepExistsError, match="--resume"):
        _check_start(spec, loc, resume=False)
    assert _check_start(None, loc, resume=True)[0].fingerprint() == spec.fingerprint()
    other = spec.model_copy(update={"epochs": 2})
    with pytest.raises(SweepSpecError, match="differs"):
        _check_start(other, loc, resume=True)
    with pytest.raises(SweepSpecError, match="epochs: changes from null to 2"):
        _check_start(other, loc, resume=True, extend=True)
    with pytest.raises(SweepSpecError, match="no spec given"):
        _check_start(None, sweep_location(tmp_path, "s2"), resume=True)


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_bad_sweep_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="sweep id"):
        sweep_location(tmp_path, bad)


def test_driver_state_counts_runs_and_rejects_unknown_states(tmp_path: Path) -> None:
    loc = Location(tmp_path)
    first = DriverState(loc, "s1", total_trials=3)
    first.update_counts({"pending": 3})
    first.end("cancelled")
    second = DriverState(loc, "s1", total_trials=3)
    data = read_driver_state(tmp_path)
    assert data["state"] == "running" and data["runs"] == 2
    assert data["started_at"] == json.loads((tmp_path / "driver.json").read_text())["started_at"]
    with pytest.raises(ValueError, match="unknown driver state"):
        second.end("exploded")
    assert read_driver_state(tmp_path / "missing") is None


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--sweep-id", "s", "--storage", str(tmp_path)])
    assert e.value.code == 2 and "--spec is required" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [nope]\ndatasets: [synth_style]\nmethods: [sgd]\n")
    assert main(["--spec", str(bad), "--sweep-id", "s", "--storage", str(tmp_path)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def _small_spec() -> dict:
    return {"models": ["tiny_vit"], "datasets": ["synth_style"], "methods": ["sgd"], "lrs": {"sgd": [0.1, 0.2]}}


def test_a_driver_failure_is_recorded_and_raised(tmp_path: Path, monkeypatch) -> None:
    from orchestrator import tune_runner
    from orchestrator.driver import SweepFailedError, run_sweep
    from orchestrator.results import read_trials

    def unreachable(address: str | None = None) -> None:
        raise ConnectionError(f"no cluster at {address}")

    monkeypatch.setattr(tune_runner, "connect", unreachable)
    with pytest.raises(SweepFailedError, match="no cluster at ray://x"):
        run_sweep(load_spec(_small_spec()), "f", tmp_path, address="ray://x")
    state = read_driver_state(tmp_path / "f")
    assert state["state"] == "failed" and "ConnectionError" in state["error"]
    assert set(read_trials(tmp_path / "f").column("status").to_pylist()) == {"cancelled"}


def test_an_interrupt_outside_tune_cancels_and_a_resume_reruns(tmp_path: Path, monkeypatch) -> None:
    from orchestrator import tune_runner
    from orchestrator.driver import run_sweep

    seen: list[tuple[int, bool]] = []

    def interrupted(job, sink, *, resume: bool) -> bool:
        seen.append((len(job.trials), resume))
        raise KeyboardInterrupt

    def finishing(job, sink, *, resume: bool) -> bool:
        seen.append((len(job.trials), resume))
        for t in job.trials:
            tid = TrialConfig.from_dict(t).trial_id()
            sink.start(tid)
            sink.record_epoch(tid, EpochReport(epoch=1, id_val=0.5, status="completed"))
            sink.finish(tid)
        return False

    monkeypatch.setattr(tune_runner, "connect", lambda address=None: None)
    monkeypatch.setattr(tune_runner, "run_trials", interrupted)
    out = run_sweep(load_spec(_small_spec()), "c", tmp_path)
    assert out.state == "cancelled" and out.counts["cancelled"] == 2
    monkeypatch.setattr(tune_runner, "run_trials", finishing)
    out = run_sweep(None, "c", tmp_path, resume=True)
    assert out.state == "finished" and out.counts["completed"] == 2
    assert seen == [(2, False), (2, True)]
    assert read_driver_state(tmp_path / "c")["runs"] == 2
    out = run_sweep(None, "c", tmp_path, resume=True)  # nothing left to run: Tune is not started
    assert out.state == "finished" and len(seen) == 2
