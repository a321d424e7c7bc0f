"""Run targets in this process, each fire started at its slot by a thread that slept to that instant.

The controller hands over a batch a few milliseconds before its slot. Each batch becomes *jobs* for
worker threads, given out at once; each worker sleeps to the slot on the monotonic clock and starts its
fires itself, so no queue hop lies between the slot and the start:

* **shared lane**: the fires of quick targets (a no-op, a Python function that returns at once) go to
  ONE worker, which starts them one after the other: 1,000 quick fires start within a few milliseconds,
  with one thread waking instead of a thousand. If a fire there runs longer than ``RELAY_S`` while others
  wait behind it, the monitor hands the rest of the lane to another worker, and that schedule's fires get
  their own worker from then on.
* **own worker**: a fire whose target blocks (HTTP, TCP, a command, a Python function measured slow) gets
  its own worker, so that it starts at the slot whatever the others do.

Everything is recorded after the job's fires have started. A hung fire keeps counting against its own
schedule until it really returns (a thread cannot be killed): past its timeout it is recorded as a
``timeout``, and while a schedule has ``cap`` fires running, its further fires are recorded as
``skipped``; the cap is 1 for ``overlap: skip``, else enough for the timeout to pass
(``timeout / interval + 1``, from 2 to 64). So a schedule that hangs uses a bounded number of threads and
never starves the others. A Python function that must be killable runs in a subprocess instead
(``"isolation": "process"`` on the python target).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..control.rows import Schedule
from ..results.records import bounded
from ..results.sinks import RecordSink
from ..targets.base import Result, Target, build_target
from ..timing.clock import Clock, SystemClock
from .base import Batch, Fire, StartLog, fire_record

__all__ = ["LocalDispatcher", "run_target"]

log = logging.getLogger("subminute.dispatch")

QUICK_MS = 1.0  # a target whose runs average less than this shares a lane with the other quick ones
RELAY_S = 0.002  # a shared-lane fire running longer than this hands the fires behind it to another worker
TIMEOUT_TICK_S = 0.25  # how often running fires are checked against their timeouts
BLOCKING_KINDS = frozenset(("http", "tcp", "command"))
_INF = float("inf")


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


def run_target(target: Target, event: dict[str, Any], timeout_s: float) -> Result:
    """Run one fire; any exception (or a result that is no :class:`Result`) becomes an error result."""
    try:
        result = target.run(event, timeout_s)
    except Exception as exc:  # a target's bug must not kill the worker
        return Result.failure(f"{exc.__class__.__name__}: {exc}")
    if not isinstance(result, Result):
        return Result.failure(f"target returned {bounded(repr(result), 200)} instead of a Result")
    return result


_Done = tuple[Fire, Result | None, float, float, str | None]


class _Job:
    """Fires for a worker to start at ``due_mono``. A shared lane's jobs share the deque of fires and the
    list of finished ones (written as records once the lane has started everything, or by the monitor
    when a fire holds the lane up)."""

    __slots__ = ("done", "due_mono", "fires", "log", "shared")

    def __init__(self, due_mono: float, fires: deque[Fire], log: StartLog, shared: bool,
                 done: deque[_Done] | None = None) -> None:
        self.due_mono = due_mono
        self.fires = fires
        self.log = log
        self.shared = shared
        self.done: deque[_Done] = done if done is not None else deque()


class _Running:
    """A fire under way: where the monitor looks for stuck lanes and timeouts."""

    __slots__ = ("fire", "since", "deadline", "timed_out", "relayed")

    def __init__(self, fire: Fire, since: float) -> None:
        self.fire = fire
        self.since = since
        self.deadline = since + fire.schedule.timeout_s
        self.timed_out = False
        self.relayed = False


class _Worker:
    def __init__(self, owner: LocalDispatcher, name: str) -> None:
        self.owner = owner
        self.event = owner.clock.event()
        self.job: _Job | None = None
        self.current: _Running | None = None
        self.quit = False
        self.thread = owner.clock.thread(self._run, name)
        self.thread.start()

    def give(self, job: _Job) -> None:
        self.job = job
        self.event.set()

    def stop(self) -> None:
        self.quit = True
        self.job = None
        self.event.set()

    def _run(self) -> None:
        owner, clock = self.owner, self.owner.clock
        while True:
            clock.wait(self.event, _INF)
            self.event.clear()
            job = self.job
            if job is None:
                if self.quit:
                    return
                continue
            delay = job.due_mono - clock.monotonic()
            if delay > 0:
                clock.wait(owner._never, delay)
            try:
                owner._run_job(self, job)
            except Exception:  # noqa: BLE001 - a bug here must not lose the worker
                log.exception("a worker failed while running fires")
            self.job = None
            owner._idle(self)


class LocalDispatcher:
    def __init__(self, sink: RecordSink, clock: Clock | None = None, *, build: Callable[[Any], Target] = build_target,
                 workers: int = 4, max_threads: int = 256) -> None:
        self.sink = sink
        self.clock: Clock = clock or SystemClock()
        self.max_threads = max_threads
        self._targets = _TargetCache(build)
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # schedule id -> fires running (hung ones included)
        self._under_way: dict[int, _Running] = {}  # id(_Running) -> the fires running now
        self._slow: set[int] = set()  # schedules whose fires get a worker each
        self._blocking: set[int] = set()  # schedules whose target blocks (HTTP, TCP, command): always slow
        self._cost: dict[int, float] = {}  # schedule id -> average run time in ms
        self._all: list[_Worker] = []
        self._idle_workers: list[_Worker] = []
        self._draining: set[_Worker] = set()
        self._names = itertools.count(1)
        self._never = self.clock.event()  # workers sleep to their slot on it (nothing sets it)
        self._poke = self.clock.event()  # wakes the monitor
        self._monitor_idle = False  # the monitor sleeps until poked: nothing runs
        self._settled = self.clock.event()  # set when the last fire under way ends
        self._closed = False
        for _ in range(workers):
            self._idle_workers.append(self._spawn())
        self._monitor = self.clock.thread(self._watch, "subminute-monitor")
        self._monitor.start()

    # -- Dispatcher ----------------------------------------------------------------------------------------
    def prepare(self, schedule: Schedule) -> None:
        target = self._targets.prepare(schedule)
        if getattr(target, "kind", "") in BLOCKING_KINDS:
            self._blocking.add(schedule.id)
            self._slow.add(schedule.id)
        else:
            self._blocking.discard(schedule.id)
            if schedule.id not in self._cost:
                self._slow.discard(schedule.id)

    def in_flight(self, schedule_id: int) -> int:
        """Fires of this schedule running now, hung ones included."""
        return self._running.get(schedule_id, 0)

    def submit(self, batch: Batch) -> None:
        """Give the batch's fires to workers now; they start them at ``batch.due_mono``."""
        quick: deque[Fire] = deque()
        slow = self._slow
        jobs = []
        for fire in batch.fires:
            if fire.schedule.id in slow:
                jobs.append(_Job(batch.due_mono, deque((fire,)), batch.log, False))
            else:
                quick.append(fire)
        if quick:
            jobs.append(_Job(batch.due_mono, quick, batch.log, len(quick) > 1))
        for job in jobs:
            self._assign(job)

    def close(self, timeout_s: float = 5.0) -> None:
        """Let fires under way (and jobs waiting for their slot) finish for up to ``timeout_s``, then stop."""
        clock = self.clock
        deadline = clock.monotonic() + timeout_s
        while clock.monotonic() < deadline:
            with self._lock:
                self._settled.clear()
                busy = any(w.job is not None and (w.current is None or not w.current.timed_out) for w in self._all)
            if not busy:
                break
            clock.wait(self._settled, min(0.05, deadline - clock.monotonic()))
        with self._lock:
            self._closed = True
            idle, self._idle_workers = self._idle_workers, []
        self._poke.set()
        for worker in idle:
            worker.stop()

    # -- workers -------------------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        worker = _Worker(self, f"subminute-worker-{next(self._names)}")
        self._all.append(worker)
        return worker

    def _assign(self, job: _Job) -> None:
        with self._lock:
            worker = self._idle_workers.pop() if self._idle_workers else None
            if worker is None and len(self._all) < self.max_threads and not self._closed:
                worker = self._spawn()
            if worker is not None and job.shared:
                self._draining.add(worker)
        if worker is None:
            for fire in job.fires:
                job.log.skipped(fire)
                self.sink.write(fire_record(fire, "skipped", error=f"all {self.max_threads} worker threads are "
                                                                   "busy (hung targets?); see 'subminute status'"))
            return
        worker.give(job)
        if job.shared:
            self._poke.set()  # the monitor watches a shared lane while it drains

    def _idle(self, worker: _Worker) -> None:
        with self._lock:
            self._draining.discard(worker)
            if self._closed:
                worker.stop()
            else:
                self._idle_workers.append(worker)
        self._settled.set()

    def _cap(self, fire: Fire) -> int:
        schedule = fire.schedule
        if schedule.overlap == "skip":
            return 1
        return max(2, min(64, math.ceil(schedule.timeout_s * 1000 / max(fire.interval_ms, 1)) + 1))

    def _run_job(self, worker: _Worker, job: _Job) -> None:
        clock, lock, targets, running = self.clock, self._lock, self._targets, self._running
        done = job.done
        fires, started_log = job.fires, job.log
        while True:
            try:
                fire = fires.popleft()
            except IndexError:
                break
            sid = fire.schedule.id
            with lock:
                busy = running.get(sid, 0)
                refused = busy >= self._cap(fire)
                if not refused:
                    running[sid] = busy + 1
            if refused:
                started_log.skipped(fire)
                why = ("the previous fire is still running" if fire.schedule.overlap == "skip" else
                       f"{busy} earlier fires of this schedule are still running")
                done.append((fire, None, 0.0, 0.0, why))
                continue
            target = targets.get(fire.schedule)
            event = fire.event()
            mono = clock.monotonic()
            entry = _Running(fire, mono)
            worker.current = entry
            self._under_way[id(entry)] = entry
            if self._monitor_idle:
                self._monitor_idle = False
                self._poke.set()  # someone must watch this fire's timeout
            started = clock.time() * 1000
            result = run_target(target, event, fire.schedule.timeout_s)
            ended = clock.time() * 1000
            spent_ms = (clock.monotonic() - mono) * 1000
            worker.current = None
            with lock:
                del self._under_way[id(entry)]
                running[sid] -= 1
            started_log.started(fire, started)
            self._learn(sid, spent_ms, job.shared)
            if not entry.timed_out:
                done.append((fire, result, started, ended, None))
        self._write(done)

    def _write(self, done: deque[_Done]) -> None:
        """Write the records of finished fires (each once, whoever takes it first: a deque's popleft is
        atomic)."""
        write = self.sink.write
        while True:
            try:
                fired, outcome, began, finished, reason = done.popleft()
            except IndexError:
                return
            if outcome is None:
                write(fire_record(fired, "skipped", error=reason))
            else:
                write(fire_record(
                    fired, outcome.status, started_ms=began, ended_ms=finished,
                    latency_ms=round(finished - began, 3), http_status=outcome.http_status, bytes=outcome.bytes,
                    error=bounded(outcome.error) if outcome.error else None, detail=outcome.detail))

    def _learn(self, sid: int, spent_ms: float, shared: bool) -> None:
        """Keep each schedule's average run time; a slow one leaves the shared lane, a quick one joins it."""
        cost = self._cost.get(sid)
        cost = spent_ms if cost is None else 0.7 * cost + 0.3 * spent_ms
        self._cost[sid] = cost
        if shared and cost > QUICK_MS:
            self._slow.add(sid)
        elif not shared and cost < QUICK_MS / 4 and sid not in self._blocking:
            self._slow.discard(sid)

    # -- the monitor: stuck lanes and timeouts -------------------------------------------------------------
    def _watch(self) -> None:
        clock = self.clock
        while not self._closed:
            now = clock.monotonic()
            wake = now + TIMEOUT_TICK_S
            with self._lock:
                draining = list(self._draining)
                under_way = list(self._under_way.values())
            for worker in draining:
                job, current = worker.job, worker.current
                if job is None or not job.fires or current is None or current.relayed:
                    continue
                if now - current.since >= RELAY_S:
                    current.relayed = True
                    self._slow.add(current.fire.schedule.id)
                    self._write(job.done)  # what finished before the stuck fire is not held up by it
                    self._assign(_Job(now, job.fires, job.log, True, job.done))  # the same deque: both drain it
                else:
                    wake = min(wake, current.since + RELAY_S)
            for entry in under_way:
                if not entry.timed_out and entry.deadline <= now:
                    entry.timed_out = True
                    fire = entry.fire
                    self.sink.write(fire_record(
                        fire, "timeout", ended_ms=clock.time() * 1000,
                        error=f"still running after the {fire.schedule.timeout_s:g}s timeout; it keeps counting "
                              "against its schedule until it returns, and its result will be dropped"))
            if not draining and not under_way:
                self._monitor_idle = True  # first the flag, then look again: a worker starting a fire
                if not self._under_way and not self._draining:  # meanwhile sees the flag and pokes
                    wake = _INF
                else:
                    self._monitor_idle = False
            clock.wait(self._poke, max(wake - clock.monotonic(), 0.0))
            self._poke.clear()
            self._monitor_idle = False
