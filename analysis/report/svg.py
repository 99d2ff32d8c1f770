"""A small inline-SVG chart: linear or log axes, lines, bands, markers and bars, sized by its viewBox.

The report draws a few hundred small panels and redraws them on every live refresh, which matplotlib is too slow
for; these charts are plain strings, scale with the page (width 100%, fixed aspect ratio, so the space is
reserved before they load) and carry data attributes on their marks for tests and tools to read back.
Colours come from the Okabe-Ito palette, which stays distinguishable with the common colour-vision deficiencies;
series also differ in dash pattern or marker shape, so colour is never the only cue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

BLUE, ORANGE, VERMILLION, SKY, GREEN, YELLOW, PURPLE, GREY = (
    "#0072B2",
    "#E69F00",
    "#D55E00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#CC79A7",
    "#7a7a7a",
)
CATEGORICAL = (BLUE, VERMILLION, GREEN, ORANGE, PURPLE, SKY, "#000000", GREY)
INK, MUTED, RULE = "#1f2328", "#57606a", "#d0d7de"


def fmt_num(v: float) -> str:
    """A tick label: short, no trailing zeros."""
    if v == 0:
        return "0"
    if abs(v) >= 1e3:
        return f"{v:,.0f}" if abs(v) < 1e6 else f"{v:.2g}"
    if abs(v) < 1e-2:
        return _exponent(v)
    return f"{v:.3g}"


def _exponent(v: float) -> str:
    """3e-4, 1e-3; plain 1 rather than 1e0."""
    mantissa, exponent = f"{v:.0e}".split("e")
    return mantissa if int(exponent) == 0 else f"{mantissa}e{int(exponent)}"


def tick_labels(ticks: Sequence[float], log: bool = False) -> list[str]:
    """Labels with just enough decimals to tell neighbouring ticks apart (2.31, 2.32 rather than 2.31, 2.31)."""
    if not ticks:
        return []
    if log:  # one style for the whole axis: 0.1, 1, 10 or 1e-4, 1e-3, 1e-2
        if all(1e-2 <= abs(t) < 1e4 for t in ticks):
            return [f"{t:g}" for t in ticks]
        return [_exponent(t) for t in ticks]
    if any(abs(t) >= 1e3 or (t != 0 and abs(t) < 1e-2) for t in ticks):
        return [fmt_num(t) for t in ticks]
    for decimals in range(0, 6):
        labels = [f"{t:.{decimals}f}" for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return [fmt_num(t) for t in ticks]


@dataclass(frozen=True)
class Scale:
    """Maps data values in [lo, hi] to [0, 1], linearly or by log10."""

    lo: float
    hi: float
    log: bool = False

    def __post_init__(self) -> None:
        if self.log and (self.lo <= 0 or self.hi <= 0):
            raise ValueError(f"a log scale needs positive bounds, got [{self.lo}, {self.hi}]")
        if not self.hi > self.lo:
            raise ValueError(f"a scale needs hi > lo, got [{self.lo}, {self.hi}]")

    def frac(self, v: float) -> float:
        if self.log:
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def ticks(self, n: int = 5) -> list[float]:
        """Round values inside the scale: 1-2-5 steps when linear; decades, then 1-3 per decade, when log."""
        if self.log:
            lo_e, hi_e = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            for mults in ((1,), (1, 3), (1, 2, 5)):
                out = [m * 10.0**e for e in range(lo_e, hi_e + 1) for m in mults]
                out = [t for t in out if self.lo * (1 - 1e-9) <= t <= self.hi * (1 + 1e-9)]
                if len(out) >= 3 or mults == (1, 2, 5):
                    return out
        span = self.hi - self.lo
        raw = span / max(n - 1, 1)
        mag = 10.0 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        first = math.ceil(self.lo / step - 1e-9) * step
        out, t = [], first
        while t <= self.hi + 1e-9 * span:
            out.append(round(t, 10))
            t += step
        return out


def linear_scale(
    values: Sequence[float | None], *, pad: float = 0.08, lo: float | None = None, hi: float | None = None
):
    """A scale around the finite values, padded; `lo`/`hi` clamp it (e.g. accuracy to [0, 100])."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Scale(lo if lo is not None else 0.0, hi if hi is not None else 1.0)
    a, b = min(vals), max(vals)
    margin = (b - a) * pad if b > a else max(abs(a) * 0.05, 1.0)
    a, b = a - margin, b + margin
    if lo is not None:
        a = max(a, lo)
    if hi is not None:
        b = min(b, hi)
    if not b > a:
        b = a + 1.0
    return Scale(a, b)


