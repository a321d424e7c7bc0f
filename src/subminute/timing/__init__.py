"""The timing core: clocks, drift-free slots, interval plans and lateness statistics. No I/O."""

from .clock import Clock, FakeClock, SystemClock
from .plan import Plan, Window, parse_plan
from .slots import (
    MAX_INTERVAL_MS,
    MIN_INTERVAL_MS,
    Every,
    format_ms,
    iso_utc,
    next_grid_slot,
    parse_duration_ms,
    parse_interval_ms,
)
from .stats import RecentWindow, Summary, percentile, summarize

Timetable = Every | Plan

__all__ = [
    "Clock", "FakeClock", "SystemClock", "Plan", "Window", "parse_plan", "Every", "Timetable",
    "MAX_INTERVAL_MS", "MIN_INTERVAL_MS", "format_ms", "iso_utc", "next_grid_slot",
    "parse_duration_ms", "parse_interval_ms", "RecentWindow", "Summary", "percentile", "summarize",
]
