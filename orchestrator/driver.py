"""A sweep's driver: from a spec to `<storage>/<sweep_id>/{spec.yaml, driver.json, *.parquet, tune/}`.

It expands the grid, lists every trial as pending, runs the probe, then runs the trials through one Tuner,
with the results store recording as they go. Resuming (same storage, same sweep id) continues Tune's saved
experiment; a SIGINT or SIGTERM ends the run cleanly: results flushed, unfinished trials marked cancelled,
Tune's state saved so that a later resume picks them up. Extending (same storage and id, a spec whose grid
holds the old one) adds trials to the same files; `history.json` records when and what. With `reuse`, trials
that other sweeps of the storage ran to their end are copied instead of run.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator import tune_runner
from orchestrator.cell_scheduler import CellScheduler
from orchestrator.driver_state import DriverState
from orchestrator.extension import extension_problems, grid_growth, note_reused, record_extension, record_start
from orchestrator.results import ResultsStore, probe_table, probed_pairs, write_probe
from orchestrator.reuse import find_finished
from orchestrator.spec import SweepSpec, SweepSpecError, ValidationProblem, load_spec, validate_spec
from orchestrator.storage import Location, is_uri
from worker.config import TrialConfig

log = logging.getLogger(__name__)

SPEC_FILE = "spec.yaml"
TUNE_DIR = "tune"


class SweepExistsError(RuntimeError):
    """A new sweep was started on a sweep id that already has results."""


class SweepFailedError(RuntimeError):
    """The driver itself failed (not a trial: failed trials are results). The cause is chained."""


@dataclass(frozen=True)
class SweepOutcome:
    state: str  # finished | cancelled | failed
    counts: dict[str, int]
    sweep_dir: str
    error: str | None = None


def sweep_location(storage: str | Path, sweep_id: str) -> Location:
    if not sweep_id or "/" in sweep_id or sweep_id in (".", ".."):
        raise ValueError(f"a sweep id must be a non-empty name without '/', got {sweep_id!r}")
    return Location(storage).child(sweep_id)


def _absolute(path: str | None) -> str | None:
    if path is None or is_uri(path):
        return path
    return str(Path(path).expanduser().resolve())


def runtime_trial(trial: TrialConfig, spec: SweepSpec) -> dict[str, Any]:
    """The TrialConfig dict a worker receives: absolute paths (trials run in their own directories), a device
    and a thread count that match the trial's resources. None of these change the trial's id."""
    d = trial.to_dict()
    d["data_root"] = _absolute(d["data_root"])
    d["weights_root"] = _absolute(d["weights_root"])
    if spec.resources.gpus == 0:
        d["device"] = "cpu"  # a worker that asked for no GPU must not take one it can see
    if d["threads"] is None:
        d["threads"] = max(1, int(spec.resources.cpus))
    return d


def stored_spec(sweep_dir: Location) -> SweepSpec | None:
    data = sweep_dir.read_bytes(SPEC_FILE)
    return None if data is None else load_spec(yaml.safe_load(data))


def _check_start(
    spec: SweepSpec | None, sweep_dir: Location, *, resume: bool, extend: bool = False
) -> tuple[SweepSpec, SweepSpec | None]:
    """(the spec to run, the spec the sweep ran before, if any). A new sweep's id must be free; a resume runs the
    stored spec, or an equal one; an extension a spec that grows the stored one (`extension.extension_problems`)."""
    previous = stored_spec(sweep_dir)
    if not (resume or extend) and (previous is not None or sweep_dir.exists("trials.parquet")):
        raise SweepExistsError(f"sweep {sweep_dir.uri} already exists; resume it (--resume) or pick a new sweep id")
    if spec is None:
        if previous is None:
            raise SweepSpecError(
                [ValidationProblem(field="spec", message=f"no spec given and none in {sweep_dir.uri}")]
            )
        return previous, previous
    if previous is None or previous.fingerprint() == spec.fingerprint():
        return spec, previous
    if not extend:
        raise SweepSpecError(
            [ValidationProblem(field="spec", message=f"differs from the spec this sweep started with ({SPEC_FILE})")]
        )
    problems = extension_problems(previous, spec)
    if problems:
        raise SweepSpecError(problems)
    return spec, previous


def _begin(spec: SweepSpec, previous: SweepSpec | None, sweep_dir: Location) -> None:
    """Write the spec the sweep now runs, and its history. An extension first removes Tune's experiment, whose
    trial list is the old grid (the old grid's unfinished trials start again in the new one), and records itself
    before the spec, so that a driver killed in between records it once when resumed."""
    sweep_dir.makedirs()
    if previous is not None and previous.fingerprint() != spec.fingerprint():
        sweep_dir.child(TUNE_DIR).delete()
        growth = grid_growth(previous, spec)
        record_extension(sweep_dir, previous, spec, growth)
        log.info("sweep %s extended: %s", sweep_dir.uri, growth.describe())
    elif previous is None:
        record_start(sweep_dir, spec)
    sweep_dir.write_bytes(SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False).encode())


def _reuse(sweep_id: str, storage: str | Path, store: ResultsStore, trials: list[TrialConfig]) -> int:
    """Copy the results of this sweep's unfinished trials that other sweeps of the storage ran to their end."""
    todo = set(store.unfinished())
    wanted = {t.trial_id(): t for t in trials if t.trial_id() in todo}
    copied = 0
    for found in find_finished(Location(storage), sweep_id, wanted):
        copied += store.adopt(found.source, found.trial, found.epochs)
    if copied:
        log.info("sweep %s: %d trials copied from other sweeps instead of run", sweep_id, copied)
    return copied


def _run_probe(spec: SweepSpec, sweep_id: str, sweep_dir: Location, state: DriverState) -> None:
    done = probed_pairs(sweep_dir)
    jobs = [
        {
            "model": m,
            "dataset": d,
            "data_root": _absolute(spec.data_root),
            "weights_root": _absolute(spec.weights_root),
            "pretrained": spec.pretrained,
            "max_batches": spec.probe_batches,
            "batch_size": spec.batch_size,
            "seed": spec.seeds[0],
            "device": "cpu" if spec.resources.gpus == 0 else "auto",
        }
        for m in spec.models
        for d in spec.datasets
        if (m, d) not in done
    ]
    if not jobs:
        return
    tables = []
    for job, rows, error in tune_runner.run_probes(jobs, cpus=spec.resources.cpus, gpus=spec.resources.gpus):
        if error is not None:
            log.error("probe of %s on %s failed: %s", job["model"], job["dataset"], error)
            state.probe_error(job["model"], job["dataset"], error)
        else:
            tables.append(probe_table(sweep_id, job["model"], job["dataset"], rows or []))
    if tables:
        write_probe(sweep_dir, tables)


def early_stopping_scheduler(spec: SweepSpec, sweep_id: str) -> CellScheduler | None:
    """The spec's per-cell early stopping as Tune's scheduler (None when it is off); its `rungs_for` is where
    trials may pause."""
    es = spec.early_stopping
    if not es.enabled:
        return None
    return CellScheduler(rule=es.keep_rule(), grace_period=es.grace_period, rungs=es.rungs, sink_key=sweep_id)


def _checkpoint_policy(
    spec: SweepSpec, trials: Sequence[TrialConfig], scheduler: CellScheduler | None
) -> tune_runner.CheckpointPolicy:
    """Checkpoints every `checkpoint_every_s`, and at every rung the scheduler may pause a trial at."""
    planned = sorted({t.epochs_planned() for t in trials})
    pause_at = tuple((n, tuple(scheduler.rungs_for(n))) for n in planned) if scheduler is not None else ()
    return tune_runner.CheckpointPolicy(every_s=spec.checkpoint_every_s, pause_at=pause_at)


class _TermAsInterrupt:
    """Inside the block, SIGTERM is handled as SIGINT, which Tune turns into a clean, resumable stop."""

    def __enter__(self) -> _TermAsInterrupt:
        self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def run_sweep(
    spec: SweepSpec | None,
    sweep_id: str,
    storage: str | Path,
    *,
    resume: bool = False,
    extend: bool = False,
    address: str | None = None,
    verbose: int = 1,
    trial_fn: str = tune_runner.DEFAULT_TRIAL_FN,
) -> SweepOutcome:
    """Run (or resume, or extend) one sweep to its end, a cancel, or a failure; the outcome is also in driver.json.

    `extend`: resume with a spec that may grow the stored one: only trials not yet done run, into the same files.
    Like a resume, it starts the sweep when none is stored yet (its first job died before writing anything).
    """
    sweep_dir = sweep_location(storage, sweep_id)
    spec, previous = _check_start(spec, sweep_dir, resume=resume, extend=extend)
    problems = validate_spec(spec, check_data=False)
    if problems:
        raise SweepSpecError(problems)
    _begin(spec, previous, sweep_dir)

    trials = [] if spec.probe_only else spec.expand()
    state = DriverState(sweep_dir, sweep_id, total_trials=len(trials))
    store = ResultsStore(sweep_dir, sweep_id, trials, on_flush=state.update_counts)
    if spec.reuse:
        note_reused(sweep_dir, _reuse(sweep_id, storage, store, trials))
    store.flush()
    interrupted, failure = False, None
    try:
        tune_runner.connect(address)  # first: Ray installs a SIGTERM handler of its own, replaced below
        with _TermAsInterrupt():
            if spec.probe:
                _run_probe(spec, sweep_id, sweep_dir, state)
            todo = set(store.unfinished())
            if todo:
                scheduler = early_stopping_scheduler(spec, sweep_id)
                job = tune_runner.TuneJob(
                    key=sweep_id,
                    trials=[runtime_trial(t, spec) for t in trials if t.trial_id() in todo],
                    experiment_dir=sweep_dir.child(TUNE_DIR).uri,
                    cpus=spec.resources.cpus,
                    gpus=spec.resources.gpus,
                    max_concurrent_trials=spec.max_concurrent_trials,
                    max_failures=spec.max_failures,
                    scheduler=scheduler,
                    verbose=verbose,
                    trial_fn=trial_fn,
                    checkpoints=_checkpoint_policy(spec, trials, scheduler),
                )
                tune_runner.run_trials(job, store, resume=resume or extend)  # returns early, not raising, on SIGINT
    except KeyboardInterrupt:  # outside Tune's loop (probe, setup) or a second interrupt while Tune saved
        interrupted = True
    except Exception as e:  # recorded, then raised for the job's log
        failure = e
    interrupted = store.cancel_unfinished() > 0 or interrupted
    store.flush()
    error = f"{type(failure).__name__}: {failure}" if failure is not None else None
    outcome_state = "failed" if failure is not None else "cancelled" if interrupted else "finished"
    state.end(outcome_state, error=error)
    if failure is not None:
        raise SweepFailedError(f"sweep {sweep_id} failed: {error}") from failure
    return SweepOutcome(outcome_state, store.counts(), sweep_dir.uri, error)
