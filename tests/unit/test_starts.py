"""How schedules start in a new tenure (controller/starts.py): pure functions, no clock, no store."""

from __future__ import annotations

from subminute.control.base import Lease, parse_lease
from subminute.control.handoff import Handoff, Position
from subminute.controller.starts import place, start_from
from subminute.timing.slots import Every

NOW = 1_790_000_000_000  # ms, on the 200 ms grid
TTL = 2000
GRID = Every(200)


def _start(previous: Lease, handoff: Handoff | None, now_ms: int = NOW):
    return start_from(previous, handoff, tenure=2, now_ms=now_ms, ttl_ms=TTL, holder_may_fire_until_ms=None,
                      refresh_ms=1000)


def test_a_damaged_lease_is_fenced_at_the_takeover_and_counts_the_lost_slots_from_the_last_handoff() -> None:
    damaged = parse_lease("ctl", "abc", "x")  # a lease row edited by hand
    assert damaged.damaged and damaged.expires_at == 0
    saved = Handoff(owner="ctl", token=7, at_ms=NOW - 3000, positions={1: Position(NOW - 2800, 41)},
                    save_every_ms=700)
    start = _start(damaged, saved)
    assert start.takeover and start.fence_ms == NOW and start.count_missed
    placed = place(GRID, start.carry[1], 41, start, NOW)
    assert placed.next_ms == NOW + 200  # never a slot near the epoch
    assert placed.lost is not None and placed.lost.first_ms == NOW - 2800 and placed.lost.count == 15
    assert placed.seq == 41 + 15  # numbering goes on across the gap, no more
    assert 0 < placed.lost.maybe < placed.lost.count  # the old holder may have fired the first few


def test_a_damaged_lease_after_a_clean_stop_starts_afresh_without_counting_the_stop() -> None:
    damaged = parse_lease(None, 3, "never")
    stopped = Handoff(owner="ctl", token=3, at_ms=NOW - 600_000, positions={1: Position(NOW - 599_800, 9)},
                      final=True, released=True)
    start = _start(damaged, stopped)
    placed = place(GRID, start.carry[1], 9, start, NOW)
    assert placed.next_ms == NOW + 200 and placed.lost is None and placed.seq == 9


def test_a_damaged_lease_without_any_handoff_starts_at_the_next_slot() -> None:
    start = _start(parse_lease("ctl", -5, 1e400), None)
    placed = place(GRID, None, 0, start, NOW + 50)
    assert placed.next_ms == NOW + 200 and placed.lost is None


def test_an_expired_valid_lease_keeps_its_own_expiry_as_the_fence() -> None:
    expired = Lease("ctl", 7, (NOW - 1000) / 1000)
    saved = Handoff(owner="ctl", token=7, at_ms=NOW - 3000, positions={1: Position(NOW - 2800, 41)})
    start = _start(expired, saved)
    assert start.fence_ms == NOW - 1000
    placed = place(GRID, start.carry[1], 41, start, NOW)
    assert placed.next_ms == NOW - 800  # slots after the fence are still ours to catch up
