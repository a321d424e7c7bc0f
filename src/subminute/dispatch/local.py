"""Run targets in this process, each fire started at its slot by a thread that slept to that instant.

The controller hands over a batch a few milliseconds before its slot. Each batch becomes *jobs* for
worker threads, given out at once; each worker sleeps to the slot on the monotonic clock and starts its
fires itself, so no queue hop lies between the slot and the start:

* **shared lane**: the fires of quick targets (a no-op, a Python function that returns at once) go to
  ONE worker, which starts them one after the other: 1,000 quick fires start within a few milliseconds,
  with one thread waking instead of a thousand. If a fire there runs longer than ``RELAY_S`` while others
  wait behind it, the monitor writes the records of the fires before it, hands the rest of the lane to
  another worker, and that schedule's fires get their own worker from then on.
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

import asyncio
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..control.rows import Schedule
from ..results.records import FireRecord, bounded
from ..results.sinks import RecordSink
from ..targets.base import Result, Target, build_target
from ..timing.clock import Clock, SystemClock
from .base import Batch, Fire, StartLog, fire_record
from .coroutines import CoroutineRunner
from .workers import Job, Running, TargetCache, Worker

__all__ = ["LocalDispatcher", "write_done"]

log = logging.getLogger("subminute.dispatch")

QUICK_MS = 1.0  # a target whose runs average less than this shares a lane with the other quick ones
RELAY_S = 0.005  # a shared-lane fire running longer than this hands the fires behind it to another worker
BLOCKING_KINDS = frozenset(("http", "tcp", "command", "python-process"))  # these keep their own timeout
SELF_TIMED_GRACE_S = 2.0  # more than a command takes to end: TERM, 1 s for it, then KILL (targets/command.py)
_INF = float("inf")


class LocalDispatcher:
    def __init__(self, sink: RecordSink, clock: Clock | None = None, *, build: Callable[[Any], Target] = build_target,
                 workers: int = 4, max_threads: int = 256, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop``: the event loop that runs coroutine targets (``kind = "async"``); without one, the
        dispatcher starts its own in a thread when it first meets such a target."""
        self.sink = sink
        self.clock: Clock = clock or SystemClock()
        self._coroutines = CoroutineRunner(self.clock, loop)
        self._async_under_way = 0  # coroutine fires started on the loop and not ended
        self.max_threads = max_threads
        self._targets = TargetCache(build)
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # schedule id -> fires running (hung ones included)
        self._caps: dict[int, tuple[int, int]] = {}  # schedule id -> (interval ms, cap) last computed
        self._slow: set[int] = set()  # schedules whose fires get a worker each
        self._blocking: set[int] = set()  # schedules whose target blocks (HTTP, TCP, command): always slow
        self._cost: dict[int, float] = {}  # schedule id -> average run time in ms
        self._all: list[Worker] = []
        self._idle_workers: list[Worker] = []
        self._draining: set[Worker] = set()
        self._names = itertools.count(1)
        self._never = self.clock.event()  # workers sleep to their slot on it (nothing sets it)
        self._poke = self.clock.event()  # wakes the monitor
        self._watch_until = _INF  # when the monitor looks next (inf: when poked); a fire due to time out
        # earlier pokes it, so that a quick fire wakes no thread beside its worker
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

    def runs_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of this dispatcher's (a worker, its event loop's): a fire's own."""
        return any(w.thread is thread for w in list(self._all)) or self._coroutines.runs_on(thread)

    def in_flight(self, schedule_id: int) -> int:
        """Fires of this schedule running now, hung ones included."""
        return self._running.get(schedule_id, 0)

    def submit(self, batch: Batch) -> None:
        """Give the batch's fires to workers now, their events made; they start them at ``batch.due_mono``."""
        quick: deque[Fire] = deque()
        slow = self._slow
        jobs = []
        for fire in batch.fires:
            fire.event()  # now, not between one start and the next
            if fire.schedule.id in slow:
                jobs.append(Job(batch.due_mono, deque((fire,)), batch.log, False))
            else:
                quick.append(fire)
        if quick:
            jobs.append(Job(batch.due_mono, quick, batch.log, len(quick) > 1))
        for job in jobs:
            self._assign(job)

    def close(self, timeout_s: float = 5.0) -> None:
        """Let fires under way (and jobs waiting for their slot) finish for up to ``timeout_s``, then stop."""
        clock = self.clock
        deadline = clock.monotonic() + timeout_s
        while clock.monotonic() < deadline:
            with self._lock:
                self._settled.clear()
                busy = self._async_under_way > 0 or any(
                    w.job is not None and (w.current is None or not w.current.timed_out) for w in self._all)
            if not busy:
                break
            clock.wait(self._settled, min(0.05, deadline - clock.monotonic()))
        with self._lock:
            self._closed = True
            idle, self._idle_workers = self._idle_workers, []
            under_way = [w.current for w in self._all if w.current is not None]
        self._poke.set()
        for worker in idle:
            worker.stop()
        self._give_up(under_way, timeout_s)
        self._coroutines.close()

    def _give_up(self, under_way: list[Running], waited_s: float) -> None:
        """Fires still running once the dispatcher has waited for them: each is recorded now (after this
        the records are closed), and the processes of command and python-process targets are ended
        (a command runs in a session of its own: it would outlive subminute)."""
        now_ms = self.clock.time() * 1000
        for entry in under_way:
            fire = entry.fire
            if fire is None or entry.timed_out:
                continue
            entry.timed_out = True
            found = self._targets.targets.get(fire.schedule.id)
            ended = "its process is ended, " if found is not None and hasattr(found[1], "close") else ""
            self.sink.write(fire_record(
                fire, "timeout", ended_ms=now_ms,
                error=f"still running when subminute stopped (it waited {waited_s:g}s for the fires under way); "
                      f"{ended}its result is not recorded"))
        for _, target in list(self._targets.targets.values()):
            end = getattr(target, "close", None)  # command and python-process targets
            if callable(end):
                end()

    # -- workers -------------------------------------------------------------------------------------------
    def _spawn(self) -> Worker:
        worker = Worker(self, f"subminute-worker-{next(self._names)}")
        self._all.append(worker)
        return worker

    def _assign(self, job: Job) -> None:
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

    def _idle(self, worker: Worker) -> None:
        with self._lock:
            self._draining.discard(worker)
            if self._closed:
                worker.stop()
            else:
                self._idle_workers.append(worker)
        self._settled.set()

    def _cap(self, fire: Fire) -> int:
        """How many fires of the schedule may run at once: 1 for ``skip``, else ``timeout / interval + 1``
        (2 to 64), cached per schedule while its interval stays."""
        sid, interval = fire.schedule.id, fire.interval_ms
        cached = self._caps.get(sid)
        if cached is not None and cached[0] == interval:
            return cached[1]
        schedule = fire.schedule
        cap = 1 if schedule.overlap == "skip" else \
            max(2, min(64, math.ceil(schedule.timeout_s * 1000 / max(interval, 1)) + 1))
        self._caps[sid] = (interval, cap)
        return cap

    def _run_job(self, worker: Worker, job: Job) -> None:
        """Start the job's fires one after the other. The hot path: a shared lane starts 1,000 of them, so
        every step here is counted (bench/timing.py, case 5): one lock a fire (the count the last fire gives
        back is taken with the next one's), no object made for a fire that returns nothing, its start noted
        with its record once the lane has started everything."""
        lock, running, caps, cap_of = self._lock, self._running, self._caps, self._cap
        targets, wall, mono = self._targets.targets, self.clock.time, self.clock.monotonic
        done, fires, started_log, shared = job.done, job.fires, job.log, job.shared
        entry = worker.entry
        pop, finished = fires.popleft, done.append
        ended_sid = None  # the schedule of the fire that just returned: its count is given back with the next
        while True:
            try:
                fire = pop()
            except IndexError:
                break
            schedule = fire.schedule
            sid = schedule.id
            cached = caps.get(sid)
            cap = cached[1] if cached is not None and cached[0] == fire.interval_ms else cap_of(fire)
            with lock:
                if ended_sid is not None:
                    running[ended_sid] -= 1
                busy = running.get(sid, 0)
                if busy < cap:
                    running[sid] = busy + 1
            ended_sid = None
            if busy >= cap:
                started_log.skipped(fire)
                fire.skip_reason = ("the previous fire is still running" if schedule.overlap == "skip" else
                             f"{busy} earlier fires of this schedule are still running")
                finished(fire)
                continue
            found = targets.get(sid)
            target = found[1] if found is not None else self._targets.prepare(schedule)
            event = fire.payload if fire.payload is not None else fire.event()
            if target.kind == "async":  # a coroutine: started on the event loop, this lane goes on at once
                self._start_async(target, event, fire, started_log)
                continue
            entry.fire, entry.since = fire, mono()
            entry.grace = SELF_TIMED_GRACE_S if target.kind in BLOCKING_KINDS else 0.0
            entry.timed_out = entry.relayed = False
            worker.current = entry
            expiry = entry.since + schedule.timeout_s + entry.grace  # entry.deadline(), inline: the hot path
            if expiry < self._watch_until:  # the monitor would look too late for this fire's timeout
                self._watch_until = expiry
                self._poke.set()
            fire.started_ms = started = wall() * 1000
            try:
                fire.result = target.run(event, schedule.timeout_s)
            except BaseException as exc:  # noqa: BLE001 - a target's bug (sys.exit included) must not kill the worker
                fire.result = Result.failure(f"{exc.__class__.__name__}: {exc}")
            fire.ended_ms = ended = wall() * 1000
            worker.current = None
            ended_sid = sid
            if ended - started > QUICK_MS / 4 or not shared:
                self._learn(sid, ended - started, shared)
            if not entry.timed_out:
                finished(fire)
            else:  # recorded by the monitor already; its start still counts
                started_log.started(fire, started)
            if entry.timed_out or worker.entry is not entry:
                entry = worker.entry = Running()  # the monitor may still hold the old one
        if ended_sid is not None:
            with lock:
                running[ended_sid] -= 1
        write_done(self.sink, done, started_log)

    # -- coroutine targets ---------------------------------------------------------------------------------
    def _start_async(self, target: Target, event: dict[str, Any], fire: Fire, log_: StartLog) -> None:
        """A coroutine fire: started on the event loop; it counts against its schedule until it ends."""
        with self._lock:
            self._async_under_way += 1

        def ended(result: Result, started: float, finished: float) -> None:
            with self._lock:
                self._running[fire.schedule.id] -= 1
                self._async_under_way -= 1
            fire.result, fire.started_ms, fire.ended_ms = result, started, finished
            write_done(self.sink, deque((fire,)), None)  # the runner noted the start
            self._settled.set()

        self._coroutines.start(target, event, fire, log_, ended)

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
        """Relay stuck shared lanes and record timeouts. It sleeps until the earliest moment something can
        be due: a lane's relay, a fire's timeout, or the horizon a worker asked for (the timeout of a fire
        that may have ended since: later fires of that timeout then wake nobody). Its look-ups are
        published in ``_watch_until`` before it looks again, so that a fire started meanwhile either is
        seen or sees the new horizon and pokes."""
        clock = self.clock
        while not self._closed:
            now = clock.monotonic()
            asked = self._watch_until
            wake = asked if asked > now else _INF
            with self._lock:
                draining = list(self._draining)
            for worker in draining:
                job, current = worker.job, worker.current
                if job is not None and current is None and job.fires:  # not started yet: look after it starts
                    wake = min(wake, max(job.due_mono, now) + RELAY_S)
                    continue
                if job is None or current is None or current.relayed:
                    continue
                if now - current.since >= RELAY_S - 1e-6:
                    current.relayed = True
                    if current.fire is not None:
                        self._slow.add(current.fire.schedule.id)
                    write_done(self.sink, job.done, job.log)  # what finished before the stuck fire is not held up by it
                    if job.fires:  # (the lane's last fire may be the one that hangs)
                        self._assign(Job(now, job.fires, job.log, True, job.done))  # the same deque: both drain it
                else:
                    wake = min(wake, current.since + RELAY_S)
            self._watch_until = wake
            for worker in list(self._all):  # after publishing the horizon (see above)
                entry = worker.current
                if entry is None or entry.timed_out:
                    continue
                fire = entry.fire
                if fire is None:
                    continue
                deadline = entry.deadline()
                if now >= deadline:
                    entry.timed_out = True
                    self.sink.write(fire_record(
                        fire, "timeout", ended_ms=clock.time() * 1000,
                        error=f"still running after the {fire.schedule.timeout_s:g}s timeout; it keeps counting "
                              "against its schedule until it returns, and its result will be dropped"))
                else:
                    wake = min(wake, deadline)
            if wake < self._watch_until:
                self._watch_until = wake
            clock.wait(self._poke, max(wake - clock.monotonic(), 0.0001))  # (a wait of nothing is a spin)
            self._poke.clear()


