"""The local runtime: the controller on a SQLite control file, running targets in this process.

This is what ``subminute run`` and ``subminute demo`` start::

    runtime = LocalRuntime("subminute.db", budget_s=60)
    handoff = runtime.run()          # blocks; runtime.stop() from another thread or a signal ends it
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..control.handoff import Handoff
from ..control.sqlite import SqliteStore
from ..controller import Controller, ControllerOptions
from ..dispatch.local import LocalDispatcher
from ..results.sinks import RecordSink, SqliteSink
from ..results.writers import BodyWriters
from ..targets.base import TargetEnv, build_target
from ..timing.clock import Clock, SystemClock

__all__ = ["LocalRuntime", "live_handoff", "SWITCH_INTERVAL_S"]

# Python hands the GIL between threads every 5 ms by default, so a worker parsing an HTTP response can
# hold the controller's wake-up back by up to 5 ms. At 1 ms, bench/gil_switch.py measured the controller's
# lateness p99 under 200 HTTP polls/s drop several-fold (figures in the README).
SWITCH_INTERVAL_S = 0.001


def live_handoff(store: SqliteStore, now: float) -> Handoff | None:
    """The stored hand-off, if its lease is still held with its token: a predecessor that ended its
    budget handed over, so this controller continues at its next slots at once. A stale hand-off (the
    lease was released or expired) is ignored: the schedules then start at their next slot from now."""
    handoff = Handoff.from_raw(store.load_handoff())
    lease = store.read_lease()
    if handoff is not None and lease is not None and lease.token == handoff.token and lease.expires_at > now:
        return handoff
    return None


class LocalRuntime:
    def __init__(self, db_path: str | os.PathLike[str], *, budget_s: float | None = None,
                 options: ControllerOptions | None = None, clock: Clock | None = None,
                 wrap_sink: Callable[[RecordSink], RecordSink] | None = None) -> None:
        """``wrap_sink`` wraps the SQLite record sink (metrics, JSON logs) for both the dispatcher and
        the controller, so that every record passes through it."""
        self.path = Path(db_path)
        self.clock = clock or SystemClock()
        self.store = SqliteStore(self.path)
        self.bodies = BodyWriters(self.path)  # kept bodies go to the same file unless a spec names another
        sqlite_sink = SqliteSink(self.path)
        self.sink: RecordSink = wrap_sink(sqlite_sink) if wrap_sink else sqlite_sink
        self.dispatcher = LocalDispatcher(
            self.sink, self.clock, build=functools.partial(build_target, env=TargetEnv(bodies=self.bodies)))
        opts = options or ControllerOptions()
        if budget_s is not None:
            opts.budget_s = budget_s
        self.controller = Controller(self.store, self.dispatcher, self.clock, opts, sink=self.sink,
                                     handoff=live_handoff(self.store, self.clock.time()))

    def run(self) -> Handoff:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, SWITCH_INTERVAL_S))
        try:
            return self.controller.run()
        finally:
            sys.setswitchinterval(previous)
            self.dispatcher.close(timeout_s=5)
            self.bodies.close()  # writes what the last fires queued
            self.sink.close()

    def stop(self) -> None:
        self.controller.stop()
