"""Coroutine targets (``kind = "async"``: ``async def run_async(event, timeout_s) -> Result``) run on an
asyncio event loop, not in a thread each: the loop given (the program's own, with ``Scheduler.serve``), or one
started in a thread when the first such fire comes. Standard library only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from ..results.records import bounded
from ..targets.base import Result, Target
from ..timing.clock import Clock
from .base import Fire, StartLog

__all__ = ["CoroutineRunner"]


class CoroutineRunner:
    def __init__(self, clock: Clock, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.clock = clock
        self._loop = loop
        self._own: threading.Thread | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop: the one given, else our own, started in a thread."""
        with self._lock:
            if self._loop is None:
                made = asyncio.new_event_loop()
                thread = threading.Thread(target=made.run_forever, name="subminute-asyncio", daemon=True)
                thread.start()
                self._loop, self._own = made, thread
            return self._loop

    def runs_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` runs our own loop."""
        return self._own is thread

    def start(self, target: Target, event: dict[str, Any], fire: Fire, log_: StartLog,
              ended: Callable[[Result, float, float], None]) -> None:
        """Hand a fire to the loop (``call_soon_threadsafe`` wakes it at once). It notes its start there,
        runs under its timeout (then it is cancelled: a coroutine can be), and calls ``ended(result,
        started_ms, ended_ms)`` on the loop."""
        loop, wall = self.loop(), self.clock.time
        timeout_s = fire.schedule.timeout_s

        async def drive() -> None:
            started = wall() * 1000
            log_.started(fire, started)
            try:
                result = await asyncio.wait_for(target.run_async(event, timeout_s), timeout_s)  # type: ignore[attr-defined]
            except TimeoutError:
                result = Result.failure(f"still running after the {timeout_s:g}s timeout; cancelled", status="timeout")
            except asyncio.CancelledError:  # the loop is shutting down: the fire ends, and says so
                ended(Result.failure("cancelled: the event loop shut down", status="timeout"), started, wall() * 1000)
                raise
            except BaseException as exc:  # noqa: BLE001 - a target's bug (sys.exit included) must not stop the loop
                result = Result.failure(f"{exc.__class__.__name__}: {exc}")
            if not isinstance(result, Result):
                result = Result.failure(f"target returned {bounded(repr(result), 200)} instead of a Result")
            ended(result, started, wall() * 1000)

        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(drive()))
        except RuntimeError:  # the loop is closed: the fire cannot start
            now = wall() * 1000
            ended(Result.failure("the event loop is closed; the coroutine could not start"), now, now)

    def close(self) -> None:
        """Stop and close our own loop (a loop given to us is its owner's)."""
        own, loop = self._own, self._loop
        if own is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        own.join(timeout=5)
        if not loop.is_running():
            loop.close()
        self._own = self._loop = None
