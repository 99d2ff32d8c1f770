"""The Ray Tune adapter's pieces that need no running Ray: the callback's forwarding, result.json parsing,
metric flattening, trial directory names, and the restorability check."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from orchestrator import sinks, tune_runner
from orchestrator.results import ResultsStore, read_epochs, read_trials
from worker.config import TrialConfig
from worker.records import EpochReport


def configs() -> list[TrialConfig]:
    return [TrialConfig(model="tiny_vit", dataset="synth_style", method="sgd", lr=lr, epochs=2) for lr in (0.1, 0.2)]


@dataclass
class _Storage:
    storage_filesystem: Any = field(default_factory=pafs.LocalFileSystem)


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any]
    path: str
    status: str = "PENDING"
    storage: _Storage = field(default_factory=_Storage)
    error: str | None = None

    error_file: str | None = None

    def get_error(self) -> str | None:
        return self.error


def metrics(epoch: int, status: str = "running") -> dict[str, Any]:
    return {"epoch": epoch, "id_val": 0.5 + epoch / 10, "split_metrics": '{"val/acc": 0.5}', "status": status}


def fake_trials(tmp_path: Path) -> list[FakeTrial]:
    return [FakeTrial(f"t{i}", {"trial": c.to_dict()}, str(tmp_path / f"t{i}")) for i, c in enumerate(configs())]


def test_callback_forwards_events_to_the_registered_sink(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "sweep", "s", configs(), flush_interval_s=0.0)
    cb = tune_runner._ResultsCallback("s")
    with pytest.raises(RuntimeError, match="no results sink"):
        _ = cb.sink
    sinks.register("s", store)
    try:
        a, b = fake_trials(tmp_path)
        cb.on_step_begin(0, [a, b])
        cb.on_trial_start(0, [a, b], a)
        cb.on_trial_result(0, [a, b], a, metrics(1))
        cb.on_trial_result(0, [a, b], a, {"done": True})  # Tune's own bookkeeping result: no epoch row
        cb.on_trial_complete(0, [a, b], a)
        b.error = "ValueError: boom"
        cb.on_trial_start(0, [a, b], b)
        cb.on_trial_error(0, [a, b], b)
        cb.on_step_end(0, [a, b])
    finally:
        sinks.unregister("s")
    rows = {r["lr"]: r for r in read_trials(tmp_path / "sweep").to_pylist()}
    assert rows[0.1]["status"] == "stopped" and rows[0.1]["epochs_done"] == 1
    assert rows[0.2]["status"] == "failed" and rows[0.2]["error"] == "ValueError: boom"
    assert read_epochs(tmp_path / "sweep").num_rows == 1


def test_error_text_prefers_the_drivers_local_error_file(tmp_path: Path) -> None:
    t = fake_trials(tmp_path)[0]
    assert tune_runner._error_text(t) == "the trial failed without an error message"
    t.error = "from storage"
    assert tune_runner._error_text(t) == "from storage"
    (tmp_path / "error.txt").write_text("Traceback: local")
    t.error_file = str(tmp_path / "error.txt")
    assert tune_runner._error_text(t) == "Traceback: local"


def test_first_step_merges_what_tune_restored(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "sweep", "s", configs())
    a, b = fake_trials(tmp_path)
    for t, reports in ((a, [metrics(1), metrics(2, "completed")]), (b, [metrics(1)])):
        Path(t.path).mkdir()
        lines = [json.dumps(r) for r in reports] + ['{"epoch": 3, "torn']
        Path(t.path, "result.json").write_text("\n".join(lines))
    a.status = "TERMINATED"
    sinks.register("s", store)
    try:
        cb = tune_runner._ResultsCallback("s")
        cb.on_step_begin(0, [a, b])
        cb.on_step_begin(1, [a, b])  # only the first step merges
    finally:
        sinks.unregister("s")
    ida, idb = (c.trial_id() for c in configs())
    assert store.status(ida) == "completed" and store.status(idb) == "pending"
    assert sorted(store._epochs[idb]) == [1]


def test_history_of_a_trial_without_result_file_is_empty(tmp_path: Path) -> None:
    assert tune_runner._history(fake_trials(tmp_path)[0]) == []


def test_split_metrics_become_one_json_string_and_back() -> None:
    report = EpochReport(epoch=1, id_val=0.5, split_metrics={"b": 1.0, "a": 0.5})
    out = tune_runner._tune_metrics(report)
    assert out["split_metrics"] == '{"a": 0.5, "b": 1.0}' and out["epoch"] == 1
    assert tune_runner._epoch_report({**out, "training_iteration": 1, "trial_id": "x"}) == report


def test_trial_dirname_is_readable_and_ends_with_the_trial_id(tmp_path: Path) -> None:
    t = fake_trials(tmp_path)[0]
    assert tune_runner.trial_dirname(t) == f"tiny_vit-synth_style-sgd-lr0.1-s0-{configs()[0].trial_id()}"


def test_restore_needs_tuner_state_and_an_experiment_state(tmp_path: Path) -> None:
    assert not tune_runner.can_restore(str(tmp_path / "none"))
    (tmp_path / "tuner.pkl").write_bytes(b"x")
    assert not tune_runner.can_restore(str(tmp_path))  # killed before Tune saved its first state
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    assert tune_runner.can_restore(str(tmp_path))


def test_trial_function_paths_are_checked() -> None:
    with pytest.raises(ValueError, match="module:function"):
        tune_runner._import("worker.trial")
    assert tune_runner._import("tests.orchestrator.fake_trial:run_trial").__name__ == "run_trial"


def _handed_over(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, checkpoints: dict[str, Any] | None) -> list[int]:
    """The epochs at which a 4-epoch trial, run by the trainable under this policy, handed Tune a checkpoint."""
    handed: list[int] = []

    def report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
        if checkpoint is not None:
            handed.append(metrics["epoch"])

    monkeypatch.setattr(tune_runner.tune, "report", report)
    monkeypatch.setattr(tune_runner.tune, "get_checkpoint", lambda: None)
    trial = TrialConfig(
        model="tiny_vit", dataset="synth_style", method="sgd", lr=0.1, epochs=4, data_root=str(tmp_path)
    )
    config: dict[str, Any] = {
        "trial": trial.to_dict(),
        tune_runner.TRIAL_FN_KEY: "tests.orchestrator.fake_trial:run_trial",
    }
    if checkpoints is not None:
        config[tune_runner.CHECKPOINTS_KEY] = checkpoints
    tune_runner.train_trial(config)
    return handed


def test_a_trial_hands_tune_a_checkpoint_at_its_rungs_and_otherwise_only_when_one_is_due(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = tune_runner.CheckpointPolicy(every_s=3600.0, pause_at=((4, (1, 2)), (8, (1, 4))))
    assert _handed_over(monkeypatch, tmp_path, policy.to_dict()) == [1, 2]  # its rungs; the last epoch never
    assert _handed_over(monkeypatch, tmp_path, {"every_s": 3600.0, "pause_at": []}) == []
    assert _handed_over(monkeypatch, tmp_path, {"every_s": 0.0}) == [1, 2, 3]
    assert _handed_over(monkeypatch, tmp_path, None) == [1, 2, 3]  # a sweep started before the policy existed
    assert tune_runner.CheckpointPolicy.from_dict(policy.to_dict()) == policy


def test_a_checkpoint_is_due_once_every_s_has_passed() -> None:
    policy = tune_runner.CheckpointPolicy(every_s=60.0, pause_at=((10, (3,)),))
    assert not policy.hands_over(1, 10, seconds_since_last=59.9)
    assert policy.hands_over(2, 10, seconds_since_last=60.0)
    assert policy.hands_over(3, 10, seconds_since_last=0.0)  # a rung
    assert not policy.hands_over(3, 12, seconds_since_last=0.0)  # another dataset's epochs: other rungs
    assert not policy.hands_over(10, 10, seconds_since_last=1e9)  # the last epoch: nothing resumes from it
