"""Slots on a drift-free grid, and the parsing of durations.

A slot is a wall-clock instant in integer milliseconds since the Unix epoch. A fixed cadence fires at
``offset + k * interval`` for whole ``k``: every process computes the same slots, and the next slot is
always derived from the previous one by integer arithmetic, never from "now", so there is no drift.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import ConfigError

__all__ = [
    "MIN_INTERVAL_MS",
    "MAX_INTERVAL_MS",
    "INTERVAL_RULE",
    "Every",
    "next_grid_slot",
    "parse_duration_ms",
    "parse_interval_ms",
    "format_ms",
    "iso_utc",
]

MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 86_400_000
INTERVAL_RULE = "use a number of seconds from 0.1 to 86400, or a duration such as 500ms, 2s, 5m, 1h"

_UNITS_MS = {"ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)


def next_grid_slot(after_ms: int, interval_ms: int, offset_ms: int = 0) -> int:
    """The first slot of the grid ``offset + k * interval`` strictly after ``after_ms``."""
    return offset_ms + ((after_ms - offset_ms) // interval_ms + 1) * interval_ms


def parse_duration_ms(value: object, field: str) -> int:
    """A duration as integer milliseconds: a number of seconds (``2``, ``0.5``) or text (``500ms``,
    ``2s``, ``5m``, ``1h``). Raises :class:`ConfigError` naming ``field``; bounds are the caller's."""
    if isinstance(value, bool):
        raise ConfigError(field, value, INTERVAL_RULE)
    ms = math.nan
    if isinstance(value, (int, float)):
        try:
            ms = float(value) * 1000
        except OverflowError:  # an int too large for a float
            ms = math.inf
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            ms = float(match.group(1)) * _UNITS_MS[(match.group(2) or "s").lower()]
    if not math.isfinite(ms):  # also a huge finite number that overflows once in milliseconds
        raise ConfigError(field, value, INTERVAL_RULE)
    return round(ms)


def parse_interval_ms(value: object, field: str = "waitseconds") -> int:
    """A schedule interval in milliseconds, checked against the 0.1 s to 24 h range."""
    ms = parse_duration_ms(value, field)
    if not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
        raise ConfigError(field, value, INTERVAL_RULE)
    return ms


def format_ms(ms: int) -> str:
    """A short human form of a duration: ``250ms``, ``2s``, ``1.5s``, ``5m``, ``1h``; exact, so
    :func:`parse_duration_ms` reads it back to the same number."""
    if ms == 0:
        return "0s"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    if abs(ms) < 1000:
        return f"{ms}ms"
    sign = "-" if ms < 0 else ""
    whole, frac = divmod(abs(ms), 1000)
    return f"{sign}{whole}.{frac:03d}".rstrip("0") + "s"  # exact: 1234567 -> 1234.567s


def iso_utc(ms: int) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-11-23T10:00:05.000Z``."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


@dataclass(frozen=True)
class Every:
    """A fixed cadence: every ``interval_ms``, on the epoch-aligned grid shifted by ``offset_ms``."""

    interval_ms: int
    offset_ms: int = 0

    def interval_at(self, t_ms: int) -> int:
        return self.interval_ms

    def next_slot(self, after_ms: int) -> int:
        return next_grid_slot(after_ms, self.interval_ms, self.offset_ms)

    def count_and_last(self, after_ms: int, upto_ms: int) -> tuple[int, int | None]:
        """How many slots lie in ``(after_ms, upto_ms]``, and the last of them."""
        first = self.next_slot(after_ms)
        if first > upto_ms:
            return 0, None
        count = (upto_ms - first) // self.interval_ms + 1
        return count, first + (count - 1) * self.interval_ms

    def describe(self) -> str:
        text = f"every {format_ms(self.interval_ms)}"
        return text + (f" offset {format_ms(self.offset_ms)}" if self.offset_ms else "")
