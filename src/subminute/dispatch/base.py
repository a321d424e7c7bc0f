"""How a fire is launched: the dispatcher interface. Standard library only (bundled into Lambda code).

The controller calls :meth:`Dispatcher.submit` on its wake-up path, so ``submit`` must return in
microseconds: it only hands the fire over. Everything else (building the event, running or invoking
the target, recording the result) happens in the dispatcher's own threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..control.base import Schedule
from ..results.records import FireRecord
from ..timing.slots import iso_utc

__all__ = ["Fire", "Dispatcher", "fire_record", "make_event"]


def make_event(schedule_id: int, name: str, slot_ms: int, seq: int, interval_ms: int,
               controller: str = "") -> dict[str, Any]:
    """The event every target receives (and the AWS worker Lambda's payload)::

        {"schedule_id": 1, "schedule": "default", "slot": "2026-11-23T10:00:05.000Z",
         "slot_ms": 1795428005000, "seq": 42, "interval": 5.0, "controller": "host:1234"}
    """
    return {
        "schedule_id": schedule_id,
        "schedule": name,
        "slot": iso_utc(slot_ms),
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
    dispatched_ms: float  # wall clock when the controller handed it over
    token: int | None = None
    controller: str = ""

    @property
    def lateness_ms(self) -> float:
        return self.dispatched_ms - self.slot_ms

    def event(self) -> dict[str, object]:
        return make_event(self.schedule.id, self.schedule.name, self.slot_ms, self.seq, self.interval_ms,
                          self.controller)


def fire_record(fire: Fire, status: str, **fields: object) -> FireRecord:
    """A record of ``fire`` with its timing filled in."""
    return FireRecord(
        schedule_id=fire.schedule.id, name=fire.schedule.name, slot_ms=fire.slot_ms, seq=fire.seq,
        status=status, dispatched_ms=fire.dispatched_ms, lateness_ms=round(fire.lateness_ms, 3),
        token=fire.token, **fields,  # type: ignore[arg-type]
    )


class Dispatcher(Protocol):
    def prepare(self, schedule: Schedule) -> None:
        """Get ready to fire ``schedule`` (build its target). Raise ``ConfigError`` if it cannot be:
        the controller then disables that schedule only, with the error visible in status."""

    def submit(self, fire: Fire) -> None:
        """Hand a fire over without blocking."""

    def in_flight(self, schedule_id: int) -> int:
        """How many fires of this schedule are still running (for the ``skip`` overlap policy)."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting fires and wait up to ``timeout_s`` for those under way."""
