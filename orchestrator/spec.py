"""A sweep: the grid of trials one user asks for, as a typed, validated model loadable from YAML.

`SweepSpec.expand()` turns it into `TrialConfig`s whose ids are stable hashes of their science, so a
trial is never run twice in a sweep. `validate_spec` collects every problem (not only the first) so that the
REST API can name each bad field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from orchestrator.halving import KeepRule, Stage, check_stage_order
from worker import catalog
from worker.config import TrialConfig, learning_rate
from worker.strict_yaml import YamlError, YamlMap, load_file, load_text

DEFAULT_MAX_TRIALS = 5000
# Bounds on what one spec may ask for: far above any real sweep, low enough that nothing a client sends can make
# the service or a worker allocate without limit.
MAX_NAME = 200
MAX_KEY = 100  # a catalog name or an option name
MAX_PATH = 4096
MAX_LIST = 100  # models, datasets, methods, LRs of one method
MAX_SEEDS = 1000
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_IMAGES = 10**9
MAX_THREADS = 1024
MAX_CPUS = 1024.0
MAX_GPUS = 64.0
LIMIT_MAX_TRIALS = 10**7

LearningRate = Annotated[float, BeforeValidator(learning_rate)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
CatalogName = Annotated[str, Field(min_length=1, max_length=MAX_KEY)]
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH)]


@dataclass(frozen=True)
class NodeCapacity:
    """What one node of the cluster offers a trial: a trial runs on one node, so no trial may ask for more."""

    cpus: float
    gpus: float


def field_path(loc: Sequence[str | int]) -> str:
    """How every error names a field: ('models', 1) -> 'models[1]', ('lrs', 'sgd', 0) -> 'lrs.sgd[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _as_list(value: Any) -> Any:
    """One mapping stands for a list of one (`late: {start: 0.5}`)."""
    return [value] if isinstance(value, dict) else value


