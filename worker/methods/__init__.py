"""Fine-tuning methods: phases, freezing, optimizers, LR schedules and gradual unfreezing.

Everything is built from a catalog `MethodEntry` (configs/methods.yaml) and a model's own declarations of
its embedding, patch conv, head and unfreezing groups.
"""

from worker.methods.optimizers import build_optimizer, optimizer_state_bytes
from worker.methods.phases import (
    PHASE_FINETUNE,
    TRAINABLE_SETS,
    Phase,
    apply_trainable,
    frozen_param_count,
    plan_phases,
    trainable_names,
    trainable_param_count,
)
from worker.methods.schedules import Scheduler, build_scheduler, cosine_factor, gradual_unfreeze_factor
from worker.methods.spd import AdamSPD
from worker.methods.unfreeze import GradualUnfreezer, ever_trainable_names

__all__ = [
    "PHASE_FINETUNE",
    "TRAINABLE_SETS",
    "AdamSPD",
    "GradualUnfreezer",
    "Phase",
    "Scheduler",
    "apply_trainable",
    "build_optimizer",
    "build_scheduler",
    "cosine_factor",
    "ever_trainable_names",
    "frozen_param_count",
    "gradual_unfreeze_factor",
    "optimizer_state_bytes",
    "plan_phases",
    "trainable_names",
    "trainable_param_count",
]
