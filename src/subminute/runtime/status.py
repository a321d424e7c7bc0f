"""What ``subminute status --json`` shows of each schedule (its ``"schedules"``), built in one place for the
CLI and for :meth:`Scheduler.status <subminute.runtime.scheduler.Scheduler.status>`: checked rows and the
statistics of their fire records (:meth:`FireLog.schedule_stats <subminute.results.sinks.FireLog.schedule_stats>`
or :meth:`BoundedSink.schedule_stats <subminute.results.sinks.BoundedSink.schedule_stats>`) make the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..control.rows import Schedule, schedule_from_row
from ..errors import ConfigError

__all__ = ["CheckedRow", "RowState", "check_rows", "status_rows"]


class CheckedRow(Protocol):
    """A row checked whole: its schedule (disabled when ``error`` is set) and a ``note`` for the user."""

    @property
    def schedule(self) -> Schedule: ...

    @property
    def error(self) -> str | None: ...

    @property
    def note(self) -> str | None: ...


@dataclass(frozen=True)
class RowState:
    schedule: Schedule
    error: str | None = None
    note: str | None = None


def check_rows(rows: Sequence[Mapping[str, Any]],
               check_target: Callable[[Schedule], str | None]) -> list[RowState]:
    """Every row checked as the controller checks it: parsed, its name unique (a later row that takes an
    earlier valid one's name is disabled; a refused row takes no name), and ``check_target`` (raising :class:`ConfigError`, or returning a
    note) for a valid one. Never raises: a bad row carries its one-line error."""
    out: list[RowState] = []
    names: dict[str, int] = {}
    for raw in rows:
        schedule = schedule_from_row(raw)
        error, note = schedule.error, None
        if error is None and schedule.name in names:
            error = (f"schedule {schedule.id}: name: {schedule.name!r} is not allowed; it is schedule "
                     f"{names[schedule.name]}'s name: give each schedule its own")
        if error is None:
            try:
                note = check_target(schedule)
            except ConfigError as exc:
                error = str(exc.located(f"schedule {schedule.id}"))
        if error is None:  # only a valid row takes its name, as in the controller (controller/rows.py)
            names[schedule.name] = schedule.id
        out.append(RowState(schedule, error, note))
    return out


def status_rows(checked: Iterable[CheckedRow], stats: Mapping[int, Mapping[str, Any]],
                now_ms: int) -> list[dict[str, Any]]:
    """One dict per row: its state, timing now, next slot, and its fire statistics."""
    out = []
    for row in checked:
        schedule, error = row.schedule, row.error
        entry = stats.get(schedule.id, {})
        counts = entry.get("counts", {})
        lateness, start = entry.get("lateness"), entry.get("start_lateness")
        timetable = schedule.timetable
        running = schedule.running and error is None
        out.append({
            "id": schedule.id, "name": schedule.name, "running": running,
            "state": "invalid" if error else ("running" if running else "stopped"),
            "interval_now_ms": timetable.interval_at(now_ms) if error is None else None,
            "plan": timetable.describe() if timetable.kind == "plan" and error is None else None,
            "next_slot_ms": timetable.next_slot(now_ms) if running else None,
            "last_fire_ms": entry.get("last_slot_ms"),
            "start_p50_ms": start.p50 if start and start.count else None,
            "start_p99_ms": start.p99 if start and start.count else None,
            "start_max_ms": start.max if start and start.count else None,
            "p50_ms": lateness.p50 if lateness and lateness.count else None,  # hand-over lateness
            "p99_ms": lateness.p99 if lateness and lateness.count else None,
            "fires": sum(counts.get(k, 0) for k in ("ok", "error", "timeout")),
            "errors": counts.get("error", 0) + counts.get("timeout", 0),
            "missed": entry.get("missed_slots", 0), "missed_records": counts.get("missed", 0),
            "skipped": counts.get("skipped", 0),
            "error": error, "note": row.note,
        })
    return out
