"""When does the user's code start? The timing benchmark of issue 8: the floor, the peers and subminute's
real local runtime, in the same run, case by case.

Start lateness = the instant the user's code starts minus the planned slot (ms). "Starts" means:

* a Python job: its first line (``time.time()``, see bench/_probes.py), in every system;
* an HTTP poll: the instant the request reaches the server (a separate process on 127.0.0.1 that notes
  the arrival of every ``GET /s/<id>/<interval ms>/<offset ms>`` and computes arrival minus slot), and, on
  the client side, the job's first line (peers) or the ``started_ms`` of subminute's fire records (noted
  by the worker just before the target runs; ``start_lateness_ms`` too, when the fires table has it).

Systems (each (case, system) runs in its own fresh subprocess, so CPU time and threads never mix; CPU is
the process's CPU time, all threads, over a window of exactly ``fires`` intervals after a warm-up; with
``--rounds N`` (default 3) each case is cut into N rounds in which the systems take turns, so a change of
the machine's load falls on all of them, and the figures are taken over the rounds together):

* ``floor``: a bare thread sleeping (``time.sleep``, monotonic) to each absolute, epoch-aligned slot and
  calling the jobs inline, one after the other;
* ``floor-3`` (case 7 only, unless named with ``--systems``): the floor of subminute's design, three bare
  threads waking as its loop, worker and keeper do (2 ms before the slot, at the slot, 10 ms after it once
  a second) and doing nothing else: what the wake-ups alone cost;
* ``floor-3-store`` (the same): ``floor-3`` plus the SQLite work an idle second needs, through subminute's
  own store and record sink (the version read every second, a lease renewal with the positions every other
  second, each fire's record written by the keeper's wake-up): what the store's promises cost on top;
* ``apscheduler``: APScheduler 3.11 ``BackgroundScheduler``, ``add_job(fn, "interval", seconds=...,
  start_date=<aligned>)``, default executor (10 threads) and job defaults; its job cannot see its planned
  run time, so slots are inferred from the grid (the latest slot at or before the start, kept distinct
  and increasing per job);
* ``asyncio``: a bare event loop, one ``loop.call_at`` per slot and schedule; the callback is the job
  (HTTP: a kept-alive asyncio-streams client, as http.client would block the loop);
* ``subminute``: ``subminute.runtime.local.LocalRuntime(db)`` on a fresh SQLite file, rows put with
  ``runtime.store.put``, ``runtime.run()`` in a thread, ``runtime.stop()``; python targets
  ``_probes:event_job`` and, for HTTP, http targets. Its hand-over lateness (``lateness_ms`` of the fires
  table) is shown beside the start lateness.
* ``subminute-api``: the Python API, ``subminute.Scheduler()`` in memory with one function per schedule
  (``add``, what the ``every`` decorator calls) and ``start()``; its function calls the job with the slot
  of its event (starts before the first slot of the window are ignored: the scheduler fires at once)

Cases (``--fires``: fires per schedule of cases 1-4; ``--seconds``: length of cases 5-6; ``--idle-seconds``:
case 7; ``--schedules``: schedules of cases 5-6):

1. 1 schedule at 1 s (600 fires: 10 minutes per system);   2. the same, the job sleeping 30 % of the interval;
3. 1 schedule at 0.1 s;   4. the same with the 30 % job;
5. 1,000 schedules at 1 s on the same instants, 60 s;
6. 1,000 HTTP polls a second: 1,000 schedules at 1 s, offsets spread 1 ms apart over the second, 60 s;
7. idle: 1 schedule at 1 s, a no-op job (it only notes its start), 60 s: CPU ms per wall second.

Usage::

    python bench/timing.py                               # everything: about 110 minutes
    python bench/timing.py --fires 120                   # cases 1-4 with 120 fires: about 35 minutes
    python bench/timing.py --cases 3,5,6,7 --json timing.json
    python bench/timing.py --quick                       # smoke: cases 3 and 5, 20 fires at 0.1 s, 100 schedules
    python bench/timing.py --systems floor,subminute --cases 5 --schedules 500

It prints one markdown table per case as the case ends, then a summary of p99s against the issue's targets;
progress goes to stderr. Exit code 1 when a run failed or had no fire (not when a target is not met).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
FIRED = ("ok", "error", "timeout")  # statuses of subminute fire records that ran
EARLY_TOLERANCE_MS = 1.0  # a start this much before a slot is still that slot's (when slots are inferred)


# -- cases -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    key: str
    title: str
    schedules: int
    interval_ms: int
    fires: int  # slots per schedule in the measured window
    busy: float = 0.0  # the job sleeps busy x interval after noting its start
    http: bool = False
    spread: bool = False  # offsets spread evenly over the interval (otherwise all on the same instants)

    def offset_ms(self, sid: int) -> int:
        return (sid - 1) * self.interval_ms // self.schedules if self.spread else 0

    @property
    def sids(self) -> range:
        return range(1, self.schedules + 1)

    def path(self, sid: int) -> str:
        return f"/s/{sid}/{self.interval_ms}/{self.offset_ms(sid)}"


def build_cases(args: argparse.Namespace) -> list[Case]:
    many, secs = args.schedules, args.seconds
    n = args.fires
    many_ms = 1000
    if args.quick:
        many_ms = 100
    cases = [
        Case("1", "1 schedule at 1 s", 1, 1000, n),
        Case("2", "1 schedule at 1 s, job 30 %", 1, 1000, n, busy=0.3),
        Case("3", "1 schedule at 0.1 s", 1, 100, n),
        Case("4", "1 schedule at 0.1 s, job 30 %", 1, 100, n, busy=0.3),
        Case("5", f"{many:,} schedules at {many_ms / 1000:g} s, same instants", many, many_ms,
             max(1, round(secs * 1000 / many_ms))),
        Case("6", f"{many * 1000 / many_ms:,.0f} HTTP polls/s: {many:,} schedules at {many_ms / 1000:g} s, "
                  f"{many_ms / many:g} ms apart", many, many_ms, max(1, round(secs * 1000 / many_ms)),
             http=True, spread=True),
        Case("7", "idle: 1 schedule at 1 s, no-op job (it notes its start)", 1, 1000,
             max(1, round(args.idle_seconds))),
    ]
    return [c for c in cases if c.key in args.cases]


# -- statistics --------------------------------------------------------------------------------------------

def pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (as subminute.timing.stats)."""
    if not ordered:
        return math.nan
    return ordered[min(max(1, math.ceil(q / 100 * len(ordered))), len(ordered)) - 1]