def log_scale(values: Sequence[float | None], *, pad_decades: float = 0.15) -> Scale:
    """A log scale around the positive finite values, padded by a fraction of a decade on each side."""
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not vals:
        return Scale(0.1, 10.0, log=True)
    a, b = min(vals), max(vals)
    f = 10.0**pad_decades
    if a == b:
        f = 10.0**0.5
    return Scale(a / f, b * f, log=True)


def _attrs(attrs: Mapping[str, object] | None) -> str:
    if not attrs:
        return ""
    return "".join(f' {k}="{escape(str(v))}"' for k, v in attrs.items() if v is not None)


class Chart:
    """One panel: a plot area inside margins, axes with ticks, and marks appended in drawing order."""

    def __init__(
        self,
        x: Scale,
        y: Scale,
        *,
        width: int = 300,
        height: int = 200,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        y2: Scale | None = None,
        y2label: str = "",
        margin: tuple[int, int, int, int] = (24, 12, 36, 46),  # top, right, bottom, left
        x_ticks: Sequence[float] | None = None,
        x_tick_labels: Sequence[str] | None = None,
        y_ticks: Sequence[float] | None = None,
        y_tick_labels: Sequence[str] | None = None,
        grid: bool = True,
    ):
        self.x, self.y, self.y2 = x, y, y2
        self.width, self.height = width, height
        top, right, bottom, left = margin
        if y2 is not None:
            right = max(right, 50)  # tick labels and the rotated axis label of the right axis
        self.left, self.top = left, top
        self.pw, self.ph = width - left - right, height - top - bottom
        self.title, self.xlabel, self.ylabel, self.y2label = title, xlabel, ylabel, y2label
        self.x_ticks, self.x_tick_labels = x_ticks, x_tick_labels
        self.y_ticks, self.y_tick_labels = y_ticks, y_tick_labels
        self.grid = grid
        self.marks: list[str] = []

    # ---- coordinates ---------------------------------------------------------------------------------------

    def px(self, v: float) -> float:
        return self.left + self.x.frac(v) * self.pw

    def py(self, v: float, axis: str = "y") -> float:
        scale = self.y2 if axis == "y2" and self.y2 is not None else self.y
        f = min(max(scale.frac(v), -0.02), 1.02)  # a value past the axis is drawn just at its edge
        return self.top + (1.0 - f) * self.ph

    # ---- marks ---------------------------------------------------------------------------------------------

    def line(
        self,
        xs: Sequence[float],
        ys: Sequence[float | None],
        *,
        color: str,
        dash: str | None = None,
        width: float = 1.8,
        axis: str = "y",
        attrs: Mapping[str, object] | None = None,
    ) -> None:
        """A polyline broken where y is missing."""
        runs: list[list[str]] = [[]]
        for x, y in zip(xs, ys, strict=True):
            if y is None or not math.isfinite(y):
                runs.append([])
            else:
                runs[-1].append(f"{self.px(x):.1f},{self.py(y, axis):.1f}")
        style = _attrs({"stroke-dasharray": dash, **(attrs or {})})
        for run in runs:
            if len(run) >= 2:
                self.marks.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="{width}"'
                    f' stroke-linejoin="round"{style}/>'
                )

    def band(self, xs: Sequence[float], lo: Sequence[float | None], hi: Sequence[float | None], *, color: str) -> None:
        """A shaded area between two curves, over the runs where both are present."""
        pts = [(x, a, b) for x, a, b in zip(xs, lo, hi, strict=True) if a is not None and b is not None]
        if len(pts) < 2:
            return
        upper = [f"{self.px(x):.1f},{self.py(b):.1f}" for x, _, b in pts]
        lower = [f"{self.px(x):.1f},{self.py(a):.1f}" for x, a, _ in reversed(pts)]
        self.marks.append(
            f'<polygon points="{" ".join(upper + lower)}" fill="{color}" fill-opacity="0.18" stroke="none"/>'
        )

    def point(
        self,
        x: float,
        y: float,
        *,
        color: str,
        shape: str = "circle",
        r: float = 3.2,
        axis: str = "y",
        title: str | None = None,
        attrs: Mapping[str, object] | None = None,
    ) -> None:
        """A marker: filled `circle`, hollow `ring`, `square`, `diamond` or `cross` (for a diverged run)."""
        cx, cy = self.px(x), self.py(y, axis)
        tip = f"<title>{escape(title)}</title>" if title else ""
        a = _attrs(attrs)
        if shape == "ring":
            body = (
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r + 1.6:.1f}" fill="none" stroke="{color}" stroke-width="1.6"'
            )
        elif shape == "square":
            body = f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" fill="{color}"'
        elif shape == "diamond":
            d = r * 1.3
            body = (
                f'<polygon points="{cx:.1f},{cy - d:.1f} {cx + d:.1f},{cy:.1f} '
                f'{cx:.1f},{cy + d:.1f} {cx - d:.1f},{cy:.1f}" fill="{color}"'
            )
        elif shape == "cross":
            d = r
            body = (
                f'<path d="M{cx - d:.1f},{cy - d:.1f}L{cx + d:.1f},{cy + d:.1f}M{cx - d:.1f},{cy + d:.1f}'
                f'L{cx + d:.1f},{cy - d:.1f}" stroke="{color}" stroke-width="2" fill="none"'
            )
        else:
            body = f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{color}"'
        self.marks.append(f"{body}{a}>{tip}</{_tag(shape)}>")

    def vline(self, x: float, *, color: str = INK, dash: str = "3 3", label: str = "") -> None:
        px = self.px(x)
        self.marks.append(
            f'<line x1="{px:.1f}" y1="{self.top}" x2="{px:.1f}" y2="{self.top + self.ph}" stroke="{color}"'
            f' stroke-width="1" stroke-dasharray="{dash}"/>'
        )
        if label:
            self.marks.append(
                f'<text x="{px + 3:.1f}" y="{self.top + 10}" font-size="9" fill="{color}">{escape(label)}</text>'
            )

    def diagonal(self, *, color: str = GREY) -> None:
        """The line y = x over the part of the plot where both scales overlap."""
        lo, hi = max(self.x.lo, self.y.lo), min(self.x.hi, self.y.hi)
        if hi > lo:
            self.marks.append(
                f'<line x1="{self.px(lo):.1f}" y1="{self.py(lo):.1f}" x2="{self.px(hi):.1f}" y2="{self.py(hi):.1f}"'
                f' stroke="{color}" stroke-width="1" stroke-dasharray="2 3"/>'
            )

    def bar(
        self,
        x: float,
        y: float,
        half_width: float,
        *,
        color: str,
        title: str | None = None,
        attrs: Mapping[str, object] | None = None,
    ) -> None:
        """A vertical bar from the bottom of the plot area to `y`, `half_width` in data units of x."""
        x0, x1 = self.px(x - half_width), self.px(x + half_width)
        top = self.py(y)
        bottom = self.top + self.ph
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.marks.append(
            f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="{max(bottom - top, 0.5):.1f}"'
            f' fill="{color}"{_attrs(attrs)}>{tip}</rect>'
        )

    def hbar(
        self,
        y: float,
        x: float,
        half_height: float,
        *,
        color: str,
        label: str = "",
        title: str | None = None,
        attrs: Mapping[str, object] | None = None,
    ) -> None:
        """A horizontal bar from the left of the plot area to `x`, with `label` written just past its end."""
        y0, y1 = self.py(y + half_height), self.py(y - half_height)
        right = self.px(x)
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.marks.append(
            f'<rect x="{self.left}" y="{y0:.1f}" width="{max(right - self.left, 0.5):.1f}"'
            f' height="{max(y1 - y0, 0.5):.1f}" fill="{color}"{_attrs(attrs)}>{tip}</rect>'
        )
        if label:
            self.marks.append(
                f'<text x="{right + 3:.1f}" y="{(y0 + y1) / 2 + 3.5:.1f}" font-size="10" fill="{INK}">'
                f"{escape(label)}</text>"
            )

    def hline(self, y: float, *, color: str = INK, dash: str = "4 3", label: str = "") -> None:
        py = self.py(y)
        self.marks.append(
            f'<line x1="{self.left}" y1="{py:.1f}" x2="{self.left + self.pw}" y2="{py:.1f}" stroke="{color}"'
            f' stroke-width="1" stroke-dasharray="{dash}"/>'
        )
        if label:
            self.marks.append(
                f'<text x="{self.left + self.pw - 2}" y="{py - 3:.1f}" font-size="9" text-anchor="end"'
                f' fill="{color}">{escape(label)}</text>'
            )

    # ---- output --------------------------------------------------------------------------------------------

    def _axes(self) -> list[str]:
        out = []
        x0, y0, x1, y1 = self.left, self.top, self.left + self.pw, self.top + self.ph
        yt = list(self.y_ticks) if self.y_ticks is not None else self.y.ticks(5)
        yl = list(self.y_tick_labels) if self.y_tick_labels is not None else tick_labels(yt, self.y.log)
        for t, label in zip(yt, yl, strict=True):
            py = self.py(t)
            if self.grid:
                out.append(
                    f'<line x1="{x0}" y1="{py:.1f}" x2="{x1}" y2="{py:.1f}" stroke="{RULE}" stroke-width="0.6"/>'
                )
            out.append(
                f'<text x="{x0 - 4}" y="{py + 3:.1f}" font-size="10.5" text-anchor="end" fill="{MUTED}">'
                f"{escape(label)}</text>"
            )
        if self.y2 is not None:
            t2 = self.y2.ticks(4)
            for t, label in zip(t2, tick_labels(t2, self.y2.log), strict=True):
                py = self.py(t, "y2")
                out.append(f'<text x="{x1 + 4}" y="{py + 3:.1f}" font-size="10.5" fill="{MUTED}">{label}</text>')
        xt = list(self.x_ticks) if self.x_ticks is not None else self.x.ticks(5)
        xl = list(self.x_tick_labels) if self.x_tick_labels is not None else tick_labels(xt, self.x.log)
        for t, label in zip(xt, xl, strict=True):
            px = self.px(t)
            out.append(
                f'<line x1="{px:.1f}" y1="{y1}" x2="{px:.1f}" y2="{y1 + 3}" stroke="{MUTED}" stroke-width="0.8"/>'
            )
            out.append(
                f'<text x="{px:.1f}" y="{y1 + 14}" font-size="10.5" text-anchor="middle" fill="{MUTED}">'
                f"{escape(label)}</text>"
            )
        out.append(
            f'<rect x="{x0}" y="{y0}" width="{self.pw}" height="{self.ph}" fill="none" stroke="{MUTED}"'
            ' stroke-width="0.8"/>'
        )
        if self.xlabel:
            out.append(
                f'<text x="{x0 + self.pw / 2:.1f}" y="{self.height - 4}" font-size="11" text-anchor="middle"'
                f' fill="{INK}">{escape(self.xlabel)}</text>'
            )
        if self.ylabel:
            out.append(
                f'<text transform="translate(11 {y0 + self.ph / 2:.1f}) rotate(-90)" font-size="11"'
                f' text-anchor="middle" fill="{INK}">{escape(self.ylabel)}</text>'
            )
        if self.y2 is not None and self.y2label:
            out.append(
                f'<text transform="translate({self.width - 6} {y0 + self.ph / 2:.1f}) rotate(90)" font-size="11"'
                f' text-anchor="middle" fill="{INK}">{escape(self.y2label)}</text>'
            )
        if self.title:
            out.append(
                f'<text x="4" y="{y0 - 8}" font-size="12" font-weight="600" fill="{INK}">{escape(self.title)}</text>'
            )
        return out

    def svg(self, *, label: str, attrs: Mapping[str, object] | None = None) -> str:
        """The panel as an `<svg>` element that fills its container's width at a fixed aspect ratio."""
        clip = f"clip-{self.width}x{self.height}-{self.left}-{self.top}-{self.pw}-{self.ph}"  # same id, same rect
        body = "".join(self.marks)
        return (
            f'<svg class="plot" viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{escape(label)}"'
            f' style="aspect-ratio:{self.width}/{self.height}" xmlns="http://www.w3.org/2000/svg"{_attrs(attrs)}>'
            f"<title>{escape(label)}</title>"
            f'<clipPath id="{clip}"><rect x="{self.left - 6}" y="{self.top - 6}" width="{self.pw + 12}"'
            f' height="{self.ph + 12}"/></clipPath>'
            f"{''.join(self._axes())}"
            f'<g clip-path="url(#{clip})">{body}</g></svg>'
        )


def _tag(shape: str) -> str:
    return {"ring": "circle", "square": "rect", "diamond": "polygon", "cross": "path"}.get(shape, "circle")


def message_panel(
    text: str,
    *,
    width: int = 300,
    height: int = 200,
    title: str = "",
    label: str = "",
    attrs: Mapping[str, object] | None = None,
) -> str:
    """A panel of the same size as a chart that says why there is nothing to draw."""
    head = f'<text x="8" y="16" font-size="12" font-weight="600" fill="{INK}">{escape(title)}</text>' if title else ""
    return (
        f'<svg class="plot empty" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label or text)}"'
        f' style="aspect-ratio:{width}/{height}" xmlns="http://www.w3.org/2000/svg"{_attrs(attrs)}>'
        f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" fill="#fafbfc" stroke="{RULE}"/>{head}'
        f'<text x="{width / 2}" y="{height / 2}" font-size="11" text-anchor="middle" fill="{MUTED}">'
        f"{escape(text)}</text></svg>"
    )