def write_done(sink: RecordSink, done: deque[Fire], started_log: StartLog | None) -> None:
    """Write the records of finished fires (each once, whoever takes it first: a deque's popleft is
    atomic), noting their starts in ``started_log``. Records are made field by field: this runs for
    every fire."""
    write = sink.write
    note = started_log.started if started_log is not None else None
    while True:
        try:
            fire = done.popleft()
        except IndexError:
            return
        if fire.skip_reason is not None:
            write(fire_record(fire, "skipped", error=fire.skip_reason))
            continue
        schedule, slot, began, finished = fire.schedule, fire.slot_ms, fire.started_ms, fire.ended_ms
        if note is not None:
            note(fire, began)
        outcome = fire.result
        if outcome is None:  # the target returned nothing: it went well
            status, http_status, size, error, detail = "ok", None, None, None, {}
        else:
            if not isinstance(outcome, Result):
                outcome = Result.failure(f"target returned {bounded(repr(outcome), 200)} instead of a Result")
            elif outcome.started_ms is not None:  # the target knows its start better (a child process)
                began = outcome.started_ms
            status, http_status, size, detail = outcome.status, outcome.http_status, outcome.bytes, outcome.detail
            error = bounded(outcome.error) if outcome.error else None
        write(FireRecord(
            schedule.id, schedule.name, slot, fire.seq, status, fire.dispatched_ms,
            round(fire.dispatched_ms - slot, 3), began, finished, round(finished - began, 3),
            http_status, size, error, detail, fire.token, round(began - slot, 3)))
