"""The local dispatcher's workers: the jobs they take, the fire each runs now, the targets they build.
Standard library only."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..control.rows import Schedule
from ..targets.base import Target
from .base import Fire, StartLog

if TYPE_CHECKING:
    from .local import LocalDispatcher

__all__ = ["Job", "Running", "TargetCache", "Worker"]

log = logging.getLogger("subminute.dispatch")
_INF = float("inf")


class TargetCache:
    """One built target per schedule, rebuilt when its spec changes."""

    def __init__(self, build: Callable[[Any], Target]) -> None:
        self._build = build
        self.targets: dict[int, tuple[Any, Target]] = {}  # schedule id -> (spec, built target)

    def prepare(self, schedule: Schedule) -> Target:
        key = dict(schedule.target) if schedule.target else None
        cached = self.targets.get(schedule.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        target = self._build(schedule.target)
        self.targets[schedule.id] = (key, target)
        return target


class Job:
    """Fires for a worker to start at ``due_mono``. A shared lane's jobs share the deque of fires and the
    list of finished ones (written as records once the lane has started everything, or by the monitor
    when a fire holds the lane up)."""

    __slots__ = ("done", "due_mono", "fires", "log", "shared")

    def __init__(self, due_mono: float, fires: deque[Fire], log: StartLog, shared: bool,
                 done: deque[Fire] | None = None) -> None:
        self.due_mono = due_mono
        self.fires = fires
        self.log = log
        self.shared = shared
        self.done: deque[Fire] = done if done is not None else deque()


class Running:
    """The fire a worker runs now: where the monitor looks for stuck lanes and timeouts. Each worker reuses
    one (a fresh one after a timeout, which the monitor may still hold). ``grace``: how long after its
    timeout the monitor waits for a target that keeps its own timeout (HTTP, TCP, a command, a child
    process) to say so itself."""

    __slots__ = ("fire", "grace", "relayed", "since", "timed_out")

    def __init__(self) -> None:
        self.fire: Fire | None = None
        self.since = 0.0
        self.grace = 0.0
        self.timed_out = False
        self.relayed = False

    def deadline(self) -> float:
        """When the fire under way is past its timeout (monotonic; inf: no fire)."""
        fire = self.fire
        return _INF if fire is None else self.since + fire.schedule.timeout_s + self.grace


class Worker:
    def __init__(self, owner: LocalDispatcher, name: str) -> None:
        self.owner = owner
        self.event = owner.clock.event()
        self.job: Job | None = None
        self.current: Running | None = None
        self.entry = Running()
        self.quit = False
        self.thread = owner.clock.thread(self._run, name)
        self.thread.start()

    def give(self, job: Job) -> None:
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


