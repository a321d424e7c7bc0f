"""What of a snapshot of the control rows may run: each row checked, its target built if it changed, names
unique; a bad row disables only its own schedule, recorded once as ``invalid`` with its error. Runs on the
keeper's thread. Standard library only."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..control.base import Snapshot
from ..control.rows import Schedule
from ..errors import ConfigError
from ..results.records import FireRecord, bounded

__all__ = ["Checked", "check_rows"]

log = logging.getLogger("subminute.controller")


@dataclass(frozen=True)
class Checked:
    running: dict[int, Schedule]  # valid and running: what the loop fires
    known: dict[int, Schedule]  # every valid schedule (an unchanged one keeps its object)
    present: frozenset[int]  # every id in the table, valid or not


def check_rows(snapshot: Snapshot, known: Mapping[int, Schedule], invalid: dict[int, str],
               prepare: Callable[[Schedule], None], record: Callable[[FireRecord], None], now_ms: int) -> Checked:
    """Check ``snapshot`` against the schedules ``known`` from the last one; update ``invalid`` (id -> error)
    and record each new error once."""
    running: dict[int, Schedule] = {}
    valid: dict[int, Schedule] = {}
    names: dict[str, int] = {}
    for schedule in snapshot.schedules:
        error = schedule.error
        previous = known.get(schedule.id)
        if error is None and schedule.name in names:
            error = (f"schedule {schedule.id}: name: {schedule.name!r} is not allowed; it is schedule "
                     f"{names[schedule.name]}'s name: give each schedule its own")
        names.setdefault(schedule.name, schedule.id)
        if error is None and previous is not None and previous == schedule:
            schedule = previous  # unchanged: the same object, so the loop sees no change
        elif error is None and schedule.running:
            try:
                prepare(schedule)
            except ConfigError as exc:
                error = str(exc.located(f"schedule {schedule.id}"))
            except Exception as exc:  # noqa: BLE001 - a target that cannot be built disables its schedule
                error = f"schedule {schedule.id}: target: {bounded(repr(exc), 300)}"
        if error is not None:
            if invalid.get(schedule.id) != error:
                log.error("%s; this schedule is disabled until its row is fixed", error)
                record(FireRecord(schedule.id, schedule.name, now_ms, 0, "invalid", error=error))
            invalid[schedule.id] = error
            continue
        invalid.pop(schedule.id, None)
        valid[schedule.id] = schedule
        if schedule.running:
            running[schedule.id] = schedule
    present = frozenset(s.id for s in snapshot.schedules)
    for sid in [s for s in invalid if s not in present]:
        del invalid[sid]
    return Checked(running, valid, present)
