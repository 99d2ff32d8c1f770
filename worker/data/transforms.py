"""The paper's preprocessing per dataset (PROTOCOL.md), scaled from 224 to any input size.

Sizes the paper gives at 224 (a resize to 256 before a 224 crop) keep their ratio: at input size s the resize
is round(s * 256 / 224). Waterbirds is resized to the input size itself and centre-cropped at it, so no part of
the image (whose background decides worst-group accuracy) is cut away. Every pipeline ends with ToTensor and the
model's own mean/std.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

TRANSFORM_KINDS = ("living17", "waterbirds", "domainnet", "fmow", "camelyon")


def resize_before_crop(input_size: int) -> int:
    """The paper's 256-for-224 resize, at another input size."""
    return round(input_size * 256 / 224)


def _geometry(kind: str, s: int, train: bool, flip: bool) -> list[Callable]:
    big = resize_before_crop(s)
    bicubic, bilinear = InterpolationMode.BICUBIC, InterpolationMode.BILINEAR
    flip = [T.RandomHorizontalFlip()] if train and flip else []
    if kind == "living17":
        if train:
            return [T.RandomResizedCrop(s), *flip]
        return [T.Resize(big), T.CenterCrop(s)]
    if kind == "waterbirds":  # the same at train and test, no augmentation; the crop keeps the whole resized image
        return [T.Resize((s, s), interpolation=bicubic), T.CenterCrop(s)]
    if kind == "domainnet":
        if train:
            return [T.Resize((big, big), interpolation=bicubic), T.RandomCrop(s), *flip]
        return [T.Resize((s, s), interpolation=bicubic)]
    if kind == "fmow":  # images are already 224x224; the resize only matters at other input sizes
        return [T.Resize((s, s), interpolation=bilinear), *flip]
    if kind == "camelyon":
        return [T.Resize((s, s), interpolation=bilinear), *flip]
    raise ValueError(f"unknown transform kind {kind!r}; valid kinds: {', '.join(TRANSFORM_KINDS)}")


def build_transforms(
    kind: str,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    train: bool,
    horizontal_flip: bool = True,
) -> Callable:
    """PIL image -> normalised float tensor (3, input_size, input_size) for dataset `kind` (catalog `transforms`);
    `horizontal_flip=False` (catalog `horizontal_flip`) drops the training flip of the kinds that have one."""
    if int(input_size) != input_size or input_size < 1:
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must have 3 values (RGB), got mean={mean!r} std={std!r}")
    if any(v <= 0 for v in std):
        raise ValueError(f"std values must be > 0, got {std!r}")
    steps = _geometry(kind, int(input_size), train, horizontal_flip)
    return T.Compose([*steps, T.ToTensor(), T.Normalize(tuple(mean), tuple(std))])
