"""Everything that talks to Ray and Ray Tune (2.60), so that the next change of their API is a one-file edit.

One Tuner per sweep: its param space is a grid over the sweep's trial configs, each trial one call of
`worker.trial.run_trial` reporting every epoch with a checkpoint. A callback forwards Tune's trial events to a
results sink (the driver's `ResultsStore`). The probe runs as plain Ray tasks.

Facts this module relies on (measured on Ray 2.60): only `ray.tune.*` imports work inside a Tune function
(`ray.train.report` there errors); `Tuner.restore` needs an experiment state file, not only `tuner.pkl`; Tune
pickles the run config (callbacks included) and the scheduler into `tuner.pkl` and restores them from there,
which is why the callback and the scheduler hold only a key into a registry of this process (`sinks`), not the
sink itself.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow.fs as pafs
import ray
from ray import tune

from orchestrator import sinks
from orchestrator.cell_scheduler import TRIAL_CONFIG_KEY
from orchestrator.storage import Location
from worker.config import TrialConfig
from worker.records import EpochReport, TrialStatus

TRAINABLE_NAME = "shiftsweep_trial"
TRIAL_FN_KEY = "trial_fn"  # param-space key: "module:function" with worker.trial.run_trial's signature
DEFAULT_TRIAL_FN = "worker.trial:run_trial"
log = logging.getLogger(__name__)
# Resume needs only a trial's latest checkpoint, and an ended trial's are deleted (its rows are in Parquet). But
# Tune saves its whole experiment state each time a trial has handed it this many checkpoints since the last save,
# and every pause at an early-stopping rung hands one over: keeping 1 made that a save per pause, whose cost grows
# with the sweep's trial count (648 trials: 305 s of driver CPU against 65 s with 2; bench/early_stopping.py --live).
CHECKPOINTS_TO_KEEP = 2
CHECKPOINTS_KEY = "checkpoints"  # param-space key: a `CheckpointPolicy` dict, when trials hand Tune a checkpoint
_TUNER_STATE = "tuner.pkl"
_EXPERIMENT_STATE_PREFIX = "experiment_state-"


class ResultsSink(Protocol):
    """What the Tune callback tells the driver. `orchestrator.results.ResultsStore` is one."""

    def status(self, trial_id: str) -> str: ...
    def start(self, trial_id: str) -> None: ...
    def merge_history(self, trial_id: str, reports: Sequence[EpochReport], *, finished: bool) -> None: ...
    def record_epoch(self, trial_id: str, report: EpochReport) -> None: ...
    def finish(self, trial_id: str, *, error: str | None = None) -> str: ...
    def maybe_flush(self) -> bool: ...


# ---- cluster -------------------------------------------------------------------------------------------------


def connect(address: str | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS inside a Ray Job), or start a local one when neither is set."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=True)


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


# ---- the trainable -------------------------------------------------------------------------------------------


def _tune_metrics(report: EpochReport) -> dict[str, Any]:
    """A worker report as Tune stores it: split metrics as one JSON string, so every report has the same keys."""
    out = report.to_dict()
    out["split_metrics"] = json.dumps(out["split_metrics"], sort_keys=True)
    return out


def _epoch_report(result: Mapping[str, Any]) -> EpochReport:
    """The worker's report back from a Tune result (which also holds Tune's own keys)."""
    split = result.get("split_metrics")
    return EpochReport.from_mapping({**result, "split_metrics": json.loads(split) if isinstance(split, str) else split})


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"a trial function is named 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class CheckpointPolicy:
    """The epochs a trial hands Tune a checkpoint at.

    Tune keeps only each trial's latest checkpoints (`CHECKPOINTS_TO_KEEP`), and to keep its experiment state in
    step it saves that state, every trial's, every time a trial has handed it that many: with epochs of a second or
    less that cost the driver more CPU than a checkpoint is worth (bench/early_stopping.py --live prints the
    driver's CPU). So a trial hands one over at the epochs early stopping may pause it at (`pause_at`: planned epochs ->
    rung epochs), where it resumes from when let go on, and otherwise once `every_s` has passed since its last one
    or its start (0: every epoch); never at its last epoch, after which nothing resumes. A resumed or retried
    trial goes on from its latest checkpoint: at most `every_s` of its work is run again.
    """

    every_s: float = 0.0
    pause_at: tuple[tuple[int, tuple[int, ...]], ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CheckpointPolicy:
        """A sweep started before the policy existed (no entry) checkpoints every epoch, as it did then."""
        if not d:
            return cls()
        pause_at = tuple((int(n), tuple(int(e) for e in rungs)) for n, rungs in d.get("pause_at", ()))
        return cls(every_s=float(d.get("every_s", 0.0)), pause_at=pause_at)

    def to_dict(self) -> dict[str, Any]:
        return {"every_s": self.every_s, "pause_at": [[n, list(rungs)] for n, rungs in self.pause_at]}

    def hands_over(self, epoch: int, epochs: int, seconds_since_last: float) -> bool:
        """Whether the checkpoint of `epoch` (of `epochs` planned) goes to Tune."""
        if epoch >= epochs:
            return False
        return epoch in dict(self.pause_at).get(epochs, ()) or seconds_since_last >= self.every_s


def train_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable: one trial, resumed from Tune's latest checkpoint when there is one."""
    os.environ.setdefault("OUTDATED_IGNORE", "1")  # wilds otherwise asks PyPI for its latest version at import
    run_trial = _import(config.get(TRIAL_FN_KEY, DEFAULT_TRIAL_FN))  # torch-heavy: imported in the trial's process

    trial = TrialConfig.from_dict(config[TRIAL_CONFIG_KEY])
    policy = CheckpointPolicy.from_dict(config.get(CHECKPOINTS_KEY))
    epochs = trial.epochs_planned()
    last_handed = time.monotonic()

    def report(epoch: EpochReport, checkpoint_dir: Path | None) -> None:
        nonlocal last_handed
        checkpoint = None
        if checkpoint_dir is not None and policy.hands_over(epoch.epoch, epochs, time.monotonic() - last_handed):
            # Tune copies the checkpoint to storage inside report(), before the worker may delete its directory.
            checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir))
            last_handed = time.monotonic()
        tune.report(_tune_metrics(epoch), checkpoint=checkpoint)

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(trial, report)
        return
    with checkpoint.as_directory() as directory:
        run_trial(trial, report, resume_from=Path(directory))
    # Nothing is returned: Tune would record a returned dict as one more result.


