"""The commands that only read the control file: ``status`` (every schedule, each row checked whole, and
the controller's lease as it is) and ``history`` (recent fires). They open the file read-only: they work on
a file this user cannot write, and never create a file or a directory."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..control.base import Lease
from ..control.handoff import Handoff
from ..control.sqlite import SqliteStore
from ..results.sinks import FireLog
from ..runtime.status import status_rows as build_status_rows
from ..storage.sqlite import read_only_opens
from ..timing.durations import format_ms
from .args import count
from .checks import inspect_rows
from .output import fmt_age, fmt_clock, fmt_instant, fmt_ms, print_json, print_table, say
from .schedules import open_store, resolve_id

__all__ = ["lease_view", "register", "status_rows"]


def status_rows(store: SqliteStore, log: FireLog, now_ms: int) -> list[dict[str, Any]]:
    """Every row checked whole (target included), with its statistics from the fire records (the rows are
    built by :func:`subminute.runtime.status.status_rows`, which ``Scheduler.status()`` shares)."""
    return build_status_rows(inspect_rows(store.rows()), log.schedule_stats(), now_ms)


def lease_view(lease: Lease | None, handoff: Handoff | None, now_s: float) -> dict[str, Any] | None:
    """The lease as it is: ``running`` (held and renewed by a live controller), ``handed-over`` (kept for a
    successor at a budget's end), ``released`` (a clean stop), ``expired`` or ``damaged`` (a row that does
    not parse, which counts as expired); with a line saying so."""
    if lease is None:
        return None
    view: dict[str, Any] = {"owner": lease.owner, "token": lease.token,
                            "expires_at_ms": round(lease.expires_at * 1000) if not lease.damaged else None}
    until = f"{fmt_clock(lease.expires_at * 1000)} UTC"
    who = f"{lease.owner or 'a controller'} (token {lease.token})"
    ours = handoff if handoff is not None and handoff.token == lease.token else None
    if lease.damaged:
        view.update(state="damaged", error=lease.damaged,
                    text=f"none known: the lease row is damaged ({lease.damaged}); it counts as expired: "
                         "'subminute run' takes it over after one lease period")
    elif lease.expires_at > now_s and ours is not None and ours.final and not ours.released:
        view.update(state="handed-over",
                    text=f"none running: {who} ended its budget; the lease is handed over to a successor; "
                         f"it may take it until {until} (later, a new controller starts afresh)")
    elif lease.expires_at > now_s:
        saved = ours.at_ms if ours is not None and not ours.final else None
        view.update(state="running", saved_ms=saved,
                    text=f"{who} holds the lease and renews it as it runs (valid until {until}"
                         + (f"; it saved its state {fmt_age(saved, now_s * 1000)})" if saved else ")"))
    elif ours is not None and ours.released:
        view.update(state="released",
                    text=f"none running: {who} released the lease at {until} (a clean stop); "
                         "start one with 'subminute run'")
    elif ours is not None and ours.final:
        view.update(state="expired",
                    text=f"none running: {who} handed the lease over at its budget's end and no successor took it "
                         f"by {until}; 'subminute run' starts afresh")
    else:
        view.update(state="expired",
                    text=f"none running: the lease of {who} expired at {until} without a hand-over (a crash or "
                         "a kill?); 'subminute run' takes it over after one lease period")
    return view


def _cmd_status(args: argparse.Namespace) -> int:
    with read_only_opens():
        store = open_store(args, read_only=True)
        log = FireLog(store.path, read_only=True)
        now_ms = int(time.time() * 1000)
        rows = status_rows(store, log, now_ms)
        lease = lease_view(store.read_lease(), store.load_handoff(), now_ms / 1000)
    holder = None
    if lease is not None and lease["state"] == "running":
        holder = {"owner": lease["owner"], "token": lease["token"],
                  "expires_in_s": round(lease["expires_at_ms"] / 1000 - now_ms / 1000, 1)}
    if args.json:
        print_json({"db": str(store.path), "controller": holder, "lease": lease, "schedules": rows})
        return 0
    say(f"control file: {store.path}",
        f"controller:   {lease['text']}" if lease else "controller:   none running (start one with 'subminute run')")
    if not rows:
        say("no schedules yet: add one with 'subminute add --every 2s --http URL'")
        return 0
    print_table(
        ["ID", "NAME", "RUNNING", "INTERVAL", "NEXT SLOT", "LAST FIRE", "START P50 MS", "START P99 MS", "FIRES",
         "ERRORS", "MISSED"],
        [[r["id"], r["name"], "INVALID" if r["error"] else ("yes" if r["running"] else "no"),
          format_ms(r["interval_now_ms"]) + (" (plan)" if r["plan"] else "") if r["interval_now_ms"] else None,
          fmt_instant(r["next_slot_ms"]), fmt_age(r["last_fire_ms"], now_ms), fmt_ms(r["start_p50_ms"]),
          fmt_ms(r["start_p99_ms"]), r["fires"], r["errors"], r["missed"]] for r in rows],
    )
    for r in rows:
        if r["error"] and not r["id"]:  # its id itself is refused (written by hand): no command can name it
            say("", r["error"], "  no command can name it by its id: 'subminute remove NAME' if it has a name, else "
                                "fix or delete the row with a SQLite tool (the other schedules keep firing)")
        elif r["error"]:
            say("", r["error"], f"  fix it with 'subminute set {r['id']} ...' (the other schedules keep firing)")
        elif r["note"]:
            say("", f"note: {r['note']}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    limit = count(args.limit, "--limit")
    assert limit is not None
    with read_only_opens():
        store = open_store(args, read_only=True)
        sid = resolve_id(store, args.schedule) if args.schedule else None
        if args.bodies:
            from .results_cmd import print_bodies

            print_bodies(store.path, sid, limit, decode=args.decode, as_json=args.json)
            return 0
        records = FireLog(store.path, read_only=True).history(sid, limit)
    if args.json:
        print_json(records)
        return 0
    if not records:
        say("no fires recorded yet")
        return 0
    print_table(
        ["SLOT (UTC)", "ID", "SEQ", "STATUS", "START LATE MS", "LATENCY MS", "HTTP", "BYTES", "ERROR"],
        [[fmt_instant(r["slot_ms"]), r["schedule_id"], r["seq"], r["status"], fmt_ms(r["start_lateness_ms"]),
          fmt_ms(r["latency_ms"]), r["http_status"], r["bytes"],
          (r["error"] or "")[:60] or None] for r in records],
    )
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="show every schedule as a table, and the controller's lease")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_cmd_status)

    p = subparsers.add_parser("history", help="show recent fires")
    p.add_argument("schedule", nargs="?", help="id or name (default: all)")
    p.add_argument("--limit", default="20", metavar="N", help="how many, 1 to 1000000 (default 20)")
    p.add_argument("--bodies", action="store_true", help="show kept response bodies instead of fires")
    p.add_argument("--decode", choices=["gtfs-rt", "json"], help="with --bodies: decode the bodies")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_cmd_history)
