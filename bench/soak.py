#!/usr/bin/env python3
"""Soak: 100 schedules at 1 s for a bounded time, with a fault injected every minute.

Two controller processes (one firing, one standing by) share one SQLite file, as two `subminute run`
would. Every ``--fault-every`` seconds (default 60) the next fault of this cycle is injected:

1. store outage: another connection holds the SQLite write lock for ``--outage-s`` (default 8 s, longer
   than SQLite's 5 s busy timeout and the lease period);
2. controller kill: kill -9 of the lease holder; the standby takes over; a new standby is started;
3. clock step: the controllers' wall clock is stepped by ``--step-s`` (default 5 s), forward and back
   in turn (the children read the wall clock through an offset, moved on SIGUSR1/SIGUSR2).

At the end it prints fires expected / fired / missed / duplicated, lateness p50/p99/max, and the memory
(RSS) of the controller processes at start and end, and exits non-zero if a slot fired twice or a slot
was missed outside an injected fault. A slot instant fired again after a *backward* clock step is the
documented policy (docs/guarantees.md) and is counted apart, as "repeated by a backward step".

    python bench/soak.py                  # 10 minutes
    python bench/soak.py --minutes 2      # shorter (CI runs --minutes 1.5 --fault-every 20)
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subminute.control.sqlite import SqliteStore
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.local import LocalDispatcher
from subminute.results.sinks import SqliteSink
from subminute.timing.clock import SystemClock
from subminute.timing.stats import summarize

FAULTS = ("store outage", "controller kill", "clock step")


# -- the child: one controller --------------------------------------------------------------------------
class OffsetClock(SystemClock):
    """The system clocks, with the wall clock shifted by ``offset`` seconds (stepped by signals)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


def child(db: str, ttl: float, offset: float, step: float) -> int:
    faulthandler.register(signal.SIGQUIT, all_threads=True)  # stacks on demand, for a stuck child
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s child %(process)d %(levelname)s %(message)s")
    clock = OffsetClock(offset)
    store = SqliteStore(db)
    sink = SqliteSink(db)
    dispatcher = LocalDispatcher(sink)
    controller = Controller(store, dispatcher, clock, ControllerOptions(lease_ttl_s=ttl), sink=sink)
    signal.signal(signal.SIGTERM, lambda *_: controller.stop())

    def step_by(seconds: float) -> None:
        clock.offset += seconds

    signal.signal(signal.SIGUSR1, lambda *_: step_by(step))
    signal.signal(signal.SIGUSR2, lambda *_: step_by(-step))
    controller.run()
    dispatcher.close(timeout_s=5)
    sink.close()
    store.close()
    return 0


# -- the parent: faults and the audit -------------------------------------------------------------------
@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    started: float
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    ended: float | None = None


