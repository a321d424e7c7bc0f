"""Clocks: the only way the engine learns the time, and the only way its threads sleep.

The timing core, the controller and the dispatchers take a :class:`Clock` and never read the time
themselves. Slots are wall-clock instants (epoch milliseconds); sleeping is on the monotonic clock. Every
thread of the engine is made by :meth:`Clock.thread` and sleeps through :meth:`Clock.wait` on an event made
by :meth:`Clock.event`, so that :class:`~subminute.timing.fake.FakeClock` (virtual time for tests) can
tell when they all wait. Standard library only: bundled into the inline Lambda code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ClockEvent", "SystemClock", "read_pair"]

_INF = float("inf")
PAIR_GAP_S = 0.0001  # two monotonic reads further apart than this straddled a pause (GIL, scheduler)
PAIR_TRIES = 4


class ClockEvent(Protocol):
    """What :meth:`Clock.event` returns: the part of :class:`threading.Event` the engine uses."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall clock, seconds since the Unix epoch."""

    def monotonic(self) -> float:
        """Monotonic clock, seconds from an arbitrary origin."""

    def event(self) -> ClockEvent:
        """A new event to wait on with :meth:`wait`."""

    def wait(self, event: ClockEvent, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds of monotonic time pass (``inf``: no limit);
        return whether the event is set."""

    def thread(self, target: Callable[[], object], name: str) -> threading.Thread:
        """A new (not yet started) daemon thread of the engine: every thread that sleeps through this clock
        is made here."""

    def join(self, thread: threading.Thread, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a thread made by :meth:`thread` to end."""


class SystemClock:
    """The real clocks. ``wait`` wakes about 0.1 ms after its deadline on Linux. ``time`` and ``monotonic``
    are the functions of the :mod:`time` module themselves (no call in between: they are read twice per
    fire on the firing path)."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)  # (after monotonic: this name hides the module in the class body)

    def event(self) -> ClockEvent:
        return threading.Event()

    def wait(self, event: ClockEvent, timeout: float) -> bool:
        assert isinstance(event, threading.Event)
        if timeout <= 0:
            return event.is_set()
        return event.wait(None if timeout == _INF else timeout)

    def thread(self, target: Callable[[], object], name: str) -> threading.Thread:
        return threading.Thread(target=target, name=name, daemon=True)

    def join(self, thread: threading.Thread, timeout: float) -> None:
        thread.join(timeout)


def read_pair(clock: Clock) -> tuple[float, float]:
    """The monotonic and wall clocks read at one instant: ``(monotonic, wall)``.

    A slot (wall time) becomes a deadline on the monotonic clock through such a pair, so a pause between
    the two reads moves every deadline: a thread that loses the GIL after reading the monotonic clock
    reads the wall clock a millisecond or more later, and a deadline computed from that pair comes a
    millisecond early (``bench/timing.py`` case 6 saw requests reach the server 1.2 ms before their slot).
    So the wall clock is read between two monotonic reads, again while they are more than ``PAIR_GAP_S``
    apart (at most ``PAIR_TRIES`` times, the tightest pair kept), and the pair takes the second monotonic
    read: a deadline computed from it can be late by the gap, never early."""
    mono, wall = clock.monotonic, clock.time
    best: tuple[float, float, float] | None = None
    for _ in range(PAIR_TRIES):
        before = mono()
        now = wall()
        after = mono()
        gap = after - before
        if gap <= PAIR_GAP_S:
            return after, now
        if best is None or gap < best[0]:
            best = (gap, after, now)
    assert best is not None
    return best[1], best[2]
