"""The local runtime: the controller on a SQLite control file, running targets in this process.

This is what ``subminute run`` and ``subminute demo`` start::

    runtime = LocalRuntime("subminute.db", budget_s=60)
    handoff = runtime.run()          # blocks; runtime.stop() from another thread or a signal ends it

:class:`Engine` is one run of the controller in this process, on any store and record sink: what
``LocalRuntime`` and the :class:`~subminute.runtime.scheduler.Scheduler` share, so that both fire through
the same controller, dispatcher and target building. :func:`file_sinks` makes the record sink and body
writers of a control file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..control.base import ControlStore
from ..control.handoff import Handoff
from ..control.sqlite import SqliteStore
from ..controller import Controller, ControllerOptions
from ..controller.heap import frozen_heap
from ..dispatch.local import LocalDispatcher
from ..errors import ConfigError
from ..results.sinks import RecordSink, SqliteSink
from ..results.writers import BodyWriters
from ..targets.base import TargetEnv, build_target
from ..timing.clock import Clock, SystemClock
from .arguments import db_file

__all__ = ["Engine", "LocalRuntime", "file_sinks", "live_handoff", "SWITCH_INTERVAL_S"]

# Python hands the GIL between threads every 5 ms by default, so a worker parsing an HTTP response can
# hold the controller's wake-up back by up to 5 ms. At 1 ms, bench/gil_switch.py measured the controller's
# lateness p99 under 200 HTTP polls/s drop several-fold (figures in the README).
SWITCH_INTERVAL_S = 0.001


def live_handoff(store: ControlStore, now: float) -> Handoff | None:
    """The stored hand-off, if its lease is still held with its token: a predecessor that ended its
    budget handed over, so this controller continues at its next slots at once. A stale hand-off (the
    lease was released or expired) is ignored: the schedules then start at their next slot from now."""
    handoff = store.load_handoff()
    lease = store.read_lease()
    if handoff is not None and lease is not None and lease.token == handoff.token and lease.expires_at > now:
        return handoff
    return None


def file_sinks(path: str | os.PathLike[str],
               wrap_sink: Callable[[RecordSink], RecordSink] | None = None) -> tuple[BodyWriters, RecordSink]:
    """The body writers and the record sink of a control file (records and kept bodies go to that file
    unless a target's spec names another); ``wrap_sink`` wraps the SQLite sink (metrics, JSON logs)."""
    sqlite_sink = SqliteSink(path)
    return BodyWriters(path), wrap_sink(sqlite_sink) if wrap_sink else sqlite_sink


class Engine:
    """One run of the controller in this process: a :class:`LocalDispatcher` building targets with the
    runtime's body writers and ``callables``, coroutine targets on ``loop`` (else the dispatcher's own),
    and a :class:`Controller` on ``store`` that continues a live hand-off. ``run`` fires until stopped (or
    the budget ends), then lets the fires under way finish for up to ``drain_s`` and closes the
    dispatcher, the body writers and the sink (not the store)."""

    def __init__(self, store: ControlStore, sink: RecordSink, clock: Clock, options: ControllerOptions, *,
                 bodies: BodyWriters, callables: Mapping[str, Callable[..., Any]] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, drain_s: float = 5.0) -> None:
        self.store, self.sink, self.bodies, self.clock = store, sink, bodies, clock
        self.drain_s = drain_s
        env = TargetEnv(bodies=bodies, callables=callables)
        self.dispatcher = LocalDispatcher(sink, clock, build=functools.partial(build_target, env=env), loop=loop)
        self.controller = Controller(store, self.dispatcher, clock, options, sink=sink,
                                     handoff=live_handoff(store, clock.time()))

    def run(self) -> Handoff:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, SWITCH_INTERVAL_S))
        try:
            with frozen_heap():
                return self.controller.run()
        finally:
            sys.setswitchinterval(previous)
            self.dispatcher.close(timeout_s=self.drain_s)
            self.bodies.close()  # writes what the last fires queued
            self.sink.close()

    def stop(self) -> None:
        self.controller.stop()


class LocalRuntime:
    def __init__(self, db_path: str | os.PathLike[str], *, budget_s: float | None = None,
                 options: ControllerOptions | None = None, clock: Clock | None = None,
                 wrap_sink: Callable[[RecordSink], RecordSink] | None = None) -> None:
        """``wrap_sink`` wraps the SQLite record sink (metrics, JSON logs) for both the dispatcher and
        the controller, so that every record passes through it."""
        self.path = db_file(db_path, "db_path")
        self.clock = clock or SystemClock()
        self.store = SqliteStore(self.path)
        self.bodies, self.sink = file_sinks(self.path, wrap_sink)
        opts = options or ControllerOptions()
        if budget_s is not None:
            if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)):
                raise ConfigError("budget_s", budget_s, "use a number of seconds greater than 0, or None to run "
                                                        "until stopped")
            opts = dataclasses.replace(opts, budget_s=budget_s)  # checked as the options check it
        self.engine = Engine(self.store, self.sink, self.clock, opts, bodies=self.bodies)
        self.dispatcher, self.controller = self.engine.dispatcher, self.engine.controller

    def run(self) -> Handoff:
        return self.engine.run()

    def stop(self) -> None:
        self.controller.stop()
