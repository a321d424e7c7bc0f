"""The :class:`~.scheduler.Scheduler`'s arguments as control rows: its durations, the row fields of its
arguments checked by the one row parser (errors named after the arguments: ``every``, not
``waitseconds``), the id of a function's row, and schedules found by name or id."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..control.rows import normalize_row, parse_id, plain, schedule_from_row
from ..errors import ConfigError, NotFoundError

__all__ = ["Duration", "argument_error", "check_fields", "db_file", "id_for", "program_name", "resolve", "row_fields",
           "seconds"]

Duration = str | float | timedelta  # "500ms", "2s", 1.5 (seconds), timedelta(seconds=2)
_ARGUMENTS = {"waitseconds": "every"}  # row fields by the names of the Scheduler's arguments


def seconds(value: Duration | None) -> Any:
    """A duration argument as the row parser takes it (a timedelta as its seconds)."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def db_file(db: Any, field: str) -> Path:
    """A control file's path given in Python (a str or a path); a ConfigError naming ``field`` if it is none."""
    path = os.fspath(db) if isinstance(db, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path.strip() or "\0" in path:
        raise ConfigError(field, db, "use the path of a SQLite file, as a str or a pathlib.Path")
    return Path(path)


def program_name() -> str:
    """This program, as another process's error names the owner of its functions: the module run with
    ``-m``, else the script's file name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name:
        return name.removesuffix(".__main__")[:200]
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script[:200] if script not in ("", "-c") else "python"


def argument_error(exc: ConfigError, name: str) -> ConfigError:
    """A row's error as the arguments name it, at the schedule ``name``."""
    return ConfigError(_ARGUMENTS.get(exc.field, exc.field), exc.value, exc.allowed, where=f"schedule {name!r}")


def check_fields(row: Mapping[str, Any], name: str) -> None:
    """Check row fields as every way in checks them (:func:`normalize_row`); raise :func:`argument_error`."""
    try:
        normalize_row({**row, "id": 1})
    except ConfigError as exc:
        raise argument_error(exc, name) from None


def row_fields(name: str, *, every: Duration | None, plan: str | None, overlap: str | None,
               timeout: Duration | None, offset: Duration | None, grace: Duration | None,
               running: bool | None, timing_required: bool = True) -> dict[str, Any]:
    """The row fields of the arguments given, checked."""
    if every is not None and plan is not None:
        raise ConfigError("plan", plan, "give every= or plan=, not both", where=f"schedule {name!r}")
    if every is None and plan is None and timing_required:
        raise ConfigError("every", None, "give every= (500ms, 2s, 5m, 1h or seconds, from 0.1 s to 24 h) or "
                                         "plan= (a plan text)", where=f"schedule {name!r}")
    given = {"waitseconds": seconds(every), "plan": plan, "overlap": overlap, "timeout": seconds(timeout),
             "offset": seconds(offset), "grace": seconds(grace), "running": running}
    row = {key: value for key, value in given.items() if value is not None}
    check_fields({**row, "name": name}, name)
    return row


def id_for(name: str, rows: Sequence[Mapping[str, Any]], next_id: int) -> int:
    """The id of a function's schedule: the row a previous run of the program added under this name (a
    restarted program keeps its schedules and their numbering), else ``next_id`` (above every id used). A
    row of another kind that has the name is refused."""
    schedules = [schedule_from_row(r) for r in rows]
    for schedule in schedules:
        target = schedule.target or {}
        if target.get("type") == "callable" and target.get("name") == name:
            return schedule.id
    for schedule in schedules:
        if schedule.name == name:
            kind = (schedule.target or {}).get("type", "noop")
            raise ConfigError("name", name, f"schedule {schedule.id} has that name (a {kind} target); give this "
                                            "function another name=...")
    return next_id


def resolve(rows: Sequence[Mapping[str, Any]], ref: str | int) -> tuple[int, str]:
    """A schedule by name or id: (id, name); :class:`NotFoundError` listing the schedules if none."""
    named = [(int(plain(r["id"])), schedule_from_row(r).name) for r in rows]
    if isinstance(ref, int) and not isinstance(ref, bool):
        sid = parse_id(ref, "schedule")
        found = [(i, n) for i, n in named if i == sid]
    elif isinstance(ref, str):
        found = [(i, n) for i, n in named if n == ref]
    else:
        raise ConfigError("schedule", ref, "give a schedule's name (or its id)")
    if len(found) > 1:
        raise ConfigError("schedule", ref, f"it names {len(found)} schedules ({', '.join(str(i) for i, _ in found)}); "
                                           "give the id")
    if not found:
        known = ", ".join(f"{n} ({i})" for i, n in named[:20]) or "none yet"
        raise NotFoundError(f"no schedule {ref!r}; the schedules are: {known}")
    return found[0]
