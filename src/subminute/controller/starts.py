"""How schedules start when a controller takes the lease: from a predecessor's hand-off, afresh after a
clean stop, or after a takeover from a dead holder (fenced, the lost slots counted). Pure functions of the
lease, the hand-off and the time: no I/O, no threads. Standard library only.

The rules (docs/guarantees.md has the tests):

* a **final** hand-off made with the lease's current token: its controller stopped firing; continue at
  each schedule's next slot, catching up slots at most ``grace`` late (a budget hand-off loses nothing);
* the same, but **released** (a clean stop) longer than a lease period ago: start afresh at the next slot,
  numbering continued (the stretch while nothing ran was a stop, not a fault);
* a **takeover** (the holder died): fire no slot at or before the dead lease's expiry (the fence: the dead
  holder fired none after it), count the slots from its last known next slot to the fence as missed
  (saying how many it may have fired), and start after the fence;
* a **damaged** lease (its row edited by hand): as a takeover, from the last hand-off whatever its token,
  fenced at the instant of the takeover (never at the epoch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..control.base import Lease
from ..control.handoff import Handoff, Position
from ..timing.timetable import Timetable

__all__ = ["Lost", "Placement", "Start", "place", "start_from"]


@dataclass(frozen=True)
class Start:
    """How the schedules start in a new tenure of the lease (made by the keeper, applied by the loop)."""

    tenure: int
    reset: bool = True  # forget the schedules of an earlier tenure
    carry: Mapping[int, Position] = field(default_factory=dict)  # where each schedule was
    carry_at_ms: int | None = None  # the carried hand-off's instant: its maker handled every slot up to it
    fence_ms: int | None = None  # fire no slot at or before this (a dead predecessor's lease expiry)
    count_missed: bool = False  # slots from the carried next slot to the fence are reported missed
    alive_until_ms: int | None = None  # the predecessor may have fired slots up to about this instant
    takeover: bool = False


def start_from(previous: Lease | None, handoff: Handoff | None, *, tenure: int, now_ms: int, ttl_ms: int,
               holder_may_fire_until_ms: int | None, refresh_ms: int) -> Start:
    """Classify a new tenure. ``holder_may_fire_until_ms`` is set when the store was in trouble lately: a
    predecessor may then still be firing on its outage grace until about that instant."""
    if previous is None:  # a new store: start from a given hand-off, if any
        return Start(tenure, carry=dict(handoff.positions) if handoff else {},
                     carry_at_ms=handoff.at_ms if handoff else None)
    if handoff is not None and handoff.token == previous.token and handoff.final:
        if handoff.released and now_ms - handoff.at_ms > ttl_ms:
            return Start(tenure, carry=handoff.numbers_only())  # a stop a while ago: afresh
        return Start(tenure, carry=dict(handoff.positions), carry_at_ms=handoff.at_ms)  # continue exactly
    fence = round(previous.expires_at * 1000)
    damaged = previous.damaged is not None
    if damaged:  # a lease row edited by hand tells nothing of when its holder stopped; the keeper stood by a
        fence = max(fence, now_ms)  # lease period since it saw it, in which any holder's renewals failed
    alive: int | None = None
    if holder_may_fire_until_ms is not None:
        fence = alive = max(fence, holder_may_fire_until_ms)
    if damaged and handoff is not None and handoff.released and now_ms - handoff.at_ms > ttl_ms:
        return Start(tenure, carry=handoff.numbers_only(), fence_ms=fence, takeover=True)  # a stop, then the edit
    if handoff is not None and (handoff.token == previous.token or damaged):  # the last hand-off known
        if alive is None:
            alive = handoff.at_ms + handoff.save_every_ms + refresh_ms
        return Start(tenure, carry=dict(handoff.positions), carry_at_ms=handoff.at_ms, fence_ms=fence,
                     count_missed=True, alive_until_ms=alive, takeover=True)
    # no hand-off of the predecessor: start at the fence; slots after it are caught up or missed
    return Start(tenure, carry=handoff.numbers_only() if handoff else {}, fence_ms=fence, takeover=True)


@dataclass(frozen=True)
class Lost:
    """Slots lost with a dead predecessor: ``count`` from ``first_ms``, up to ``maybe`` possibly fired."""

    first_ms: int
    count: int
    maybe: int
    fence_ms: int


@dataclass(frozen=True)
class Placement:
    next_ms: int
    seq: int
    lost: Lost | None = None


def place(timetable: Timetable, position: Position | None, seq: int, start: Start | None, now_ms: int) -> Placement:
    """Where a schedule starts: its carried next slot (late slots are then caught up or counted missed),
    never at or before the fence of a dead predecessor's lease; else its next slot from now."""
    fence = start.fence_ms if start is not None else None
    slot = position.next_ms if position is not None else None
    lost = None
    if slot is not None and fence is not None and slot <= fence:
        count, _ = timetable.count_and_last(slot - 1, fence)
        if count and start is not None and start.count_missed:
            upto = min(fence, start.alive_until_ms) if start.alive_until_ms is not None else fence
            maybe, _ = timetable.count_and_last(slot - 1, upto)
            lost = Lost(slot, count, maybe, fence)
        seq += count
        slot = None
    if slot is None:
        return Placement(timetable.next_slot(fence if fence is not None else now_ms), seq, lost)
    # the carried slot was computed on the predecessor's timing, which may have changed since: take the
    # first slot of the current timing from when the predecessor stopped firing (its hand-off), never at
    # or before a fence; with unchanged timing that is the carried slot
    carry_at = start.carry_at_ms if start is not None and start.carry_at_ms else slot
    after = min(slot - 1, carry_at)  # every slot up to the hand-off's instant was handled by its maker
    return Placement(timetable.next_slot(max(after, fence) if fence is not None else after), seq, lost)