@dataclass
class Soak:
    db: Path
    args: argparse.Namespace
    procs: dict[int, Proc] = field(default_factory=dict)
    offset: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # kind, and windows in controller wall ms
    steps_back: list[tuple[int, int]] = field(default_factory=list)  # repeated stretches (wall ms)

    def wall_ms(self) -> int:
        """The controllers' wall clock now."""
        return int((time.time() + self.offset) * 1000)

    def start_child(self) -> Proc:
        a = self.args
        log = open(self.db.parent / "children.log", "ab")  # noqa: SIM115 - the child owns it
        popen = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", str(self.db), "--ttl", str(a.ttl),
             "--offset", repr(self.offset), "--step-s", repr(a.step_s)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        proc = Proc(popen, time.monotonic())
        self.procs[popen.pid] = proc
        return proc

    def live(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.popen.poll() is None]

    def holder_pid(self) -> int | None:
        store = SqliteStore(self.db)
        try:
            lease = store.read_lease()
        finally:
            store.close()
        if lease is None or lease.expires_at < time.time() + self.offset:
            return None
        pid = int(lease.owner.rsplit(":", 1)[-1])
        return pid if pid in self.procs else None

    def sample_memory(self) -> None:
        for pid, proc in self.procs.items():
            if proc.popen.poll() is None:
                rss = _rss_kb(pid)
                if rss:
                    proc.rss_kb.append((time.monotonic(), rss))

    # -- faults ------------------------------------------------------------------------------------
    def inject(self, n: int) -> None:
        kind = FAULTS[n % len(FAULTS)]
        a = self.args
        started = self.wall_ms()
        if kind == "store outage":
            locker = sqlite3.connect(self.db, isolation_level=None, timeout=30)
            locker.execute("BEGIN IMMEDIATE")
            time.sleep(a.outage_s)
            locker.execute("ROLLBACK")
            locker.close()
            window = (started, self.wall_ms() + 2000)
        elif kind == "controller kill":
            deadline = time.monotonic() + a.ttl + 5
            pid = self.holder_pid()
            while pid is None and time.monotonic() < deadline:  # e.g. a takeover under way
                time.sleep(0.1)
                pid = self.holder_pid()
            started = self.wall_ms()
            if pid is None:
                print(f"  (no live holder to kill at fault {n})")
                return
            os.kill(pid, signal.SIGKILL)
            self.procs[pid].popen.wait(10)
            self.procs[pid].ended = time.monotonic()
            self.start_child()
            # takeover within ttl + 2 ticks; slots up to the fence are lost (+ 1.5 s after store trouble)
            window = (started - 1000, started + int((a.ttl + 3) * 1000))
        else:
            back = (n // len(FAULTS)) % 2 == 1
            sig = signal.SIGUSR2 if back else signal.SIGUSR1
            for proc in self.live():
                proc.popen.send_signal(sig)
            self.offset += -a.step_s if back else a.step_s
            step_ms = int(a.step_s * 1000)
            if back:
                self.steps_back.append((started - step_ms - 1000, started + 1000))
                window = (started - step_ms - 1000, started + 1000)
            else:
                window = (started - 1000, started + step_ms + 2000)
            kind = f"clock step {'-' if back else '+'}{a.step_s:g} s"
        self.faults.append({"kind": kind, "from_ms": window[0], "to_ms": window[1]})
        print(f"  {time.strftime('%H:%M:%S')} fault {n + 1}: {kind}", flush=True)

    def in_fault(self, slot_ms: int) -> bool:
        return any(f["from_ms"] <= slot_ms <= f["to_ms"] for f in self.faults)


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="subminute-soak-")) if args.db is None else None
    db = Path(args.db) if args.db else tmp / "soak.db"  # type: ignore[operator]
    store = SqliteStore(db)
    for sid in range(1, args.schedules + 1):
        store.put({"id": sid, "waitseconds": args.interval, "target": {"type": "noop"}})
    store.close()
    soak = Soak(db, args)
    duration = args.minutes * 60
    print(f"soak: {args.schedules} schedules every {args.interval:g} s for {duration:g} s, a fault every "
          f"{args.fault_every:g} s ({', '.join(FAULTS)}), lease {args.ttl:g} s; file {db}", flush=True)
    soak.start_child()
    time.sleep(1.0)
    soak.start_child()
    began = time.monotonic()
    next_fault, n, next_sample = began + args.fault_every / 2, 0, began + 5
    stop = threading.Event()
    try:
        while time.monotonic() - began < duration:
            now = time.monotonic()
            if now >= next_sample:
                soak.sample_memory()
                next_sample = now + 5
            if now >= next_fault and now - began < duration - 20:
                soak.inject(n)
                n += 1
                next_fault += args.fault_every
            stop.wait(0.1)
    finally:
        soak.sample_memory()
        for proc in soak.live():
            proc.popen.send_signal(signal.SIGTERM)
        for proc in soak.procs.values():
            try:
                proc.popen.wait(20)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
            proc.ended = proc.ended or time.monotonic()
    ok = report(soak, began)
    if tmp is not None and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp is not None:
        print(f"kept {tmp}")
    return 0 if ok else 1


