"""Model registry: the catalog's pretrained backbones (configs/models.yaml) as classifiers with a new head.

Each family (clip_vit, vit, convnext, resnetv2) declares once which parameters are its embedding layer, patch
conv and head; freeze-embed, the embedding LR multiplier, gradual unfreezing and the layer-gradient probe all
derive from that declaration. Weights come only from local files or a filled offline hub cache.
"""

from worker.models.builders import ClipClassifier
from worker.models.built import BuiltModel, ProbeLayer
from worker.models.factory import create_model
from worker.models.families import list_families
from worker.models.weights import (
    WEIGHTS_ENV,
    WeightsMismatchError,
    WeightsNotFoundError,
    resolve_weights_path,
    save_backbone_weights,
    tensors_sha256,
)

__all__ = [
    "WEIGHTS_ENV",
    "BuiltModel",
    "ClipClassifier",
    "ProbeLayer",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "create_model",
    "list_families",
    "resolve_weights_path",
    "save_backbone_weights",
    "tensors_sha256",
]
