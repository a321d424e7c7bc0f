"""Lateness statistics: nearest-rank percentiles and a bounded window of recent values."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from subminute.timing.stats import RecentWindow, Summary, percentile, summarize


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300), st.floats(0, 100))
def test_percentile_is_one_of_the_values_and_splits_them(values: list[float], q: float) -> None:
    ordered = sorted(values)
    p = percentile(ordered, q)
    assert p in ordered
    assert sum(v <= p for v in ordered) >= q / 100 * len(ordered) - 1e-9
    assert sum(v < p for v in ordered) < max(1, math.ceil(q / 100 * len(ordered)))


def test_summarize() -> None:
    summary = summarize([3.0, 1.0, 2.0, 10.0])
    assert summary == Summary(4, 2.0, 10.0, 10.0)
    assert summary.as_dict() == {"count": 4, "p50": 2.0, "p99": 10.0, "max": 10.0}
    empty = summarize([])
    assert empty.count == 0 and math.isnan(empty.p50) and math.isnan(empty.p99) and math.isnan(empty.max)
    assert summarize(iter([0.5])) == Summary(1, 0.5, 0.5, 0.5)  # any iterable


def test_recent_window_reflects_the_present_but_counts_everything() -> None:
    window = RecentWindow(size=10)
    for _ in range(100):
        window.add(50.0)  # a bad start ...
    for v in range(10):
        window.add(float(v))  # ... then ten good values
    summary = window.summary()
    assert summary.count == 110
    assert (summary.p50, summary.p99, summary.max) == (4.0, 9.0, 9.0)
    assert len(window.values) == 10


def test_recent_window_empty() -> None:
    summary = RecentWindow().summary()
    assert summary.count == 0 and math.isnan(summary.p99)
