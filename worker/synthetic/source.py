"""The pretraining source task: 90 classes of rendered characters (letters, Greek letters, symbols; no digits).

Digits are held out because the downstream benchmarks are built on them. Images vary in font, colour, fill
or outline, textured foreground and background, and position, size and rotation, so that a backbone trained
here learns general stroke and shape features rather than one rendering style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.synthetic import textures as tx
from worker.synthetic.glyphs import Placement, build_atlas, place

# Lowercase letters that look like their capitals at 32x32 (c, o, s, v, w, x, z) and l (like I) are left out.
# fmt: off
SOURCE_CHARS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "abdefghijkmnpqrtuy"
    "αβγδεζηθλμξπσφψω"
    "ΓΔΘΛΞΠΣΦΨΩ"
    "#$%&@?!+=<>*{}[]~^§¶"
)
# fmt: on

SOURCE_PLACEMENT = Placement(scale=(0.8, 1.2), rotation=20.0, shift=0.12)


@dataclass(frozen=True)
class SourceTask:
    """Images (N, 32, 32, 3) uint8, labels (N,) int64 indexing `chars`, and each image's difficulty in 0..1."""

    images: np.ndarray
    labels: np.ndarray
    difficulty: np.ndarray
    chars: str = SOURCE_CHARS

    @property
    def num_classes(self) -> int:
        return len(self.chars)


def render_source(n: int, seed: int, *, stream: int = 0, size: int = 32) -> SourceTask:
    """`n` class-balanced (up to remainder) source images from one seeded generator; different `stream`s of
    one seed are independent sets (train, val).

    Each image has a difficulty d, uniform in 0..1, that scales its nuisances: the spread of position, size and
    rotation, and the chances of an outline glyph, a light-on-dark rendering and textured foreground and
    background. d = 0 is a filled, centred, upright dark glyph on a plain light colour. Training can then start
    from easy images (a curriculum): without one a tiny ViT stays near chance for its first thousand steps,
    having to learn translation invariance and the glyphs at once.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng([seed, stream])
    atlas = build_atlas(SOURCE_CHARS)
    k = len(SOURCE_CHARS)
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    d = rng.random(n)
    outline = rng.random(n) < 0.5 * d
    mask = place(atlas, labels, rng, outline=outline, placement=SOURCE_PLACEMENT, amount=d, size=size)

    # Contrast by luminance: dark-on-light, or (harder) light-on-dark; hues are free.
    dark_fg = rng.random(n) >= 0.6 * d
    fg_a = np.where(dark_fg[:, None], tx.colours(rng, n, 0.0, 0.45), tx.colours(rng, n, 0.55, 1.0))
    fg_b = np.clip(fg_a + rng.uniform(-0.2, 0.2, size=(n, 3)), 0, 1).astype(np.float32)
    bg_a = np.where(dark_fg[:, None], tx.colours(rng, n, 0.55, 1.0), tx.colours(rng, n, 0.0, 0.45))
    bg_b = np.where(dark_fg[:, None], tx.colours(rng, n, 0.55, 1.0), tx.colours(rng, n, 0.0, 0.45))
    bg_field = tx.random_pattern(rng, n, size) * (rng.random(n) < d)[:, None, None]
    fg_field = tx.smooth_noise(rng, n, size, cells=3) * (rng.random(n) < 0.6 * d)[:, None, None]
    img = tx.composite(tx.fill(bg_field, bg_a, bg_b), tx.fill(fg_field, fg_a, fg_b), mask)
    return SourceTask(images=tx.to_uint8(img, rng, noise=0.02), labels=labels, difficulty=d.astype(np.float32))
