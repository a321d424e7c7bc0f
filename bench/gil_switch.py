"""Does the GIL switch interval delay the controller under HTTP load? (It does; subminute uses 1 ms.)

One no-op schedule at 0.1 s shares the process with 200 HTTP schedules at 1 s polling a feed server in a
separate process on 127.0.0.1. For each switch interval it prints the no-op schedule's lateness p50/p99/max
and the HTTP fires' dispatch lateness p99. Usage: ``python bench/gil_switch.py [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import subminute.runtime.local as local
from subminute.results.sinks import FireLog
from subminute.runtime.local import LocalRuntime
from subminute.timing.stats import summarize

SERVER = ("import time; from subminute.cli.demo_feed import FeedServer; "
          "s = FeedServer(time.time, port={port}).start(); print('ready', flush=True); time.sleep(3600)")


def one_case(switch_s: float, seconds: float, port: int) -> list[str]:
    local.SWITCH_INTERVAL_S = switch_s  # LocalRuntime.run applies it (and never raises it above the default)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "b.db"
        runtime = LocalRuntime(db)
        runtime.store.put({"id": 1, "waitseconds": 0.1, "target": {"type": "noop"}})
        for i in range(2, 202):
            runtime.store.put({"id": i, "waitseconds": 1, "offset": (i % 10) * 0.1 + 0.05,
                               "target": {"type": "http", "url": f"http://127.0.0.1:{port}/alerts"}})
        timer = threading.Timer(seconds, runtime.stop)
        timer.start()
        runtime.run()
        log = FireLog(db)
        rows = log.query("SELECT schedule_id, lateness_ms, status FROM fires")
        log.close()
    noop = summarize(r[1] for r in rows if r[0] == 1)
    http = summarize(r[1] for r in rows if r[0] != 1 and r[2] == "ok")
    return [f"{switch_s * 1000:g} ms", str(noop.count), f"{noop.p50:.2f}", f"{noop.p99:.2f}", f"{noop.max:.2f}",
            str(http.count), f"{http.p99:.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=18777)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(port=args.port)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("ready")
        rows = []
        for switch in (0.005, 0.001):
            print(f"switch interval {switch * 1000:g} ms: {args.seconds:g}s ...", file=sys.stderr, flush=True)
            rows.append(one_case(switch, args.seconds, args.port))
    finally:
        server.kill()
    head = ["switch interval", "noop fires", "noop p50 ms", "noop p99 ms", "noop max ms", "http fires",
            "http dispatch p99 ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