def trial_dirname(trial: Any) -> str:
    """Readable, stable trial directories: model-dataset-method-lr-seed-<trial id>."""
    t = TrialConfig.from_dict(trial.config[TRIAL_CONFIG_KEY])
    return f"{t.model}-{t.dataset}-{t.method}-lr{t.lr:g}-s{t.seed}-{t.trial_id()}"


# ---- events to the results sink ------------------------------------------------------------------------------


def _history(trial: Any) -> list[EpochReport]:
    """The epoch reports Tune logged for a trial (result.json in its storage directory; a resumed trial's file
    repeats epochs, a killed driver's may end in a torn line)."""
    path = Path(trial.path, "result.json").as_posix()
    try:
        with trial.storage.storage_filesystem.open_input_stream(path) as f:
            text = f.readall().decode()
    except (FileNotFoundError, OSError):
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "epoch" in row:
            rows.append(_epoch_report(row))
    return rows


def _error_text(trial: Any) -> str:
    """The trial's error trace: Tune writes it in the driver's staging directory first, storage later."""
    local = getattr(trial, "error_file", None)
    if local and os.path.exists(local):
        return Path(local).read_text()
    stored = trial.get_error() if hasattr(trial, "get_error") else None
    return str(stored or "the trial failed without an error message")


def _drop_checkpoints(trial: Any) -> None:
    """Delete an ended trial's checkpoints: nothing resumes it, and a sweep would otherwise keep one per trial."""
    try:
        fs, root = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                fs.delete_dir(info.path)
    except Exception as e:  # noqa: BLE001 - disk space, not results, is at stake
        log.warning("checkpoints of trial %s not deleted: %s: %s", trial.trial_id, type(e).__name__, e)


