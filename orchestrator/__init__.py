"""The sweep runner: a spec in, trials run on Ray Tune, Parquet results out.

    python -m orchestrator.run --spec SPEC.yaml --sweep-id ID --storage DIR     # the Ray Job one sweep runs as

Named here is what the service and the analysis use: the spec and its presets, where results live and how they
read. None of it imports Ray; the driver (`orchestrator.driver.run_sweep`), the Tune adapter (`tune_runner`) and
the early-stopping scheduler (`cell_scheduler`) do, and run inside the job.
"""

from orchestrator.driver_state import DRIVER_FILE, mark_driver_lost, read_driver_state
from orchestrator.results import (
    EPOCHS_FILE,
    PROBE_FILE,
    TRIALS_FILE,
    ResultsStore,
    mark_interrupted,
    probe_table,
    read_epochs,
    read_probe,
    read_trials,
    write_probe,
)
from orchestrator.schema import EPOCHS_SCHEMA, PROBE_SCHEMA, TRIALS_SCHEMA
from orchestrator.spec import (
    NodeCapacity,
    SweepSpec,
    SweepSpecError,
    ValidationProblem,
    field_path,
    load_preset,
    load_spec,
    resource_problems,
    validate_spec,
)
from orchestrator.storage import Location, is_uri

__all__ = [
    "NodeCapacity",
    "DRIVER_FILE",
    "EPOCHS_FILE",
    "EPOCHS_SCHEMA",
    "PROBE_FILE",
    "PROBE_SCHEMA",
    "TRIALS_FILE",
    "TRIALS_SCHEMA",
    "Location",
    "ResultsStore",
    "SweepSpec",
    "SweepSpecError",
    "ValidationProblem",
    "field_path",
    "is_uri",
    "load_preset",
    "load_spec",
    "mark_driver_lost",
    "mark_interrupted",
    "probe_table",
    "read_driver_state",
    "read_epochs",
    "read_probe",
    "read_trials",
    "resource_problems",
    "validate_spec",
    "write_probe",
]
