"""What of a snapshot of the control rows may run: each row checked, its target built if it changed, names
unique; a bad row disables only its own schedule, recorded once as ``invalid`` with its error. Runs on the
keeper's thread. Standard library only.

* A row takes its name only if it is valid: a refused row (written by hand) never disables a healthy
  schedule of the same name. Between valid rows, the one with the lower id keeps the name.
* A row without a usable id (0, negative, too big, written by hand) is recorded under schedule id 0, and
  its error (which names its id) is remembered by itself, so that two such rows are each recorded once.
* An error is recorded and logged on one line, bounded, its control characters escaped: it quotes the
  table, which anyone may have written.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..control.base import Snapshot
from ..control.rows import Schedule
from ..errors import ConfigError
from ..results.records import FireRecord, bounded

__all__ = ["Checked", "check_rows", "shown"]

log = logging.getLogger("subminute.controller")

# C0 and C1 controls, DEL, the invisible characters that reorder or hide text (as the CLI escapes them), and
# lone surrogates (from JSON escapes such as "\\ud800": no UTF-8 file or terminal can take them)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(error: str) -> str:
    """An error as it is recorded and logged: control characters escaped, bounded."""
    return bounded(_CONTROL.sub(_escape, error))


def _key(schedule: Schedule, error: str) -> int:
    """Where ``invalid`` keeps a row's error: its id, or, for a row without a usable id (id 0), a negative
    number of its own (no id is negative), the same for the same error."""
    return schedule.id if schedule.id > 0 else -1 - zlib.crc32(error.encode("utf-8", "replace"))


@dataclass(frozen=True)
class Checked:
    running: dict[int, Schedule]  # valid and running: what the loop fires
    known: dict[int, Schedule]  # every valid schedule (an unchanged one keeps its object)
    present: frozenset[int]  # every id in the table, valid or not


def check_rows(snapshot: Snapshot, known: Mapping[int, Schedule], invalid: dict[int, str],
               prepare: Callable[[Schedule], None], record: Callable[[FireRecord], None], now_ms: int) -> Checked:
    """Check ``snapshot`` against the schedules ``known`` from the last one; update ``invalid`` (id, or a
    negative key for a row without a usable id -> error) and record each new error once."""
    running: dict[int, Schedule] = {}
    valid: dict[int, Schedule] = {}
    names: dict[str, int] = {}  # the names of the valid rows so far
    seen: set[int] = set()
    for schedule in snapshot.schedules:
        error = schedule.error
        previous = known.get(schedule.id)
        if error is None and schedule.name in names:
            error = (f"schedule {schedule.id}: name: {schedule.name!r} is not allowed; it is schedule "
                     f"{names[schedule.name]}'s name: give each schedule its own")
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
            error = shown(error)
            key = _key(schedule, error)
            seen.add(key)
            if invalid.get(key) != error:
                log.error("%s; this schedule is disabled until its row is fixed", error)
                record(FireRecord(schedule.id, schedule.name, now_ms, 0, "invalid", error=error))
            invalid[key] = error
            continue
        names[schedule.name] = schedule.id
        invalid.pop(schedule.id, None)
        valid[schedule.id] = schedule
        if schedule.running:
            running[schedule.id] = schedule
    present = frozenset(s.id for s in snapshot.schedules)
    for key in [k for k in invalid if k not in seen]:
        del invalid[key]  # removed from the table, or valid now
    return Checked(running, valid, present)
