"""Batched image pieces: smooth noise, stripes, checkers, blobs, colour fills, blur and compositing.

Everything works on float32 arrays in 0..1, batch first: fields are (N, H, W), images (N, H, W, 3), so that a
whole split is drawn in a few numpy operations from one seeded generator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in 0..1: a random `cells` x `cells` grid upsampled bicubically to `size`."""
    coarse = torch.from_numpy(rng.random((n, 1, cells + 1, cells + 1), dtype=np.float32))
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[:, 0].numpy()
    lo, hi = fine.min(axis=(1, 2), keepdims=True), fine.max(axis=(1, 2), keepdims=True)
    return (fine - lo) / np.maximum(hi - lo, 1e-6)


def stripes(
    rng: np.random.Generator, n: int, size: int, period: tuple[float, float], angle: float = 180.0
) -> np.ndarray:
    """Sinusoidal stripes in 0..1 with a random period (pixels), phase and orientation within +-`angle` deg."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    per = rng.uniform(*period, size=(n, 1, 1)).astype(np.float32)
    phi = np.deg2rad(rng.uniform(-angle, angle, size=(n, 1, 1))).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.sin(phi) + yy * np.cos(phi)) / per + phase)


def checker(rng: np.random.Generator, n: int, size: int, period: tuple[int, int]) -> np.ndarray:
    """Checkerboards (0/1) with a random cell size and offset."""
    yy, xx = np.mgrid[0:size, 0:size]
    cell = rng.integers(period[0], period[1] + 1, size=(n, 1, 1))
    off = rng.integers(0, period[1], size=(n, 2, 1, 1))
    return (((xx + off[:, 0]) // cell + (yy + off[:, 1]) // cell) % 2).astype(np.float32)


def random_pattern(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """A mix of the pattern kinds above, one kind per image, each in 0..1."""
    kinds = rng.integers(0, 3, size=n)
    out = smooth_noise(rng, n, size, cells=4)
    out = np.where((kinds == 1)[:, None, None], stripes(rng, n, size, period=(3.0, 9.0)), out)
    out = np.where((kinds == 2)[:, None, None], checker(rng, n, size, period=(2, 6)), out)
    return out


def blobs(
    rng: np.random.Generator,
    size: int,
    counts: np.ndarray,
    radii: np.ndarray,
    *,
    radius_jitter: float = 0.2,
    elongation: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Soft-edged ellipses (0..1) at random places: `counts[i]` in image i, of mean semi-axis `radii[i]` pixels,
    each blob's size scattered by +-`radius_jitter` (relative) and its aspect ratio drawn from 1..`elongation`."""
    counts = np.asarray(counts, dtype=np.int64)
    n, kmax = len(counts), max(int(counts.max(initial=0)), 1)
    f32 = np.float32
    cy, cx = rng.uniform(-2, size + 1, size=(2, n, kmax, 1, 1)).astype(f32)
    jit = rng.uniform(1 - radius_jitter, 1 + radius_jitter, size=(n, kmax, 1, 1))
    r = (np.asarray(radii, dtype=np.float64)[:, None, None, None] * jit).astype(f32)
    e_max = np.broadcast_to(np.asarray(elongation, dtype=np.float64), (n,))[:, None, None, None]
    e = (1.0 + (e_max - 1.0) * rng.random(size=(n, kmax, 1, 1))).astype(f32)
    ang = rng.uniform(0, np.pi, size=(n, kmax, 1, 1))
    cos, sin = np.cos(ang).astype(f32), np.sin(ang).astype(f32)
    yy, xx = np.mgrid[0:size, 0:size].astype(f32)
    out = np.empty((n, size, size), dtype=f32)
    order = np.argsort(counts, kind="stable")  # chunks of similar counts only compute the blobs they have
    for lo in range(0, n, 64):
        idx = order[lo : lo + 64]
        k = max(int(counts[idx].max()), 1)
        dx, dy = xx - cx[idx, :k], yy - cy[idx, :k]
        c, s = cos[idx, :k], sin[idx, :k]
        u = (dx * c + dy * s) / e[idx, :k]
        v = (dy * c - dx * s) * e[idx, :k]
        cover = np.clip(r[idx, :k] + 0.5 - np.sqrt(u * u + v * v), 0.0, 1.0)  # 1 inside, soft 1-pixel edge
        cover *= (np.arange(k)[None, :] < counts[idx, None])[:, :, None, None]
        out[idx] = cover.max(axis=1)
    return out


def colours(rng: np.random.Generator, n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Uniform random RGB colours (n, 3) with every channel in lo..hi."""
    return rng.uniform(lo, hi, size=(n, 3)).astype(np.float32)


def jitter(rng: np.random.Generator, base: np.ndarray, n: int, amount: float) -> np.ndarray:
    """`n` colours scattered uniformly within +-`amount` of one or several (drawn at random) base colours."""
    base = np.atleast_2d(np.asarray(base, dtype=np.float32))
    pick = base[rng.integers(0, len(base), size=n)]
    return np.clip(pick + rng.uniform(-amount, amount, size=(n, 3)), 0.0, 1.0).astype(np.float32)


def fill(field: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Images (N, H, W, 3) blending per-image colours a -> b by a (N, H, W) field in 0..1."""
    return a[:, None, None, :] + (b - a)[:, None, None, :] * field[..., None]


def composite(background: np.ndarray, foreground: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Foreground over background where the (N, H, W) mask is 1."""
    m = mask[..., None]
    return background * (1.0 - m) + foreground * m


def blur(images: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    """Gaussian blur of (N, H, W, 3) images, one sigma per image (0 leaves an image as it is)."""
    n = len(images)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (n,))
    radius = 3
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t[None, :] / np.maximum(sig[:, None], 1e-3)) ** 2)
    k[sig <= 0] = (t == 0).astype(np.float32)
    k /= k.sum(axis=1, keepdims=True)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))  # N, 3, H, W
    kt = torch.from_numpy(k.astype(np.float32))
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    # separable: per-image kernels applied with grouped convolutions over (N*3) channels
    flat = x.reshape(1, n * 3, *x.shape[-2:])
    kh = kt.repeat_interleave(3, dim=0)[:, None, None, :]
    kv = kt.repeat_interleave(3, dim=0)[:, None, :, None]
    flat = F.conv2d(F.conv2d(flat, kh, groups=n * 3), kv, groups=n * 3)
    return flat.reshape(n, 3, *images.shape[1:3]).numpy().transpose(0, 2, 3, 1).copy()


def to_uint8(images: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """Quantise 0..1 float images to uint8, optionally adding per-pixel Gaussian sensor noise first."""
    if noise > 0 and rng is not None:
        images = images + noise * rng.standard_normal(size=images.shape, dtype=np.float32)
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
