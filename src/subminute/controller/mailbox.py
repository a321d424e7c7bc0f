"""The one way the lease keeper talks to the firing loop: a mailbox of updates, and a wake-up."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..control.rows import Schedule
from ..timing.clock import Clock, ClockEvent
from .starts import Start

__all__ = ["Mailbox", "Update"]


@dataclass(frozen=True)
class Update:
    """What the loop must apply: a new tenure of the lease (``start``) and/or the schedules to fire.

    ``schedules`` holds the valid, running schedules (an unchanged row keeps its very object, so the loop
    tells changes by identity); ``present`` every id in the table, so that a stopped schedule keeps its
    slot numbering and a deleted one forgets it. ``schedules is None``: only a wake-up (a wall-clock step).
    """

    tenure: int
    start: Start | None = None
    schedules: Mapping[int, Schedule] | None = None
    present: frozenset[int] = field(default_factory=frozenset)


class Mailbox:
    def __init__(self, clock: Clock) -> None:
        self.wake: ClockEvent = clock.event()
        self._items: deque[Update] = deque()

    def post(self, update: Update) -> None:
        self._items.append(update)
        self.wake.set()

    def nudge(self) -> None:
        """Wake the loop to look at the clocks again."""
        self.wake.set()

    def empty(self) -> bool:
        return not self._items

    def take(self) -> list[Update]:
        items = []
        while self._items:
            items.append(self._items.popleft())
        return items
