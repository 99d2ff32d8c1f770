"""The report's small SVG chart and number formatting: scales, ticks, labels, signs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from analysis.report.html_tables import delta_badge, signed
from analysis.report.svg import Chart, Scale, linear_scale, log_scale, message_panel, tick_labels


@pytest.mark.parametrize(
    ("lo", "hi", "log"), [(0.0, 100.0, False), (2.305, 2.345, False), (1e-4, 1e-2, True), (0.05, 30.0, True)]
)
def test_ticks_lie_inside_the_scale_and_their_labels_differ(lo: float, hi: float, log: bool) -> None:
    s = Scale(lo, hi, log=log)
    ticks = s.ticks(5)
    assert len(ticks) >= 2
    assert all(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)
    labels = tick_labels(ticks, log)
    assert len(set(labels)) == len(labels), labels


def test_log_axis_labels_share_one_style() -> None:
    assert tick_labels([1e-4, 1e-3, 1e-2], log=True) == ["1e-4", "1e-3", "1e-2"]
    assert tick_labels([0.1, 1.0, 10.0], log=True) == ["0.1", "1", "10"]


def test_bad_scales_are_refused() -> None:
    with pytest.raises(ValueError, match="positive bounds"):
        Scale(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="hi > lo"):
        Scale(1.0, 1.0)


def test_scales_from_data_pad_and_clamp() -> None:
    s = linear_scale([50.0, 99.0, None, float("nan")], lo=0.0, hi=100.0)
    assert s.lo < 50.0 and s.hi == 100.0
    assert linear_scale([]).hi > linear_scale([]).lo
    one = log_scale([1e-3])
    assert one.lo < 1e-3 < one.hi


def test_chart_is_well_formed_svg_and_keeps_its_data_attributes() -> None:
    c = Chart(Scale(1e-4, 1e-2, log=True), Scale(0.0, 100.0), title="a < b & c", xlabel="lr", ylabel="%")
    c.line([1e-4, 1e-3, 1e-2], [10.0, None, 30.0], color="#000", attrs={"data-series": "id_val"})
    c.point(1e-3, 50.0, color="#000", shape="diamond", title="x", attrs={"data-value": "50.0"})
    c.point(1e-3, 60.0, color="#000", shape="cross")
    c.band([1e-4, 1e-2], [1.0, 2.0], [3.0, 4.0], color="#000")
    root = ET.fromstring(c.svg(label="test <chart>", attrs={"data-plot": "x"}))
    assert root.get("data-plot") == "x" and root.get("viewBox") == "0 0 300 200"
    assert [e.get("data-value") for e in root.iter() if e.get("data-value")] == ["50.0"]
    assert not [e for e in root.iter() if e.tag.endswith("polyline")]  # a line broken at None has no 2-point run
    ET.fromstring(message_panel("nothing & more", title="t", attrs={"data-plot": "y"}))


def test_signs_are_written_so_colour_is_never_the_only_cue() -> None:
    assert signed(3.21) == "+3.2" and signed(-1.0) == "\u22121.0" and signed(0.01) == "±0.0"
    assert 'class="d gain"' in delta_badge(2.0, what="x") and "+2.0" in delta_badge(2.0, what="x")
    assert 'class="d loss"' in delta_badge(-2.0, what="x") and "\u22122.0" in delta_badge(-2.0, what="x")
    assert 'class="d none"' in delta_badge(None, what="x")
