"""Glyph masks rendered from the DejaVu fonts that ship inside matplotlib, so nothing is downloaded.

Each (font, character) is drawn once, filled and as an outline, into a high-resolution atlas; samples are then
placed with a random scale, rotation and shift in one batched `grid_sample`, which is far faster than drawing
every image with Pillow and gives anti-aliased 32x32 masks after a 2x average pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

ATLAS_RES = 64  # atlas canvas side in pixels; placed masks are rendered at 2x the output size, then pooled
FONT_PX = 44  # font size in the atlas; glyphs keep their relative sizes (lowercase stays smaller)
OUTLINE_PX = 3  # stroke width of the outline ("sketch") rendering, in atlas pixels

# Digits are the downstream classes; the pretraining characters must never include them.
DIGITS = "0123456789"


def font_dir() -> Path:
    """The TrueType folder inside matplotlib's data directory."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=1)
def font_paths() -> tuple[Path, ...]:
    """The DejaVu text faces (Sans, Serif, Mono; regular, bold, italic): 12 files, sorted for reproducibility."""
    paths = tuple(sorted(p for p in font_dir().glob("DejaVu*.ttf") if "Display" not in p.name))
    if not paths:
        raise FileNotFoundError(f"no DejaVu fonts under {font_dir()}; matplotlib's font data is missing")
    return paths


@dataclass(frozen=True)
class GlyphAtlas:
    """Pre-rendered glyph masks: `masks[font, char, style]` with style 0 = filled, 1 = outline; values 0..1."""

    chars: str
    fonts: tuple[str, ...]
    masks: np.ndarray  # float32 (n_fonts, n_chars, 2, ATLAS_RES, ATLAS_RES)


def _draw(font: ImageFont.FreeTypeFont, char: str, outline: bool) -> np.ndarray:
    left, top, right, bottom = font.getbbox(char, stroke_width=OUTLINE_PX if outline else 0)
    if right <= left or bottom <= top:
        raise ValueError(f"font {font.path!r} has no visible glyph for {char!r}")
    img = Image.new("L", (ATLAS_RES, ATLAS_RES), 0)
    xy = ((ATLAS_RES - (right - left)) / 2 - left, (ATLAS_RES - (bottom - top)) / 2 - top)
    draw = ImageDraw.Draw(img)
    if outline:
        draw.text(xy, char, font=font, fill=0, stroke_width=OUTLINE_PX, stroke_fill=255)
    else:
        draw.text(xy, char, font=font, fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


@lru_cache(maxsize=8)
def build_atlas(chars: str) -> GlyphAtlas:
    """Render every character of `chars` in every font, filled and outlined (cached per character set)."""
    if not chars or len(set(chars)) != len(chars):
        raise ValueError(f"chars must be non-empty and without repeats, got {chars!r}")
    paths = font_paths()
    masks = np.zeros((len(paths), len(chars), 2, ATLAS_RES, ATLAS_RES), dtype=np.float32)
    for i, path in enumerate(paths):
        font = ImageFont.truetype(str(path), FONT_PX)
        for j, ch in enumerate(chars):
            masks[i, j, 0] = _draw(font, ch, outline=False)
            masks[i, j, 1] = _draw(font, ch, outline=True)
    return GlyphAtlas(chars=chars, fonts=tuple(p.stem for p in paths), masks=masks)


@dataclass(frozen=True)
class Placement:
    """Ranges of the random placement: `scale` is the zoom of the atlas glyph (1 = it fills about 70% of the
    image side), `rotation` in degrees, `shift` the largest centre offset as a fraction of the image side."""

    scale: tuple[float, float] = (0.75, 1.1)
    rotation: float = 15.0
    shift: float = 0.12


def place(
    atlas: GlyphAtlas,
    char_idx: np.ndarray,
    rng: np.random.Generator,
    *,
    outline: np.ndarray | bool = False,
    placement: Placement = Placement(),
    amount: np.ndarray | float = 1.0,
    size: int = 32,
) -> np.ndarray:
    """Masks (N, size, size) float32 in 0..1 of the given characters, each in a random font and pose.

    `amount` (per image, 0..1) scales the pose's spread: 0 is centred, upright and at scale 1."""
    char_idx = np.asarray(char_idx, dtype=np.int64)
    n = len(char_idx)
    style = np.broadcast_to(np.asarray(outline, dtype=np.int64), (n,))
    amt = np.broadcast_to(np.asarray(amount, dtype=np.float64), (n,))
    font_idx = rng.integers(0, len(atlas.fonts), size=n)
    zoom = 1.0 + amt * (rng.uniform(*placement.scale, size=n) - 1.0)
    angle = amt * np.deg2rad(rng.uniform(-placement.rotation, placement.rotation, size=n))
    shift = amt[:, None] * rng.uniform(-placement.shift, placement.shift, size=(n, 2)) * 2.0  # coords span 2
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    # input = R (out - shift) / zoom
    theta[:, 0, 2] = -(cos * shift[:, 0] - sin * shift[:, 1])
    theta[:, 1, 2] = -(sin * shift[:, 0] + cos * shift[:, 1])
    src = torch.from_numpy(atlas.masks[font_idx, char_idx, style][:, None])
    out = np.empty((n, size, size), dtype=np.float32)
    for lo in range(0, n, 4096):  # bounded memory for large source sets
        sl = slice(lo, lo + 4096)
        grid = F.affine_grid(torch.from_numpy(theta[sl]), [len(src[sl]), 1, 2 * size, 2 * size], align_corners=False)
        big = F.grid_sample(src[sl], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[sl] = F.avg_pool2d(big, 2)[:, 0].numpy()
    return out
