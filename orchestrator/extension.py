"""Growing a sweep: which new specs extend a stored one, what they add, and the sweep's history of growth.

A sweep grows by a spec whose grid holds every trial of the old grid, each meaning exactly what it meant: more
seeds, LRs, models, datasets or methods. Trial ids are hashes of a trial's science, so the trials the old grid
completed are recognised by id and never run again. A spec that drops trials, or changes what every trial
means (its epochs, batch, subsets, precision, data or weights), describes a different experiment: it is refused,
and the reason names the field, so it can be submitted as a new sweep instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orchestrator.spec import SweepSpec, ValidationProblem
from orchestrator.storage import Location
from worker.selection import format_lr

HISTORY_FILE = "history.json"

# Fields every trial is built from: a change makes each old trial a different one.
TRIAL_MEANING = {
    "epochs": "the LR schedule is laid out over a trial's epochs, so longer trials are not old ones continued",
    "batch_size": "the batch size is part of every trial's science",
    "max_train_images": "the training subset is part of every trial's science",
    "max_eval_images": "the evaluation subset is part of every trial's science",
    "pretrained": "the starting weights are part of every trial's science",
    "precision": "the numeric precision is part of every trial's science",
    "data_root": "the old trials were trained on the data found there",
    "weights_root": "the old trials started from the weights found there",
}
# Fields that say how results are judged or kept: the old trials' results hold only under the old values.
SWEEP_MEANING = {
    "early_stopping": "the old trials were stopped by the old rule; new ones must be judged by the same",
    "probe_only": "a probe-only sweep and a training sweep are different experiments",
    "storage": "the sweep's results live where it started",
}
GROWABLE = ("models", "datasets", "methods", "seeds", "model_seeds", "lrs", "method_options")


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _dropped(where: str, what: str, dropped: Sequence[Any], kept: Sequence[Any]) -> ValidationProblem:
    return ValidationProblem(
        field=where,
        message=f"drops {what} {', '.join(map(str, dropped))}; an extension keeps every old one "
        f"({', '.join(map(str, kept))}) and may add more",
    )


def _grid_problems(old: SweepSpec, new: SweepSpec) -> list[ValidationProblem]:
    problems = []
    for name in ("models", "datasets", "methods"):
        dropped = [repr(k) for k in getattr(old, name) if k not in getattr(new, name)]
        if dropped:
            problems.append(_dropped(name, name[:-1] + "(s)", dropped, getattr(old, name)))
    for model in old.models:
        dropped_seeds = sorted(set(old.seeds_for(model)) - set(new.seeds_for(model)))
        if model in new.models and dropped_seeds:
            where = f"model_seeds.{model}" if model in new.model_seeds else "seeds"
            problems.append(_dropped(where, f"{model}'s seed(s)", dropped_seeds, old.seeds_for(model)))
    for method in old.methods:
        if method not in new.methods:
            continue
        dropped_lrs = [format_lr(lr) for lr in old.lr_grid(method) if lr not in new.lr_grid(method)]
        if dropped_lrs:
            kept = [format_lr(lr) for lr in old.lr_grid(method)]
            problems.append(_dropped(f"lrs.{method}", "LR(s)", dropped_lrs, kept))
        before, after = old.method_options.get(method, {}), new.method_options.get(method, {})
        if before != after:
            problems.append(
                ValidationProblem(
                    field=f"method_options.{method}",
                    message=f"changes {method!r}'s options from {_shown(before)} to {_shown(after)}, which changes "
                    "what its old trials mean; add the variant as a new sweep",
                )
            )
    return problems


def extension_problems(old: SweepSpec, new: SweepSpec) -> list[ValidationProblem]:
    """Why `new` cannot grow a sweep that ran `old`; empty when it can (the two may also be equal)."""
    problems = []
    for name, why in {**TRIAL_MEANING, **SWEEP_MEANING}.items():
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            shown = (_shown(v.model_dump() if hasattr(v, "model_dump") else v) for v in (before, after))
            problems.append(
                ValidationProblem(
                    field=name,
                    message=f"changes from {next(shown)} to {next(shown)}: {why}; "
                    "submit it as a new sweep, or keep the sweep's value",
                )
            )
    problems += _grid_problems(old, new)
    if not problems:
        missing = {t.trial_id() for t in old.expand()} - {t.trial_id() for t in new.expand()}
        if missing:  # every rule above holds, yet a trial is lost: name it rather than run a shrunk grid
            problems.append(
                ValidationProblem(field="spec", message=f"the new grid lacks {len(missing)} of the sweep's trials")
            )
    return problems


@dataclass(frozen=True)
class GridGrowth:
    """What an extension adds to a sweep, per kind of change, and the other settings it changes."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    seeds: dict[str, list[int]] = field(default_factory=dict)  # model -> seeds added to a model the sweep had
    lrs: dict[str, list[float]] = field(default_factory=dict)  # method -> LRs added to a method the sweep had
    trials_added: int = 0
    trials: int = 0  # the grid's trials after the extension
    changed: list[str] = field(default_factory=list)  # other top-level fields, e.g. resources

    @property
    def empty(self) -> bool:
        return not (self.trials_added or self.changed)

    def describe(self) -> str:
        """One line, e.g. '+6 trials: seeds 1, 2 for tiny_vit; LRs 3e-5 for sgd'."""
        parts = [f"{kind} {', '.join(names)}" for kind, names in self._named()]
        parts += [f"seeds {', '.join(map(str, s))} for {m}" for m, s in self.seeds.items()]
        parts += [f"LRs {', '.join(format_lr(x) for x in lrs)} for {m}" for m, lrs in self.lrs.items()]
        text = f"+{self.trials_added} trials" + (f": {'; '.join(parts)}" if parts else "")
        return text + (f" (also changed: {', '.join(self.changed)})" if self.changed else "")

    def _named(self) -> list[tuple[str, list[str]]]:
        named = (("models", self.models), ("datasets", self.datasets), ("methods", self.methods))
        return [(kind, names) for kind, names in named if names]


