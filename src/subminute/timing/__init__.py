"""The timing core: clocks, durations, drift-free slots, interval plans, the timetable protocol and lateness
statistics. No I/O."""

from .clock import Clock, SystemClock
from .durations import (
    MAX_INTERVAL_MS,
    MIN_INTERVAL_MS,
    format_ms,
    parse_duration_ms,
    parse_interval_ms,
    parse_seconds,
)
from .fake import FakeClock
from .plan import Plan, Window, parse_plan
from .slots import Every, iso_utc, next_grid_slot
from .stats import RecentWindow, Summary, percentile, summarize
from .timetable import Timetable

__all__ = [
    "Clock", "FakeClock", "SystemClock", "Plan", "Window", "parse_plan", "Every", "Timetable",
    "MAX_INTERVAL_MS", "MIN_INTERVAL_MS", "format_ms", "iso_utc", "next_grid_slot",
    "parse_duration_ms", "parse_interval_ms", "parse_seconds", "RecentWindow", "Summary", "percentile",
    "summarize",
]
