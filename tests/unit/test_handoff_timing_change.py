"""A hand-off across a change of timing: the successor follows the new timing at once."""

from __future__ import annotations

from subminute.control import MemoryStore
from subminute.control.handoff import Handoff
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.local import LocalDispatcher
from subminute.results.sinks import MemorySink
from subminute.timing import FakeClock


def _run(store: MemoryStore, clock: FakeClock, sink: MemorySink, owner: str, budget: float,
         handoff: Handoff | None = None) -> Handoff:
    dispatcher = LocalDispatcher(sink, clock)
    options = ControllerOptions(budget_s=budget, owner=owner)
    try:
        return Controller(store, dispatcher, clock, options, sink=sink, handoff=handoff).run()
    finally:
        dispatcher.close()


def test_shorter_interval_between_handoff_and_successor_applies_at_once() -> None:
    clock = FakeClock(wall=1_800_000_001.0)
    store = MemoryStore([{"id": 1, "waitseconds": 3600}])
    sink = MemorySink()
    first = _run(store, clock, sink, "a", 2)
    assert first.positions[1].next_ms == 1_800_003_600_000  # an hour away on the old timing
    store.update(1, {"waitseconds": 1})
    _run(store, clock, sink, "b", 10, first)
    slots = [r.slot_ms for r in sink.fired(1)]
    assert len(slots) >= 9  # not a wait of an hour
    assert all(b - a == 1000 for a, b in zip(slots, slots[1:]))
    assert slots[0] <= 1_800_000_004_000


def test_changed_grid_across_handoffs_stays_on_the_new_grid_and_fires_each_slot_once() -> None:
    clock = FakeClock(wall=1_800_000_001.0)
    store = MemoryStore([{"id": 1, "waitseconds": 5}])
    sink = MemorySink()
    handoff = _run(store, clock, sink, "a", 3)
    store.update(1, {"waitseconds": 2})
    _run(store, clock, sink, "b", 10, handoff)
    slots = [r.slot_ms for r in sink.fired(1)]
    assert len(slots) == len(set(slots))
    later = [s for s in slots if s > 1_800_000_005_000]
    assert later and all(s % 2000 == 0 for s in later)
    assert all(b - a <= 2000 for a, b in zip(later, later[1:]))
