"""Interval plans: a different interval by local time of day (and weekday) in an IANA time zone.

A plan is a list of windows, each ``[start, end)`` in local wall-clock time with optional weekdays and its
own interval, and a default interval for the rest. The first window that covers an instant wins. A window
whose end is before its start crosses midnight; its weekdays name the day it starts on.

Which interval applies is decided by the local time of the instant, so around DST changes:

* ``spring_gap``: local times that do not exist are skipped; a window edge inside the gap takes effect at
  the transition instant (when local time jumps past it).
* ``autumn_overlap``: local times that happen twice are covered twice; a window ``01:00-01:30`` is active
  in both passes.

Slots inside a stretch of one interval are on that interval's epoch-aligned grid; at a boundary the first
slot is the first grid point of the new interval at or after the boundary, so a change of interval makes
neither a burst nor a long gap.

Text form (the CLI's ``--plan``)::

    tz=America/New_York; mon-fri 06:00-20:00 every 2s; 22:00-06:00 every 10s; otherwise every 30s

(an optional last part ``offset 250ms`` shifts every grid). Weekdays are ``mon``..``sun`` or full names,
in lists and ranges that may wrap past sunday (``fri-mon``); they are written back in the shortest form.

JSON form (what the control stores keep)::

    {"tz": "America/New_York", "default": "30s",
     "windows": [{"days": "mon-fri", "from": "06:00", "to": "20:00", "every": "2s"}, ...]}
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError
from .durations import format_ms, parse_duration_ms, parse_interval_ms
from .slots import next_grid_slot

__all__ = ["MAX_PLAN_CHARS", "MAX_WINDOWS", "Window", "Plan", "parse_plan"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ALL_DAYS = frozenset(range(7))
_DAYS_RULE = "use weekday names mon..sun, ranges and lists such as mon-fri or sat,sun, or daily"
_TIME_RULE = "use a local time of day HH:MM or HH:MM:SS from 00:00 to 24:00"
_TZ_RULE = "use an IANA time zone name such as Europe/Paris, America/New_York or UTC"
_PLAN_RULE = (
    "use text like 'tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s' "
    "or a JSON object with tz, default and windows"
)
_WEEK_S = 7 * 86400
MAX_WINDOWS = 48  # a plan's windows: each next-slot look-up past a boundary costs about this many steps
MAX_PLAN_CHARS = 4096  # the text or JSON form of a plan


def _day_index(name: str) -> int | None:
    """``mon`` or ``monday`` (any case) -> 0; anything else -> None."""
    name = name.strip()
    for i, short in enumerate(DAY_NAMES):
        if name == short or name == _FULL_DAY_NAMES[i]:
            return i
    return None


def _parse_days(value: object, field: str) -> frozenset[int]:
    if value is None:
        return ALL_DAYS
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, value, _DAYS_RULE)
    text = value.strip().lower()
    if text in ("daily", "*", "all", "every day"):
        return ALL_DAYS
    days: set[int] = set()
    for part in text.split(","):
        bounds = [_day_index(p) for p in part.split("-")]
        if len(bounds) not in (1, 2) or None in bounds:
            raise ConfigError(field, value, _DAYS_RULE)
        first, last = bounds[0], bounds[-1]
        assert first is not None and last is not None
        day = first
        while True:  # a range may wrap past sunday: fri-mon
            days.add(day)
            if day == last:
                break
            day = (day + 1) % 7
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    """The shortest form that :func:`_parse_days` reads back: ``mon-fri``, ``sat,sun``, ``fri-mon``."""
    if days == ALL_DAYS:
        return "daily"
    starts = [d for d in range(7) if d in days and (d - 1) % 7 not in days]
    parts = []
    for first in starts:
        last = first
        while (last + 1) % 7 in days:
            last = (last + 1) % 7
        length = (last - first) % 7 + 1
        if length >= 3:
            parts.append(f"{DAY_NAMES[first]}-{DAY_NAMES[last]}")
        else:
            parts.extend(DAY_NAMES[(first + i) % 7] for i in range(length))
    return ",".join(parts)


def _parse_time_of_day(value: object, field: str) -> int:
    """Seconds since local midnight, 0..86400."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", value)
        if match:
            h, m, s = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
            seconds = h * 3600 + m * 60 + s
            if m < 60 and s < 60 and seconds <= 86400:
                return seconds
    raise ConfigError(field, value, _TIME_RULE)


