"""How a fire is launched: the dispatcher interface, the fire, the batch, and the event targets receive.
Standard library only (bundled into Lambda code).

The controller hands a dispatcher a :class:`Batch` a few milliseconds BEFORE its slot: the fires that are
due at one instant, with that instant on the monotonic clock. The dispatcher starts each fire at that
instant itself (its own threads sleep to the deadline), so no queue hop lies between the slot and the
start that users feel. ``submit`` must return in microseconds per fire: it only hands the batch over.
Each start (or a skip at the start) is noted in the batch's :class:`StartLog`, from which the controller
keeps its lateness statistics off the firing path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..control.rows import Schedule
from ..results.records import FireRecord
from ..timing.slots import iso_utc

__all__ = ["Batch", "Dispatcher", "Fire", "StartLog", "fire_record", "make_event"]


def make_event(schedule_id: int, name: str, slot_ms: int, seq: int, interval_ms: int,
               controller: str = "", slot: str | None = None) -> dict[str, Any]:
    """The event every target receives (and the AWS worker Lambda's payload)::

        {"schedule_id": 1, "schedule": "default", "slot": "2026-11-23T10:00:05.000Z",
         "slot_ms": 1795428005000, "seq": 42, "interval": 5.0, "controller": "host:1234"}
    """
    return {
        "schedule_id": schedule_id,
        "schedule": name,
        "slot": slot or iso_utc(slot_ms),
        "slot_ms": slot_ms,
        "seq": seq,
        "interval": interval_ms / 1000,
        "controller": controller,
    }


@dataclass(slots=True)
class Fire:
    schedule: Schedule
    slot_ms: int
    seq: int
    interval_ms: int
    dispatched_ms: float = 0.0  # wall clock when the controller handed it over (before the slot)
    token: int | None = None
    controller: str = ""
    slot_text: str = ""  # the slot as ISO text, made once per batch
    payload: dict[str, Any] | None = None  # the event, made before the slot by the dispatcher that takes it
    # what a local dispatcher learnt of the fire, kept on it until its record is written:
    started_ms: float = 0.0  # when its target was called (epoch ms)
    ended_ms: float = 0.0
    result: Any = None  # what the target returned (None: it went well)
    skip_reason: str | None = None  # why it was skipped at its start

    @property
    def lateness_ms(self) -> float:
        return self.dispatched_ms - self.slot_ms

    def event(self) -> dict[str, Any]:
        if self.payload is None:
            self.payload = make_event(self.schedule.id, self.schedule.name, self.slot_ms, self.seq,
                                      self.interval_ms, self.controller, self.slot_text or None)
        return self.payload


class StartLog:
    """Starts noted by dispatcher threads, read by the controller: ``(schedule id, start lateness ms)``,
    with ``None`` for a fire skipped at its start. Appending and draining a deque are atomic."""

    def __init__(self) -> None:
        self._items: deque[tuple[int, float | None]] = deque()

    def started(self, fire: Fire, started_ms: float) -> None:
        self._items.append((fire.schedule.id, started_ms - fire.slot_ms))

    def skipped(self, fire: Fire) -> None:
        self._items.append((fire.schedule.id, None))

    def drain(self) -> list[tuple[int, float | None]]:
        items, pop = [], self._items.popleft
        while self._items:
            items.append(pop())
        return items


@dataclass(slots=True)
class Batch:
    """Fires due at one slot instant, handed over before it."""

    slot_ms: int  # the wall-clock instant the fires are due
    due_mono: float  # the same instant on the controller's monotonic clock: start the fires then
    fires: list[Fire]
    log: StartLog = field(default_factory=StartLog)


def fire_record(fire: Fire, status: str, **fields: Any) -> FireRecord:
    """A record of ``fire`` with its timing filled in (start lateness from ``started_ms`` if given)."""
    started = fields.get("started_ms")
    if started is not None and "start_lateness_ms" not in fields:
        fields["start_lateness_ms"] = round(started - fire.slot_ms, 3)
    return FireRecord(
        schedule_id=fire.schedule.id, name=fire.schedule.name, slot_ms=fire.slot_ms, seq=fire.seq,
        status=status, dispatched_ms=fire.dispatched_ms, lateness_ms=round(fire.lateness_ms, 3),
        token=fire.token, **fields,
    )


class Dispatcher(Protocol):
    def prepare(self, schedule: Schedule) -> None:
        """Get ready to fire ``schedule`` (build its target). Raise ``ConfigError`` if it cannot be: the
        controller then disables that schedule only, with the error visible in status. Called from the
        controller's store thread, never on the firing path."""

    def submit(self, batch: Batch) -> None:
        """Take a batch before its slot and start each fire at ``batch.due_mono``; never blocks. The
        ``skip`` overlap policy and per-schedule limits are applied at the start."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting fires and wait up to ``timeout_s`` for those under way."""
