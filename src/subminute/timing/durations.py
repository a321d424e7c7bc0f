"""The one parser of durations, for every field and flag: intervals, offsets, timeouts, grace, budgets,
lease periods, ``--since``.

A duration is a number of seconds (``2``, ``0.5``) or a text with a unit (``500ms``, ``2s``, ``1.5m``,
``1h``); it is kept as whole milliseconds. The range is checked on the exact value, before anything is
rounded, and a value finer than a millisecond is refused rather than rounded (``0.0995`` is not 100 ms).
Standard library only.
"""

from __future__ import annotations

import math
import re

from ..errors import ConfigError

__all__ = [
    "MAX_DURATION_MS",
    "MAX_INTERVAL_MS",
    "MIN_INTERVAL_MS",
    "duration_rule",
    "format_ms",
    "parse_duration_ms",
    "parse_interval_ms",
    "parse_seconds",
]

MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 86_400_000
MAX_DURATION_MS = 3_650 * 86_400_000  # ten years: the largest duration any field takes

_UNITS_MS = {"ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")


def duration_rule(low_ms: int, high_ms: int) -> str:
    """What a duration field allows, for error messages: ``use a number of seconds from 0.1 to 86400 ...``."""
    return (f"use a number of seconds from {_seconds(low_ms)} to {_seconds(high_ms)}, or a duration such as "
            "500ms, 2s, 5m, 1h")


def _exact_ms(value: object) -> float:
    """The value in milliseconds as an exact-enough float; NaN when it is no duration at all."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int):
        return float(value) * 1000 if abs(value) < 10**15 else math.inf
    if isinstance(value, float):
        return value * 1000
    if isinstance(value, str) and len(value) <= 64:
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS_MS[(match.group(2) or "s").lower()]
    return math.nan


def parse_duration_ms(value: object, field: str, *, low_ms: int = 0, high_ms: int = MAX_DURATION_MS) -> int:
    """``value`` as whole milliseconds in ``[low_ms, high_ms]``; else :class:`ConfigError` naming ``field``,
    the value and the range."""
    ms = _exact_ms(value)
    if not (math.isfinite(ms) and low_ms - 1e-6 <= ms <= high_ms + 1e-6):
        raise ConfigError(field, value, duration_rule(low_ms, high_ms))
    whole = round(ms)
    if abs(ms - whole) > 1e-6:
        raise ConfigError(field, value, "use whole milliseconds (at most three decimals of a second)")
    return whole


def parse_interval_ms(value: object, field: str = "waitseconds") -> int:
    """A schedule interval: 0.1 s to 24 h."""
    return parse_duration_ms(value, field, low_ms=MIN_INTERVAL_MS, high_ms=MAX_INTERVAL_MS)


def parse_seconds(value: object, field: str, low_s: float, high_s: float) -> float:
    """A duration in seconds (whole milliseconds) within ``[low_s, high_s]``."""
    return parse_duration_ms(value, field, low_ms=round(low_s * 1000), high_ms=round(high_s * 1000)) / 1000


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
