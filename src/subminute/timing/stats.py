"""Lateness statistics: percentiles over a bounded window of recent values."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["percentile", "Summary", "summarize", "RecentWindow"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank method."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "p50": self.p50, "p99": self.p99, "max": self.max}


def summarize(values: Iterable[float]) -> Summary:
    ordered = sorted(values)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan)
    return Summary(len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1])


class RecentWindow:
    """The last ``size`` values, for a live p50/p99 that reflects the present, not the whole run."""

    def __init__(self, size: int = 1000) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self.values.append(value)
        self.count += 1

    def summary(self) -> Summary:
        s = summarize(self.values)
        return Summary(self.count, s.p50, s.p99, s.max)
