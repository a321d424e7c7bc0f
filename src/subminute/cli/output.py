"""Output for people and for scripts: aligned tables, JSON, and durations/instants in short form.

Text shown to people may come from anywhere (a name or URL written into the table by hand, a server's
error text, the lease's owner): :func:`~subminute.observe.text.clean` shows its control characters
escaped. Tables clean every cell; other lines go through :func:`say`. JSON escapes them by itself.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from ..observe.text import clean

__all__ = ["clean", "say", "print_table", "format_table", "print_json", "fmt_ms", "fmt_instant", "fmt_clock",
           "fmt_age"]

def say(*lines: object, file: TextIO | None = None) -> None:
    """Print each line, its control characters escaped."""
    out = file or sys.stdout
    for line in lines:
        print(clean(line), file=out)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table; numbers are right-aligned, ``None`` shows as ``-``."""
    cells = [[("-" if v is None else clean(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    numeric = [all(_is_number(r[i]) for r in rows if r[i] is not None) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    out = [line([clean(h) for h in headers]), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    if isinstance(value, str):
        try:
            float(value.rstrip("ms").rstrip("s") or "x")
            return True
        except ValueError:
            return False
    return False


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], file: TextIO | None = None) -> None:
    print(format_table(headers, rows), file=file or sys.stdout)


def print_json(obj: Any, file: TextIO | None = None) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str), file=file or sys.stdout)


def fmt_ms(value: float | None, digits: int = 2) -> str | None:
    """A lateness or latency in milliseconds: ``0.21``; ``None``/NaN shows as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{value:.{digits}f}"


def fmt_instant(ms: float | None) -> str | None:
    """An epoch-millisecond instant as UTC date and time, ``2026-11-23 09:31:22.000Z``."""
    if ms is None:
        return None
    try:
        dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):  # no date shows it (written by hand): the number itself
        return f"{ms:g} ms"
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(ms % 1000):03d}Z"


def fmt_clock(ms: float | None) -> str | None:
    """An epoch-millisecond instant as UTC time of day, ``09:31:22.000``."""
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S.") + f"{int(ms % 1000):03d}"
    except (OverflowError, ValueError, OSError):
        return f"{ms:g} ms"


def fmt_age(ms: float | None, now_ms: float) -> str | None:
    if ms is None:
        return None
    delta = (now_ms - ms) / 1000
    return f"{delta:.1f}s ago" if delta >= 0 else f"in {-delta:.1f}s"
