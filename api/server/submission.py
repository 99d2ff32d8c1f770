"""From a request body to a validated sweep spec ready to run on the cluster.

A body is a full spec or `{"preset": name, "overrides": {...}}`. Relative data and weights locations are made
absolute against the service's base directory, because the job's driver runs in a directory of Ray's choosing.
Results always go to the service's storage, so a spec may not name its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.server.errors import Invalid
from api.server.schemas import PresetSubmission
from orchestrator import (
    NodeCapacity,
    SweepSpec,
    SweepSpecError,
    ValidationProblem,
    field_path,
    is_uri,
    load_preset,
    load_spec,
    resource_problems,
    validate_spec,
)


def request_hash(body: Any) -> str:
    """A fingerprint of a submission, to tell a retry from a different request under one Idempotency-Key."""
    blob = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_body(body: Any) -> SweepSpec:
    """The spec a submission asks for; Invalid (422) names every problem."""
    if not isinstance(body, dict):
        raise Invalid.one("body", "expected a JSON object: a sweep spec, or {'preset': name, 'overrides': {...}}")
    try:
        if "preset" in body:
            try:
                sub = PresetSubmission.model_validate(body)
            except ValidationError as e:
                raise Invalid(
                    {"field": field_path(err["loc"]) or "body", "message": err["msg"]} for err in e.errors()
                ) from None
            return load_preset(sub.preset, sub.overrides)
        return load_spec(body)
    except SweepSpecError as e:
        raise Invalid(e.problems) from None


def _absolute(path: str | None, base: Path) -> str | None:
    if path is None or is_uri(path) or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def prepare(spec: SweepSpec, *, base_dir: Path) -> SweepSpec:
    """The spec as the driver will run it: locations absolute; Invalid if it names its own storage."""
    if spec.storage is not None:
        raise Invalid.one("storage", "results go to the service's storage; leave storage out of a submitted spec")
    return spec.model_copy(
        update={
            "data_root": _absolute(spec.data_root, base_dir),
            "weights_root": _absolute(spec.weights_root, base_dir),
        }
    )


def check(spec: SweepSpec, *, trial_ceiling: int, check_data: bool) -> None:
    """Invalid (422) with every problem validate_spec finds, given the service's ceiling."""
    try:
        problems: list[ValidationProblem] = validate_spec(spec, trial_ceiling=trial_ceiling, check_data=check_data)
    except (OSError, ValueError) as e:  # a data_root the file system cannot look at (NUL byte, name too long)
        raise Invalid.one("data_root", f"cannot check the datasets under {spec.data_root!r}: {e}") from None
    if problems:
        raise Invalid(problems)


def check_fits(spec: SweepSpec, nodes: list[NodeCapacity] | None) -> None:
    """Invalid (422) when no node of the cluster can hold one of the spec's trials; None: nodes unknown."""
    problems = [] if nodes is None else resource_problems(spec.resources, nodes)
    if problems:
        raise Invalid(problems)
