"""Virtual time for tests, after trio's ``MockClock(autojump_threshold=0)``: the engine's real threads run
on it unchanged, one at a time, and time jumps to the next deadline as soon as all of them wait. So a test
of the controller, its lease keeper and the dispatcher's workers runs in milliseconds of real time, in the
same order every time. It also steps the wall clock alone (NTP, an operator) and runs scripted actions at
given instants. Not bundled into Lambda code (nothing there needs it).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

from .clock import ClockEvent

__all__ = ["FakeClock"]

_INF = float("inf")


class _FakeEvent:
    """An event that tells its fake clock when it is set, so that the waiter wakes at once."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._flag = False

    def set(self) -> None:
        with self._clock._cond:
            self._flag = True
            self._clock._cond.notify_all()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag


class FakeClock:
    """Virtual time that jumps forward when every thread using it waits (see the module docstring).

    The thread that makes the clock takes part from the start: time moves only while it waits on the
    clock (a test's own thread, running a controller). ``stall_s`` bounds how long (in real time) the clock
    waits for a busy thread before it jumps anyway (counted in ``stalls``; a deterministic test expects
    none). ``at(t, action)`` runs ``action`` when the
    monotonic clock reaches ``t`` seconds after the clock was made, before any waiter sees that time.
    """

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0, *, stall_s: float = 5.0) -> None:
        self._wall_ns = round(wall * 1e9)  # whole nanoseconds, so that both clocks move by exactly the same
        self._mono_ns = round(mono * 1e9)
        self._origin = mono
        self._cond = threading.Condition(threading.RLock())
        self._participants: set[threading.Thread] = set()
        self._waiting: dict[threading.Thread, tuple[float, ClockEvent]] = {}
        self._actions: list[tuple[float, int, Callable[[], None], threading.Thread]] = []
        self._deliveries: dict[threading.Thread, list[Callable[[], None]]] = {}
        self._order = itertools.count()
        self._rank: dict[threading.Thread, int] = {}
        self._ends: dict[threading.Thread, _FakeEvent] = {}
        self._holder: threading.Thread | None = None  # the one thread that runs now, if any
        self._participants.add(threading.current_thread())  # time stands still while its maker is busy
        self.stall_s = stall_s
        self.stalls = 0
        self.waits = 0
        self.jumps = 0

    # -- reading -------------------------------------------------------------------------------------------
    def time(self) -> float:
        return self._wall_ns / 1e9

    def monotonic(self) -> float:
        return self._mono_ns / 1e9

    def t(self) -> float:
        """Seconds of monotonic time since the clock was made."""
        return self._mono_ns / 1e9 - self._origin

    def event(self) -> ClockEvent:
        return _FakeEvent(self)

    # -- moving by hand ------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move forward."""
        if seconds < 0:
            raise ValueError("a fake clock never goes back in monotonic time; use step_wall()")
        with self._cond:
            step = round(seconds * 1e9)
            self._wall_ns += step
            self._mono_ns += step
            self._cond.notify_all()

    def step_wall(self, seconds: float) -> None:
        """The wall clock is stepped (NTP, an operator) by ``seconds``, forward or back; monotonic is not."""
        with self._cond:
            self._wall_ns += round(seconds * 1e9)

    def set_wall(self, wall: float) -> None:
        with self._cond:
            self._wall_ns = round(wall * 1e9)

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Run ``action`` when the monotonic clock reaches ``t`` seconds after the clock was made, in the
        thread that asked for it (in its wait: so an exception it raises comes out of that wait, like a
        kill), or, if that thread no longer uses the clock, in the thread that moves the clock there."""
        with self._cond:
            heapq.heappush(self._actions, (self._origin + t, next(self._order), action, threading.current_thread()))

    # -- waiting -------------------------------------------------------------------------------------------
    def thread(self, target: Callable[[], object], name: str) -> threading.Thread:
        """The thread counts as busy from now until it waits on this clock or ends, so that time does not
        jump past what it is about to do."""

        def run() -> None:
            try:
                target()
            finally:
                with self._cond:
                    me = threading.current_thread()
                    self._participants.discard(me)
                    self._ends.setdefault(me, _FakeEvent(self)).set()
                    if self._holder is me:
                        self._holder = None
                    self._cond.notify_all()

        made = threading.Thread(target=run, name=name, daemon=True)
        with self._cond:
            self._participants.add(made)
            self._rank[made] = next(self._order)
        return made

    def join(self, thread: threading.Thread, timeout: float) -> None:
        """Wait (in virtual time) until a thread made by :meth:`thread` ends."""
        with self._cond:
            done = self._ends.setdefault(thread, _FakeEvent(self))
        self.wait(done, timeout)

    def wait(self, event: ClockEvent, timeout: float) -> bool:
        """Wait in virtual time. Only one thread of the clock runs at a time (the holder of the baton): a
        waiter returns only when the clock hands it the baton, which it does, once every participant
        waits, to the first waiter whose event is set or whose deadline has come, in a fixed order; when
        there is none, time jumps to the next deadline or scripted action."""
        me = threading.current_thread()
        with self._cond:
            self.waits += 1
            self._participants.add(me)
            self._rank.setdefault(me, next(self._order))
            if self._holder is me:
                self._holder = None  # waiting gives the baton back
            self._waiting[me] = (self.monotonic() + max(timeout, 0.0), event)
            try:
                while True:
                    if self._holder is me:
                        mine = self._deliveries.pop(me, None)
                        for action in mine or ():
                            action()  # in this thread: an exception comes out of this wait
                        if mine:
                            self._holder = None
                            continue
                        return event.is_set()
                    if not self._schedule() and not self._cond.wait(self.stall_s):
                        self.stalls += 1
                        self._schedule(force=True)
            finally:
                self._waiting.pop(me, None)

    def _schedule(self, force: bool = False) -> bool:
        """If nobody runs and every participant waits (or ``force``), hand the baton to the next waiter,
        moving time first if none may wake yet. Returns whether the baton was handed."""
        if self._holder is not None and not force:
            return False
        for thread in list(self._participants):
            if thread.ident is not None and not thread.is_alive():
                self._participants.discard(thread)  # a thread that ended without saying so
            elif thread not in self._waiting and not force:
                return False
        while True:
            now = self.monotonic()
            ready = [th for th, (deadline, ev) in self._waiting.items()
                     if th in self._deliveries or ev.is_set() or deadline <= now]
            if ready:
                self._holder = min(ready, key=self._order_of)
                self._cond.notify_all()
                return True
            target = min((d for d, _ in self._waiting.values()), default=_INF)
            if self._actions and self._actions[0][0] <= target:
                when, _, action, owner = heapq.heappop(self._actions)
                self._move_to(when)
                if owner in self._waiting:
                    self._deliveries.setdefault(owner, []).append(action)
                else:  # its thread no longer uses the clock: run it here
                    action()
                continue
            if target == _INF:
                return False
            self._move_to(target)

    def _order_of(self, thread: threading.Thread) -> tuple[int, float, int]:
        """Who goes first among the ready: a scripted action's thread, then woken by an event, then by the
        deadline (earliest first); ties by the order the threads first used the clock."""
        deadline, event = self._waiting[thread]
        kind = 0 if thread in self._deliveries else 1 if event.is_set() else 2
        return kind, deadline if kind == 2 else 0.0, self._rank.get(thread, 0)

    def _move_to(self, mono: float) -> None:
        target = max(round(mono * 1e9), self._mono_ns + 1)  # at least a nanosecond: every jump moves
        self._wall_ns += target - self._mono_ns
        self._mono_ns = target
        self.jumps += 1
