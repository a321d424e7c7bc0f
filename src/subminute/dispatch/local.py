"""Run targets in this process: a growing pool of worker threads, with per-fire timeouts.

A target that hangs holds one worker, never the controller: the pool grows while every worker is busy
(up to ``max_workers``), a watchdog records the fire as a timeout when its time is up (so ``skip`` overlap
moves on), and one schedule may hold at most ``per_schedule_cap`` workers at once; fires beyond that are
recorded as skipped instead of piling up threads.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..control.base import Schedule
from ..results.records import bounded
from ..results.sinks import RecordSink
from ..targets.base import Result, Target, build_target
from .base import Fire, fire_record

__all__ = ["LocalDispatcher", "InlineDispatcher"]

log = logging.getLogger("subminute.dispatch")


class _TargetCache:
    """One built target per schedule, rebuilt when its spec changes."""

    def __init__(self, build: Callable[[Any], Target]) -> None:
        self._build = build
        self._targets: dict[int, tuple[Any, Target]] = {}

    def prepare(self, schedule: Schedule) -> Target:
        key = dict(schedule.target) if schedule.target else None
        cached = self._targets.get(schedule.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        target = self._build(schedule.target)
        self._targets[schedule.id] = (key, target)
        return target

    def get(self, schedule: Schedule) -> Target:
        cached = self._targets.get(schedule.id)
        return cached[1] if cached is not None else self.prepare(schedule)


def run_target(target: Target, fire: Fire, now_ms: Callable[[], float]) -> tuple[Result, float, float]:
    """Run one fire; any exception becomes an error result. Returns (result, started_ms, ended_ms)."""
    started = now_ms()
    try:
        result = target.run(fire.event(), fire.schedule.timeout_s)
    except Exception as exc:  # a target's bug must not kill the worker
        result = Result.failure(f"{exc.__class__.__name__}: {exc}")
    if not isinstance(result, Result):
        result = Result.failure(f"target returned {bounded(repr(result), 200)} instead of a Result")
    return result, started, now_ms()


def _record(fire: Fire, result: Result, started: float, ended: float) -> Any:
    return fire_record(
        fire, result.status, started_ms=started, ended_ms=ended, latency_ms=round(ended - started, 3),
        http_status=result.http_status, bytes=result.bytes,
        error=bounded(result.error) if result.error else None, detail=result.detail,
    )


class LocalDispatcher:
    def __init__(self, sink: RecordSink, *, min_workers: int = 8, max_workers: int = 512,
                 per_schedule_cap: int = 64, build: Callable[[Any], Target] = build_target,
                 wall_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.sink = sink
        self.max_workers = max_workers
        self.per_schedule_cap = per_schedule_cap
        self._targets = _TargetCache(build)
        self._wall_ms = wall_ms
        self._queue: queue.SimpleQueue[Fire | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._in_flight: dict[int, int] = {}
        self._running: dict[int, tuple[Fire, float]] = {}  # fire id -> (fire, monotonic deadline)
        self._abandoned: set[int] = set()
        self._ids = itertools.count()
        self._closed = threading.Event()
        self._spawn(min_workers)
        self._watchdog = threading.Thread(target=self._watch, name="subminute-watchdog", daemon=True)
        self._watchdog.start()

    def prepare(self, schedule: Schedule) -> None:
        self._targets.prepare(schedule)

    def in_flight(self, schedule_id: int) -> int:
        return self._in_flight.get(schedule_id, 0)

    def submit(self, fire: Fire) -> None:
        self.submit_many((fire,))

    def submit_many(self, fires: Iterable[Fire]) -> None:
        """Hand over a batch: only queue puts here; the pool grows from the watchdog thread, never on
        the controller's wake-up path."""
        accepted = []
        with self._lock:
            for fire in fires:
                sid = fire.schedule.id
                busy = self._in_flight.get(sid, 0)
                if busy >= self.per_schedule_cap:
                    self.sink.write(fire_record(fire, "skipped", error=f"{busy} earlier fires still running"))
                    continue
                self._in_flight[sid] = busy + 1
                accepted.append(fire)
        put = self._queue.put
        for fire in accepted:
            put(fire)

    def _spawn(self, count: int) -> None:
        with self._lock:
            count = min(count, self.max_workers - self._workers)
            self._workers += count
        for _ in range(count):
            threading.Thread(target=self._work, name="subminute-worker", daemon=True).start()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            with self._lock:
                self._idle += 1
            fire = get()
            with self._lock:
                self._idle -= 1
            if fire is None:
                return
            fid = next(self._ids)
            sid = fire.schedule.id
            self._running[fid] = (fire, time.monotonic() + fire.schedule.timeout_s)
            target = self._targets.get(fire.schedule)
            result, started, ended = run_target(target, fire, self._wall_ms)
            with self._lock:
                abandoned = fid in self._abandoned
                self._abandoned.discard(fid)
                self._running.pop(fid, None)
                if not abandoned:
                    self._in_flight[sid] = self._in_flight.get(sid, 1) - 1
            if not abandoned:
                self.sink.write(_record(fire, result, started, ended))

    def _watch(self) -> None:
        while not self._closed.wait(0.02):
            backlog = self._queue.qsize()
            if backlog and self._idle == 0 and self._workers < self.max_workers:
                self._spawn(min(backlog, 16))
            now = time.monotonic()
            expired = [(fid, f) for fid, (f, deadline) in list(self._running.items()) if deadline <= now]
            for fid, fire in expired:
                with self._lock:
                    if fid not in self._running or fid in self._abandoned:
                        continue
                    self._abandoned.add(fid)
                    sid = fire.schedule.id
                    self._in_flight[sid] = self._in_flight.get(sid, 1) - 1
                ended = self._wall_ms()
                self.sink.write(fire_record(
                    fire, "timeout", ended_ms=ended,
                    error=f"still running after the {fire.schedule.timeout_s:g}s timeout; its result will be dropped"))

    def close(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self._in_flight.values()):
            time.sleep(0.01)
        self._closed.set()
        for _ in range(self._workers):
            self._queue.put(None)


class InlineDispatcher:
    """Runs each fire at once in the caller's thread: for fake-clock tests, where targets take no time."""

    def __init__(self, sink: RecordSink, *, build: Callable[[Any], Target] = build_target,
                 wall_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.sink = sink
        self._targets = _TargetCache(build)
        self._wall_ms = wall_ms
        self.fires: list[Fire] = []

    def prepare(self, schedule: Schedule) -> None:
        self._targets.prepare(schedule)

    def in_flight(self, schedule_id: int) -> int:
        return 0

    def submit(self, fire: Fire) -> None:
        self.fires.append(fire)
        result, started, ended = run_target(self._targets.get(fire.schedule), fire, self._wall_ms)
        self.sink.write(_record(fire, result, started, ended))

    def close(self, timeout_s: float = 5.0) -> None:
        pass