class LateRungs(BaseModel):
    """The neighbours rule later in training, when a smaller LR's deficit has stopped being a matter of pace and the
    order among the leaders has settled: from `start` on, fewer grid steps are kept by position."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(
        0.5, gt=0.0, lt=1.0, allow_inf_nan=False, description="a rung at or after this fraction of the epochs is late"
    )
    below: int = Field(
        0,
        ge=0,
        le=20,
        description="grid steps below the leader kept at a late rung whatever their score (never more than "
        "`neighbours`; LRs within the margin or the noise too)",
    )
    above: int | None = Field(
        None,
        ge=0,
        le=20,
        description="grid steps above the leader kept at a late rung whatever their score; null: as before",
    )
    margin: float | None = Field(
        None, ge=0.0, le=1.0, allow_inf_nan=False, description="the margin at a late rung; null: as before"
    )
    noise: float | None = Field(
        None, ge=0.0, le=10.0, allow_inf_nan=False, description="the noise tolerance at a late rung; null: as before"
    )

    def stage(self) -> Stage:
        return Stage(self.start, self.below, self.above, self.margin, self.noise)


class EarlyStopping(BaseModel):
    """Synchronous early stopping per cell: the LRs of one (model, dataset, method) are compared at each rung once
    all have reached it, and only some go on (`orchestrator.halving`); other cells never compete."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    rule: Literal["halving", "neighbours"] = Field(
        "halving",
        description="halving: the top 1/reduction_factor of the LRs go on at each rung; neighbours: the leading "
        "LR, the LRs up to `neighbours` grid steps from it and those within `margin` of its score",
    )
    grace_period: int = Field(1, ge=1, le=MAX_EPOCHS, description="epochs every trial runs before its first rung")
    reduction_factor: float = Field(
        3.0,
        gt=1.0,
        le=100.0,
        allow_inf_nan=False,
        description="halving: keep the top 1/reduction_factor at each rung; both rules: places the default rungs",
    )
    rungs: list[Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]] | None = Field(
        None,
        max_length=20,
        description="fractions of a trial's epochs to compare at, e.g. [0.25, 0.5]; default: epochs / "
        "reduction_factor**k (k = 1, 2, ...), so one spec suits a 3-epoch and a 50-epoch dataset",
    )
    neighbours: int = Field(1, ge=0, le=20, description="neighbours rule: grid steps either side of the leader kept")
    margin: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="neighbours rule: LRs within this of the leader's score are kept too (0.02: 2 points)",
    )
    noise: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="neighbours rule: LRs whose deficit to the leader is within this many standard errors of the "
        "difference of their seed means are kept too (3: a deficit the seeds' spread could explain; an LR with one "
        "seed has no spread, so there only the margin counts)",
    )
    paired: bool = Field(
        False,
        description="neighbours rule: the noise tolerance compares two LRs seed by seed (the standard error of their "
        "per-seed differences, where they share three or more seeds: a seed starts the head and orders the batches "
        "alike at every LR) rather than each LR's spread on its own",
    )
    late: Annotated[list[LateRungs] | None, BeforeValidator(_as_list)] = Field(
        None,
        max_length=20,
        description="neighbours rule: from `start` of the epochs on, keep only `below` (and `above`) steps either "
        "side of the leader, with its own margin and noise if given; a list: stages by increasing start, each "
        "going on from the one before",
    )

    @field_validator("late")
    @classmethod
    def _stages_in_order(cls, v: list[LateRungs] | None) -> list[LateRungs] | None:
        check_stage_order([st.start for st in v or []])
        return v

    def stages(self) -> tuple[Stage, ...]:
        return tuple(st.stage() for st in self.late or [])

    def keep_rule(self) -> KeepRule:
        """The rule the scheduler applies at each rung (`neighbours`, `margin`, `noise`, `paired` and `late` count
        under the neighbours rule only)."""
        if self.rule == "neighbours":
            return KeepRule(
                self.reduction_factor,
                neighbours=self.neighbours,
                margin=self.margin,
                noise=self.noise,
                stages=self.stages(),
                paired=self.paired,
            )
        return KeepRule(self.reduction_factor)


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(1.0, gt=0, le=MAX_CPUS, allow_inf_nan=False, description="CPUs per trial")
    gpus: float = Field(
        0.0, ge=0, le=MAX_GPUS, allow_inf_nan=False, description="GPUs per trial; fractions pack several on one card"
    )


class ValidationProblem(BaseModel):
    field: str
    message: str


