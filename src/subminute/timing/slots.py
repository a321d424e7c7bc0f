"""Slots on a drift-free grid, and the fixed cadence :class:`Every`.

A slot is a wall-clock instant in integer milliseconds since the Unix epoch. A fixed cadence fires at
``offset + k * interval`` for whole ``k``: every process computes the same slots, and the next slot is
always derived from the previous one by integer arithmetic, never from "now", so there is no drift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .durations import format_ms

__all__ = ["Every", "iso_utc", "next_grid_slot"]

def next_grid_slot(after_ms: int, interval_ms: int, offset_ms: int = 0) -> int:
    """The first slot of the grid ``offset + k * interval`` strictly after ``after_ms``."""
    return offset_ms + ((after_ms - offset_ms) // interval_ms + 1) * interval_ms


def iso_utc(ms: int) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-11-23T10:00:05.000Z``. (Made at every hand-over: from
    ``time.gmtime``, as ``strftime`` looks at the local time zone file each time.)"""
    if not MIN_ISO_MS <= ms <= MAX_ISO_MS:
        raise ValueError(f"{ms} ms is outside the years 1-9999")
    secs, milli = divmod(ms, 1000)
    t = time.gmtime(secs)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{milli:03d}Z"


MIN_ISO_MS = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_ISO_MS = int(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Every:
    """A fixed cadence: every ``interval_ms``, on the epoch-aligned grid shifted by ``offset_ms``."""

    interval_ms: int
    offset_ms: int = 0
    kind = "every"

    @property
    def base_ms(self) -> int:
        return self.interval_ms

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

    def short(self, t_ms: int) -> str:
        return format_ms(self.interval_ms)

    def key(self) -> tuple[Any, ...]:
        return ("every", self.interval_ms, self.offset_ms)

    def row_fields(self) -> dict[str, Any]:
        seconds = self.interval_ms / 1000
        return {"waitseconds": int(seconds) if seconds.is_integer() else seconds}