def report(soak: Soak, began: float) -> bool:
    conn = sqlite3.connect(soak.db)
    rows = conn.execute("SELECT schedule_id, slot_ms, status, dispatched_ms, detail FROM fires").fetchall()
    conn.close()
    every = round(soak.args.interval * 1000)
    fires = [r for r in rows if r[2] in ("ok", "error", "timeout")]
    by_sid: dict[int, list[int]] = {}
    for sid, slot, *_ in fires:
        by_sid.setdefault(sid, []).append(slot)
    first = max(min(s) for s in by_sid.values())  # the stretch every schedule covers
    last = min(max(s) for s in by_sid.values())
    inside = [r for r in fires if first <= r[1] <= last]
    counts: dict[tuple[int, int], int] = {}
    for sid, slot, *_ in inside:
        counts[(sid, slot)] = counts.get((sid, slot), 0) + 1
    grid = range(first, last + 1, every)
    expected = len(grid) * len(by_sid)
    repeats = [(k, c - 1) for k, c in counts.items() if c > 1]
    by_design = sum(c for (sid, slot), c in repeats if any(lo <= slot <= hi for lo, hi in soak.steps_back))
    duplicated = sum(c for _, c in repeats) - by_design
    missing = [(sid, slot) for sid in by_sid for slot in grid if (sid, slot) not in counts]
    missed_outside = [m for m in missing if not soak.in_fault(m[1])]
    counted = sum(int(json.loads(r[4])["missed"]) for r in rows if r[2] == "missed" and r[4])
    late = [r[3] - r[1] for r in inside if r[2] == "ok" and r[3] is not None]
    quiet = [r[3] - r[1] for r in inside if r[2] == "ok" and r[3] is not None and not soak.in_fault(r[1])]
    s, q = summarize(late), summarize(quiet)

    print("\n== soak result")
    print(f"ran {time.monotonic() - began:.0f} s; faults: " + ", ".join(f["kind"] for f in soak.faults))
    print(f"fires expected {expected}  fired {len(inside)}  missed {len(missing)} "
          f"(outside faults {len(missed_outside)}; counted by the controllers {counted})  "
          f"duplicated {duplicated}  repeated by a backward step {by_design}")
    print(f"lateness ms: p50 {s.p50:.2f}  p99 {s.p99:.2f}  max {s.max:.2f}  "
          f"(outside faults: p50 {q.p50:.2f}  p99 {q.p99:.2f}  max {q.max:.2f})")
    print("controller processes (RSS at first and last sample):")
    longest = None
    for pid, proc in soak.procs.items():
        if not proc.rss_kb:
            continue
        lived = (proc.ended or time.monotonic()) - proc.started
        print(f"  pid {pid}: lived {lived:5.0f} s  memory start {proc.rss_kb[0][1] / 1024:6.1f} MiB  "
              f"end {proc.rss_kb[-1][1] / 1024:6.1f} MiB")
        if longest is None or lived > longest[0]:
            longest = (lived, proc)
    if longest is not None:
        samples = longest[1].rss_kb
        settled = samples[min(2, len(samples) - 1)][1]  # after its first ~10 s (imports, pools, caches)
        print(f"memory of the longest-lived controller: start {settled / 1024:.1f} MiB, end "
              f"{samples[-1][1] / 1024:.1f} MiB over {longest[0]:.0f} s")
    ok = duplicated == 0 and not missed_outside
    print("PASS" if ok else "FAIL: " + (f"{duplicated} duplicated; " if duplicated else "")
          + (f"{len(missed_outside)} missed outside faults, e.g. {missed_outside[:3]}" if missed_outside else ""))
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--schedules", type=int, default=100)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between fires of each schedule")
    p.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults (default 60)")
    p.add_argument("--outage-s", type=float, default=8.0, help="how long the write lock is held")
    p.add_argument("--step-s", type=float, default=5.0, help="size of a clock step")
    p.add_argument("--ttl", type=float, default=5.0, help="the controllers' lease period")
    p.add_argument("--db", help="SQLite file to use (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    p.add_argument("--offset", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.ttl, args.offset, args.step_s)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
