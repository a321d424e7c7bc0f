"""The Scheduler: subminute from inside a Python program, for plain functions and coroutines::

    from subminute import Scheduler

    scheduler = Scheduler()                   # in memory; Scheduler("jobs.db") keeps its state in SQLite

    @scheduler.every("500ms", overlap="skip")
    def probe(event): ...

    @scheduler.every(plan="tz=America/New_York; mon-fri 06:00-20:00 every 2s; otherwise every 30s")
    async def fetch_vehicles(event): ...      # on an event loop, not in a thread each

    scheduler.start()                         # a background thread; or run() (blocks), or await serve()

It is a thin layer on the engine of ``subminute run`` (:class:`~.local.Engine`: one controller, the same
timing, overlap, timeouts, misfire grace and fire records). Each function is a schedule: a control row
whose target is ``{"type": "callable", "name": ...}`` (:mod:`subminute.targets.callables`), resolved from
this Scheduler's registry. ``set``, ``pause``, ``resume`` and ``remove`` write the row through the store,
checked as the CLI checks it, and the running controller applies the change at once.
With a file, the CLI sees and changes the same schedules while the program runs; ``subminute run`` on that
file refuses the functions' rows (only this program's process has the functions), naming the program.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..control.memory import MemoryStore
from ..control.rows import Schedule, check_name, schedule_from_row
from ..control.sqlite import SqliteStore
from ..controller import ControllerOptions, default_owner
from ..errors import ConfigError, SubminuteError
from ..results.sinks import BoundedSink, FireLog
from ..results.writers import BodyWriters
from ..targets.base import TargetEnv, build_target
from ..targets.callables import calling_convention
from ..timing.clock import Clock, ClockEvent, SystemClock
from ..timing.durations import parse_seconds
from .arguments import (
    Duration,
    argument_error,
    check_fields,
    db_file,
    id_for,
    program_name,
    resolve,
    row_fields,
    seconds,
)
from .local import Engine, file_sinks
from .status import check_rows, status_rows

__all__ = ["DRAIN_S", "Duration", "STOP_WAIT_S", "Scheduler", "SchedulerStateError"]

log = logging.getLogger("subminute.scheduler")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
DRAIN_S = 0.5  # at stop, fires under way get this long to end (then they are left to finish alone)
STOP_WAIT_S = 1.0  # stop() waits this long for the engine to end
_INSTANCES = itertools.count(1)
_INF = float("inf")


class SchedulerStateError(SubminuteError, RuntimeError):
    """A Scheduler started while it runs already."""


def _check_target(schedule: Schedule, env: TargetEnv) -> str | None:
    """Build the target as this Scheduler's engine would (starting nothing), for status."""
    try:
        target = build_target(schedule.target, env=env)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a target's module raises, as the controller records it
        raise ConfigError("target", str(schedule.target)[:80], f"give a target that can be built ({exc!r})") from None
    close = getattr(target, "close", None)
    if callable(close):
        close()
    return None


@dataclass(eq=False)
class _Run:
    """One run of the engine: its thread, who waits for it, and how it ended."""

    engine: Engine
    done: ClockEvent
    loop: asyncio.AbstractEventLoop | None = None  # serve(): the caller's event loop
    waiter: threading.Thread | None = None  # run(): the caller's thread
    on_end: Callable[[], None] | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = field(default=None, repr=False)


