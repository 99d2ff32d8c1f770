"""The demo's closing line: its wall time and the parts of it, which add up as printed."""

from __future__ import annotations

import re

import pytest

from api.demo import wall_time_line


@pytest.mark.parametrize("parts", [(268.6, 121.4, 17.6), (1073.4, 122.4, 0.4), (0.4, 0.4, 0.4), (132.5, 143.5, 16.5)])
def test_the_printed_parts_add_up_to_the_printed_total(parts: tuple[float, float, float]) -> None:
    line = wall_time_line(*parts)
    total, *shown = (int(n) for n in re.findall(r"(\d+) s", line))
    assert len(shown) == 3 and total == sum(shown)
    assert abs(total - sum(parts)) <= 1.5  # rounding only