def grid_growth(old: SweepSpec, new: SweepSpec) -> GridGrowth:
    """What `new` adds to `old` (assumed to extend it: see `extension_problems`)."""
    old_ids = {t.trial_id() for t in old.expand()}
    new_ids = {t.trial_id() for t in new.expand()}
    seeds = {
        m: sorted(set(new.seeds_for(m)) - set(old.seeds_for(m)))
        for m in old.models
        if set(new.seeds_for(m)) - set(old.seeds_for(m))
    }
    lrs = {
        meth: [lr for lr in new.lr_grid(meth) if lr not in old.lr_grid(meth)]
        for meth in old.methods
        if meth in new.methods and set(new.lr_grid(meth)) - set(old.lr_grid(meth))
    }
    old_dump, new_dump = old.model_dump(mode="json"), new.model_dump(mode="json")
    changed = sorted(k for k in new_dump if k not in GROWABLE and old_dump.get(k) != new_dump[k])
    return GridGrowth(
        models=[m for m in new.models if m not in old.models],
        datasets=[d for d in new.datasets if d not in old.datasets],
        methods=[m for m in new.methods if m not in old.methods],
        seeds=seeds,
        lrs=lrs,
        trials_added=len(new_ids - old_ids),
        trials=len(new_ids),
        changed=changed,
    )


# ---- history -----------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_history(sweep_dir: Location | str | Path) -> list[dict[str, Any]]:
    """The sweep's events, oldest first: how it started and what each extension added (empty before any)."""
    loc = sweep_dir if isinstance(sweep_dir, Location) else Location(sweep_dir)
    data = loc.read_bytes(HISTORY_FILE)
    if data is None:
        return []
    events = json.loads(data)
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def _write(loc: Location, events: list[dict[str, Any]]) -> None:
    loc.write_bytes(HISTORY_FILE, json.dumps(events, indent=1).encode())


def _append(loc: Location, event: dict[str, Any]) -> None:
    _write(loc, [*read_history(loc), event])


def _started(spec: SweepSpec, at: str | None) -> dict[str, Any]:
    trials = 0 if spec.probe_only else len(spec.expand())
    return {"event": "started", "at": at, "trials": trials, "fingerprint": spec.fingerprint()}


def record_start(loc: Location, spec: SweepSpec) -> None:
    """A new sweep's first event: its grid."""
    if not read_history(loc):
        _append(loc, _started(spec, _now()))


def record_extension(loc: Location, old: SweepSpec, new: SweepSpec, growth: GridGrowth) -> None:
    """An extension's event, once: a driver that died after writing it and is resumed does not add it again. A
    sweep started before its history was kept first gets its start, undated."""
    events = read_history(loc)
    if events and events[-1].get("fingerprint") == new.fingerprint():
        return
    if not events:
        _append(loc, _started(old, None))
    _append(
        loc,
        {
            "event": "extended",
            "at": _now(),
            "fingerprint": new.fingerprint(),
            "summary": growth.describe(),
            **asdict(growth),
        },
    )


def note_reused(loc: Location, count: int) -> None:
    """How many trials the latest event took from other sweeps instead of running them."""
    events = read_history(loc)
    if events and count:
        events[-1]["reused"] = int(events[-1].get("reused") or 0) + count
        _write(loc, events)


def history_lines(events: Sequence[dict[str, Any]]) -> list[str]:
    """The history as lines for people: when, what."""
    out = []
    for e in events:
        when = (e.get("at") or "before its history was kept").replace("T", " ").replace("+00:00", " UTC")
        reused = f"; {e['reused']} copied from other sweeps" if e.get("reused") else ""
        if e.get("event") == "extended":
            out.append(f"{when}: extended, {e.get('summary', '')}; {e.get('trials')} trials in all{reused}")
        else:
            out.append(f"{when}: started with {e.get('trials')} trials{reused}")
    return out