class SweepSpecError(ValueError):
    """Every problem of a spec, each naming its field."""

    def __init__(self, problems: list[ValidationProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("sweep", min_length=1, max_length=MAX_NAME, description="a label for people; the id is separate")
    models: list[CatalogName] = Field(max_length=MAX_LIST)
    datasets: list[CatalogName] = Field(max_length=MAX_LIST)
    methods: list[CatalogName] = Field(max_length=MAX_LIST)
    lrs: dict[CatalogName, Annotated[list[LearningRate], Field(max_length=MAX_LIST)]] = Field(
        default_factory=dict,
        max_length=MAX_LIST,
        description="LR grid per method; a method not named here uses the catalog's grid",
    )
    seeds: list[Seed] = Field(default_factory=lambda: [0], max_length=MAX_SEEDS)
    model_seeds: dict[CatalogName, Annotated[list[Seed], Field(max_length=MAX_SEEDS)]] = Field(
        default_factory=dict,
        max_length=MAX_LIST,
        description="seeds per model, overriding `seeds` (the paper ran CLIP ViT-B/16 with 3 seeds, the rest with 1)",
    )
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="overrides every dataset's catalog epochs")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    max_train_images: int | None = Field(None, ge=1, le=MAX_IMAGES)
    max_eval_images: int | None = Field(None, ge=1, le=MAX_IMAGES)
    method_options: dict[CatalogName, dict[CatalogName, Any]] = Field(
        default_factory=dict, max_length=MAX_LIST, description="per-method overrides of the catalog's optimizer options"
    )
    data_root: PathText = "data"
    weights_root: PathText | None = None
    pretrained: bool = Field(True, description="False: randomly initialised backbones (smoke tests only)")
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int = Field(0, ge=0, le=LIMIT_MAX_TRIALS, description="0: as many as resources allow")
    max_failures: int = Field(1, ge=0, le=100, description="retries of a failed trial")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    checkpoint_every_s: float = Field(
        60.0,
        ge=0.0,
        le=7 * 86_400.0,
        allow_inf_nan=False,
        description="a trial hands Tune a checkpoint at most this often (0: every epoch), and at every epoch early "
        "stopping may pause it at; a resumed or retried trial goes on from its latest checkpoint",
    )
    storage: PathText | None = Field(None, description="results location: a path or an s3:// URI; None: the service's")
    max_trials: int = Field(DEFAULT_MAX_TRIALS, ge=1, le=LIMIT_MAX_TRIALS, description="refuse grids larger than this")
    probe: bool = Field(False, description="also run the layer-gradient probe for each (model, dataset)")
    probe_batches: int = Field(8, ge=1, le=10_000)
    probe_only: bool = Field(False, description="run only the probe: no trial is trained (needs probe: true)")
    threads_per_trial: int | None = Field(None, ge=1, le=MAX_THREADS)
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="fp32: full precision, as the paper trained; bf16: autocast, faster on GPUs"
    )
    reuse: bool = Field(
        False,
        description="copy, instead of running, trials that another sweep of the same storage ran to their end "
        "(same trial id, same data and weights locations); each copied row names its source sweep",
    )

    @field_validator("name", "data_root", "weights_root", "storage")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and not v.isprintable():
            raise ValueError("must be printable text (no control characters)")
        return v

    @field_validator("models", "datasets", "methods", "seeds")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("must name at least one")
        if len(set(v)) != len(v):
            raise ValueError("has duplicates")
        return v

    def lr_grid(self, method: str) -> list[float]:
        if method in self.lrs:
            return list(self.lrs[method])
        return list(catalog.get_method(method).lr_grid)

    def seeds_for(self, model: str) -> list[int]:
        return list(self.model_seeds.get(model, self.seeds))

    def cells(self) -> list[tuple[str, str, str, int]]:
        """(model, dataset, method, seed) groups whose trials differ only in LR."""
        out = []
        for m in self.models:
            fam = catalog.get_model(m).family
            for d in self.datasets:
                for meth in self.methods:
                    if not catalog.get_method(meth).applies_to(fam):
                        continue
                    for s in self.seeds_for(m):
                        out.append((m, d, meth, s))
        return out

    def grid_size(self) -> int:
        """Trials the grid holds, counted without building it (a huge grid is refused before it exists)."""
        total = 0
        for m in self.models:
            fam = catalog.get_model(m).family
            lrs = sum(len(self.lr_grid(meth)) for meth in self.methods if catalog.get_method(meth).applies_to(fam))
            total += lrs * len(self.seeds_for(m))
        return total * len(self.datasets)

    def expand(self) -> list[TrialConfig]:
        """Every trial of the sweep, de-duplicated by trial id, in a stable order."""
        seen: dict[str, TrialConfig] = {}
        for m, d, meth, s in self.cells():
            for lr in self.lr_grid(meth):
                t = TrialConfig(
                    model=m,
                    dataset=d,
                    method=meth,
                    lr=lr,
                    seed=s,
                    epochs=self.epochs,
                    batch_size=self.batch_size,
                    data_root=self.data_root,
                    weights_root=self.weights_root,
                    pretrained=self.pretrained,
                    max_train_images=self.max_train_images,
                    max_eval_images=self.max_eval_images,
                    method_options=dict(self.method_options.get(meth, {})),
                    threads=self.threads_per_trial,
                    precision=self.precision,
                )
                seen.setdefault(t.trial_id(), t)
        return list(seen.values())

    def fingerprint(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _catalog_problems(spec: SweepSpec) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    for fld, keys, valid in (
        ("models", spec.models, catalog.list_models()),
        ("datasets", spec.datasets, catalog.list_datasets()),
        ("methods", spec.methods, catalog.list_methods()),
    ):
        for i, k in enumerate(keys):
            if k not in valid:
                problems.append(
                    ValidationProblem(
                        field=f"{fld}[{i}]", message=f"unknown {fld[:-1]} {k!r}; valid: {', '.join(valid)}"
                    )
                )
    for model, seeds in spec.model_seeds.items():
        if model not in spec.models:
            problems.append(
                ValidationProblem(
                    field=f"model_seeds.{model}", message=f"seeds for {model!r}, which is not in models {spec.models}"
                )
            )
        if not seeds:
            problems.append(ValidationProblem(field=f"model_seeds.{model}", message="must name at least one seed"))
        elif len(set(seeds)) != len(seeds):
            problems.append(ValidationProblem(field=f"model_seeds.{model}", message="has duplicates"))
    for meth in spec.lrs:
        if meth not in spec.methods:
            problems.append(
                ValidationProblem(
                    field=f"lrs.{meth}", message=f"LR grid for {meth!r}, which is not in methods {spec.methods}"
                )
            )
    for meth, grid in spec.lrs.items():
        if not grid:
            problems.append(ValidationProblem(field=f"lrs.{meth}", message="empty LR grid"))
        elif len(set(grid)) != len(grid):
            problems.append(ValidationProblem(field=f"lrs.{meth}", message="has duplicates"))
    for meth, options in spec.method_options.items():
        if meth not in spec.methods:
            problems.append(
                ValidationProblem(
                    field=f"method_options.{meth}", message=f"options for {meth!r}, which is not in methods"
                )
            )
            continue
        for option, message in catalog.method_option_problems(meth, options):
            problems.append(ValidationProblem(field=f"method_options.{meth}.{option}", message=message))
    return problems


def resource_problems(resources: Resources, nodes: Sequence[NodeCapacity]) -> list[ValidationProblem]:
    """A trial runs on one node: some node of the cluster must have both its CPUs and its GPUs."""
    if any(n.cpus >= resources.cpus and n.gpus >= resources.gpus for n in nodes):
        return []
    most_cpus = max((n.cpus for n in nodes), default=0.0)
    most_gpus = max((n.gpus for n in nodes), default=0.0)
    if resources.gpus > most_gpus:
        if most_gpus <= 0:
            msg = f"{resources.gpus:g} GPUs per trial asked of a cluster with no GPUs; use 0"
        else:
            msg = f"{resources.gpus:g} GPUs per trial, but the largest node has {most_gpus:g}; at most {most_gpus:g}"
        return [ValidationProblem(field="resources.gpus", message=msg)]
    if resources.cpus > most_cpus:
        return [
            ValidationProblem(
                field="resources.cpus",
                message=f"{resources.cpus:g} CPUs per trial, but the largest node has {most_cpus:g}; "
                f"at most {most_cpus:g}",
            )
        ]
    return [
        ValidationProblem(
            field="resources",
            message=f"no node has {resources.cpus:g} CPUs and {resources.gpus:g} GPUs at once; nodes: "
            + ", ".join(f"{n.cpus:g} CPUs/{n.gpus:g} GPUs" for n in nodes),
        )
    ]


def validate_spec(
    spec: SweepSpec,
    *,
    trial_ceiling: int | None = None,
    check_data: bool = True,
) -> list[ValidationProblem]:
    """Every problem of `spec` that needs no cluster, each naming its field (`resource_problems` checks a spec
    against the cluster's nodes). `trial_ceiling`: the most trials the service runs in one sweep, whatever the
    spec's own max_trials allows.
    """
    problems = _catalog_problems(spec)
    if problems:
        return problems  # later checks need valid catalog keys
    if spec.probe_only and not spec.probe:
        problems.append(ValidationProblem(field="probe_only", message="probe_only needs probe: true"))
    n = spec.grid_size()
    if n == 0:
        problems.append(ValidationProblem(field="methods", message="no method applies to any of the models"))
    lrs = max((len(spec.lr_grid(m)) for m in spec.methods), default=0)
    widest = lrs * max((len(spec.seeds_for(m)) for m in spec.models), default=0)
    if spec.early_stopping.enabled and 0 < spec.max_concurrent_trials < widest:
        problems.append(
            ValidationProblem(
                field="max_concurrent_trials",
                message=f"{spec.max_concurrent_trials} with early stopping, whose trials wait for their cell at each "
                f"rung and count as running meanwhile: at least {widest} (the most trials of a cell, LRs x seeds), "
                "or 0",
            )
        )
    if n > spec.max_trials:
        problems.append(
            ValidationProblem(
                field="max_trials", message=f"the grid has {n} trials, more than max_trials={spec.max_trials}"
            )
        )
    elif trial_ceiling is not None and n > trial_ceiling:
        problems.append(
            ValidationProblem(
                field="max_trials",
                message=f"the grid has {n} trials; this service runs at most {trial_ceiling} per sweep",
            )
        )
    if check_data:
        from worker.data import check_layout  # imported late: torch-free callers may skip data checks

        for i, d in enumerate(spec.datasets):
            msg = check_layout(d, spec.data_root)
            if msg:
                problems.append(ValidationProblem(field=f"datasets[{i}]", message=msg))
    return problems


def _problems(e: ValidationError, where: YamlMap | None = None) -> list[ValidationProblem]:
    """Pydantic's errors with the spec's field paths; `where`, the YAML a field came from, adds its file and line."""
    out = []
    for err in e.errors():
        path = field_path(err["loc"]) or "spec"
        top = err["loc"][0] if err["loc"] else None
        at = f"{where.where(top)}: " if where is not None and top in where.key_lines else ""
        out.append(ValidationProblem(field=path, message=at + err["msg"]))
    return out


def _names_a_file(source: str | Path) -> bool:
    """A Path, or a one-line string that ends in .yaml/.yml/.json or names an existing file (else: YAML text)."""
    if isinstance(source, Path):
        return True
    if "\n" in source:
        return False
    try:
        return Path(source).suffix in (".yaml", ".yml", ".json") or Path(source).exists()
    except OSError:  # too long to be a file name
        return False


def load_spec(source: str | Path | dict[str, Any]) -> SweepSpec:
    """A spec from a YAML file, a YAML string or a dict; every problem becomes part of one SweepSpecError."""
    try:
        if isinstance(source, dict):
            data = source
        elif _names_a_file(source):
            data = load_file(source)
        else:
            data = load_text(str(source))
    except (OSError, YamlError) as e:
        raise SweepSpecError([ValidationProblem(field="spec", message=str(e))]) from None
    if not isinstance(data, dict):
        raise SweepSpecError([ValidationProblem(field="spec", message="a sweep spec must be a mapping")])
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as e:
        raise SweepSpecError(_problems(e, data if isinstance(data, YamlMap) else None)) from None


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A catalog preset (configs/sweeps/<name>.yaml), with top-level fields replaced by `overrides`.

    A problem in a field the preset itself gives names the preset's file and line.
    """
    try:
        preset = catalog.get_preset(name)
    except catalog.CatalogError as e:
        raise SweepSpecError([ValidationProblem(field="preset", message=str(e))]) from None
    given = {k: line for k, line in preset.key_lines.items() if k not in (overrides or {})}
    data = YamlMap({**preset, **(overrides or {})}, source=preset.source, line=preset.line, key_lines=given)
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as e:
        raise SweepSpecError(_problems(e, data)) from None
