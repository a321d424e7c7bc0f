"""Result commands: ``export`` (fire records or kept bodies as JSON Lines, JSON or CSV) and ``report``
(text summary and PNG plot of a schedule's lateness). Both only read: the control file is opened
read-only, and never created."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError, NotFoundError
from ..results.bodies import read_bodies
from ..results.export import EXPORT_FORMATS, export_bodies, export_fires
from ..storage.sqlite import read_only_opens
from ..timing.durations import parse_duration_ms
from .args import count, db_path, digits, existing_db_path, schedule_id
from .output import fmt_instant, print_json, print_table, say

__all__ = ["parse_since", "print_bodies", "register"]


def parse_since(value: str | None, now_ms: int | None = None) -> int | None:
    """``--since``: a duration back from now (``10m``, ``2h``, ``90s``) or an ISO 8601 instant."""
    if value is None:
        return None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        return now_ms - parse_duration_ms(value, "--since")
    except ConfigError:
        pass
    try:
        instant = datetime.fromisoformat(value)  # Python 3.11 reads a trailing Z
    except ValueError:
        raise ConfigError("--since", value, "use a duration back from now (10m, 2h) or an ISO 8601 instant "
                                            "(2026-11-23T10:00:00Z)") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return int(instant.timestamp() * 1000)


def _db(args: argparse.Namespace) -> Path:
    return existing_db_path(args)


def _schedule(args: argparse.Namespace) -> int | None:
    """``--schedule`` by id or name, resolved in the control file (an id alone when there is none: bodies
    kept elsewhere, ``--bodies-from``)."""
    ref = getattr(args, "schedule", None)
    if ref is None:
        return None
    from .schedules import open_store, resolve_id

    numeric = digits(ref.strip())
    if not db_path(args).is_file() and numeric:
        return schedule_id(ref, "--schedule")
    try:
        return resolve_id(open_store(args, read_only=True), ref)
    except NotFoundError:
        if numeric:  # records outlive their row: a deleted schedule's fires are still there to read
            return schedule_id(ref, "--schedule")
        raise


def print_bodies(source: str | Path, schedule_id: int | None, limit: int = 20, *, decode: str | None = None,
                 as_json: bool = False, file: TextIO | None = None) -> int:
    """Show kept bodies (for ``history --bodies``): a table of slot, digest, size and the start of each
    body (or its decoded summary), or JSON. Returns how many were shown."""
    rows = read_bodies(source, schedule_id, limit, decode=decode)
    if as_json:
        print_json(rows, file=file)
        return len(rows)
    if not rows:
        say("no bodies kept (add \"keep\" to the target spec)", file=file)
        return 0
    table = []
    for r in rows:
        if decode:
            shown = _one_line(r.get("summary"))
        elif r["encoding"] == "utf-8":
            shown = " ".join(r["body"].split())
        else:
            shown = f"({r['size']} bytes of binary)"
        table.append([fmt_instant(r["slot_ms"]), r["schedule_id"], r["seq"], r["digest"], r["size"],
                      shown[:70] + ("..." if len(shown) > 70 else "")])
    print_table(["SLOT (UTC)", "ID", "SEQ", "DIGEST", "BYTES", "BODY"], table, file=file)
    return len(rows)


def _one_line(summary: Any) -> str:
    if isinstance(summary, dict) and "counts" in summary:
        c = summary["counts"]
        return f"{c['vehicles']} vehicles, {c['trip_updates']} trip updates, {c['alerts']} alerts"
    import json

    return json.dumps(summary, separators=(",", ":"), default=str)


def _cmd_export(args: argparse.Namespace) -> int:
    limit = count(args.limit, "--limit")
    since = parse_since(args.since)
    with read_only_opens():
        return _export(args, limit, since)


def _export(args: argparse.Namespace, limit: int | None, since: int | None) -> int:
    db = _db(args) if not ((args.what == "bodies" or args.files) and args.bodies_from) else None
    sid = _schedule(args)
    out: TextIO
    close = False
    if args.files:
        source = args.bodies_from or db
        assert source is not None
        try:
            count_ = export_bodies(source, schedule_id=sid, since_ms=since, limit=limit,
                                   decode=args.decode, directory=args.files)
        except OSError as exc:
            raise ConfigError("--files", args.files, f"name a directory that can be made and written "
                                                     f"({exc.strerror or exc})") from None
        say(f"wrote {count_} bodies to {args.files}", file=sys.stderr)
        return 0
    if args.out and args.out != "-":
        try:
            out = open(args.out, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError("--out", args.out, f"name a file that can be written ({exc.strerror})") from None
        close = True
    else:
        out = sys.stdout
    try:
        if args.what == "bodies":
            source = args.bodies_from or db
            assert source is not None
            written = export_bodies(source, out, args.format, schedule_id=sid, since_ms=since, limit=limit,
                                    decode=args.decode)
        else:
            assert db is not None
            written = export_fires(db, out, args.format, schedule_id=sid, since_ms=since, limit=limit)
    finally:
        if close:
            out.close()
    if close:
        say(f"wrote {written} {args.what} to {args.out}", file=sys.stderr)
    return 0


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(digits(p.strip()) and len(p.strip()) <= 6 for p in parts):
        raise ConfigError("--size", text, "use WIDTHxHEIGHT in pixels, such as 1200x800")
    width, height = (int(p) for p in parts)
    if not (200 <= width <= 10000 and 150 <= height <= 10000):
        raise ConfigError("--size", text, "use WIDTHxHEIGHT in pixels, from 200x150 to 10000x10000, such as 1200x800")
    return width, height


def _cmd_report(args: argparse.Namespace) -> int:
    from ..observe import report

    width, height = _size(args.size)
    last = count(args.last, "--last")
    since = parse_since(args.since)
    with read_only_opens():
        db = _db(args)
        sid = _schedule(args)
        rows = report.load_fires(db, sid, since_ms=since, limit=last)
    summary = report.summarize_fires(rows)
    if not summary["fires"] and not summary["counts"]:
        raise ConfigError("schedule", args.schedule, "pick a schedule with fire records (see 'subminute status')")
    png = None
    if not args.no_plot:
        target = args.out or f"subminute-report-{sid if sid is not None else 'all'}.png"
        name = f" ({summary['name']})" if summary["name"] and sid is not None else ""
        title = f"schedule {sid if sid is not None else 'all'}{name}"
        try:
            png = str(report.plot(rows, target, width_px=width, height_px=height, title=title))
        except OSError as exc:
            raise ConfigError("--out", target, f"name a PNG file that can be written ({exc.strerror or exc})") from None
    if args.json:
        print_json({**summary, "png": png})
    else:
        say(*report.format_summary(summary).splitlines())
        if png:
            say(f"plot: {png} ({width}x{height})")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="export fire records or kept bodies (JSON Lines, JSON, CSV, or files)",
        description="Write fire records (default) or kept response bodies, oldest first.")
    p.add_argument("what", nargs="?", choices=["fires", "bodies"], default="fires")
    p.add_argument("--schedule", "-s", metavar="ID|NAME", help="one schedule (default: all)")
    p.add_argument("--since", metavar="WHEN", help="only slots since: a duration back (10m, 2h) or an ISO instant")
    p.add_argument("--limit", metavar="N", help="at most the last N (1 to 1000000)")
    p.add_argument("--format", "-f", choices=list(EXPORT_FORMATS), default="jsonl")
    p.add_argument("--out", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--bodies-from", metavar="PATH",
                   help="where bodies were kept: a SQLite file or a jsonl directory (default: the --db file)")
    p.add_argument("--decode", choices=["gtfs-rt", "json"], help="bodies: add a readable summary of each")
    p.add_argument("--files", metavar="DIR", help="bodies: write each body as a file into DIR")
    p.set_defaults(func=_cmd_export)

    p = subparsers.add_parser(
        "report", help="lateness report of a schedule: text summary and PNG plot",
        description="Summarise how well a schedule kept time and plot its lateness over time and distribution.")
    p.add_argument("schedule", nargs="?", metavar="ID|NAME", help="the schedule (default: all)")
    p.add_argument("--out", "-o", metavar="PNG", help="the plot file (default: subminute-report-<id>.png)")
    p.add_argument("--size", default="1200x800", metavar="WxH", help="plot size in pixels (default 1200x800)")
    p.add_argument("--last", metavar="N", help="only the last N fire records (1 to 1000000)")
    p.add_argument("--since", metavar="WHEN", help="only slots since: a duration back (10m, 2h) or an ISO instant")
    p.add_argument("--no-plot", action="store_true", help="the text summary only (no matplotlib needed)")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    p.set_defaults(func=_cmd_report)