def _format_time_of_day(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


@dataclass(frozen=True)
class Window:
    start_s: int
    end_s: int
    interval_ms: int
    days: frozenset[int] = ALL_DAYS

    def covers(self, second_of_day: int, weekday: int) -> bool:
        if self.start_s < self.end_s:
            return self.start_s <= second_of_day < self.end_s and weekday in self.days
        # crosses midnight (or covers the whole day when start == end)
        if second_of_day >= self.start_s:
            return weekday in self.days
        return second_of_day < self.end_s and (weekday - 1) % 7 in self.days

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": _format_days(self.days),
            "from": _format_time_of_day(self.start_s),
            "to": _format_time_of_day(self.end_s),
            "every": format_ms(self.interval_ms),
        }


class Plan:
    """Intervals by local time of day in one time zone. Immutable apart from a small look-up cache."""

    kind = "plan"

    def __init__(
        self, tz: str, windows: tuple[Window, ...], default_ms: int, offset_ms: int = 0
    ) -> None:
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError("plan.tz", tz, _TZ_RULE) from None
        self.tz = tz
        self.windows = windows
        self.default_ms = default_ms
        self.offset_ms = offset_ms
        self._segment: tuple[int, int, int] = (0, -1, default_ms)  # lo, hi (exclusive), interval

    @property
    def base_ms(self) -> int:
        return self.default_ms

    # -- what applies when -------------------------------------------------------------------------
    def interval_at(self, t_ms: int) -> int:
        lo, hi, interval = self._segment
        if lo <= t_ms < hi:
            return interval
        local = datetime.fromtimestamp(t_ms // 1000, tz=self.zone)
        second_of_day = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        for window in self.windows:
            if window.covers(second_of_day, weekday):
                return window.interval_ms
        return self.default_ms

    def segment(self, t_ms: int) -> tuple[int, int]:
        """The interval at ``t_ms`` and the first instant after it where the interval changes."""
        lo, hi, interval = self._segment
        if lo <= t_ms < hi:
            return interval, hi
        interval = self.interval_at(t_ms)
        hi = (t_ms // 1000 + _WEEK_S) * 1000  # nothing changes within a week: look again then
        for candidate in self._edges_after(t_ms):
            if self.interval_at(candidate) != interval:
                hi = candidate
                break
        self._segment = (t_ms, hi, interval)
        return interval, hi

    def _edges_after(self, t_ms: int) -> Iterator[int]:
        """Every instant after ``t_ms`` (within about a week) where a window may open or close, in order:
        window edges on each local date, in both folds, and the zone's UTC-offset transitions. Made a day
        at a time, so that the usual look-up (the next change is today or tomorrow) stops early."""
        zone = self.zone
        today = datetime.fromtimestamp(t_ms // 1000, tz=zone).date()
        pending: list[int] = []
        for n in range(-1, 9):
            day = today + timedelta(days=n)
            midnight = datetime(day.year, day.month, day.day)
            for window in self.windows:
                for second in (window.start_s, window.end_s):
                    naive = midnight + timedelta(seconds=second)
                    for fold in (0, 1):
                        edge = int(naive.replace(tzinfo=zone, fold=fold).timestamp()) * 1000
                        if edge > t_ms:
                            heapq.heappush(pending, edge)
            transition = _offset_transition(zone, day)
            if transition is not None and transition * 1000 > t_ms:
                heapq.heappush(pending, transition * 1000)
            # the edges of later dates are all after the next local midnight less a DST shift
            nxt = day + timedelta(days=1)
            safe = (int(datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()) - 3 * 3600) * 1000
            last = None
            while pending and pending[0] < safe:
                edge = heapq.heappop(pending)
                if edge != last:
                    yield edge
                last = edge
        last = None
        while pending:
            edge = heapq.heappop(pending)
            if edge != last:
                yield edge
            last = edge

    # -- slots -------------------------------------------------------------------------------------
    def next_slot(self, after_ms: int) -> int:
        after = after_ms
        while True:
            interval, end = self.segment(after + 1)
            candidate = next_grid_slot(after, interval, self.offset_ms)
            if candidate < end:
                return candidate
            after = end - 1

    def count_and_last(self, after_ms: int, upto_ms: int) -> tuple[int, int | None]:
        """How many slots lie in ``(after_ms, upto_ms]``, and the last of them."""
        count, last, after = 0, None, after_ms
        while after < upto_ms:
            interval, end = self.segment(after + 1)
            top = min(upto_ms, end - 1)
            first = next_grid_slot(after, interval, self.offset_ms)
            if first <= top:
                n = (top - first) // interval + 1
                count += n
                last = first + (n - 1) * interval
            after = end - 1
        return count, last

    # -- forms -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tz": self.tz,
            "default": format_ms(self.default_ms),
            "windows": [w.to_dict() for w in self.windows],
        }
        if self.offset_ms:
            data["offset"] = format_ms(self.offset_ms)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def short(self, t_ms: int) -> str:
        return f"{format_ms(self.interval_at(t_ms))} (plan)"

    def key(self) -> tuple[Any, ...]:
        return ("plan", self.to_json())

    def row_fields(self) -> dict[str, Any]:
        seconds = self.default_ms / 1000
        return {"waitseconds": int(seconds) if seconds.is_integer() else seconds, "plan": self.to_json()}

    def describe(self) -> str:
        parts = [f"tz={self.tz}"]
        for w in self.windows:
            days = "" if w.days == ALL_DAYS else _format_days(w.days) + " "
            parts.append(
                f"{days}{_format_time_of_day(w.start_s)}-{_format_time_of_day(w.end_s)} "
                f"every {format_ms(w.interval_ms)}"
            )
        parts.append(f"otherwise every {format_ms(self.default_ms)}")
        if self.offset_ms:
            parts.append(f"offset {format_ms(self.offset_ms)}")
        return "; ".join(parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Plan({self.describe()!r})"


def _offset_transition(zone: ZoneInfo, day: date) -> int | None:
    """The epoch second within local ``day`` at which the zone's UTC offset changes, if it does."""
    lo = int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())
    hi = lo + 86400 + 7200
    if _utcoffset(zone, lo) == _utcoffset(zone, hi):
        return None
    before = _utcoffset(zone, lo)
    while hi - lo > 1:  # the first second with the new offset
        mid = (lo + hi) // 2
        if _utcoffset(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


def _utcoffset(zone: ZoneInfo, epoch_s: int) -> timedelta | None:
    return datetime.fromtimestamp(epoch_s, tz=UTC).astimezone(zone).utcoffset()


# -- parsing ---------------------------------------------------------------------------------------

_WINDOW_TEXT = re.compile(
    r"^(?:(?P<days>[a-z,\- ]+?)\s+)?(?P<start>\d{1,2}:\d{2}(?::\d{2})?)\s*-\s*"
    r"(?P<end>\d{1,2}:\d{2}(?::\d{2})?)\s+(?:every\s+)?(?P<every>\S.*?)$",
    re.IGNORECASE,
)


def parse_plan(value: object, field: str = "plan") -> Plan | None:
    """A plan from its text form, its JSON text, or a dict; ``None``/empty means no plan."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, Plan):
        return value
    if isinstance(value, str) and len(value) > MAX_PLAN_CHARS:
        raise ConfigError(field, value, f"keep a plan under {MAX_PLAN_CHARS} characters ({len(value)} given)")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(field, value, _PLAN_RULE) from None
        else:
            return _parse_plan_text(text, field)
    if not isinstance(value, dict):
        raise ConfigError(field, value, _PLAN_RULE)
    return _parse_plan_dict(value, field)


def _parse_plan_dict(data: dict[str, Any], field: str) -> Plan:
    unknown = set(data) - {"tz", "default", "windows", "offset"}
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", data[sorted(unknown)[0]],
                          "use only the keys tz, default, windows and offset")
    if "default" not in data:
        raise ConfigError(f"{field}.default", None, "give the interval outside every window, e.g. 30s")
    default_ms = parse_interval_ms(data["default"], f"{field}.default")
    raw_windows = data.get("windows", [])
    if not isinstance(raw_windows, list):
        raise ConfigError(f"{field}.windows", raw_windows, "use a list of windows")
    if len(raw_windows) > MAX_WINDOWS:
        raise ConfigError(f"{field}.windows", f"{len(raw_windows)} windows",
                          f"use at most {MAX_WINDOWS} windows (each boundary look-up walks them all)")
    windows = []
    for i, raw in enumerate(raw_windows):
        where = f"{field}.windows[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(where, raw, "use an object with days, from, to and every")
        missing = [k for k in ("from", "to", "every") if k not in raw]
        if missing:
            raise ConfigError(f"{where}.{missing[0]}", None, "each window needs from, to and every")
        extra = sorted(str(k) for k in set(raw) - {"days", "from", "to", "every"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}", raw.get(extra[0]),
                              "use only days, from, to and every")
        windows.append(
            Window(
                start_s=_parse_time_of_day(raw["from"], f"{where}.from"),
                end_s=_parse_time_of_day(raw["to"], f"{where}.to"),
                interval_ms=parse_interval_ms(raw["every"], f"{where}.every"),
                days=_parse_days(raw.get("days"), f"{where}.days"),
            )
        )
    offset_ms = parse_duration_ms(data.get("offset", 0), f"{field}.offset", high_ms=86_399_999)
    tz = data.get("tz", "UTC")
    if not isinstance(tz, str):
        raise ConfigError(f"{field}.tz", tz, _TZ_RULE)
    try:
        return Plan(tz, tuple(windows), default_ms, offset_ms)
    except ConfigError:  # the zone: name it by the caller's field
        raise ConfigError(f"{field}.tz", tz, _TZ_RULE) from None


def _parse_plan_text(text: str, field: str) -> Plan:
    tz = "UTC"
    default: str | None = None
    offset: str = "0"
    windows: list[dict[str, Any]] = []
    for raw_part in text.split(";"):
        part = raw_part.strip()
        if not part:
            continue
        tz_match = re.fullmatch(r"tz\s*[=\s]\s*(\S+)", part, flags=re.IGNORECASE)
        if tz_match:
            tz = tz_match.group(1)
        elif re.match(r"(otherwise|default)\b", part, flags=re.IGNORECASE):
            if default is not None:
                raise ConfigError(field, part, "give one 'otherwise every ...' part")
            default = re.sub(r"^(otherwise|default)\s*(every\s+)?", "", part, flags=re.IGNORECASE)
        elif re.match(r"offset\b", part, flags=re.IGNORECASE):
            offset = part[6:].strip()
        else:
            match = _WINDOW_TEXT.match(part)
            if not match:
                raise ConfigError(field, part, "write a window as '[days] HH:MM-HH:MM every 2s'; "
                                               + _PLAN_RULE)
            windows.append({"days": match.group("days"), "from": match.group("start"),
                            "to": match.group("end"), "every": match.group("every")})
    if default is None:
        raise ConfigError(field, text, "end the plan with 'otherwise every 30s'")
    return _parse_plan_dict({"tz": tz, "default": default, "windows": windows, "offset": offset}, field)
