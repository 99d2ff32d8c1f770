"""The Parquet tables a sweep writes under `<storage>/<sweep_id>/`, as pyarrow schemas.

`trials.parquet`: one row per trial, its config and its result at the best-ID-validation epoch.
`epochs.parquet`: one row per (trial, epoch); when a crashed trial repeats an epoch, the last report wins.
`probe.parquet`: the layer-gradient probe, one row per (model, dataset, layer).
Metric columns are fractions in [0, 1].
"""

from __future__ import annotations

import pyarrow as pa

TRIAL_STATUSES = ("pending", "running", "completed", "diverged", "stopped", "failed", "cancelled")

IDENTITY_FIELDS = [
    pa.field("sweep_id", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("model", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("method", pa.string()),
    pa.field("lr", pa.float64()),
    pa.field("seed", pa.int64()),
]

TRIALS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + [
        pa.field("status", pa.string()),  # one of TRIAL_STATUSES
        pa.field("epochs_planned", pa.int64()),
        pa.field("epochs_done", pa.int64()),
        pa.field("best_epoch", pa.int64()),  # null until an epoch is reported
        pa.field("id_val", pa.float64()),  # at best_epoch
        pa.field("id_test", pa.float64()),  # at best_epoch
        pa.field("ood_test", pa.float64()),  # at best_epoch
        pa.field("final_train_loss", pa.float64()),
        pa.field("wall_time_s", pa.float64()),
        pa.field("optimizer_state_bytes", pa.int64()),
        pa.field("peak_memory_bytes", pa.int64()),
        pa.field("trainable_params", pa.int64()),
        pa.field("frozen_params", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("config_json", pa.string()),  # the full TrialConfig
        pa.field("updated_at", pa.timestamp("ms", tz="UTC")),
    ]
)

EPOCHS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + [
        pa.field("epoch", pa.int64()),
        pa.field("train_loss", pa.float64()),
        pa.field("lr_now", pa.float64()),
        pa.field("id_val", pa.float64()),
        pa.field("id_test", pa.float64()),
        pa.field("ood_test", pa.float64()),
        pa.field("split_metrics_json", pa.string()),
        pa.field("epoch_time_s", pa.float64()),
        pa.field("train_time_s", pa.float64()),
        pa.field("train_images_per_s", pa.float64()),
        pa.field("optimizer_state_bytes", pa.int64()),
        pa.field("peak_memory_bytes", pa.int64()),
        pa.field("is_best", pa.bool_()),
        pa.field("reported_at", pa.timestamp("ms", tz="UTC")),
    ]
)

PROBE_SCHEMA = pa.schema(
    [
        pa.field("sweep_id", pa.string()),
        pa.field("model", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("layer", pa.string()),
        pa.field("kind", pa.string()),  # embed | attn | mlp | block | norm | head | other
        pa.field("depth", pa.int64()),  # position from input (0) to head
        pa.field("num_params", pa.int64()),
        pa.field("grad_norm", pa.float64()),  # mean over minibatches of ||g_layer||_2
        pa.field("param_norm", pa.float64()),
        pa.field("grad_norm_over_param_norm", pa.float64()),
        pa.field("grad_norm_over_sqrt_numel", pa.float64()),
        pa.field("batches", pa.int64()),
    ]
)
