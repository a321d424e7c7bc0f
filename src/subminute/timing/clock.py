"""Clocks: the only way the engine learns the time.

The timing core and the controller take a :class:`Clock` and never read the time themselves. Slots are
wall-clock instants (epoch milliseconds); sleeping is on the monotonic clock. :class:`FakeClock` lets tests
move both clocks by hand, including wall-clock steps (NTP) and suspensions (both jump).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "FakeClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Wall clock, seconds since the Unix epoch."""

    def monotonic(self) -> float:
        """Monotonic clock, seconds from an arbitrary origin."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds of monotonic time pass; return
        whether the event is set."""


class SystemClock:
    """The real clocks. ``wait`` wakes about 0.2 ms after its deadline on Linux."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if timeout <= 0:
            return event.is_set()
        return event.wait(timeout)


class FakeClock:
    """A clock that moves only when told to, or when something waits on it.

    ``wait`` returns at once: if the event is not set it advances both clocks by ``timeout``. This makes a
    controller loop on a fake clock run as fast as the CPU allows and be fully deterministic.
    """

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()
        self.waits = 0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.waits += 1
        if event.is_set():
            return True
        if timeout > 0:
            self.advance(timeout)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move forward."""
        if seconds < 0:
            raise ValueError("a fake clock never goes back in monotonic time; use step_wall()")
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def step_wall(self, seconds: float) -> None:
        """The wall clock is stepped (NTP, an operator) by ``seconds``, forward or back; monotonic is not."""
        with self._lock:
            self._wall += seconds

    def set_wall(self, wall: float) -> None:
        with self._lock:
            self._wall = wall
