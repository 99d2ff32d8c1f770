"""The process-wide cache of small decoded images: a trial started again in the same worker reads nothing twice,
a file written again is read again, and the cache never holds more than its budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from tests.worker import data_fakes as fk
from worker.data import ImageReadError, images, load_dataset


def _png(path: Path, colour: tuple[int, int, int], size: int = 8) -> str:
    Image.new("RGB", (size, size), colour).save(path)
    return str(path)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file decoded from disk, in order."""
    seen: list[str] = []
    real = images.read_rgb
    monkeypatch.setattr(images, "read_rgb", lambda p: seen.append(p) or real(p))
    return seen


def test_a_second_dataset_over_the_same_files_reads_nothing(tmp_path: Path, reads: list[str]) -> None:
    fk.write_fake_domainnet(tmp_path / "domainnet")

    def id_test():
        return load_dataset("domainnet", tmp_path, input_size=16, mean=fk.MEAN, std=fk.STD).eval_splits["id_test"]

    first = id_test().dataset
    _ = [first[i] for i in range(len(first))]
    assert len(reads) == len(first)
    reads.clear()
    again = id_test().dataset  # a new trial of the same data in this process: a resume, the cell's next LR
    _ = [again[i] for i in range(len(again))]
    assert reads == []


def test_a_file_written_again_is_read_again(tmp_path: Path, reads: list[str]) -> None:
    cache = images.DecodedImageCache()
    path = _png(tmp_path / "a.png", (255, 0, 0))
    assert cache.get(path).getpixel((0, 0)) == (255, 0, 0)
    _png(tmp_path / "a.png", (0, 0, 255))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new stamp even where the clock is coarse
    assert cache.get(path).getpixel((0, 0)) == (0, 0, 255)
    assert reads == [path, path]
    assert len(cache) == 1 and cache.bytes == 3 * 8 * 8


def test_a_dataset_looks_at_a_cached_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [_png(tmp_path / f"{i}.png", (i, i, i)) for i in range(3)]
    big = _png(tmp_path / "big.png", (7, 7, 7), size=80)  # above the cache's size: read, and looked at, every time
    table = images.ImageTable.build([*paths, big], [0, 1, 0, 1])
    stamps: list[str] = []
    real = images._stamp
    monkeypatch.setattr(images, "_stamp", lambda p: stamps.append(p) or real(p))
    ds = images.ImageDataset(table, lambda im: im, with_group=False)
    for _ in range(3):
        _ = [ds[i] for i in range(4)]
    assert sorted(stamps) == sorted([*paths, big, big, big])  # a small file once; every later epoch from memory


def test_least_recently_used_images_leave_first_within_the_budget(tmp_path: Path, reads: list[str]) -> None:
    cache = images.DecodedImageCache(budget_bytes=2 * 3 * 8 * 8)  # room for two 8x8 images
    a, b, c = (_png(tmp_path / f"{n}.png", (1, 2, 3)) for n in "abc")
    cache.get(a), cache.get(b), cache.get(a)  # b is now the least recently used
    cache.get(c)
    assert len(cache) == 2 and cache.bytes <= cache.budget_bytes
    reads.clear()
    cache.get(a), cache.get(c)
    assert reads == []
    cache.get(b)
    assert reads == [b]


def test_big_images_are_never_kept(tmp_path: Path, reads: list[str]) -> None:
    cache = images.DecodedImageCache(max_pixels=16 * 16)
    big = _png(tmp_path / "big.png", (9, 9, 9), size=32)
    cache.get(big), cache.get(big)
    assert reads == [big, big] and len(cache) == 0 and cache.bytes == 0


def test_a_missing_file_still_names_itself(tmp_path: Path) -> None:
    cache = images.DecodedImageCache()
    gone = str(tmp_path / "gone.png")
    with pytest.raises(ImageReadError, match="gone.png"):
        cache.get(gone)
    assert len(cache) == 0