class _ResultsCallback(tune.Callback):
    """Forwards trial start, epoch results, completion and errors to the sink registered under `key`.

    On its first step it also hands the sink what Tune restored: trials Tune counts as finished, and epochs
    Tune logged that the sink may have missed (a driver killed between Tune's save and the sink's flush).
    """

    def __init__(self, key: str):
        self.key = key
        self._ids: dict[str, str] = {}  # Tune's trial id -> the sweep's trial id
        self._merged = False

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "_ids": {}, "_merged": False}

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._merged:
            return
        self._merged = True
        for trial in trials:
            finished = trial.status == "TERMINATED"
            if finished and self.sink.status(self._id(trial)) in TrialStatus.DONE:
                continue
            history = _history(trial)
            if history or finished:
                self.sink.merge_history(self._id(trial), history, finished=finished)

    @property
    def sink(self) -> ResultsSink:
        return sinks.lookup(self.key)

    def _id(self, trial: Any) -> str:
        if trial.trial_id not in self._ids:
            self._ids[trial.trial_id] = TrialConfig.from_dict(trial.config[TRIAL_CONFIG_KEY]).trial_id()
        return self._ids[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.start(self._id(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" in result:
            self.sink.record_epoch(self._id(trial), _epoch_report(result))
        self.sink.maybe_flush()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.finish(self._id(trial))
        _drop_checkpoints(trial)  # a failed trial keeps its own: Tune's retries and a resume start from it

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.finish(self._id(trial), error=_error_text(trial))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.sink.maybe_flush()


# ---- one Tuner per sweep -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneJob:
    """How to run a sweep's trials. `trials` are TrialConfig dicts as the worker will receive them."""

    key: str  # names the sweep's results sink; the sweep id
    trials: Sequence[dict[str, Any]]
    experiment_dir: str  # <storage>/<sweep_id>/tune, a path or a URI
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent_trials: int = 0
    max_failures: int = 1
    scheduler: Any = None  # a Tune TrialScheduler, or None for FIFO
    verbose: int = 1
    trial_fn: str = DEFAULT_TRIAL_FN  # a test double can stand in for the worker here
    checkpoints: CheckpointPolicy = CheckpointPolicy()
    # A worker process runs trial after trial: it imports torch and the model libraries once, not per trial
    # (seconds each). Its CPU resident-memory high-water mark then spans every trial it ran.
    reuse_actors: bool = True


def can_restore(experiment_dir: str) -> bool:
    """Whether Tune left enough behind to resume: its tuner state and at least one experiment state file."""
    names = Location(experiment_dir).list_names()
    return _TUNER_STATE in names and any(n.startswith(_EXPERIMENT_STATE_PREFIX) for n in names)


def _register(job: TuneJob) -> None:
    resources = {"cpu": job.cpus, "gpu": job.gpus}
    tune.register_trainable(TRAINABLE_NAME, tune.with_resources(train_trial, resources))


def _new_tuner(job: TuneJob) -> tune.Tuner:
    exp = Location(job.experiment_dir)
    parent, name = exp.uri.rsplit("/", 1)
    return tune.Tuner(
        TRAINABLE_NAME,
        param_space={
            TRIAL_CONFIG_KEY: tune.grid_search(list(job.trials)),
            TRIAL_FN_KEY: job.trial_fn,
            CHECKPOINTS_KEY: job.checkpoints.to_dict(),
        },
        tune_config=tune.TuneConfig(
            scheduler=job.scheduler,
            max_concurrent_trials=job.max_concurrent_trials or None,
            trial_dirname_creator=trial_dirname,
            reuse_actors=job.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=parent,
            failure_config=tune.FailureConfig(max_failures=job.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            callbacks=[_ResultsCallback(job.key)],
            verbose=job.verbose,
        ),
    )


def run_trials(job: TuneJob, sink: ResultsSink, *, resume: bool) -> bool:
    """Run the job's trials to the end or to an interrupt (SIGINT); True if Tune's own state was restored.

    With `resume`, Tune's saved experiment continues: finished trials are kept, unfinished and errored ones go on
    from their latest checkpoints. If Tune had not yet saved any state, the given trials start afresh (the
    results store keys rows by (trial, epoch), so an epoch run twice is still one row).
    """
    _register(job)
    sinks.register(job.key, sink)
    sigint = signal.getsignal(signal.SIGINT)  # Tune replaces it for the run and leaves its own behind
    try:
        restored = resume and can_restore(job.experiment_dir)
        if restored:
            tuner = tune.Tuner.restore(
                job.experiment_dir, trainable=TRAINABLE_NAME, resume_errored=True, restart_errored=False
            )
        else:
            Location(job.experiment_dir).delete()  # an unrestorable start: nothing in it can be resumed
            tuner = _new_tuner(job)
        tuner.fit()
        return restored
    finally:
        sinks.unregister(job.key)
        if sigint is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGINT, sigint)


# ---- the layer-gradient probe as Ray tasks -------------------------------------------------------------------


def _probe_task(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    from worker.probe import run_probe

    return run_probe(**kwargs)


def run_probes(
    jobs: Sequence[dict[str, Any]], *, cpus: float, gpus: float
) -> list[tuple[dict[str, Any], list[dict[str, Any]] | None, str | None]]:
    """Run `worker.probe.run_probe(**job)` for each job as a Ray task; (job, rows or None, error or None) each."""
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1)(_probe_task)
    refs = [task.remote(dict(j)) for j in jobs]
    out: list[tuple[dict[str, Any], list[dict[str, Any]] | None, str | None]] = []
    for job, ref in zip(jobs, refs, strict=True):
        try:
            out.append((dict(job), ray.get(ref), None))
        except ray.exceptions.RayError as e:
            out.append((dict(job), None, str(e)))
    return out
