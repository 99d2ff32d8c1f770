"""The three synthetic shift benchmarks as arrays, before any file is written.

Each builder takes a seeded generator and split sizes and returns `Part`s: a block of images that share one
split (and, for DomainNet, one domain). `worker.synthetic.generate` turns them into the real on-disk layouts.

- spurious (Waterbirds): two digit sets are the "bird types"; the background "place" (land: green-brown
  mottled, water: blue waves) agrees with the label in `SPURIOUS_AGREEMENT` of the training images, and in half
  of each class at val/test, so all four (label, place) groups are there and worst-group accuracy means
  something.
- style (DomainNet): digits 0-9. ID "sketch": dark outlines on paper; OOD "real": filled or textured glyphs on
  coloured textured backgrounds, at a lower contrast (`REAL_CONTRAST`) than the sketches' ink on paper, so that
  the shift costs every backbone some accuracy rather than handing it the filled shapes it was pretrained on.
- stain (Camelyon17): "tumour" patches have few large irregular darker nuclei, "normal" ones many small round
  paler nuclei (about the same stained area, so size, shape and stain uptake are the cues; their uptakes do not
  overlap, so a backbone whose first layers stay frozen still sees the class). Centers 0, 3, 4 share one stain
  and sharp focus; centers 1 (OOD val) and 2 (OOD test) have swapped tints and blur.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from worker.synthetic import textures as tx
from worker.synthetic.glyphs import DIGITS, Placement, build_atlas, place

SIZE = 32
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPURIOUS_AGREEMENT = 0.9
SPURIOUS_CLASSES = ("147", "069")  # landbird-like, waterbird-like digit sets
SPURIOUS_CONTRAST = (0.25, 0.45)  # luminance offset of the glyph from its background's mean colour
DIGIT_PLACEMENT = Placement(scale=(0.9, 1.2), rotation=10.0, shift=0.1)
SPURIOUS_PLACEMENT = Placement(scale=(0.8, 1.1), rotation=15.0, shift=0.12)


@dataclass(frozen=True)
class Part:
    """Images (N, 32, 32, 3) uint8 of one split, with labels and groups (N,) and metadata shared by all."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    meta: dict[str, str] = field(default_factory=dict)


# --- spurious --------------------------------------------------------------------------------------------

LAND = np.array([[0.32, 0.50, 0.20], [0.48, 0.38, 0.22], [0.38, 0.56, 0.32]], dtype=np.float32)
WATER = np.array([[0.16, 0.36, 0.72], [0.30, 0.55, 0.86], [0.10, 0.46, 0.62]], dtype=np.float32)


def _places(rng: np.random.Generator, place_ids: np.ndarray) -> np.ndarray:
    n = len(place_ids)
    land = tx.fill(tx.smooth_noise(rng, n, SIZE, cells=4), tx.jitter(rng, LAND, n, 0.08), tx.jitter(rng, LAND, n, 0.08))
    waves = tx.stripes(rng, n, SIZE, period=(4.0, 8.0), angle=20.0)
    water = tx.fill(waves, tx.jitter(rng, WATER, n, 0.08), tx.jitter(rng, WATER, n, 0.08))
    return np.where((place_ids == 1)[:, None, None, None], water, land)


def _spurious_part(rng: np.random.Generator, split: str, labels: np.ndarray, places: np.ndarray) -> Part:
    atlas = build_atlas(DIGITS)
    n = len(labels)
    sets = [np.array([DIGITS.index(c) for c in s]) for s in SPURIOUS_CLASSES]
    chars = np.array([rng.choice(sets[y]) for y in labels])
    mask = place(atlas, chars, rng, placement=SPURIOUS_PLACEMENT, size=SIZE)
    background = _places(rng, places)
    # A faint bird: the background's own mean colour, a little lighter or darker, so that the place is the
    # easier cue and a model can lean on it.
    delta = rng.uniform(*SPURIOUS_CONTRAST, size=(n, 1)) * rng.choice([-1.0, 1.0], size=(n, 1))
    fg = np.clip(background.mean(axis=(1, 2)) + delta, 0, 1).astype(np.float32)
    img = tx.composite(background, tx.fill(np.zeros_like(mask), fg, fg), mask)
    return Part(split, tx.to_uint8(img, rng, noise=0.02), labels.astype(np.int64), places.astype(np.int64))