class Scheduler:
    """Schedules of this program's functions (see the module docstring).

    ``db``: a SQLite control file (state, schedules and fire records kept, shared with the CLI), or
    ``None`` to keep everything in memory (the last ``record_limit`` fire records of each schedule).
    ``owner``: this controller's name in the lease (default ``host:pid``); ``lease_ttl``: its lease period
    (1 s to 1 h): a successor takes over this long after a crash. ``clock``: for tests (a FakeClock).
    """

    def __init__(self, db: str | os.PathLike[str] | None = None, *, clock: Clock | None = None,
                 owner: str | None = None, lease_ttl: Duration = 5.0, record_limit: int = 1000) -> None:
        self.path = db_file(db, "db") if db is not None else None
        self.clock: Clock = clock or SystemClock()
        number = next(_INSTANCES)
        self.owner = owner if owner is not None else default_owner() + (f"#{number}" if number > 1 else "")
        if not isinstance(self.owner, str) or not 1 <= len(self.owner) <= 200 or not self.owner.isprintable():
            raise ConfigError("owner", self.owner, "use 1 to 200 printable characters (default: host:pid)")
        self.lease_ttl_s = parse_seconds(seconds(lease_ttl), "lease_ttl", 1.0, 3600.0)
        self._records = BoundedSink(record_limit)  # checks record_limit; the sink of an in-memory Scheduler
        self.program = program_name()
        self._functions: dict[str, Callable[..., Any]] = {}  # name -> function: the callable targets' registry
        self._lock = threading.RLock()
        self._store_obj: SqliteStore | MemoryStore | None = MemoryStore() if self.path is None else SqliteStore(self.path)
        self._run: _Run | None = None

    # -- schedules -------------------------------------------------------------------------------------------
    def every(self, every: Duration | None = None, *, plan: str | None = None, name: str | None = None,
              overlap: Literal["allow", "skip"] | None = None, timeout: Duration | None = None,
              offset: Duration | None = None, grace: Duration | None = None,
              running: bool = True) -> Callable[[F], F]:
        """A decorator: ``@scheduler.every("2s")`` or ``@scheduler.every(plan="...")``; see :meth:`add`.
        The function is returned as it is."""
        if callable(every):
            raise ConfigError("every", getattr(every, "__qualname__", every),
                              'give the interval in parentheses: @scheduler.every("2s")')

        def decorate(func: F) -> F:
            self.add(func, every, plan=plan, name=name, overlap=overlap, timeout=timeout, offset=offset,
                     grace=grace, running=running)
            return func

        return decorate

    def add(self, func: Callable[..., Any], every: Duration | None = None, *, plan: str | None = None,
            name: str | None = None, overlap: Literal["allow", "skip"] | None = None,
            timeout: Duration | None = None, offset: Duration | None = None, grace: Duration | None = None,
            running: bool = True) -> str:
        """Fire ``func`` every ``every`` (``"500ms"``, ``"2s"``, seconds, a timedelta: 0.1 s to 24 h) or by
        ``plan``, with the event as its argument (or none if it takes none); return its name (the
        function's ``__name__`` by default; unique). ``overlap``: ``"allow"`` (default) or ``"skip"``;
        ``timeout`` per fire (default 10 s); ``offset`` of its grid; ``grace`` for late slots (default 2 s).
        With a file, a name that a previous run of the program added is that schedule again (same id),
        updated to these arguments."""
        convention = calling_convention(func, "function")
        if name is None:
            name = getattr(func, "__name__", None)
            if not isinstance(name, str):
                raise ConfigError("name", None, "this callable has no __name__: give name=...")
        check_name(name, "name")
        row = row_fields(name, every=every, plan=plan, overlap=overlap, timeout=timeout, offset=offset, grace=grace,
                         running=running)
        row.update(name=name, target={"type": "callable", "name": name, "program": self.program})
        check_fields(row, name)
        with self._lock:
            if name in self._functions:
                raise ConfigError("name", name, "this Scheduler has a function of that name already; give the other "
                                                "one its own name=...")
            self._functions[name] = func  # before the row: the controller may build its target at once
            try:  # its id chosen in the write's own transaction: another program may be adding too
                row["id"] = self._store.add(row, functools.partial(id_for, name))
            except ConfigError as exc:
                del self._functions[name]
                raise argument_error(exc, name) from None
            except BaseException:
                del self._functions[name]
                raise
        log.debug("added %s (%s) as schedule %s", name, "coroutine" if convention.is_async else "function", row["id"])
        self._changed()
        return name

    def set(self, schedule: str | int, *, every: Duration | None = None, plan: str | None = None,
            overlap: Literal["allow", "skip"] | None = None, timeout: Duration | None = None,
            offset: Duration | None = None, grace: Duration | None = None) -> None:
        """Change a schedule (by name or id); a running scheduler applies it at once (its next slot)."""
        sid, name = self._find(schedule)
        changes = row_fields(name, every=every, plan=plan, overlap=overlap, timeout=timeout, offset=offset,
                             grace=grace, running=None, timing_required=False)
        if "waitseconds" in changes:
            changes["plan"] = None
        if not changes:
            raise ConfigError("set", schedule, "say what to change: every, plan, overlap, timeout, offset or grace")
        self._update(sid, name, changes)

    def pause(self, schedule: str | int) -> None:
        """Stop firing a schedule (kept, with its numbering)."""
        self._update(*self._find(schedule), {"running": False})

    def resume(self, schedule: str | int) -> None:
        """Fire a paused schedule again, from its next slot."""
        self._update(*self._find(schedule), {"running": True})

    def remove(self, schedule: str | int) -> None:
        """Delete a schedule (and forget its function)."""
        sid, _ = self._find(schedule)
        with self._lock:
            target = schedule_from_row(self._store.get(sid)).target or {}
            self._store.delete(sid)
            if target.get("type") == "callable":
                self._functions.pop(str(target.get("name")), None)
        self._changed()

    def status(self) -> list[dict[str, Any]]:
        """Every schedule as ``subminute status --json`` shows it (its ``"schedules"``)."""
        rows = self._store.rows()
        checked = check_rows(rows, functools.partial(_check_target, env=TargetEnv(callables=self._functions)))
        if self.path is None:
            stats = self._records.schedule_stats()
        else:
            stats = self._with_log(lambda fire_log: fire_log.schedule_stats())
        return status_rows(checked, stats, int(self.clock.time() * 1000))

    def history(self, schedule: str | int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent fire records (of one schedule, or all), oldest first, as ``subminute history --json``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1_000_000:
            raise ConfigError("limit", limit, "use a whole number from 1 to 1000000")
        sid = self._find(schedule)[0] if schedule is not None else None
        if self.path is None:
            return self._records.history(sid, limit)
        return self._with_log(lambda fire_log: fire_log.history(sid, limit))

    @property
    def state(self) -> str:
        """``stopped``, or the running controller's: ``starting``, ``standby`` (another process holds the
        lease of the file) or ``firing``."""
        run = self._run
        return run.engine.controller.state if run is not None else "stopped"

    # -- running ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Fire in a background thread; returns at once. ``stop()`` ends it."""
        self._begin()

    def run(self) -> None:
        """Fire until ``stop()`` (from another thread, a job or a signal handler). Ctrl-C stops it cleanly
        (lease released, records written), then raises KeyboardInterrupt."""
        run = self._begin(waiter=threading.current_thread())
        try:
            self.clock.wait(run.done, _INF)
        except BaseException:  # Ctrl-C, SystemExit: end cleanly before it goes on
            run.engine.stop()
            self.clock.wait(run.done, STOP_WAIT_S)
            raise
        if run.error is not None:
            raise run.error

    async def serve(self) -> None:
        """Fire while the caller's event loop runs: coroutine functions run on it, the controller in a
        thread. Returns when ``stop()`` is called; cancelled, it stops the scheduler first."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def notify() -> None:
            if not finished.done():
                finished.set_result(None)

        def on_end() -> None:
            try:
                loop.call_soon_threadsafe(notify)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        run = self._begin(loop=loop, on_end=on_end)
        try:
            await asyncio.shield(finished)
        except asyncio.CancelledError:
            run.engine.stop()  # the loop still runs the coroutines under way while the engine drains them
            await asyncio.wait((finished,), timeout=STOP_WAIT_S)
            raise
        if run.error is not None:
            raise run.error

    def stop(self) -> None:
        """Stop firing and release everything (lease, threads, sinks, the store's connection), within a
        second: fires under way get half a second to end. Safe from any thread, a job or a signal handler;
        the Scheduler may be started again."""
        with self._lock:
            run = self._run
        if run is None:
            self._close_store()
            return
        run.engine.stop()
        here = threading.current_thread()
        if here in (run.waiter, run.thread) or _on_loop(run.loop) or run.thread is None \
                or run.engine.dispatcher.runs_on(here):
            return  # the engine ends by itself once this returns (a job's own fire included): no wait on it
        self.clock.join(run.thread, STOP_WAIT_S)
        if run.thread.is_alive():
            log.warning("the scheduler did not end within %g s (a store call blocked?); it ends by itself", STOP_WAIT_S)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- inside ----------------------------------------------------------------------------------------------
    @property
    def _store(self) -> SqliteStore | MemoryStore:
        with self._lock:
            if self._store_obj is None:  # closed by a stop: opened again for the next use
                assert self.path is not None
                self._store_obj = SqliteStore(self.path)
            return self._store_obj

    def _close_store(self) -> None:
        if self.path is None:
            return  # the memory store is the state itself
        with self._lock:
            store, self._store_obj = self._store_obj, None
        if store is not None:
            store.close()

    def _begin(self, *, loop: asyncio.AbstractEventLoop | None = None, waiter: threading.Thread | None = None,
               on_end: Callable[[], None] | None = None) -> _Run:
        with self._lock:
            if self._run is not None:
                raise SchedulerStateError("this Scheduler runs already; stop() it before starting it again")
            bodies, sink = (BodyWriters(), self._records) if self.path is None else file_sinks(self.path)
            options = ControllerOptions(owner=self.owner, lease_ttl_s=self.lease_ttl_s)
            engine = Engine(self._store, sink, self.clock, options, bodies=bodies, callables=self._functions,
                            loop=loop, drain_s=DRAIN_S)
            run = self._run = _Run(engine, self.clock.event(), loop, waiter, on_end)
            run.thread = self.clock.thread(functools.partial(self._drive, run), "subminute-scheduler")
            atexit.register(self.stop)
            run.thread.start()
        return run

    def _drive(self, run: _Run) -> None:
        try:
            run.engine.run()
        except BaseException as exc:  # noqa: BLE001 - a fault of the engine itself: for run()/serve() to raise
            log.exception("the scheduler stopped on an error")
            run.error = exc
        finally:
            self._close_store()
            with self._lock:
                if self._run is run:
                    self._run = None
                atexit.unregister(self.stop)
            run.done.set()
            if run.on_end is not None:
                run.on_end()

    def _update(self, sid: int, name: str, changes: Mapping[str, Any]) -> None:
        try:
            self._store.update(sid, changes)
        except ConfigError as exc:
            raise argument_error(exc, name) from None
        self._changed()

    def _changed(self) -> None:
        """A change made here applies at once: the running controller reads the rows now."""
        run = self._run
        if run is not None:
            run.engine.controller.refresh()

    def _find(self, ref: str | int) -> tuple[int, str]:
        return resolve(self._store.rows(), ref)

    def _with_log(self, read: Callable[[FireLog], T]) -> T:
        run = self._run
        if run is not None:
            run.engine.sink.flush(1.0)  # the records of the last moments too
        assert self.path is not None
        fire_log = FireLog(self.path)
        try:
            return read(fire_log)
        finally:
            fire_log.close()


def _on_loop(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether this thread runs ``loop`` now (stopping must not block it: the engine drains coroutines on it)."""
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
