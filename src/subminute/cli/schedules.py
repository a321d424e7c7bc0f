"""Schedule commands: add, remove, start, stop, set, status, history."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from typing import Any

from ..control.rows import OVERLAP_POLICIES, Schedule, schedule_from_row
from ..control.sqlite import SqliteStore
from ..errors import ConfigError, NotFoundError
from ..results.sinks import FireLog
from ..storage.sqlite import default_db_path
from ..targets.base import build_target
from ..timing.durations import format_ms
from .output import fmt_age, fmt_instant, fmt_ms, print_json, print_table

__all__ = ["register", "open_store", "resolve_id", "describe_timetable"]


def open_store(args: argparse.Namespace) -> SqliteStore:
    return SqliteStore(args.db or default_db_path())


def resolve_id(store: SqliteStore, ref: str) -> int:
    """A schedule by id or by name."""
    rows = store.rows()
    if ref.isdigit():
        sid = int(ref)
        if any(int(r["id"]) == sid for r in rows):
            return sid
    for row in rows:
        if row.get("name") == ref or (row.get("name") is None and ref == ("default" if row["id"] == 1 else "")):
            return int(row["id"])
    names = ", ".join(f"{r['id']} ({r.get('name') or '-'})" for r in rows) or "none yet; add one with 'subminute add'"
    raise NotFoundError(f"no schedule {ref!r}; the schedules are: {names}")


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
    if args.http:
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
            spec["expect"] = [int(e) if e.isdigit() else e for e in args.expect]
        return spec
    if args.method or args.header or args.body is not None or args.expect:
        raise ConfigError("--method/--header/--body/--expect", None, "use them together with --http URL")
    if args.call:
        return {"type": "python", "ref": args.call}
    if args.command:
        return {"type": "command", "argv": shlex.split(args.command)}
    if args.tcp:
        host, sep, port = args.tcp.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError("--tcp", args.tcp, "use HOST:PORT, e.g. 127.0.0.1:9000")
        return {"type": "tcp", "host": host, "port": int(port)}
    if args.target:
        try:
            value = json.loads(args.target)
        except json.JSONDecodeError:
            raise ConfigError("--target", args.target, "use a JSON object with a type") from None
        return value  # type: ignore[no-any-return]
    return None


def _changes_from_args(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.every is not None:
        changes["waitseconds"] = args.every
        changes["plan"] = None
    if args.plan is not None:
        changes["plan"] = args.plan
    target = _target_from_args(args)
    if target is not None:
        changes["target"] = target
    for key in ("overlap", "timeout", "offset", "grace"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if getattr(args, "name", None) is not None:
        changes["name"] = args.name
    return changes


def _check_target(row: dict[str, Any]) -> None:
    """Build the target once, so that a bad URL or function is refused now, not at the first fire."""
    target = row.get("target")
    if isinstance(target, str):
        target = json.loads(target)
    build_target(target)


# -- commands ----------------------------------------------------------------------------------------------

def _cmd_add(args: argparse.Namespace) -> int:
    store = open_store(args)
    rows = store.rows()
    sid = args.id if args.id is not None else max([int(r["id"]) for r in rows] or [0]) + 1
    if any(int(r["id"]) == sid for r in rows):
        raise ConfigError("--id", sid, "use an id no schedule has yet, or 'subminute set' to change it")
    if args.name and any(r.get("name") == args.name for r in rows):
        raise ConfigError("--name", args.name, "use a name no schedule has yet")
    row: dict[str, Any] = {"id": sid, "running": not args.stopped}
    if args.name:
        row["name"] = args.name
    row.update(_changes_from_args(args))
    _check_target(row)
    store.put(row)
    schedule = schedule_from_row(store.get(sid))
    print(f"added schedule {sid} ({schedule.name}): {describe_timetable(schedule)}, "
          f"{'running' if schedule.running else 'stopped'}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    store = open_store(args)
    sid = resolve_id(store, args.schedule)
    store.delete(sid)
    print(f"removed schedule {sid}")
    return 0


def _set_running(args: argparse.Namespace, running: bool) -> int:
    store = open_store(args)
    for ref in args.schedules or ["1"]:
        sid = resolve_id(store, ref)
        store.update(sid, {"running": running})
        print(f"schedule {sid}: {'started' if running else 'stopped'}")
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    store = open_store(args)
    sid = resolve_id(store, args.schedule)
    changes = _changes_from_args(args)
    if args.no_plan:
        changes["plan"] = None
    if not changes:
        raise ConfigError("set", args.schedule, "say what to change: --every, --plan, --http, --timeout, ...")
    _check_target({**store.get(sid), **changes})
    store.update(sid, changes)
    schedule = schedule_from_row(store.get(sid))
    print(f"schedule {sid} ({schedule.name}): {describe_timetable(schedule)}; "
          "the controller applies it within a second")
    return 0


def status_rows(store: SqliteStore, log: FireLog, now_ms: int) -> list[dict[str, Any]]:
    stats = log.schedule_stats()
    out = []
    for raw in store.rows():
        schedule = schedule_from_row(raw)
        entry = stats.get(schedule.id, {"counts": {}, "last_slot_ms": None, "lateness": None})
        counts = entry["counts"]
        lateness = entry["lateness"]
        timetable = schedule.timetable
        out.append({
            "id": schedule.id, "name": schedule.name, "running": schedule.running,
            "interval_now_ms": timetable.interval_at(now_ms) if schedule.error is None else None,
            "plan": timetable.describe() if timetable.kind == "plan" else None,
            "next_slot_ms": timetable.next_slot(now_ms) if schedule.running else None,
            "last_fire_ms": entry["last_slot_ms"],
            "p50_ms": lateness.p50 if lateness and lateness.count else None,
            "p99_ms": lateness.p99 if lateness and lateness.count else None,
            "fires": sum(counts.get(k, 0) for k in ("ok", "error", "timeout")),
            "errors": counts.get("error", 0) + counts.get("timeout", 0),
            "missed": counts.get("missed", 0), "skipped": counts.get("skipped", 0),
            "error": schedule.error,
        })
    return out


def _cmd_status(args: argparse.Namespace) -> int:
    store = open_store(args)
    log = FireLog(store.path)
    now_ms = int(time.time() * 1000)
    rows = status_rows(store, log, now_ms)
    lease = store.read_lease()
    holder = None
    if lease is not None and lease.expires_at * 1000 > now_ms:
        holder = {"owner": lease.owner, "token": lease.token, "expires_in_s": round(lease.expires_at - now_ms / 1000, 1)}
    if args.json:
        print_json({"db": str(store.path), "controller": holder, "schedules": rows})
        return 0
    print(f"control file: {store.path}")
    print(f"controller:   {holder['owner']} holds the lease (token {holder['token']}, "
          f"{holder['expires_in_s']}s left, renewed while it runs)" if holder
          else "controller:   none running (start one with 'subminute run')")
    if not rows:
        print("no schedules yet: add one with 'subminute add --every 2s --http URL'")
        return 0
    print_table(
        ["ID", "NAME", "RUNNING", "INTERVAL", "NEXT SLOT", "LAST FIRE", "P50 MS", "P99 MS", "FIRES", "ERRORS",
         "MISSED"],
        [[r["id"], r["name"], "invalid" if r["error"] else ("yes" if r["running"] else "no"),
          format_ms(r["interval_now_ms"]) + (" (plan)" if r["plan"] else "") if r["interval_now_ms"] else None,
          fmt_instant(r["next_slot_ms"]), fmt_age(r["last_fire_ms"], now_ms), fmt_ms(r["p50_ms"]),
          fmt_ms(r["p99_ms"]), r["fires"], r["errors"], r["missed"]] for r in rows],
    )
    for r in rows:
        if r["error"]:
            print(f"\n{r['error']}\n  fix it with 'subminute set {r['id']} ...' (the other schedules keep firing)")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    store = open_store(args)
    sid = resolve_id(store, args.schedule) if args.schedule else None
    if args.bodies:
        from .results_cmd import print_bodies

        print_bodies(store.path, sid, args.limit, decode=args.decode, as_json=args.json)
        return 0
    records = FireLog(store.path).history(sid, args.limit)
    if args.json:
        print_json(records)
        return 0
    if not records:
        print("no fires recorded yet")
        return 0
    print_table(
        ["SLOT (UTC)", "ID", "SEQ", "STATUS", "LATE MS", "LATENCY MS", "HTTP", "BYTES", "ERROR"],
        [[fmt_instant(r["slot_ms"]), r["schedule_id"], r["seq"], r["status"], fmt_ms(r["lateness_ms"]),
          fmt_ms(r["latency_ms"]), r["http_status"], r["bytes"],
          (r["error"] or "")[:60] or None] for r in records],
    )
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("add", help="add a schedule")
    p.add_argument("--id", type=int, help="numeric id (default: the next free one)")
    p.add_argument("--name", help="a unique name")
    p.add_argument("--stopped", action="store_true", help="add it stopped")
    _add_schedule_options(p, for_set=False)
    p.set_defaults(func=_cmd_add)

    p = subparsers.add_parser("remove", help="remove a schedule")
    p.add_argument("schedule", help="id or name")
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

    p = subparsers.add_parser("status", help="show every schedule as a table")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_cmd_status)

    p = subparsers.add_parser("history", help="show recent fires")
    p.add_argument("schedule", nargs="?", help="id or name (default: all)")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--bodies", action="store_true", help="show kept response bodies instead of fires")
    p.add_argument("--decode", choices=["gtfs-rt", "json"], help="with --bodies: decode the bodies")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_cmd_history)