def build_spurious(rng: np.random.Generator, n_train: int, n_eval: int) -> list[Part]:
    """Train with label-place agreement `SPURIOUS_AGREEMENT`; val and test balanced over the four groups."""
    y = rng.permutation(np.arange(n_train) % 2)
    agree = rng.random(n_train) < SPURIOUS_AGREEMENT
    parts = [_spurious_part(rng, "train", y, np.where(agree, y, 1 - y))]
    for split in ("val", "test"):
        g = rng.permutation(np.arange(n_eval) % 4)  # group = 2 * label + place
        parts.append(_spurious_part(rng, split, g // 2, g % 2))
    return parts


# --- style -----------------------------------------------------------------------------------------------

PAPER = np.array([[0.94, 0.92, 0.87], [0.97, 0.97, 0.95], [0.92, 0.90, 0.82]], dtype=np.float32)
INK = np.array([[0.10, 0.10, 0.10], [0.12, 0.14, 0.38], [0.28, 0.28, 0.28]], dtype=np.float32)
REAL_CONTRAST = ((0.15, 0.45), (0.55, 0.85))  # the dark and the light side of a "real" glyph and its background
PENCIL_PRESSURE = (0.85, 1.0)  # a sketch stroke's ink, varying smoothly along it


def _sketch(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    n = len(labels)
    mask = place(build_atlas(DIGITS), labels, rng, outline=True, placement=DIGIT_PLACEMENT, size=SIZE)
    low, high = PENCIL_PRESSURE
    mask = mask * (low + (high - low) * tx.smooth_noise(rng, n, SIZE, cells=6))  # uneven pencil pressure
    paper = tx.jitter(rng, PAPER, n, 0.03)
    grain = tx.fill(tx.smooth_noise(rng, n, SIZE, cells=8), paper, np.clip(paper - 0.06, 0, 1))
    ink = tx.jitter(rng, INK, n, 0.06)
    return tx.composite(grain, tx.fill(np.zeros_like(mask), ink, ink), mask)


def _real(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    n = len(labels)
    mask = place(build_atlas(DIGITS), labels, rng, outline=False, placement=DIGIT_PLACEMENT, size=SIZE)
    dark_fg = rng.random(n) < 0.5
    (dark, light) = REAL_CONTRAST
    lo, hi = tx.colours(rng, n, *dark), tx.colours(rng, n, *light)
    fg_a, bg_a = np.where(dark_fg[:, None], lo, hi), np.where(dark_fg[:, None], hi, lo)
    fg_b = np.clip(fg_a + rng.uniform(-0.25, 0.25, size=(n, 3)), 0, 1).astype(np.float32)
    bg_b = np.clip(bg_a + rng.uniform(-0.35, 0.35, size=(n, 3)), 0, 1).astype(np.float32)
    fg_field = tx.random_pattern(rng, n, SIZE) * (rng.random(n) < 0.5)[:, None, None]
    return tx.composite(tx.fill(tx.random_pattern(rng, n, SIZE), bg_a, bg_b), tx.fill(fg_field, fg_a, fg_b), mask)


def build_style(rng: np.random.Generator, n_train: int, n_eval: int) -> list[Part]:
    """Sketch train and test (ID), real test (OOD); 10 balanced digit classes."""
    parts = []
    for domain, split, n, draw in (
        ("sketch", "train", n_train, _sketch),
        ("sketch", "test", n_eval, _sketch),
        ("real", "test", n_eval, _real),
    ):
        y = rng.permutation(np.arange(n) % 10)
        img = tx.to_uint8(draw(rng, y), rng, noise=0.015)
        parts.append(Part(split, img, y.astype(np.int64), np.zeros(n, dtype=np.int64), {"domain": domain}))
    return parts


# --- stain -----------------------------------------------------------------------------------------------

# Hematoxylin (nuclei) and eosin (tissue) colours of each center's stain; centers 1 and 2 are the OOD ones.
STAINS = {
    0: ((0.36, 0.16, 0.50), (0.94, 0.64, 0.80)),
    3: ((0.40, 0.18, 0.54), (0.92, 0.60, 0.76)),
    4: ((0.34, 0.20, 0.48), (0.95, 0.68, 0.82)),
    1: ((0.48, 0.20, 0.36), (0.90, 0.70, 0.88)),
    2: ((0.46, 0.22, 0.38), (0.88, 0.72, 0.90)),
}
NORMAL_RADIUS, TUMOUR_RADIUS = (1.0, 1.7), (1.9, 2.8)  # pixels; image-level mean nucleus semi-axis
NORMAL_ELONGATION, TUMOUR_ELONGATION = 1.2, 2.0  # largest aspect ratio of a nucleus
STAINED_AREA = (0.08, 0.2)  # fraction of the patch covered by nuclei, same for both classes
NORMAL_INK, TUMOUR_INK = (0.5, 0.75), (0.85, 1.0)  # stain uptake of a nucleus: tumour nuclei are darker
BLUR = {0: (0.0, 0.3), 3: (0.0, 0.3), 4: (0.0, 0.3), 1: (0.7, 1.1), 2: (0.7, 1.1)}  # Gaussian sigma, pixels


def _tissue(rng: np.random.Generator, labels: np.ndarray, center: int) -> np.ndarray:
    n = len(labels)
    tumour = labels == 1
    # Nucleus size, shape and darkness are the cues (size ranges nearly touch, darkness overlaps), and the
    # stained area is drawn independently of the class so that "how much purple" does not give it away.
    lo = np.where(tumour, TUMOUR_RADIUS[0], NORMAL_RADIUS[0])
    hi = np.where(tumour, TUMOUR_RADIUS[1], NORMAL_RADIUS[1])
    radii = rng.uniform(lo, hi)
    elong = np.where(tumour, TUMOUR_ELONGATION, NORMAL_ELONGATION)
    area = rng.uniform(*STAINED_AREA, size=n) * SIZE * SIZE
    counts = np.maximum(1, np.rint(area / (np.pi * radii**2))).astype(np.int64)  # an ellipse keeps pi r^2
    ink = rng.uniform(np.where(tumour, TUMOUR_INK[0], NORMAL_INK[0]), np.where(tumour, TUMOUR_INK[1], NORMAL_INK[1]))
    nuclei = tx.blobs(rng, SIZE, counts, radii, elongation=elong) * ink[:, None, None]
    h, e = STAINS[center]
    h_col, e_col = tx.jitter(rng, np.array(h), n, 0.05), tx.jitter(rng, np.array(e), n, 0.04)
    tissue = tx.fill(0.25 * tx.smooth_noise(rng, n, SIZE, cells=5), e_col, np.clip(e_col - 0.2, 0, 1))
    img = tx.composite(tissue, tx.fill(np.zeros_like(nuclei), h_col, h_col), nuclei)
    return tx.blur(img, rng.uniform(*BLUR[center], size=n))


def build_stain(rng: np.random.Generator, n_train: int, n_eval: int) -> list[Part]:
    """ID centers 0, 3, 4 split into train and id_val; center 1 (OOD val) and 2 (OOD test) with n_eval each."""
    parts = []
    for center in (0, 3, 4):
        for split, n in (("train", n_train // 3 + (center == 0) * (n_train % 3)), ("id_val", n_eval // 3)):
            y = rng.permutation(np.arange(n) % 2)
            img = tx.to_uint8(_tissue(rng, y, center), rng, noise=0.02)
            parts.append(Part(split, img, y.astype(np.int64), np.full(n, center, dtype=np.int64)))
    for center, split in ((1, "ood_val"), (2, "ood_test")):
        y = rng.permutation(np.arange(n_eval) % 2)
        img = tx.to_uint8(_tissue(rng, y, center), rng, noise=0.02)
        parts.append(Part(split, img, y.astype(np.int64), np.full(n_eval, center, dtype=np.int64)))
    return parts


Builder = Callable[[np.random.Generator, int, int], list[Part]]
BUILDERS: dict[str, Builder] = {"spurious": build_spurious, "style": build_style, "stain": build_stain}
DEFAULT_SIZES: dict[str, tuple[int, int]] = {"spurious": (560, 240), "style": (500, 250), "stain": (540, 240)}
