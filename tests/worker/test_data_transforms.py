"""The paper's preprocessing at a small input size: output shapes, resize arithmetic, normalisation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from worker.data import build_transforms
from worker.data.transforms import TRANSFORM_KINDS, resize_before_crop

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
@pytest.mark.parametrize("train", [True, False])
def test_every_kind_gives_a_square_normalised_tensor(kind: str, train: bool) -> None:
    img = Image.new("RGB", (50, 37), (128, 64, 200))
    x = build_transforms(kind, 32, MEAN, STD, train=train)(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_normalises_with_the_models_mean_and_std() -> None:
    x = build_transforms("fmow", 8, MEAN, STD, train=False)(Image.new("RGB", (8, 8), (255, 0, 51)))
    expected = torch.tensor([(1.0 - 0.5) / 0.2, (0.0 - 0.4) / 0.25, (0.2 - 0.3) / 0.5])
    assert torch.allclose(x[:, 0, 0], expected, atol=1e-5)


def test_resize_before_crop_keeps_the_papers_ratio() -> None:
    assert resize_before_crop(224) == 256 and resize_before_crop(32) == 37


def _steps(kind: str, train: bool) -> list:
    return build_transforms(kind, 224, MEAN, STD, train=train).transforms[:-2]  # drop ToTensor + Normalize


def test_pipelines_follow_the_protocol() -> None:
    l_test = _steps("living17", False)
    assert [type(s) for s in l_test] == [T.Resize, T.CenterCrop] and l_test[0].size == 256
    assert [type(s) for s in _steps("living17", True)] == [T.RandomResizedCrop, T.RandomHorizontalFlip]
    d_train, d_test = _steps("domainnet", True), _steps("domainnet", False)
    assert [type(s) for s in d_train] == [T.Resize, T.RandomCrop, T.RandomHorizontalFlip]
    assert d_train[0].interpolation == InterpolationMode.BICUBIC and d_train[0].size == (256, 256)
    assert [type(s) for s in d_test] == [T.Resize] and d_test[0].interpolation == InterpolationMode.BICUBIC
    w_train, w_test = _steps("waterbirds", True), _steps("waterbirds", False)
    assert [type(s) for s in w_train] == [type(s) for s in w_test] == [T.Resize, T.CenterCrop]
    assert w_train[0].interpolation == InterpolationMode.BICUBIC
    assert w_train[0].size == w_test[0].size == (224, 224) and w_train[1].size == w_test[1].size == (224, 224)
    c_train = _steps("camelyon", True)
    assert [type(s) for s in c_train] == [T.Resize, T.RandomHorizontalFlip]
    assert c_train[0].interpolation == InterpolationMode.BILINEAR
    assert [type(s) for s in _steps("fmow", True)] == [T.Resize, T.RandomHorizontalFlip]


def test_horizontal_flip_off_drops_only_the_training_flip() -> None:
    """Glyph benchmarks (catalog `horizontal_flip: false`): a mirrored digit is another shape, not the same one."""
    steps = build_transforms("domainnet", 224, MEAN, STD, train=True, horizontal_flip=False).transforms[:-2]
    assert [type(s) for s in steps] == [T.Resize, T.RandomCrop]
    test_steps = build_transforms("domainnet", 224, MEAN, STD, train=False, horizontal_flip=False).transforms[:-2]
    assert [type(s) for s in test_steps] == [type(s) for s in _steps("domainnet", False)]


def test_the_synthetic_digits_train_unflipped_and_the_real_datasets_flipped() -> None:
    from worker import catalog

    assert catalog.get_dataset("synth_style").horizontal_flip is False
    assert all(catalog.get_dataset(d).horizontal_flip for d in ("domainnet", "living17", "fmow", "camelyon"))


@pytest.mark.parametrize("train", [True, False])
def test_waterbirds_keeps_the_whole_image(train: bool) -> None:
    """The background at the image's edges decides worst-group accuracy: a 224 resize then a 224 crop cuts none."""
    img = Image.new("RGB", (300, 200), (0, 0, 255))
    for box in ((0, 0, 6, 200), (294, 0, 300, 200), (0, 0, 300, 6), (0, 194, 300, 200)):  # a 2% red frame
        img.paste((255, 0, 0), box)
    x = build_transforms("waterbirds", 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=train)(img)
    assert x.shape == (3, 224, 224)
    for edge in (x[:, :, 0], x[:, :, -1], x[:, 0, :], x[:, -1, :]):
        assert edge[0].mean() > 0.9 and edge[2].mean() < 0.1  # red on all four sides: nothing was cut away
    assert x[2, 112, 112] > 0.9  # blue inside


def test_test_transforms_are_deterministic() -> None:
    img = Image.effect_noise((40, 30), 60).convert("RGB")
    for kind in TRANSFORM_KINDS:
        tf = build_transforms(kind, 16, MEAN, STD, train=False)
        assert torch.equal(tf(img), tf(img))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown transform kind 'imagenet'.*living17"):
        build_transforms("imagenet", 32, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="input_size"):
        build_transforms("fmow", 0, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="3 values"):
        build_transforms("fmow", 32, (0.5,), STD, train=True)
    with pytest.raises(ValueError, match="std"):
        build_transforms("fmow", 32, MEAN, (0.2, 0.0, 0.1), train=True)
