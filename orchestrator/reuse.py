"""Results reuse across the sweeps of one storage: a trial that already ran to its end elsewhere is copied.

A trial id is a hash of the trial's science, so two sweeps that list the same id ask for the same run. Only
trials that ended by themselves (`completed`, or `diverged`: a result of the LR) are copied; an early-stopped
trial's length depended on the other trials of its sweep. The data and weights locations must match too: they
are not part of the id, and a copy must not stand for a run on other files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from orchestrator.results import EPOCHS_FILE, TRIALS_FILE, read_epochs, read_trials
from orchestrator.storage import Location
from worker.config import TrialConfig
from worker.records import TrialStatus

LOCATION_FIELDS = ("data_root", "weights_root")


@dataclass(frozen=True)
class FoundTrial:
    """A finished trial of another sweep: its trial row and its epoch rows, as that sweep stored them."""

    source: str  # the sweep it ran in
    trial: dict[str, Any]
    epochs: list[dict[str, Any]]


def _same_files(row: Mapping[str, Any], wanted: TrialConfig) -> bool:
    try:
        config = json.loads(row["config_json"] or "{}")
    except json.JSONDecodeError:
        return False
    return all(config.get(k) == getattr(wanted, k) for k in LOCATION_FIELDS)


def find_finished(storage: Location, sweep_id: str, wanted: Mapping[str, TrialConfig]) -> Iterator[FoundTrial]:
    """Trials of `wanted` (trial id -> config) that other sweeps under `storage` ran to their end, each once.

    Sweeps are searched in name order; a trial found in one is not looked for in the next.
    """
    left = dict(wanted)
    for name in storage.list_names():
        if not left:
            return
        if name == sweep_id or name.startswith(("_", ".")):
            continue
        other = storage.child(name)
        if not other.exists(TRIALS_FILE) or not other.exists(EPOCHS_FILE):
            continue
        trials = read_trials(other)
        ids = pa.array(sorted(left), pa.string())
        mask = pc.and_(
            pc.is_in(trials["trial_id"], value_set=ids),
            pc.is_in(trials["status"], value_set=pa.array(sorted(TrialStatus.SELF_ENDED), pa.string())),
        )
        rows = [r for r in trials.filter(mask).to_pylist() if _same_files(r, left[r["trial_id"]])]
        if not rows:
            continue
        found = pa.array([r["trial_id"] for r in rows], pa.string())
        epochs = read_epochs(other)
        per_trial: dict[str, list[dict[str, Any]]] = {}
        for e in epochs.filter(pc.is_in(epochs["trial_id"], value_set=found)).to_pylist():
            per_trial.setdefault(e["trial_id"], []).append(e)
        for r in rows:
            if r["trial_id"] in per_trial:
                del left[r["trial_id"]]
                yield FoundTrial(source=name, trial=r, epochs=per_trial[r["trial_id"]])
