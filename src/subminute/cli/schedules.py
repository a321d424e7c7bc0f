"""Schedule commands: add, remove, start, stop, set (``status`` and ``history``: :mod:`.status_cmd`).

Every row written goes through the one check of :mod:`.checks` (the row parser, then the target built as
the controller will build it); every reference (an id or a name) is resolved against the table before
anything changes, and one that names more than one schedule is refused with the candidates.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..control.rows import OVERLAP_POLICIES, Schedule, apply_changes, check_name, plain, schedule_from_row
from ..control.sqlite import SqliteStore
from ..errors import ConfigError, NotFoundError
from .args import count, db_path, digits, existing_db_path, schedule_id
from .checks import check_row
from .output import say

__all__ = ["register", "open_store", "resolve_id", "resolve_ids", "describe_timetable"]


def open_store(args: argparse.Namespace, *, read_only: bool = False) -> SqliteStore:
    """The control file; ``read_only``: it must exist, and it is opened for reading only."""
    if read_only:
        return SqliteStore(existing_db_path(args), read_only=True)
    return SqliteStore(db_path(args))


def _name_of(row: Mapping[str, Any]) -> str:
    """The name a reference matches: the row's own (even one the parser refuses, such as a number written
    by hand), else the default name of its id."""
    name = plain(row.get("name"))
    return name if isinstance(name, str) and name else schedule_from_row(row).name


def _listing(candidates: Sequence[tuple[int, str]], limit: int = 20) -> str:
    shown = ", ".join(f"{sid} ({name})" for sid, name in candidates[:limit])
    return shown + (f" and {len(candidates) - limit} more" if len(candidates) > limit else "")


def _resolve(rows: Sequence[Mapping[str, Any]], ref: str) -> int:
    text = ref.strip()
    named = [(int(plain(r["id"])), ref) for r in rows if _name_of(r) == ref]
    candidates: list[tuple[int, str]] = []
    if digits(text) or (digits(text.lstrip("+-")) and not named):  # '+5' may be a name; '5' never is
        wanted = schedule_id(text)  # 0, negative or too big: refused with the id rule
        candidates += [(wanted, _name_of(r)) for r in rows if plain(r.get("id")) == wanted]
    candidates += [c for c in named if c not in candidates]
    if len(candidates) == 1:
        return candidates[0][0]
    if candidates:
        numeric = [sid for sid, name in candidates if name.isdigit()]
        fix = (f"rename schedule {numeric[0]} (a name may not be a number): subminute set {numeric[0]} --name NEW"
               if numeric and digits(text) else "give the id")
        raise ConfigError("schedule", ref, f"it names {len(candidates)} schedules: {_listing(candidates)}; {fix}")
    known = [(int(plain(r["id"])), _name_of(r)) for r in rows]
    names = _listing(known) or "none yet; add one with 'subminute add'"
    raise NotFoundError(f"no schedule {ref!r}; the schedules are: {names}")


def resolve_ids(rows: Sequence[Mapping[str, Any]], refs: Sequence[str]) -> list[int]:
    """Schedules by id or name, every reference checked before any is used (duplicates dropped)."""
    out: list[int] = []
    for ref in refs:
        sid = _resolve(rows, ref)
        if sid not in out:
            out.append(sid)
    return out


def resolve_id(store: SqliteStore, ref: str) -> int:
    """A schedule by id or by name."""
    return _resolve(store.rows(), ref)


def describe_timetable(schedule: Schedule, now_ms: int | None = None) -> str:
    timetable = schedule.timetable
    return timetable.describe() if now_ms is None else timetable.short(now_ms)


# -- building rows from arguments --------------------------------------------------------------------------

def _add_schedule_options(p: argparse.ArgumentParser, *, for_set: bool) -> None:
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--every", "--waitseconds", dest="every", metavar="DURATION",
                        help="fixed interval: seconds (0.1 to 86400) or 500ms, 2s, 5m, 1h")
    timing.add_argument("--plan", metavar="TEXT",
                        help="interval plan, e.g. 'tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s'")
    if for_set:
        p.add_argument("--name", help="a new name")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--http", metavar="URL", help="poll this http(s) URL")
    target.add_argument("--call", metavar="MODULE:FUNCTION", help="call this Python function with the event")
    target.add_argument("--command", metavar="COMMAND", help="run this program (split like a shell, run without one)")
    target.add_argument("--tcp", metavar="HOST:PORT", help="connect to this TCP endpoint")
    target.add_argument("--target", metavar="JSON", help="a target spec as JSON, e.g. '{\"type\": \"noop\"}'")
    p.add_argument("--method", help="HTTP method (default GET)")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="HTTP header, repeatable")
    p.add_argument("--body", help="HTTP request body")
    p.add_argument("--expect", action="append", metavar="CODE", help="expected HTTP status (default any 2xx)")
    p.add_argument("--overlap", choices=OVERLAP_POLICIES, help="when the previous fire still runs: allow or skip")
    p.add_argument("--timeout", metavar="SECONDS", help="per-fire timeout (default 10)")
    p.add_argument("--offset", metavar="DURATION", help="shift the epoch-aligned grid by this much")
    p.add_argument("--grace", metavar="SECONDS", help="how late a fire may still be (default 2)")


def _target_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    for flag in ("http", "call", "command", "tcp", "target"):
        if getattr(args, flag) is not None and not getattr(args, flag).strip():
            raise ConfigError(f"--{flag}", getattr(args, flag), "give a value (an empty one is no target)")
    if args.http is not None:
        spec: dict[str, Any] = {"type": "http", "url": args.http}
        if args.method:
            spec["method"] = args.method
        if args.header:
            headers = {}
            for h in args.header:
                name, sep, value = h.partition(":")
                if not sep or not name.strip():
                    raise ConfigError("--header", h, "use NAME:VALUE, e.g. 'Accept: application/json'")
                headers[name.strip()] = value.strip()
            spec["headers"] = headers
        if args.body is not None:
            spec["body"] = args.body
        if args.expect:
            spec["expect"] = [count(e, "--expect", 100, 599, "an HTTP status code") if digits(e.strip()) else e
                              for e in args.expect]
        return spec
    if args.method or args.header or args.body is not None or args.expect:
        raise ConfigError("--method/--header/--body/--expect", None, "use them together with --http URL")
    if args.call is not None:
        return {"type": "python", "ref": args.call}
    if args.command is not None:
        try:
            argv = shlex.split(args.command)
        except ValueError as exc:
            raise ConfigError("--command", args.command, f"quote it as a shell would ({exc})") from None
        return {"type": "command", "argv": argv}
    if args.tcp is not None:
        host, sep, port = args.tcp.rpartition(":")
        if not sep or not host:
            raise ConfigError("--tcp", args.tcp, "use HOST:PORT, e.g. 127.0.0.1:9000")
        return {"type": "tcp", "host": host, "port": count(port, "--tcp port", 1, 65535, "a port")}
    if args.target is not None:
        try:
            value = json.loads(args.target)
        except (ValueError, RecursionError):
            raise ConfigError("--target", args.target, "use a JSON object with a type") from None
        if not isinstance(value, dict):
            raise ConfigError("--target", args.target, "use a JSON object with a type")
        return value
    return None


def _changes_from_args(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.every is not None:
        changes["waitseconds"] = args.every
        changes["plan"] = None
    if args.plan is not None:
        if not args.plan.strip():
            raise ConfigError("--plan", args.plan, "give a plan such as 'tz=UTC; 06:00-20:00 every 2s; otherwise "
                                                   "every 30s' (set --no-plan removes one)")
        changes["plan"] = args.plan
    target = _target_from_args(args)
    if target is not None:
        changes["target"] = target
    for key in ("overlap", "timeout", "offset", "grace"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if getattr(args, "name", None) is not None:
        changes["name"] = check_name(args.name, "--name")
    return changes


# -- commands ----------------------------------------------------------------------------------------------

def _note(sid: int, note: str | None) -> None:
    if note:
        say(f"subminute: note: schedule {sid}: {note}", file=sys.stderr)


def _cmd_add(args: argparse.Namespace) -> int:
    given_id = schedule_id(args.id, "--id") if args.id is not None else None
    row: dict[str, Any] = {"id": given_id or 1, "running": not args.stopped}
    if args.name is not None:
        row["name"] = check_name(args.name, "--name")
    row.update(_changes_from_args(args))
    try:
        clean_row, note = check_row(row)  # before the file is opened: a bad row creates nothing
    except ConfigError as exc:
        if given_id is None:  # its id is not known yet: the error is the field's alone
            raise ConfigError(exc.field, exc.value, exc.allowed) from None
        raise
    if args.name is None:
        clean_row.pop("name", None)  # the default name of its id

    def choose_id(rows: list[dict[str, Any]], next_id: int) -> int:  # in the write's transaction: another add
        sid = given_id if given_id is not None else next_id  # may run too; a removed schedule's id is not reused
        if any(plain(r["id"]) == sid for r in rows):
            raise ConfigError("--id", sid, "use an id no schedule has yet, or 'subminute set' to change it")
        return sid

    store = open_store(args)
    sid = store.add(clean_row, choose_id)
    schedule = schedule_from_row(store.get(sid))
    say(f"added schedule {sid} ({schedule.name}): {describe_timetable(schedule)}, "
        f"{'running' if schedule.running else 'stopped'}")
    _note(sid, note)
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    store = open_store(args)
    sids = resolve_ids(store.rows(), args.schedules)
    for sid in sids:
        store.delete(sid)
        say(f"removed schedule {sid}")
    return 0


def _set_running(args: argparse.Namespace, running: bool) -> int:
    store = open_store(args)
    rows = store.rows()
    sids = resolve_ids(rows, args.schedules or ["1"])  # every reference, and every row, checked first
    by_id = {plain(r["id"]): r for r in rows}
    for sid in sids:
        if running:
            check_row({**by_id[sid], "running": True})  # a row that cannot run is not started
        else:
            apply_changes(by_id[sid], {"running": False}, sid)  # the store's own check: a stop stops any row
    for sid in sids:
        store.update(sid, {"running": running})
        say(f"schedule {sid}: {'started' if running else 'stopped'}")
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    changes = _changes_from_args(args)
    if args.no_plan:
        if args.plan is not None:
            raise ConfigError("--no-plan", args.plan, "give --plan TEXT or --no-plan, not both")
        changes["plan"] = None
    if not changes:
        raise ConfigError("set", args.schedule, "say what to change: --every, --plan, --http, --timeout, ...")
    store = open_store(args)
    sid = resolve_id(store, args.schedule)
    _, note = check_row({**store.get(sid), **changes})
    store.update(sid, changes)
    schedule = schedule_from_row(store.get(sid))
    say(f"schedule {sid} ({schedule.name}): {describe_timetable(schedule)}; "
        "the controller applies it within a second")
    _note(sid, note)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("add", help="add a schedule")
    p.add_argument("--id", metavar="N", help="numeric id, 1 to 2147483647 (default: the next free one)")
    p.add_argument("--name", help="a unique name")
    p.add_argument("--stopped", action="store_true", help="add it stopped")
    _add_schedule_options(p, for_set=False)
    p.set_defaults(func=_cmd_add)

    p = subparsers.add_parser("remove", help="remove schedules")
    p.add_argument("schedules", nargs="+", metavar="SCHEDULE", help="ids or names")
    p.set_defaults(func=_cmd_remove)

    p = subparsers.add_parser("start", help="start schedules (default: schedule 1)")
    p.add_argument("schedules", nargs="*", metavar="SCHEDULE", help="ids or names")
    p.set_defaults(func=lambda a: _set_running(a, True))

    p = subparsers.add_parser("stop", help="stop schedules (default: schedule 1)")
    p.add_argument("schedules", nargs="*", metavar="SCHEDULE", help="ids or names")
    p.set_defaults(func=lambda a: _set_running(a, False))

    p = subparsers.add_parser("set", help="change a schedule's interval, plan, target or options")
    p.add_argument("schedule", help="id or name")
    p.add_argument("--no-plan", action="store_true", help="drop the plan and use the fixed interval")
    _add_schedule_options(p, for_set=True)
    p.set_defaults(func=_cmd_set)
