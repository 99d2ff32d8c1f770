"""Dataset loaders in the benchmarks' real on-disk layouts, the paper's transforms, metrics and layout writers.

bundle = load_dataset("waterbirds", "/data", input_size=224, mean=model.mean, std=model.std)
check_layout("camelyon", "/data")        # None, or what is missing and the layout expected
write_waterbirds(root, items)            # the same layout, from in-memory images (tests, synthetic data)
"""

from worker.data.bundle import DatasetBundle, EvalSplit
from worker.data.errors import DataLayoutError, ImageReadError
from worker.data.load import check_layout, load_dataset
from worker.data.metrics import compute_split_metrics, score_split, split_loss
from worker.data.transforms import build_transforms
from worker.data.write_common import LabeledImage
from worker.data.write_folders import write_domainnet, write_imagenet_living17
from worker.data.write_wilds import write_camelyon, write_fmow, write_waterbirds

__all__ = [
    "DataLayoutError",
    "DatasetBundle",
    "EvalSplit",
    "ImageReadError",
    "LabeledImage",
    "build_transforms",
    "check_layout",
    "compute_split_metrics",
    "load_dataset",
    "score_split",
    "split_loss",
    "write_camelyon",
    "write_domainnet",
    "write_fmow",
    "write_imagenet_living17",
    "write_waterbirds",
]