def summary(values: Iterable[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {"count": 0, "min": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan,
                "p999": math.nan, "max": math.nan, "mean": math.nan}
    return {"count": len(v), "min": v[0], "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "p999": pct(v, 99.9), "max": v[-1], "mean": sum(v) / len(v)}


def grid_slot(t_ms: float, interval_ms: int, offset_ms: int) -> int:
    """The latest slot of the grid at or before ``t_ms`` (allowing a start EARLY_TOLERANCE_MS early)."""
    return offset_ms + math.floor((t_ms + EARLY_TOLERANCE_MS - offset_ms) / interval_ms) * interval_ms


def infer_slots(times: list[float], interval_ms: int, offset_ms: int) -> list[tuple[int, float]]:
    """Slots of one job's starts when the job cannot be told its slot (APScheduler): each start takes the
    latest grid slot at or before it, kept strictly increasing (a job fires each run time at most once, in
    order), walking backwards. The most charitable consistent assignment: never a duplicate."""
    ordered = sorted(times)
    out: list[tuple[int, float]] = []
    nxt: int | None = None
    for t in reversed(ordered):
        slot = grid_slot(t, interval_ms, offset_ms)
        if nxt is not None and slot > nxt - interval_ms:
            slot = nxt - interval_ms
        out.append((slot, t))
        nxt = slot
    out.reverse()
    return out


def tally(case: Case, pairs: dict[int, list[tuple[int, float]]], k0: int) -> dict[str, Any]:
    """Fires, missed and duplicate slots, off-grid starts and the lateness values (ms) over the window
    (slots k0 .. k0 + fires - 1 of every schedule), from (slot_ms, instant_ms) pairs per schedule."""
    interval = case.interval_ms
    lateness: list[float] = []
    seen: Counter[tuple[int, int]] = Counter()
    off_grid = 0
    for sid, items in pairs.items():
        offset = case.offset_ms(sid)
        for slot, t in items:
            d = slot - offset
            if d % interval:
                off_grid += 1
                continue
            k = d // interval
            if k0 <= k < k0 + case.fires:
                lateness.append(t - slot)
                seen[(sid, k)] += 1
    return {"fires": len(lateness), "expected": case.schedules * case.fires,
            "missed": case.schedules * case.fires - len(seen), "dup": len(lateness) - len(seen),
            "off_grid": off_grid, "values": lateness}


# -- systems -----------------------------------------------------------------------------------------------

class Runner:
    """One system running one case in this process. ``start`` begins firing at ``first_k`` (slot
    ``first_k x interval + offset`` of each schedule, epoch-aligned); ``starts`` returns (sid, slot_ms or
    None, start_ms) of every job start; ``slots_known`` says whether the job was told its slot."""

    name = ""
    slots_known = True

    def __init__(self, case: Case, first_k: int, probes: ModuleType, port: int) -> None:
        self.case, self.first_k, self.probes, self.port = case, first_k, probes, port
        self.notes: list[str] = []

    def job(self) -> Callable[[int, int | None], None]:
        if self.case.http:
            return self.probes.http_job  # type: ignore[no-any-return]
        return self.probes.busy_job if self.case.busy else self.probes.job  # type: ignore[no-any-return]

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def starts(self) -> list[tuple[int, int | None, float]]:
        return list(self.probes.STARTS)

    def errors(self) -> list[str]:
        return list(self.probes.ERRORS)

    def extra(self, k0: int) -> dict[str, Any]:
        """System-specific figures over the window (subminute: its fire records)."""
        return {}

    def version(self) -> str:
        return platform.python_version()


def slots_from(case: Case, first_k: int) -> Iterator[tuple[int, list[int]]]:
    """Every slot (epoch ms) from interval ``first_k`` on, in order, with the schedules due at it."""
    at: dict[int, list[int]] = defaultdict(list)
    for sid in case.sids:
        at[case.offset_ms(sid)].append(sid)
    order = sorted(at.items())
    for k in itertools.count(first_k):
        for offset, sids in order:
            yield k * case.interval_ms + offset, sids


def mono_at(epoch_ms: float) -> float:
    """The instant ``epoch_ms`` on the monotonic clock (what a sleep to an absolute slot waits for)."""
    return time.monotonic() + (epoch_ms / 1000 - time.time())


class FloorRunner(Runner):
    """A bare thread: sleep to each absolute slot (epoch-aligned, monotonic sleep), call the jobs inline."""

    name = "floor"

    def start(self) -> None:
        self._stop = False
        threading.Thread(target=self._loop, name="floor", daemon=True).start()

    def _loop(self) -> None:
        job = self.job()
        for slot, sids in slots_from(self.case, self.first_k):
            delay = mono_at(slot) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for sid in sids:
                job(sid, slot)
            if self._stop:
                return

    def stop(self) -> None:
        self._stop = True  # a daemon thread: it may still be asleep; its later fires are outside the window


class ThreeThreadFloorRunner(Runner):
    """The floor of subminute's design: three bare threads that wake as subminute's do and do nothing else. A
    "loop" thread wakes 2 ms before each slot and hands the slot over (a condition variable) to a "worker"
    thread, which sleeps to the slot (an interruptible wait) and calls the jobs inline; a "keeper" thread
    wakes once a second, 10 ms after the first slot of that second. No store, no records, no plans: what the
    wake-ups alone cost (the idle case), beside the one-thread floor."""

    name = "floor-3"
    LEAD_S, KEEPER_AFTER_MS = 0.002, 10

    def start(self) -> None:
        self._stop = threading.Event()
        self._handed: deque[tuple[float, list[int], int]] = deque()
        self._cond = threading.Condition()
        self._first_offset = min(self.case.offset_ms(sid) for sid in self.case.sids)
        self._threads = [threading.Thread(target=target, name=f"floor-3-{name}", daemon=True)
                         for name, target in (("loop", self._loop), ("worker", self._worker), ("keeper", self._keeper))]
        for thread in self._threads:
            thread.start()

    def _keeper_due(self, second: int) -> float:
        """When the keeper wakes in ``second`` (monotonic): just after the first slot of that second."""
        return mono_at(second * 1000 + self._first_offset + self.KEEPER_AFTER_MS)

    def _loop(self) -> None:
        for slot, sids in slots_from(self.case, self.first_k):
            at = mono_at(slot)
            if self._stop.wait(max(0.0, at - self.LEAD_S - time.monotonic())):
                return
            with self._cond:
                self._handed.append((at, sids, slot))
                self._cond.notify()

    def _worker(self) -> None:
        job = self.job()
        while not self._stop.is_set():
            with self._cond:
                while not self._handed:
                    self._cond.wait()
                at, sids, slot = self._handed.popleft()
            if self._stop.wait(max(0.0, at - time.monotonic())):
                return
            for sid in sids:
                job(sid, slot)
            self._ran(sids, slot)

    def _ran(self, sids: list[int], slot: int) -> None:
        """After the jobs of a slot, on the worker (nothing here)."""

    def _keeper(self) -> None:
        second = math.ceil(self.first_k * self.case.interval_ms / 1000)
        while not self._stop.wait(max(0.0, self._keeper_due(second) - time.monotonic())):
            second += 1
            self._tick(second)

    def _tick(self, second: int) -> None:
        """The keeper's work at its wake-up (nothing here)."""

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._handed.append((0.0, [], 0))
            self._cond.notify()


class StoreFloorRunner(ThreeThreadFloorRunner):
    """``floor-3`` plus the SQLite work an idle second needs in subminute's local runtime, done through its
    own store and record sink on one SQLite file: the worker puts each job's fire record into the sink; the
    keeper reads the control version every second, renews the lease with one schedule's position every
    other second, and has the sink write the records waiting for it (``pace``), as subminute's keeper does.
    No plans, no leases checked at the slot, no statistics: what the promises' store work costs on top of
    the wake-ups."""

    name = "floor-3-store"
    TTL_S = 5.0

    def start(self) -> None:
        from subminute.control.handoff import Handoff, Position
        from subminute.control.sqlite import SqliteStore
        from subminute.results.records import FireRecord
        from subminute.results.sinks import SqliteSink

        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / "floor.db"
        self.store, self.sink = SqliteStore(path), SqliteSink(path)
        self._record, self._handoff, self._position = FireRecord, Handoff, Position
        self._put = 0  # records put into the sink
        lease = self.store.acquire_lease("floor-3", self.TTL_S, time.time())
        assert lease is not None
        self.lease = lease
        super().start()

    def _ran(self, sids: list[int], slot: int) -> None:
        now = time.time() * 1000
        self._put += len(sids)
        for sid in sids:
            self.sink.write(self._record(sid, f"s{sid}", slot, 0, "ok", started_ms=now, ended_ms=now,
                                         start_lateness_ms=now - slot))

    def _tick(self, second: int) -> None:
        self.store.version()
        if second % 2:
            positions = {sid: self._position(second * 1000 + self.case.interval_ms, second)
                         for sid in self.case.sids}
            handoff = self._handoff(self.lease.owner, self.lease.token, second * 1000, positions)
            self.lease = self.store.renew_lease(self.lease, self.TTL_S, time.time(), handoff) or self.lease
        self.sink.pace(self._keeper_due(second) - time.monotonic())

    def stop(self) -> None:
        super().stop()
        for thread in self._threads:  # a job or a tick under way ends before the sink and the store close
            thread.join(timeout=5)
        self.sink.close()
        self.store.close()
        import sqlite3

        conn = sqlite3.connect(Path(self._dir.name) / "floor.db")
        written = conn.execute("SELECT COUNT(*) FROM fires").fetchone()[0]
        conn.close()
        self.notes.append("every record put was written to SQLite" if written == self._put and written
                          else f"{written} of {self._put} records put were written to SQLite")


class APSchedulerRunner(Runner):
    """APScheduler 3 as its documentation shows it: a BackgroundScheduler, one interval job per schedule."""

    name = "apscheduler"
    slots_known = False

    def start(self) -> None:
        from datetime import UTC, datetime

        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(timezone=UTC)
        job = self.job()
        for sid in self.case.sids:
            first = (self.first_k * self.case.interval_ms + self.case.offset_ms(sid)) / 1000
            self.scheduler.add_job(job, "interval", seconds=self.case.interval_ms / 1000,
                                   start_date=datetime.fromtimestamp(first, tz=UTC),
                                   args=[sid, None], id=str(sid))
        self.scheduler.start()
        self.notes.append("slots inferred from start times (the job is not told its run time)")

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)

    def version(self) -> str:
        import apscheduler

        return str(apscheduler.__version__)


class AsyncioRunner(Runner):
    """A bare asyncio loop in a thread: ``loop.call_at`` for each slot of each schedule; the callback is the
    job, and schedules its schedule's next slot after it."""

    name = "asyncio"

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self.thread = threading.Thread(target=self._run, name="asyncio", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        fire = self._http if self.case.http else self._busy if self.case.busy else self._plain
        for sid in self.case.sids:
            self._at(self.first_k * self.case.interval_ms + self.case.offset_ms(sid), fire, sid)
        self.loop.run_forever()
        tasks = asyncio.all_tasks(self.loop)  # requests still in flight at the stop
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for _, writer in self.idle:
            writer.close()
        self.loop.close()

    def _at(self, slot_ms: int, fire: Callable[[int, int], None], sid: int) -> None:
        self.loop.call_at(self.loop.time() + (slot_ms / 1000 - time.time()), fire, sid, slot_ms)

    def _plain(self, sid: int, slot_ms: int) -> None:
        self.probes.job(sid, slot_ms)
        self._at(slot_ms + self.case.interval_ms, self._plain, sid)

    def _busy(self, sid: int, slot_ms: int) -> None:
        self.probes.job(sid, slot_ms)  # notes the start; the busy part awaits, as an asyncio job would
        self.loop.create_task(asyncio.sleep(self.case.busy * self.case.interval_ms / 1000))
        self._at(slot_ms + self.case.interval_ms, self._busy, sid)

    def _http(self, sid: int, slot_ms: int) -> None:
        self.probes.job(sid, slot_ms)
        request = f"GET {self.case.path(sid)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        if self.idle:
            reader, writer = self.idle.pop()
            writer.write(request)  # written to the socket now, in the callback
            self.loop.create_task(self._answer(reader, writer))
        else:
            self.loop.create_task(self._connect_and_send(request))
        self._at(slot_ms + self.case.interval_ms, self._http, sid)

    async def _connect_and_send(self, request: bytes) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            self.probes.ERRORS.append(f"{exc.__class__.__name__}: {exc}")
            return
        writer.write(request)
        await self._answer(reader, writer)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.probes.ERRORS.append(f"{exc.__class__.__name__}: {exc}")
            writer.close()
            return
        self.idle.append((reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class SubminuteRunner(Runner):
    """subminute's real local runtime: SQLite control file and fire records, local dispatcher, targets."""

    name = "subminute"

    def start(self) -> None:
        from subminute.runtime.local import LocalRuntime

        self.tmp = tempfile.TemporaryDirectory(prefix="bench-timing-")
        self.db = Path(self.tmp.name) / "bench.db"
        self.runtime = LocalRuntime(self.db)
        case = self.case
        for sid in case.sids:
            if case.http:
                target: dict[str, Any] = {"type": "http", "url": f"http://127.0.0.1:{self.port}{case.path(sid)}",
                                          "timeout": 2}
            else:
                target = {"type": "python", "ref": "_probes:event_busy_job" if case.busy else "_probes:event_job"}
            self.runtime.store.put({"id": sid, "waitseconds": case.interval_ms / 1000,
                                    "offset": case.offset_ms(sid) / 1000, "target": target})
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="subminute-runtime", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runtime.run()
        except BaseException as exc:  # reported with the run's figures
            self.failure = exc

    def stop(self) -> None:
        self.runtime.stop()
        self.thread.join(30)
        if self.thread.is_alive():
            self.notes.append("runtime.run() had not returned 30 s after runtime.stop()")
        if self.failure is not None:
            raise RuntimeError(f"runtime.run() raised {self.failure!r}")

    def starts(self) -> list[tuple[int, int | None, float]]:
        if not self.case.http:
            return list(self.probes.STARTS)
        # no Python code of ours runs in an HTTP fire: the client-side start is the record's started_ms
        return [(r["schedule_id"], r["slot_ms"], r["started_ms"]) for r in self._records()
                if r["status"] in FIRED and r["started_ms"] is not None]

    def errors(self) -> list[str]:
        return [f"{r['status']}: {r.get('error')}" for r in self._records() if r["status"] not in ("ok", "missed")]

    def _records(self) -> list[dict[str, Any]]:
        if not hasattr(self, "_rows"):
            import sqlite3

            conn = sqlite3.connect(self.db)
            columns = [c[1] for c in conn.execute("PRAGMA table_info(fires)")]
            self.columns = columns
            cursor = conn.execute(f"SELECT {', '.join(columns)} FROM fires")
            self._rows = [dict(zip(columns, row)) for row in cursor]
            conn.close()
        return self._rows

    def extra(self, k0: int) -> dict[str, Any]:
        rows = [r for r in self._records() if r["status"] in FIRED]
        out: dict[str, Any] = {}

        def series(column: str, value: Callable[[dict[str, Any]], float | None]) -> list[float]:
            pairs: dict[int, list[tuple[int, float]]] = defaultdict(list)
            for r in rows:
                v = value(r)
                if v is not None:
                    pairs[r["schedule_id"]].append((r["slot_ms"], r["slot_ms"] + v))
            return tally(self.case, pairs, k0)["values"]

        out["handover"] = series("lateness_ms", lambda r: r["lateness_ms"])
        out["recorded_start"] = series("started_ms", lambda r: None if r["started_ms"] is None
                                       else r["started_ms"] - r["slot_ms"])
        if "start_lateness_ms" in self.columns:
            out["start_lateness_ms"] = series("start_lateness_ms", lambda r: r["start_lateness_ms"])
        else:
            self.notes.append("the fires table has no start_lateness_ms column (started_ms - slot_ms used)")
        statuses = Counter(r["status"] for r in self._records())
        out["statuses"] = dict(statuses)
        self.tmp.cleanup()
        return out

    def version(self) -> str:
        import subminute

        return str(subminute.__version__)


class SchedulerApiRunner(Runner):
    """subminute's Python API as its README shows it: ``Scheduler()`` in memory, one function per schedule
    (``add``, the decorators' method), ``start()`` in a background thread. The function is told its slot."""

    name = "subminute-api"

    def start(self) -> None:
        from subminute import Scheduler

        self.scheduler = Scheduler()
        job, case = self.job(), self.case
        first_ms = self.first_k * case.interval_ms
        for sid in case.sids:
            def fire(event: dict[str, Any], _sid: int = sid) -> None:
                job(_sid, event["slot_ms"])

            self.scheduler.add(fire, every=case.interval_ms / 1000, offset=case.offset_ms(sid) / 1000,
                               name=f"s{sid}", timeout=max(2.0, case.interval_ms / 1000))
        self.first_ms = first_ms
        self.scheduler.start()

    def starts(self) -> list[tuple[int, int | None, float]]:
        return [(sid, slot, t) for sid, slot, t in self.probes.STARTS if slot is None or slot >= self.first_ms]

    def stop(self) -> None:
        self.scheduler.stop()

    def version(self) -> str:
        import subminute

        return str(subminute.__version__)


SYSTEMS: dict[str, type[Runner]] = {
    "floor": FloorRunner,
    "floor-3": ThreeThreadFloorRunner,
    "floor-3-store": StoreFloorRunner,
    "apscheduler": APSchedulerRunner,
    "asyncio": AsyncioRunner,
    "subminute": SubminuteRunner,
    "subminute-api": SchedulerApiRunner,
}
DEFAULT_SYSTEMS = ["floor", "floor-3", "floor-3-store", "apscheduler", "asyncio", "subminute", "subminute-api"]
IDLE_ONLY = {"floor-3", "floor-3-store"}  # by default run in case 7 only (elsewhere it would only repeat the floor)
TARGET_SYSTEMS = ["subminute", "subminute-api"]  # the systems held to the targets in the summary


# -- one (case, system) run, in its own process -------------------------------------------------------------

def _sleep_until(epoch_ms: float) -> None:
    delay = epoch_ms / 1000 - time.time()
    if delay > 0:
        time.sleep(delay)


RECORD_WRITER_THREADS = ("subminute-fire-records", "subminute-bodies")  # SQLite writes of records and bodies


def _thread_stats() -> dict[str, tuple[float, int]] | None:
    """CPU time so far of each thread (ms) and how many times it was scheduled in (its wake-ups), by name
    (Linux: /proc; None elsewhere). Threads of one kind share a name: the workers (``subminute-worker-N``)
    add up as ``subminute-worker``."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, tuple[float, int]] = {}
    try:
        for tid in os.listdir("/proc/self/task"):
            name = names.get(int(tid), "other")
            name = name.rstrip("0123456789").rstrip("-") if name.startswith("subminute-") else name
            with open(f"/proc/self/task/{tid}/schedstat") as fh:
                ns, _, runs = fh.read().split()[:3]
            ms, wakes = out.get(name, (0.0, 0))
            out[name] = (ms + int(ns) / 1e6, wakes + int(runs))
    except OSError:
        return None
    return out


def _thread_deltas(before: dict[str, tuple[float, int]] | None, after: dict[str, tuple[float, int]] | None,
                   field: int) -> dict[str, float] | None:
    """Per thread, how much of ``field`` (0: CPU ms, 1: wake-ups) passed between two :func:`_thread_stats`."""
    if before is None or after is None:
        return None
    return {name: now[field] - before.get(name, (0.0, 0))[field] for name, now in after.items()}


def _writer_cpu_ms(by_thread: dict[str, float] | None) -> float | None:
    """CPU time of the threads that write records to SQLite, by thread as :func:`_thread_deltas` gives it.
    The records the keeper's tick writes (up to 16 that ended just before it: a quiet schedule's) count as
    the keeper's, not here; at 1,000 fires a second that is under 2 % of them."""
    if by_thread is None:
        return None
    return sum(ms for name, ms in by_thread.items() if name.startswith(RECORD_WRITER_THREADS))


def child(spec: dict[str, Any], out: Path) -> int:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    probes = importlib.import_module("_probes")
    case = Case(**spec["case"])
    interval = case.interval_ms
    probes.configure(case.busy * interval / 1000, spec.get("port", 0), {sid: case.path(sid) for sid in case.sids})
    first_k = math.ceil((time.time() * 1000 + spec["lead_ms"]) / interval)
    runner = SYSTEMS[spec["system"]](case, first_k, probes, spec.get("port", 0))
    runner.start()
    # the window starts after the warm-up, counted from when the system is up (setup can take a while)
    k0 = max(first_k, math.ceil((time.time() * 1000 + spec["warmup_ms"]) / interval))
    window_start = k0 * interval - interval / 2
    window_end = window_start + case.fires * interval
    _sleep_until(window_start)
    cpu0, by0, threads = time.process_time(), _thread_stats(), threading.active_count()
    _sleep_until(window_start + case.fires * interval / 2)
    threads = max(threads, threading.active_count())
    _sleep_until(window_end)
    cpu = (time.process_time() - cpu0) * 1000
    by1 = _thread_stats()
    by_thread, wakes = _thread_deltas(by0, by1, 0), _thread_deltas(by0, by1, 1)
    writers = _writer_cpu_ms(by_thread)
    threads = max(threads, threading.active_count())
    _sleep_until((k0 + case.fires) * interval + case.busy * interval + max(500, interval))
    runner.stop()
    pairs: dict[int, list[tuple[int, float]]] = defaultdict(list)
    if runner.slots_known:
        for sid, slot, t in runner.starts():
            pairs[sid].append((slot if slot is not None else grid_slot(t, interval, case.offset_ms(sid)), t))
    else:
        times: dict[int, list[float]] = defaultdict(list)
        for sid, _, t in runner.starts():
            times[sid].append(t)
        for sid, ts in times.items():
            pairs[sid] = infer_slots(ts, interval, case.offset_ms(sid))
    result = tally(case, pairs, k0)
    errors = runner.errors()
    result.update({"system": runner.name, "version": runner.version(), "k0": k0, "window_start_ms": window_start,
                   "window_s": case.fires * interval / 1000, "cpu_ms": cpu, "writers_cpu_ms": writers,
                   "cpu_by_thread_ms": by_thread, "wakes_by_thread": wakes,
                   "threads": threads,
                   "errors": len(errors), "first_error": errors[0] if errors else None})
    result["extra"] = runner.extra(k0)
    result["notes"] = runner.notes
    out.write_text(json.dumps(result))
    return 0


# -- the HTTP server (case 6), in its own process -----------------------------------------------------------

ARRIVALS: list[tuple[bytes, float]] = []
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _Recorder(asyncio.Protocol):
    """HTTP/1.1 keep-alive GETs: note (path, arrival ms) of each, answer 200 at once."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        t = time.time() * 1000
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            line = self.buffer[:self.buffer.find(b"\r\n")]
            self.buffer = self.buffer[end + 4:]
            parts = line.split(b" ")
            ARRIVALS.append((parts[1] if len(parts) > 2 else b"", t))
            self.transport.write(RESPONSE)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Recorder, "127.0.0.1", 0, backlog=4096)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    while True:  # commands on stdin, one a line: reset | dump; EOF ends the server
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        if line.strip() == "reset":
            ARRIVALS.clear()
            reply: Any = "ok"
        else:
            reply = [[path.decode("latin-1"), t] for path, t in ARRIVALS]
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class HttpServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port: int = json.loads(self._line())["port"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the HTTP server process ended")
        return line

    def command(self, cmd: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def arrivals_tally(case: Case, arrivals: list[list[Any]], k0: int) -> dict[str, Any]:
    """Arrival minus slot at the server; each request belongs to the latest slot of its schedule's grid
    (given in its path) at or before its arrival, so two requests in one interval count as a duplicate."""
    pairs: dict[int, list[tuple[int, float]]] = defaultdict(list)
    foreign = 0
    for path, t in arrivals:
        parts = path.split("/")
        if len(parts) != 5 or parts[1] != "s":
            foreign += 1
            continue
        sid, interval, offset = int(parts[2]), int(parts[3]), int(parts[4])
        pairs[sid].append((grid_slot(t, interval, offset), t))
    out = tally(case, pairs, k0)
    out["foreign"] = foreign
    return out


# -- the driver --------------------------------------------------------------------------------------------

def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [math.nan] * 3


def _est_s(case: Case, warmup_ms: int) -> float:
    """Rough seconds one run takes: start-up, warm-up, the window, the tail."""
    return 1.0 + warmup_ms / 1000 + (case.fires + 1) * case.interval_ms / 1000 + case.busy + 1.0


def run_one(case: Case, system: str, spec_extra: dict[str, Any], progress: Callable[[float], None],
            every_s: float) -> dict[str, Any]:
    spec = {"case": asdict(case), "system": system, **spec_extra}
    est = _est_s(case, spec["warmup_ms"])
    with tempfile.TemporaryDirectory(prefix="bench-timing-") as tmp:
        out = Path(tmp) / "result.json"
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec), "--out", str(out)],
                                stdout=sys.stderr, cwd=os.getcwd())
        while True:
            progress(max(0.0, est - (time.monotonic() - began)))
            try:
                proc.wait(every_s)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - began > est + 180:
                    proc.kill()
                    proc.wait()
                    return {"system": system, "failed": f"no result {est + 180:.0f} s after the start (killed)"}
        if proc.returncode != 0 or not out.exists():
            return {"system": system, "failed": f"exit code {proc.returncode} (its stderr is above)"}
        result: dict[str, Any] = json.loads(out.read_text())
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(headers: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def primary(case: Case, run: dict[str, Any]) -> dict[str, Any]:
    """The figures the tables and targets use: server arrival for HTTP, the job's start otherwise."""
    return run.get("arrival", {}) if case.http else run


def case_table(case: Case, runs: list[dict[str, Any]]) -> str:
    headers = ["system", "fires", "p50 ms", "p99 ms", "max ms", "missed", "dup"]
    if case.http:
        headers[2:5] = ["arrival p50 ms", "arrival p99 ms", "arrival max ms"]
        headers += ["client start p50 ms", "client start p99 ms", "errors"]
    headers += ["hand-over p99 ms", "cpu us/fire", "of which not writing records", "cpu ms/s", "threads",
                "load 1m min-max"]
    lines = []
    for run in runs:
        load = "-".join(_f(x) for x in run["load_1m_range"])
        if "failed" in run:
            lines.append([run["system"], "FAILED: " + run["failed"]] + [""] * (len(headers) - 3) + [load])
            continue
        p = primary(case, run)
        lat = p.get("lateness", {})
        line = [run["system"], _f(p.get("fires")), _f(lat.get("p50")), _f(lat.get("p99")), _f(lat.get("max")),
                _f(p.get("missed")), _f(p.get("dup"))]
        if case.http:
            line += [_f(run["lateness"]["p50"]), _f(run["lateness"]["p99"]), _f(run["errors"])]
        handover = run.get("extra", {}).get("handover")
        engine = run.get("engine_cpu_us_per_fire", math.nan)
        line += [_f(handover["p99"]) if handover else "-", _f(run["cpu_us_per_fire"], 1),
                 _f(engine, 1) if run["system"].startswith("subminute") else "-",
                 _f(run["cpu_ms_per_s"], 3), _f(run["threads"]), load]
        lines.append(line)
    return markdown(headers, lines)


def targets(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, for each system of TARGET_SYSTEMS, from the runs of this very run."""
    out: list[dict[str, Any]] = []
    for entry in cases:
        case: Case = entry["case"]
        runs = {r["system"]: r for r in entry["runs"] if "failed" not in r}

        def p(system: str, key: str = "p99", _case: Case = case, _runs: dict[str, Any] = runs) -> float | None:
            run = _runs.get(system)
            return primary(_case, run).get("lateness", {}).get(key) if run else None

        for system in TARGET_SYSTEMS:
            run = runs.get(system)
            checks: list[tuple[str, float | None, float | None]] = []  # (what, value, limit)
            if case.key in ("1", "2", "3", "4"):
                ap, fl = p("apscheduler"), p("floor")
                checks.append(("p99 <= APScheduler's p99", p(system), ap))
                checks.append(("p99 <= 2 x floor's p99", p(system), 2 * fl if fl is not None else None))
            elif case.key == "5":
                checks.append(("p99 <= 10 ms", p(system), 10.0))
                checks.append(("max <= 20 ms", p(system, "max"), 20.0))
                checks.append(("missed slots = 0", run["missed"] if run else None, 0.0))
                checks.append(("controller + dispatch CPU per fire <= 30 us",
                               run.get("engine_cpu_us_per_fire") if run else None, 30.0))
            elif case.key == "6":
                checks.append(("p99 at the server <= 10 ms", p(system), 10.0))
            elif case.key == "7":
                checks.append(("idle CPU <= 1 ms/s", run["cpu_ms_per_s"] if run else None, 1.0))
            for what, value, limit in checks:
                if value is None or limit is None or math.isnan(value) or math.isnan(limit):
                    verdict = "not measured"
                else:
                    verdict = "met" if value <= limit else "NOT MET"
                out.append({"case": case.key, "title": case.title, "system": system, "target": what,
                            "value": value, "limit": limit, "verdict": verdict,
                            "p99": {s: p(s) for s in runs}})
    return out


def summary_table(results: list[dict[str, Any]], systems: list[str]) -> str:
    headers = ["case"] + [f"{s} p99" for s in systems] + ["target", "limit", "value", "verdict"]
    lines = []
    for t in results:
        lines.append([f"{t['case']}: {t['title']}"] + [_f(t["p99"].get(s)) for s in systems]
                     + [f"{t['system']}: {t['target']}", _f(t["limit"]), _f(t["value"]), t["verdict"]])
    return markdown(headers, lines)


def _plain(value: Any) -> Any:
    """Standard JSON: NaN (no value) becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _subminute_code() -> str:
    """Which subminute the runs import (without importing it here): the repository's src/ at a commit, with
    or without uncommitted changes, or another path (PYTHONPATH)."""
    spec = importlib.util.find_spec("subminute")
    if spec is None or spec.origin is None:
        return "not installed"
    package = Path(spec.origin).resolve().parent
    if package != HERE.parent / "src" / "subminute":
        return str(package)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True,
                               cwd=HERE, timeout=5).stdout.strip()
        return f"src/ at {rev or 'unknown commit'}" + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return str(package)


def split(fires: int, rounds: int) -> list[int]:
    """Fires per round: ``fires`` shared as evenly as possible over at most ``rounds`` rounds."""
    rounds = max(1, min(rounds, fires))
    return [fires // rounds + (1 if i < fires % rounds else 0) for i in range(rounds)]


def _tallied(parts: list[dict[str, Any]]) -> dict[str, Any]:
    values = [v for p in parts for v in p["values"]]
    out = {key: sum(p[key] for p in parts) for key in ("fires", "expected", "missed", "dup", "off_grid")}
    out["lateness"] = summary(values)
    return out


def merge(case: Case, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's figures for a case, from its rounds: counts and CPU add up, percentiles are taken over
    the lateness of every round together."""
    loads = [x[0] for p in parts for x in (p["load_start"], p["load_end"])]
    out: dict[str, Any] = {"system": parts[0]["system"], "load_start": parts[0]["load_start"],
                           "load_end": parts[-1]["load_end"], "load_1m_range": [min(loads), max(loads)],
                           "rounds": [{k: p.get(k) for k in ("k0", "fires", "missed", "dup", "cpu_ms", "seconds",
                                                             "load_start", "load_end", "failed")} for p in parts]}
    bad = [p["failed"] for p in parts if "failed" in p]
    if bad:
        out["failed"] = bad[0] + (f" (in {len(bad)} of {len(parts)} rounds)" if len(parts) > 1 else "")
        return out
    out.update(_tallied(parts))
    cpu_ms, window_s = sum(p["cpu_ms"] for p in parts), sum(p["window_s"] for p in parts)
    writers = [p.get("writers_cpu_ms") for p in parts]
    engine_ms = cpu_ms - sum(w for w in writers if w is not None) if None not in writers else math.nan
    errors = [p["first_error"] for p in parts if p["first_error"]]
    out.update({"version": parts[0]["version"], "cpu_ms": cpu_ms, "window_s": window_s,
                "cpu_us_per_fire": cpu_ms * 1000 / out["fires"] if out["fires"] else math.nan,
                # without the threads that write records and bodies to SQLite: the controller and dispatch
                "engine_cpu_us_per_fire": engine_ms * 1000 / out["fires"] if out["fires"] else math.nan,
                "cpu_ms_per_s": cpu_ms / window_s, "threads": max(p["threads"] for p in parts),
                "errors": sum(p["errors"] for p in parts), "first_error": errors[0] if errors else None,
                "notes": list(dict.fromkeys(n for p in parts for n in p["notes"]))})
    if all(p.get("cpu_by_thread_ms") for p in parts):
        by: dict[str, float] = defaultdict(float)
        for p in parts:
            for name, ms in p["cpu_by_thread_ms"].items():
                by[name] += ms
        out["cpu_ms_per_s_by_thread"] = {name: ms / window_s for name, ms in sorted(by.items(), key=lambda x: -x[1])}
        woke: dict[str, float] = defaultdict(float)
        for p in parts:
            for name, n in (p.get("wakes_by_thread") or {}).items():
                woke[name] += n
        out["wakes_per_s_by_thread"] = {name: n / window_s for name, n in woke.items()}
    if case.http:
        out["arrival"] = _tallied([p["arrival"] for p in parts])
        out["arrival"]["foreign"] = sum(p["arrival"]["foreign"] for p in parts)
    extra: dict[str, Any] = {}
    for key in parts[0]["extra"]:
        if key == "statuses":
            extra[key] = dict(sum((Counter(p["extra"][key]) for p in parts), Counter()))
        else:
            extra[key] = summary(v for p in parts for v in p["extra"][key])
    out["extra"] = extra
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=None, help="comma list of case numbers 1-7 (default: all; --quick: 3,5)")
    parser.add_argument("--systems", default=None,
                        help=f"comma list of: {', '.join(SYSTEMS)} (default: all; {', '.join(sorted(IDLE_ONLY))} "
                             "in case 7 only)")
    parser.add_argument("--fires", type=int, default=None, help="fires per schedule in cases 1-4 (default 600)")
    parser.add_argument("--seconds", type=float, default=None, help="length of cases 5 and 6 (default 60 s)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="length of case 7 (default 60 s)")
    parser.add_argument("--schedules", type=int, default=None, help="schedules of cases 5 and 6 (default 1000)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds a system: cases 3 and 5, 20 fires, 100 schedules at "
                             "0.1 s in cases 5 and 6, 3 s for case 7")
    parser.add_argument("--rounds", type=int, default=None,
                        help="split each case into this many rounds in which the systems take turns, so that "
                             "a change of the machine's load falls on every system (default 3; --quick: 1)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each window (default 1.5)")
    parser.add_argument("--json", dest="json_path", default=None, help="write every figure to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    if args.child:
        return child(json.loads(args.child), Path(args.out))

    quick = args.quick
    args.cases = set((args.cases or ("3,5" if quick else "1,2,3,4,5,6,7")).split(","))
    args.fires = args.fires or (20 if quick else 600)
    args.seconds = args.seconds or (2.0 if quick else 60.0)
    args.idle_seconds = args.idle_seconds or (3.0 if quick else 60.0)
    args.schedules = args.schedules or (100 if quick else 1000)
    args.rounds = args.rounds or (1 if quick else 3)
    warmup_ms = round((args.warmup if args.warmup is not None else (0.5 if quick else 1.5)) * 1000)
    systems = [s.strip() for s in (args.systems or ",".join(DEFAULT_SYSTEMS)).split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        parser.error(f"--systems: unknown {', '.join(unknown) or '(none)'}; use some of {', '.join(SYSTEMS)}")
    cases = build_cases(args)
    if not cases:
        parser.error("--cases: use numbers from 1 to 7, e.g. --cases 3,5")

    def systems_of(case: Case) -> list[str]:
        if args.systems:
            return systems
        return [s for s in systems if s not in IDLE_ONLY or case.key == "7"]

    plan = [(case, share) for case in cases for share in split(case.fires, args.rounds)]
    ests = [_est_s(replace(case, fires=share), warmup_ms) for case, share in plan for _ in systems_of(case)]
    left_total = sum(ests)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {_load()}; {len(ests)} runs, about "
          + (f"{left_total / 60:.0f} min" if left_total > 120 else f"{left_total:.0f} s"), file=sys.stderr, flush=True)
    machine = {"python": platform.python_version(), "cores": os.cpu_count(), "platform": platform.platform(),
               "subminute_code": _subminute_code(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    every_s = 30.0  # a progress line on stderr at the start of each run and every 30 s
    done: list[dict[str, Any]] = []
    failed = False
    run_no = 0
    print(f"Start lateness (the user's code starts minus the planned slot), python {machine['python']}, "
          f"{machine['cores']} cores, subminute {machine['subminute_code']}.\n")
    for ci, case in enumerate(cases, 1):
        case_systems = systems_of(case)
        server = HttpServer() if case.http else None
        entry: dict[str, Any] = {"case": case, "load_start": _load(), "runs": []}
        parts: dict[str, list[dict[str, Any]]] = {system: [] for system in case_systems}
        shares = split(case.fires, args.rounds)
        try:
            for ri, share in enumerate(shares):
                part = replace(case, fires=share)
                n = len(case_systems)
                order = case_systems[ri % n:] + case_systems[:ri % n]  # who goes first rotates
                for si, system in enumerate(order, 1):
                    after = sum(ests[run_no + 1:])
                    run_no += 1
                    label = (f"[case {ci}/{len(cases)} {case.title}] {system} ({si}/{n}"
                             + (f", round {ri + 1}/{len(shares)}" if len(shares) > 1 else "") + ")")

                    def progress(left: float, label: str = label, after: float = after) -> None:
                        print(f"{label}: {left:.0f} s left in this run, about {left + after:.0f} s left in all",
                              file=sys.stderr, flush=True)

                    spec = {"lead_ms": 300, "warmup_ms": warmup_ms, "port": server.port if server else 0}
                    load_start = _load()
                    if server:
                        server.command("reset")
                    run = run_one(part, system, spec, progress, every_s)
                    if server and "failed" not in run:
                        run["arrival"] = arrivals_tally(part, server.command("dump"), run["k0"])
                    run["load_start"], run["load_end"] = load_start, _load()
                    if "failed" in run:
                        print(f"  {system} failed: {run['failed']}", file=sys.stderr, flush=True)
                    parts[system].append(run)
        finally:
            if server:
                server.close()
        for system in case_systems:
            run = merge(case, parts[system])
            if "failed" not in run and not primary(case, run).get("fires"):
                run["failed"] = "no fire in the window" + (f" ({run['first_error']})" if run.get("first_error") else "")
            failed = failed or "failed" in run
            entry["runs"].append(run)
        entry["load_end"] = _load()
        done.append(entry)
        print(f"## Case {case.key}: {case.title}\n")
        print(f"{case.schedules:,} schedule(s) x {case.fires:,} slots at {case.interval_ms / 1000:g} s"
              + (f", the job busy {case.busy:.0%} of the interval" if case.busy else "")
              + (f", offsets {case.interval_ms / case.schedules:g} ms apart" if case.spread else "")
              + (f", in {len(shares)} rounds (the systems take turns)" if len(shares) > 1 else "")
              + f"; load average (1/5/15 min) at the start {entry['load_start']}, at the end {entry['load_end']}.\n")
        print(case_table(case, entry["runs"]))
        notes = [f"{r['system']}: {n}" for r in entry["runs"] for n in r.get("notes", [])]
        if case.key in ("6", "7"):  # where the CPU goes (at 1,000 polls/s, ms/s by thread = us a poll)
            notes += [f"{r['system']}: CPU ms/s by thread" + (" (wake-ups a second)" if case.key == "7" else "")
                      + ": " + ", ".join(f"{name} {ms:.2f}" + (f" ({r['wakes_per_s_by_thread'].get(name, 0):.1f})"
                                                               if case.key == "7" else "")
                                         for name, ms in r["cpu_ms_per_s_by_thread"].items() if ms >= 0.005)
                      for r in entry["runs"] if r.get("cpu_ms_per_s_by_thread")]
        notes += [f"{r['system']}: {r['errors']} errors, e.g. {r['first_error']}" for r in entry["runs"]
                  if r.get("errors")]
        if notes:
            print("\n" + "\n".join(f"* {n}" for n in notes))
        print("", flush=True)

    verdicts = targets(done)
    print("## Summary: p99 start lateness (ms) and the issue's targets\n")
    ran = [s for s in systems if any(s in systems_of(case) for case in cases)]  # columns: what ran
    print(summary_table(verdicts, ran))
    print("\nCases 1-4 compare with the peers measured in this same run; case 6 is judged at the server.",
          flush=True)
    if args.json_path:
        data = {"machine": machine, "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()
                                             if k not in ("child", "out", "serve")},
                "systems": ran,
                "cases": [{**{k: v for k, v in e.items() if k != "case"}, "case": asdict(e["case"])} for e in done],
                "targets": verdicts}
        Path(args.json_path).write_text(json.dumps(_plain(data), indent=1, default=str, allow_nan=False))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
