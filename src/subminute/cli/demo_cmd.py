"""``subminute demo``: a simulated city bus feed on 127.0.0.1, polled by three schedules, live.

No network and no set-up: the feed server, a temporary SQLite control file and the controller all run in
this process. Halfway through, the demo retunes the predictions schedule from 1 s to 500 ms through the
control table, as ``subminute set`` would from another terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..runtime.local import LocalRuntime
from .args import db_path, seconds_flag
from .demo_feed import FeedServer
from .live import LiveView, summary_table
from .run_cmd import in_own_thread, signals_stop

__all__ = ["register", "demo_rows"]


def _local_zone() -> str:
    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            ZoneInfo(name)
            return name
    except (ZoneInfoNotFoundError, ValueError):
        pass
    return "UTC"


def demo_rows(base_url: str, tz: str, gtfs: bool = False) -> list[dict[str, Any]]:
    rows = [
        {"id": 1, "name": "predictions", "waitseconds": 1, "overlap": "skip", "timeout": 2,
         "target": {"type": "http", "url": f"{base_url}/predictions?stop=Market"}},
        {"id": 2, "name": "vehicles", "waitseconds": 2, "timeout": 2,
         "plan": f"tz={tz}; 06:00-22:00 every 2s; otherwise every 5s",
         "target": {"type": "http", "url": f"{base_url}/vehicles"}},
        {"id": 3, "name": "alerts", "waitseconds": 5, "timeout": 2,
         "target": {"type": "http", "url": f"{base_url}/alerts"}},
    ]
    if gtfs:  # the same positions as GTFS-realtime, decoded, bodies kept when they change
        rows.append({"id": 4, "name": "gtfs-vehicles", "waitseconds": 5, "timeout": 2,
                     "target": {"type": "http", "url": f"{base_url}/gtfs-rt/vehicles", "decode": "gtfs-rt",
                                "keep": "change"}})
    return rows


def _cmd_demo(args: argparse.Namespace) -> int:
    seconds = seconds_flag(args.seconds, "--seconds", 1, 86400)
    assert seconds is not None
    given = db_path(args) if args.db is not None else None
    with tempfile.TemporaryDirectory(prefix="subminute-demo-") as tmp, contextlib.ExitStack() as signals:
        db = given or Path(tmp) / "demo.db"
        server = FeedServer(time.time).start()
        try:
            runtime = LocalRuntime(db, budget_s=seconds)
            signals.enter_context(signals_stop(runtime.stop))  # to the end, the summary included
            gtfs = server.gtfs is not None
            for row in demo_rows(server.url, _local_zone(), gtfs=gtfs):
                runtime.store.put(row)
            if not gtfs:
                print("subminute demo: the GTFS-realtime schedule is left out: it needs the gtfs extra "
                      "(pip install 'subminute[gtfs]')", flush=True)
            paths = "predictions, vehicles, alerts" + (", gtfs-rt/vehicles" if gtfs else "")
            footer = (f"feed: {server.url} ({paths})   control file: {db}\n"
                      f"at {seconds / 2:.0f}s the demo sets 'predictions' to every 500ms through the table; "
                      "Ctrl-C ends it early")

            def retune() -> None:
                runtime.store.update(1, {"waitseconds": 0.5})

            timer = threading.Timer(seconds / 2, retune)
            timer.daemon = True
            print(f"subminute demo: polling a simulated bus feed at {server.url} for {seconds:g}s ...", flush=True)
            live = LiveView(runtime.controller, title="subminute demo", footer=footer,
                            tty=False if args.no_live else None, every_s=0.5)
            if not live.tty:
                live.every_s = 5.0
            timer.start()
            with live:
                in_own_thread(runtime.run)
            timer.cancel()
            live.render() if live.tty else None
        finally:
            server.stop()
        print()
        print(summary_table(runtime.controller))
        fired = runtime.controller.stats["fired"]
        print(f"\n{fired} fires, {server.requests} requests served by the feed. "
              f"Try: subminute --db {db} history" if given else
              f"\n{fired} fires, {server.requests} requests served by the feed.")
        sys.stdout.flush()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="poll a simulated city bus feed on 127.0.0.1, live, for ~20 s")
    p.add_argument("--seconds", default="20", metavar="DURATION", help="how long to run: 1 s to 24 h (default 20)")
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of the live table")
    p.set_defaults(func=_cmd_demo)
