"""The results store: statuses, one row per (trial, epoch) with the last report winning, resume merging, atomic
files, and the readers' empty tables."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.results import (
    EPOCHS_FILE,
    TRIALS_FILE,
    ResultsStore,
    probe_table,
    probed_pairs,
    read_epochs,
    read_probe,
    read_trials,
    recorded_trials,
    write_probe,
)
from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA
from orchestrator.storage import Location
from worker.config import TrialConfig
from worker.records import EpochReport


def configs() -> list[TrialConfig]:
    return [
        TrialConfig(model="tiny_vit", dataset="synth_style", method="sgd", lr=lr, epochs=3, pretrained=False)
        for lr in (1e-3, 1e-2)
    ]


def report(epoch: int, id_val: float | None, *, status: str = "running", ood: float = 0.5) -> EpochReport:
    return EpochReport(
        epoch=epoch,
        train_loss=1.0 / epoch,
        lr_now=0.01,
        id_val=id_val,
        id_test=id_val,
        ood_test=ood,
        split_metrics={"id_test/acc": id_val, "ood_test/acc": ood},
        epoch_time_s=2.0,
        train_time_s=1.5,
        train_images_per_s=100.0,
        optimizer_state_bytes=1000,
        peak_memory_bytes=5000 + epoch,
        best_epoch=epoch,
        is_best=True,
        status=status,
        trainable_params=10,
        frozen_params=2,
    )


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_every_trial_is_listed_pending_from_the_start(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path, "s1", configs())
    store.flush()
    t = read_trials(tmp_path)
    assert t.schema == TRIALS_SCHEMA
    assert t.column("status").to_pylist() == ["pending", "pending"]
    assert t.column("epochs_planned").to_pylist() == [3, 3]
    assert read_epochs(tmp_path).num_rows == 0


def test_trial_row_follows_the_best_id_val_epoch(tmp_path: Path) -> None:
    c = configs()[0]
    tid = c.trial_id()
    store = ResultsStore(tmp_path, "s1", configs())
    store.start(tid)
    store.record_epoch(tid, report(1, 0.6, ood=0.1))
    store.record_epoch(tid, report(2, 0.8, ood=0.2))
    store.record_epoch(tid, report(3, 0.7, status="completed", ood=0.3))
    store.flush()
    row = read_trials(tmp_path).to_pylist()[0]
    assert row["status"] == "completed"
    assert (row["best_epoch"], row["id_val"], row["ood_test"]) == (2, 0.8, 0.2)
    assert row["epochs_done"] == 3 and row["wall_time_s"] == pytest.approx(6.0)
    assert row["peak_memory_bytes"] == 5003 and row["trainable_params"] == 10
    epochs = read_epochs(tmp_path)
    assert epochs.schema == EPOCHS_SCHEMA
    assert epochs.column("epoch").to_pylist() == [1, 2, 3]


def test_a_repeated_epoch_is_one_row_and_the_last_report_wins(tmp_path: Path) -> None:
    tid = configs()[0].trial_id()
    store = ResultsStore(tmp_path, "s1", configs())
    store.record_epoch(tid, report(1, 0.5))
    store.record_epoch(tid, report(2, 0.6))
    store.record_epoch(tid, report(2, 0.9))  # the same epoch again, after a resume
    store.flush()
    rows = read_epochs(tmp_path).to_pylist()
    assert [(r["epoch"], r["id_val"]) for r in rows] == [(1, 0.5), (2, 0.9)]


def test_statuses_stopped_failed_diverged_cancelled(tmp_path: Path) -> None:
    a, b = (c.trial_id() for c in configs())
    store = ResultsStore(tmp_path, "s1", configs())
    store.start(a)
    store.record_epoch(a, report(1, 0.5))
    assert store.finish(a) == "stopped"  # ended while its reports still said "running"
    store.start(b)
    assert store.finish(b, error="Traceback: boom") == "failed"
    store.flush()
    rows = {r["trial_id"]: r for r in read_trials(tmp_path).to_pylist()}
    assert rows[a]["status"] == "stopped" and rows[a]["epochs_done"] == 1
    assert rows[b]["status"] == "failed" and "boom" in rows[b]["error"]

    other = ResultsStore(tmp_path / "d", "s2", configs())
    other.record_epoch(a, dataclasses.replace(report(1, None, status="diverged"), train_loss=float("nan")))
    assert other.finish(a) == "diverged"
    other.start(b)
    assert other.cancel_unfinished() == 1
    assert other.counts()["cancelled"] == 1 and other.counts()["diverged"] == 1
    other.flush()
    row = read_trials(tmp_path / "d").to_pylist()[0]
    assert row["epochs_done"] == 0 and row["best_epoch"] is None and math.isnan(row["final_train_loss"])


def test_resume_merges_rows_and_requeues_unfinished_trials(tmp_path: Path) -> None:
    a, b = (c.trial_id() for c in configs())
    first = ResultsStore(tmp_path, "s1", configs())
    first.record_epoch(a, report(1, 0.5))
    first.record_epoch(a, report(2, 0.6))
    for e, v in ((1, 0.7), (2, 0.8), (3, 0.9)):
        first.record_epoch(b, report(e, v, status="completed" if e == 3 else "running"))
    first.flush()  # then the driver dies

    second = ResultsStore(tmp_path, "s1", configs())
    assert second.status(a) == "pending" and second.status(b) == "completed"
    assert second.unfinished() == [a]
    second.start(a)
    second.record_epoch(a, report(2, 0.65))  # resumed from its epoch-1 checkpoint
    second.record_epoch(a, report(3, 0.7, status="completed"))
    second.flush()
    epochs = read_epochs(tmp_path).to_pylist()
    assert sorted((r["trial_id"], r["epoch"]) for r in epochs) == sorted(
        [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2), (b, 3)]
    )
    assert {r["epoch"]: r["id_val"] for r in epochs if r["trial_id"] == a}[2] == 0.65
    assert read_trials(tmp_path).column("status").to_pylist() == ["completed", "completed"]


def test_recorded_trials_are_the_same_from_the_store_and_from_its_files(tmp_path: Path) -> None:
    a, b = (c.trial_id() for c in configs())
    store = ResultsStore(tmp_path, "s1", configs())
    store.start(a)
    store.record_epoch(a, report(1, 0.5))
    store.record_epoch(a, report(2, None))  # not evaluated: reached, but no score
    store.record_epoch(a, report(3, 0.7, status="completed"))
    store.finish(a)
    store.flush()
    recorded = store.recorded_trials()
    first = recorded[0]
    assert [r.trial_id for r in recorded] == [a, b]
    assert first.cell == ("tiny_vit", "synth_style", "sgd") and first.lr == 1e-3 and first.status == "completed"
    assert first.scores == {1: 0.5, 3: 0.7} and first.reached == 3
    assert [r.seed for r in recorded] == [c.seed for c in configs()]  # what a paired rule pairs by
    assert recorded[1].scores == {} and recorded[1].reached == 0 and recorded[1].status == "pending"
    assert recorded_trials(read_trials(tmp_path).to_pylist(), read_epochs(tmp_path).to_pylist()) == recorded


def test_epochs_past_a_rerun_trials_end_are_dropped(tmp_path: Path) -> None:
    tid = configs()[0].trial_id()
    first = ResultsStore(tmp_path, "s1", configs())
    for e in (1, 2, 3):
        first.record_epoch(tid, report(e, 0.5))
    first.flush()
    second = ResultsStore(tmp_path, "s1", configs())
    second.record_epoch(tid, report(1, 0.4))  # restarted from scratch, then stopped after epoch 1
    assert second.finish(tid) == "stopped"
    second.flush()
    assert read_epochs(tmp_path).column("epoch").to_pylist() == [1]


def test_flushes_are_throttled_and_atomic(tmp_path: Path) -> None:
    clock = Clock()
    seen: list[dict[str, int]] = []
    store = ResultsStore(tmp_path, "s1", configs(), flush_interval_s=2.0, clock=clock, on_flush=seen.append)
    assert store.maybe_flush()  # first flush: the initial pending rows
    tid = configs()[0].trial_id()
    store.start(tid)
    assert not store.maybe_flush()  # too soon
    clock.t = 2.5
    assert store.maybe_flush()
    assert not store.maybe_flush()  # nothing changed
    assert seen[-1]["running"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [EPOCHS_FILE, TRIALS_FILE]  # no temp files left
    assert pq.read_table(tmp_path / TRIALS_FILE).num_rows == 2


def test_unknown_trial_and_bad_report_are_named(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path, "s1", configs())
    with pytest.raises(KeyError, match="nope"):
        store.start("nope")
    with pytest.raises(ValueError, match="'epoch'"):
        EpochReport.from_mapping({"id_val": 0.5})


def test_each_trial_row_records_its_precision(tmp_path: Path) -> None:
    bf16 = TrialConfig(
        model="tiny_vit", dataset="synth_style", method="sgd", lr=1e-3, epochs=3, pretrained=False, precision="bf16"
    )
    store = ResultsStore(tmp_path, "s", [*configs(), bf16])
    store.flush()
    got = {r["lr"]: r["precision"] for r in read_trials(tmp_path).to_pylist() if r["lr"] == 1e-2}
    assert got == {1e-2: "fp32"}
    assert sorted(read_trials(tmp_path).column("precision").to_pylist()) == ["bf16", "fp32", "fp32"]


def test_a_file_written_before_the_precision_column_reads_it_as_null(tmp_path: Path) -> None:
    ResultsStore(tmp_path, "s", configs()).flush()
    old = pq.read_table(tmp_path / TRIALS_FILE).drop_columns(["precision"])
    pq.write_table(old, tmp_path / TRIALS_FILE)
    table = read_trials(tmp_path)
    assert table.schema == TRIALS_SCHEMA and table.column("precision").to_pylist() == [None, None]
    resumed = ResultsStore(tmp_path, "s", configs())  # a resumed sweep keeps the old rows as they were
    resumed.flush()
    assert read_trials(tmp_path).column("precision").to_pylist() == [None, None]
    pq.write_table(old.drop_columns(["seed"]), tmp_path / TRIALS_FILE)
    with pytest.raises(ValueError, match=r"lacks columns \['seed'\]"):
        read_trials(tmp_path)


def test_the_id_val_loss_is_stored_and_an_older_epochs_file_reads_it_as_null(tmp_path: Path) -> None:
    c = configs()[0]
    store = ResultsStore(tmp_path, "s", configs())
    store.start(c.trial_id())
    store.record_epoch(c.trial_id(), dataclasses.replace(report(1, 1.0), id_val_loss=0.3))
    store.record_epoch(c.trial_id(), dataclasses.replace(report(2, 1.0, status="completed"), id_val_loss=0.1))
    store.flush()
    assert read_epochs(tmp_path).column("id_val_loss").to_pylist() == [0.3, 0.1]
    assert read_trials(tmp_path).to_pylist()[0]["best_epoch"] == 2  # 100% twice: the lower loss wins the tie
    old = pq.read_table(tmp_path / EPOCHS_FILE).drop_columns(["id_val_loss"])
    pq.write_table(old, tmp_path / EPOCHS_FILE)
    table = read_epochs(tmp_path)
    assert table.schema == EPOCHS_SCHEMA and table.column("id_val_loss").to_pylist() == [None, None]


def test_readers_return_empty_tables_with_the_schema(tmp_path: Path) -> None:
    assert read_trials(tmp_path / "none").schema == TRIALS_SCHEMA
    assert read_epochs(tmp_path / "none").num_rows == 0
    assert read_probe(tmp_path / "none").schema == PROBE_SCHEMA


def test_probe_rows_merge_by_model_and_dataset(tmp_path: Path) -> None:
    row = {"layer": "patch_embed", "kind": "embed", "depth": 0, "num_params": 10, "grad_norm": 1.0, "batches": 2}
    write_probe(tmp_path, [probe_table("s1", "tiny_vit", "synth_style", [row, {**row, "layer": "head"}])])
    write_probe(tmp_path, [probe_table("s1", "tiny_bit", "synth_style", [row])])
    write_probe(tmp_path, [probe_table("s1", "tiny_vit", "synth_style", [{**row, "grad_norm": 2.0}])])
    t = read_probe(tmp_path)
    assert t.num_rows == 2
    assert probed_pairs(tmp_path) == {("tiny_vit", "synth_style"), ("tiny_bit", "synth_style")}
    assert sorted(t.column("grad_norm").to_pylist()) == [1.0, 2.0]


def test_location_rejects_empty_and_reads_missing_as_none(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="directory path or a URI"):
        Location("")
    loc = Location(tmp_path).child("x")
    assert loc.read_bytes("a.json") is None and loc.list_names() == []
    loc.write_bytes("a.json", b"{}")
    assert loc.read_bytes("a.json") == b"{}" and loc.list_names() == ["a.json"]
    loc.delete()
    assert not loc.exists("a.json")


def test_merge_history_fills_missed_epochs_and_ends_trials_tune_finished(tmp_path: Path) -> None:
    a, b = (c.trial_id() for c in configs())
    store = ResultsStore(tmp_path, "s1", configs())
    store.record_epoch(a, report(1, 0.5))  # the driver flushed epoch 1, then died; Tune logged 1 and 2
    store.merge_history(a, [report(1, 0.1), report(2, 0.6)], finished=False)
    assert store.status(a) == "running"
    rows = {e: r["id_val"] for e, r in store._epochs[a].items()}
    assert rows == {1: 0.5, 2: 0.6}  # the store's own row is kept, the missed one added
    store.merge_history(b, [report(1, 0.7), report(2, 0.8), report(3, 0.9, status="completed")], finished=True)
    assert store.status(b) == "completed"
    store.merge_history(a, [report(1, 0.5)], finished=True)  # Tune stopped it after epoch 1: later rows go
    assert store.status(a) == "stopped" and sorted(store._epochs[a]) == [1]
    store.flush()
    assert read_trials(tmp_path).column("epochs_done").to_pylist() == [1, 3]


@pytest.mark.parametrize(("cancelled", "running_becomes"), [(False, "failed"), (True, "cancelled")])
def test_a_dead_driver_s_trials_are_marked_by_whoever_finds_its_job_ended(
    tmp_path: Path, cancelled: bool, running_becomes: str
):
    from orchestrator.driver_state import DriverState, mark_driver_lost, read_driver_state
    from orchestrator.results import mark_interrupted

    store = ResultsStore(tmp_path, "s1", configs() + [dataclasses.replace(configs()[0], seed=1)])
    done, running, waiting = store._order
    store.start(done)
    store.record_epoch(done, report(3, 0.7, status="completed"))
    store.finish(done)
    store.start(running)
    store.record_epoch(running, report(1, 0.6))
    store.flush()
    DriverState(Location(tmp_path), "s1", 3)  # a driver that says `running`, then is killed
    assert mark_driver_lost(tmp_path, "failed", "job s1 failed")
    assert not mark_driver_lost(tmp_path, "failed", "again")  # only a driver that still says running
    assert read_driver_state(tmp_path)["state"] == "failed"
    assert mark_interrupted(tmp_path, "job s1 failed", cancelled=cancelled) == 2
    rows = {r["trial_id"]: r for r in read_trials(tmp_path).to_pylist()}
    assert rows[done]["status"] == "completed"
    assert rows[running]["status"] == running_becomes and rows[running]["epochs_done"] == 1
    assert rows[running]["error"] == (None if cancelled else "job s1 failed")
    assert rows[waiting]["status"] == "cancelled"
    assert mark_interrupted(tmp_path, "job s1 failed") == 0  # nothing left to mark
