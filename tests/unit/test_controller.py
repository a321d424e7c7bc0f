"""The controller on a fake clock: its real threads (the firing loop, the lease keeper, the dispatcher's
workers) run on virtual time that jumps whenever all of them wait, so every case runs in milliseconds and
in the same order every time.

``clock.at(t, action)`` runs an action at a monotonic instant (stop a row, step the wall clock, kill the
controller, take the store down) in the test's thread, as a real event would happen meanwhile.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subminute.control.base import ControlStore, Lease
from subminute.control.handoff import Handoff
from subminute.control.memory import MemoryStore
from subminute.controller import Controller, ControllerOptions
from subminute.controller import loop as loop_module
from subminute.controller.loop import due_at
from subminute.dispatch.local import LocalDispatcher
from subminute.errors import StoreError
from subminute.results.sinks import MemorySink
from subminute.targets.base import Result, register_target
from subminute.timing.fake import FakeClock

T0 = 1_800_000_000.0  # wall clock at the start (a whole second)
M0 = 1000.0  # monotonic clock at the start


class Killed(BaseException):
    """Ends a controller's run() abruptly, like kill -9: no final hand-off, no lease release."""


def ScriptClock() -> FakeClock:  # noqa: N802 - reads as the clock it makes
    return FakeClock(wall=T0, mono=M0)


class FaultyStore(ControlStore):
    """Wraps a store; while ``down`` every call raises StoreError, as a locked file or a throttled table."""

    def __init__(self, inner: ControlStore) -> None:
        self.inner = inner
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreError("database is locked")

    def rows(self) -> list[dict[str, Any]]:
        self._check()
        return self.inner.rows()

    def version(self) -> Any:
        self._check()
        return self.inner.version()

    def put(self, row: Mapping[str, Any]) -> None:
        self._check()
        self.inner.put(row)

    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        self._check()
        self.inner.update(schedule_id, changes)

    def delete(self, schedule_id: int) -> None:
        self._check()
        self.inner.delete(schedule_id)

    def acquire_lease(self, owner: str, ttl_s: float, now: float, token: int | None = None) -> Lease | None:
        self._check()
        return self.inner.acquire_lease(owner, ttl_s, now, token)

    def renew_lease(self, lease: Lease, ttl_s: float, now: float, handoff: Handoff | None = None) -> Lease | None:
        self._check()
        return self.inner.renew_lease(lease, ttl_s, now, handoff)

    def release_lease(self, lease: Lease, now: float) -> None:
        self._check()
        self.inner.release_lease(lease, now)

    def read_lease(self) -> Lease | None:
        self._check()
        return self.inner.read_lease()

    def save_handoff(self, handoff: Handoff) -> None:
        self._check()
        self.inner.save_handoff(handoff)

    def load_handoff(self) -> Handoff | None:
        self._check()
        return self.inner.load_handoff()


class BusyTarget:
    """Keeps its fire running for ``busy`` seconds of the fake clock (for the ``skip`` overlap policy)."""

    kind = "python"
    clock: FakeClock

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.busy_s = float(spec["busy"])

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        clock = BusyTarget.clock
        clock.wait(clock.event(), self.busy_s)
        return Result()


register_target("busy", BusyTarget)


class Run(Controller):
    """A controller whose ``run`` also lets its dispatcher finish the fires under way (as the runtime does)."""

    def run(self) -> Handoff:
        try:
            return super().run()
        finally:
            self.dispatcher.close(timeout_s=30)


def make(store: ControlStore, clock: FakeClock, sink: MemorySink, *, owner: str = "a",
         handoff: Handoff | Mapping[str, Any] | None = None, **options: Any) -> Run:
    BusyTarget.clock = clock
    options.setdefault("refresh_s", 0.25)  # the tests' timings; test_default_refresh_applies_within_a_second
    opts = ControllerOptions(owner=owner, **options)
    dispatcher = LocalDispatcher(sink, clock)
    made = Run(store, dispatcher, clock, opts, sink=sink, handoff=handoff)
    made.dispatcher = dispatcher
    CLOCKS.append(clock)
    return made


CLOCKS: list[FakeClock] = []


@pytest.fixture(autouse=True)
def _no_stalls() -> Any:
    """Virtual time never had to wait for a busy thread: the run was deterministic."""
    CLOCKS.clear()
    yield
    assert [c.stalls for c in CLOCKS] == [0] * len(CLOCKS)


def fired(sink: MemorySink, sid: int) -> list[int]:
    return [r.slot_ms for r in sink.fired(sid)]


def missed(sink: MemorySink, sid: int) -> int:
    return sum(r.detail["missed"] for r in sink.records if r.status == "missed" and r.schedule_id == sid)


def at(t: float) -> int:
    """Epoch ms of ``t`` seconds after the start."""
    return round((T0 + t) * 1000)


def grid(first: float, last: float, every: float) -> list[int]:
    """Epoch ms of the slots ``first, first+every, ...`` up to ``last`` (seconds after the start)."""
    lo, hi, step = round(first * 1000), round(last * 1000), round(every * 1000)
    return [round(T0 * 1000) + ms for ms in range(lo, hi + 1, step)]


# -- firing ----------------------------------------------------------------------------------------------
def test_every_slot_fired_once_on_time() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}, {"id": 2, "waitseconds": 0.5}])
    make(store, clock, sink, budget_s=10.2).run()
    assert fired(sink, 1) == grid(1, 10, 1)
    assert fired(sink, 2) == grid(0.5, 10, 0.5)
    assert all(r.start_lateness_ms == 0 for r in sink.fired())
    assert [r.seq for r in sink.fired(1)] == list(range(1, 11))


def test_interval_change_has_no_burst_and_no_gap() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    clock.at(4.5, lambda: store.update(1, {"waitseconds": 3}))
    clock.at(13.2, lambda: store.update(1, {"waitseconds": 0.5}))
    make(store, clock, sink, budget_s=20).run()
    slots = fired(sink, 1)
    assert slots == sorted(set(slots))
    assert slots == grid(1, 4, 1) + grid(6, 12, 3) + grid(13.5, 19.5, 0.5)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert max(gaps) <= 3000 and min(gaps) >= 500
    assert missed(sink, 1) == 0


def test_interval_change_keeps_a_slot_already_due() -> None:
    """The change arrives in the same step as a due slot: that slot still fires."""
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 2}])
    clock.at(3.9999, lambda: store.update(1, {"waitseconds": 1}))
    make(store, clock, sink, budget_s=6.5).run()
    assert fired(sink, 1) == [at(2), at(4), at(5), at(6)]


def test_stop_and_start_are_obeyed_within_a_second() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.2}])
    clock.at(3.33, lambda: store.update(1, {"running": False}))
    clock.at(6.11, lambda: store.update(1, {"running": True}))
    make(store, clock, sink, budget_s=9).run()
    slots = fired(sink, 1)
    stopped = [s for s in slots if at(3.33) < s < at(6.11)]
    assert all(s <= at(3.33 + 1) for s in stopped)
    resumed = [s for s in slots if s > at(6.11)]
    assert resumed and resumed[0] <= at(6.11 + 1)
    assert missed(sink, 1) == 0


def test_default_refresh_applies_a_change_from_elsewhere_within_a_second() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.2}])
    clock.at(3.33, lambda: store.update(1, {"running": False}))
    clock.at(6.11, lambda: store.update(1, {"waitseconds": 0.5, "running": True}))
    run = make(store, clock, sink, budget_s=9, refresh_s=ControllerOptions().refresh_s)
    assert run.options.refresh_s == 1.0
    run.run()
    slots = fired(sink, 1)
    assert max(s for s in slots if s < at(6.11)) <= at(3.33 + 1)
    resumed = [s for s in slots if s > at(6.11)]
    assert resumed[0] <= at(6.11 + 1 + 0.5) and all(b - a == 500 for a, b in itertools.pairwise(resumed))
    assert missed(sink, 1) == 0


def test_many_schedules_each_fire_on_their_grid() -> None:
    clock, sink = ScriptClock(), MemorySink()
    intervals = [0.1, 0.25, 0.5, 1, 2, 3, 5]
    store = MemoryStore([{"id": i, "waitseconds": intervals[i % len(intervals)]} for i in range(1, 301)])
    make(store, clock, sink, budget_s=20.05).run()
    for sid in range(1, 301):
        every = intervals[sid % len(intervals)]
        assert fired(sink, sid) == grid(every, 20, every), sid
    assert all(r.start_lateness_ms == 0 for r in sink.fired())


def test_overlap_skip_skips_while_the_previous_fire_runs() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1, "overlap": "skip", "target": {"type": "busy", "busy": 2.5}},
                         {"id": 2, "waitseconds": 1, "target": {"type": "busy", "busy": 2.5}}])
    make(store, clock, sink, budget_s=9.5).run()
    assert fired(sink, 1) == [at(1), at(4), at(7)]
    skipped = [r.slot_ms for r in sink.records if r.status == "skipped"]
    assert skipped == [at(2), at(3), at(5), at(6), at(8), at(9)]
    assert fired(sink, 2) == grid(1, 9, 1)  # "allow" fires regardless


def test_a_change_the_version_does_not_show_is_read_within_a_minute() -> None:
    # a control version rewound by hand, or the trigger that bumps it dropped: the change was never read
    from subminute.controller.keeper import RELOAD_S

    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])

    def unseen_edit() -> None:
        store._rows[1] = {**store._rows[1], "waitseconds": 2}  # the row changes, its version does not

    clock.at(5.5, unseen_edit)
    make(store, clock, sink, budget_s=RELOAD_S + 10.5).run()
    slots = fired(sink, 1)
    assert grid(1, 5, 1) == slots[:5]
    late = [s for s in slots if s > at(RELOAD_S + 2)]
    assert late and all(s % 2000 == 0 for s in late) and all(b - a == 2000 for a, b in zip(late, late[1:]))


def test_bad_rows_are_disabled_while_the_others_fire() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    bad = {
        2: {"waitseconds": 0}, 3: {"waitseconds": -1}, 4: {"waitseconds": float("nan")},
        5: {"waitseconds": "soon"}, 6: {"waitseconds": 1e12}, 7: {"plan": "tz=Mars/Olympus; every 2s"},
        8: {"plan": "mon-fri 25:00-26:00 every 1s"}, 9: {"target": {"type": "carrier-pigeon"}},
        10: {"running": "maybe"}, 11: {"colour": "blue"}, 12: {"waitseconds": 1e306}, 13: {"grace": "9" * 400},
    }
    for sid, fields in bad.items():
        store.put_raw({"id": sid, **fields})
    fields_named = {2: "waitseconds", 3: "waitseconds", 4: "waitseconds", 5: "waitseconds", 6: "waitseconds",
                    7: "plan", 8: "plan", 9: "target.type", 10: "running", 11: "colour", 12: "waitseconds",
                    13: "grace"}
    clock.at(4.5, lambda: store.put({"id": 2, "waitseconds": 2}))  # fixed by hand: fires from then on
    controller = make(store, clock, sink, budget_s=8.5)
    controller.run()
    assert fired(sink, 1) == grid(1, 8, 1)
    assert fired(sink, 2) == [at(6), at(8)]
    invalid = {r.schedule_id: r.error for r in sink.records if r.status == "invalid"}
    assert set(invalid) == set(bad)
    for sid, name in fields_named.items():
        assert f"schedule {sid}" in invalid[sid] and name in invalid[sid], invalid[sid]
    assert len([r for r in sink.records if r.status == "invalid"]) == len(bad)  # once each, not per tick
    assert set(controller.invalid) == set(bad) - {2}


# -- hand-offs -------------------------------------------------------------------------------------------
def test_fifty_budget_handoffs_fire_every_slot_once() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.2}, {"id": 2, "waitseconds": 1}, {"id": 3, "waitseconds": 3}])
    handoff = None
    for n in range(60):
        handoff = make(store, clock, sink, owner=f"lambda-{n}", handoff=handoff, budget_s=7.3).run()
        assert handoff.final and handoff.token is not None and not handoff.released
        clock.advance(0.35 if n % 2 else 0.05)  # the state machine starts the successor
    end = clock.t()
    for sid, every in ((1, 0.2), (2, 1), (3, 3)):
        slots = fired(sink, sid)
        assert slots == grid(every, slots and (slots[-1] / 1000 - T0), every), sid
        assert slots[-1] >= at(end - 1 - every)
        assert [r.seq for r in sink.fired(sid)] == list(range(1, len(slots) + 1))
        late = [r.start_lateness_ms for r in sink.fired(sid)]
        assert max(late) <= 350 + 1
    assert not [r for r in sink.records if r.status == "missed"]


def test_handoff_with_bad_fields_is_ignored_field_by_field() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}, {"id": 2, "waitseconds": 1}])
    bad = {"token": "x", "schedules": {"1": {"next": "soon", "seq": -4}, "two": {}, "2": [1, 2],
                                       "\u00b2": {"next": 1}}}  # str.isdigit() takes '\u00b2', int() does not
    make(store, clock, sink, handoff=bad, budget_s=3.5).run()
    assert fired(sink, 1) == grid(1, 3, 1) and fired(sink, 2) == grid(1, 3, 1)
    for schedules in ("x", []):  # dropped whole before: the token it handed over was lost, and the chain ended
        kept = Handoff.from_raw({"token": 5, "final": True, "schedules": schedules})
        assert kept is not None and (kept.token, kept.final, kept.positions) == (5, True, {})
    for junk in ("not a hand-off", {"schedules": "x"}, None, 42):
        make(MemoryStore([{"id": 1, "waitseconds": 1}]), ScriptClock(), MemorySink(), handoff=junk,  # type: ignore[arg-type]
             budget_s=1.5).run()


def test_clean_stop_releases_and_a_standby_continues_at_once() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.5}])
    a = make(store, clock, sink, owner="a")
    clock.at(5.1, a.stop)
    first = a.run()
    assert first.released and store.read_lease().expires_at <= clock.time()  # type: ignore[union-attr]
    clock.advance(0.3)
    second = make(store, clock, sink, owner="b", budget_s=5).run()
    slots = fired(sink, 1)
    assert slots == grid(0.5, slots[-1] / 1000 - T0, 0.5)  # one unbroken grid across the change
    assert second.token is not None and first.token is not None and second.token == first.token + 1
    assert missed(sink, 1) == 0


def test_restart_long_after_a_clean_stop_starts_afresh() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    a = make(store, clock, sink, owner="a")
    clock.at(5.5, a.stop)
    a.run()
    clock.advance(3600)
    make(store, clock, sink, owner="b", budget_s=3.5).run()
    assert missed(sink, 1) == 0  # the hour while nothing ran was a stop, not a fault
    assert fired(sink, 1)[-3:] == grid(3606, 3608, 1)  # resumes at once
    assert [r.seq for r in sink.fired(1)] == list(range(1, 9))


# -- lease: standby, takeover, loss ----------------------------------------------------------------------
def test_a_second_controller_stands_by_while_the_lease_is_held() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    held = store.acquire_lease("other", 5, clock.time())
    assert held is not None
    for k in range(1, 17):  # the other controller renews every second until t=16, then dies
        clock.at(k, lambda: store.renew_lease(held, 5, clock.time()))
    b = make(store, clock, sink, owner="b", budget_s=30)
    b.run()
    slots = fired(sink, 1)
    assert slots and slots[0] > at(16 + 5)  # never before the dead holder's lease expired (the fence)
    assert slots[0] <= at(16 + 5 + 5 + 1)  # taken over within one lease period of its expiry, plus a tick
    assert b.stats["takeovers"] == 1


def test_a_live_holders_periodic_handoff_is_no_hand_over() -> None:
    """Only a final hand-off (its controller stopped firing) hands the lease over with its token."""
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    held = store.acquire_lease("alive", 5, clock.time())
    assert held is not None
    for k in range(1, 12):
        clock.at(k, lambda: store.renew_lease(held, 5, clock.time()))
    periodic = {"token": held.token, "final": False, "at_ms": at(0), "schedules": {"1": {"next": at(1), "seq": 0}}}
    b = make(store, clock, sink, owner="b", handoff=periodic, budget_s=10)
    b.run()
    assert fired(sink, 1) == [] and b.stats["takeovers"] == 0


def test_kill_and_takeover_fire_no_slot_twice_and_count_the_missed() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.1}, {"id": 2, "waitseconds": 1}])

    def kill() -> None:
        raise Killed

    clock.at(6.73, kill)
    with pytest.raises(Killed):
        make(store, clock, sink, owner="a").run()
    a_slots = {sid: fired(sink, sid) for sid in (1, 2)}
    assert store.read_lease().owner == "a"  # type: ignore[union-attr]
    b = make(store, clock, sink, owner="b", budget_s=20)
    b.run()
    assert b.stats["takeovers"] == 1
    for sid, every in ((1, 0.1), (2, 1)):
        slots = fired(sink, sid)
        assert len(slots) == len(set(slots)), "a slot fired twice"
        b_slots = slots[len(a_slots[sid]):]
        assert b_slots[0] > a_slots[sid][-1]
        gap = len(grid(every, b_slots[0] / 1000 - T0, every)) - len(a_slots[sid]) - 1  # really missed
        lost = [r for r in sink.records if r.status == "missed" and r.schedule_id == sid]
        counted = sum(r.detail["missed"] for r in lost)
        maybe = sum(r.detail.get("possibly_fired", 0) for r in lost)
        assert counted - maybe <= gap <= counted, (sid, gap, counted, maybe)
        assert gap > 0
        assert [r.seq for r in sink.fired(sid)][-1] == len(grid(every, b_slots[-1] / 1000 - T0, every))


def test_a_kill_before_the_second_renewal_still_leaves_positions_to_continue_from() -> None:
    # the first renewal saved no positions (the loop published them only when the renewal asked), so a
    # holder killed before its second renewal left none: its successor restarted seq at 1, the gap uncounted
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.1}])

    def kill() -> None:
        raise Killed

    clock.at(1.9, kill)  # the first renewal is at 1.25 s (a quarter of the 5 s lease), the second at 2.5 s
    with pytest.raises(Killed):
        make(store, clock, sink, owner="a").run()
    make(store, clock, sink, owner="b", budget_s=12).run()
    slots = fired(sink, 1)
    assert len(slots) == len(set(slots)) and missed(sink, 1) > 0
    assert [r.seq for r in sink.fired(1)][-1] == len(grid(0.1, slots[-1] / 1000 - T0, 0.1))  # numbering went on


def test_takeover_without_a_handoff_starts_after_the_fence() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    store.acquire_lease("ghost", 5, clock.time() - 100)  # a controller that died long ago, no hand-off
    b = make(store, clock, sink, owner="b", budget_s=10)
    b.run()
    slots = fired(sink, 1)
    assert slots[0] <= at(5 + 1)  # waits one lease period, watching the stale lease
    assert missed(sink, 1) > 0  # the slots since the ghost's lease expired are counted


def test_a_lost_lease_stops_firing_at_once() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.1}])

    def steal() -> None:
        cur = store.read_lease()
        store._lease = Lease("thief", cur.token + 1, clock.time() + 60)  # type: ignore[union-attr]

    clock.at(3.05, steal)
    a = make(store, clock, sink, owner="a", budget_s=8)
    handoff = a.run()
    assert max(fired(sink, 1)) <= at(3.05 + 5 * 0.25 + 0.25)  # the next renewal finds it gone
    assert a.state == "stopped" and handoff.token is None and handoff.role == "standby"
    assert store.read_lease().owner == "thief"  # type: ignore[union-attr]


# -- clock steps and suspension --------------------------------------------------------------------------
def test_suspension_fires_the_latest_slot_and_counts_the_others() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}, {"id": 2, "waitseconds": 0.25}])
    clock.at(5.5, lambda: clock.advance(20))  # the process is suspended for 20 s (both clocks move)
    make(store, clock, sink, budget_s=30).run()
    for sid, every in ((1, 1), (2, 0.25)):
        slots = fired(sink, sid)
        assert len(slots) == len(set(slots))
        resumed = [s for s in slots if at(5.5) < s <= at(25.5)]
        assert len(resumed) == 1  # no burst: only the most recent slot, which is within grace
        assert resumed[0] == at(25.5 - (25.5 % every))
        assert missed(sink, sid) == len(grid(every, 25.5, every)) - len([s for s in slots if s <= at(25.5)])
        assert slots[-1] >= at(30 - every)


def test_wall_clock_step_forward() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    clock.at(5.5, lambda: clock.step_wall(30))
    controller = make(store, clock, sink, budget_s=12)
    controller.run()
    slots = fired(sink, 1)
    assert slots[:5] == grid(1, 5, 1)
    after = [s for s in slots if s > at(5)]
    assert after[0] == at(35) and after == grid(35, 35 + len(after) - 1, 1)  # no burst, no gap
    assert missed(sink, 1) == 29
    assert controller.stats["clock_steps"] == 1


@pytest.mark.parametrize(("spread", "lead_ms"), [(True, 2.0), (False, 2 + 0.03 * 200)])
def test_the_lead_of_a_hand_over_follows_the_fires_due_then(spread: bool, lead_ms: float) -> None:
    """200 schedules: on one instant their batch is handed over 8 ms ahead; 5 ms apart each is handed over
    2 ms ahead (not 8: a worker would sleep that long for it)."""
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": i, "waitseconds": 1, "offset": (i - 1) * 0.005 if spread else 0}
                         for i in range(1, 201)])
    make(store, clock, sink, budget_s=3).run()
    assert len(sink.fired()) >= 400
    assert sorted({round(r.lateness_ms, 1) for r in sink.fired()}) == [-lead_ms]  # the hand-over, before the slot


def test_the_fires_due_are_counted_once_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count walks every fire of the slot (~0.4 ms at 1,000): not again at the wake-up before it."""
    counted: list[int] = []

    def counting(heap: list[tuple[int, int]], slot: int, most: int) -> int:
        counted.append(slot)
        return due_at(heap, slot, most)

    monkeypatch.setattr(loop_module, "due_at", counting)
    clock, sink = ScriptClock(), MemorySink()
    make(clock=clock, sink=sink, store=MemoryStore([{"id": i, "waitseconds": 1} for i in range(1, 201)]),
         budget_s=5.5).run()
    assert len(sink.fired()) == 1000
    assert len(counted) == len(set(counted)) == 5  # slots 1 s to 5 s, one count each


@given(st.lists(st.integers(0, 50), max_size=300), st.integers(-1, 51), st.integers(1, 400))
def test_due_at_counts_the_heap_entries_at_or_before_a_slot(slots: list[int], slot: int, most: int) -> None:
    heap = [(s, i) for i, s in enumerate(slots)]
    heapq.heapify(heap)
    assert due_at(heap, slot, most) == min(most, sum(1 for s in slots if s <= slot))


class PausedBeforeWallReads(FakeClock):
    """Every other wall-clock read by the thread that made the clock comes after a 1.5 ms pause (the thread
    lost the GIL right after reading the monotonic clock): time passes before the read returns."""

    def __init__(self) -> None:
        super().__init__(wall=T0, mono=M0)
        self.victim = threading.current_thread()
        self.reads = 0
        self.paused = 0

    def time(self) -> float:
        if threading.current_thread() is self.victim:
            self.reads += 1
            if self.reads % 2:
                self.paused += 1
                self.advance(0.0015)
        return super().time()


def test_a_pause_between_the_clock_reads_never_starts_a_fire_early() -> None:
    """The loop turns slots into monotonic deadlines through a (monotonic, wall) pair: a pause between the
    two reads would start every fire computed from it early by the pause (bench/timing.py case 6 saw HTTP
    requests reach the server 1.2 ms before their slot)."""
    clock, sink = PausedBeforeWallReads(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.1}, {"id": 2, "waitseconds": 1}])
    make(store, clock, sink, budget_s=5.05).run()
    assert clock.paused > 20
    assert fired(sink, 1) == grid(0.1, 5, 0.1) and fired(sink, 2) == grid(1, 5, 1)
    lateness = [r.start_lateness_ms for r in sink.fired()]
    assert min(lateness) >= 0, sorted(lateness)[:5]


def test_wall_clock_step_back_waits_at_most_one_interval() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    clock.at(10.5, lambda: clock.step_wall(-30))
    controller = make(store, clock, sink, budget_s=16)
    controller.run()
    records = sink.fired(1)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))  # every fire numbered anew
    before, after = records[:10], records[10:]
    assert [r.slot_ms for r in before] == grid(1, 10, 1)
    assert [r.slot_ms for r in after] == grid(-19, -15, 1)  # the stepped-back instants come again
    assert (after[0].started_ms or 0) - at(10.5 - 30) <= 1000  # no wait longer than one interval
    assert missed(sink, 1) == 0 and controller.stats["clock_steps"] == 1


def test_small_step_back_repeats_no_slot() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 1}])
    clock.at(5.2, lambda: clock.step_wall(-0.6))
    make(store, clock, sink, budget_s=10).run()
    slots = fired(sink, 1)
    assert slots == grid(1, slots[-1] / 1000 - T0, 1)


def test_kill_right_after_a_forward_step_fires_no_slot_twice() -> None:
    """The fence is the dead holder's own lease expiry, so a clock step cannot open a double fire."""
    clock, sink = ScriptClock(), MemorySink()
    store = MemoryStore([{"id": 1, "waitseconds": 0.5}])
    clock.at(4.0, lambda: clock.step_wall(3.0))

    def kill() -> None:
        raise Killed

    clock.at(4.3, kill)
    with pytest.raises(Killed):
        make(store, clock, sink, owner="a").run()
    make(store, clock, sink, owner="b", budget_s=12).run()
    slots = fired(sink, 1)
    assert len(slots) == len(set(slots))  # (the slot due as the clock stepped may be recorded after the next)


# -- store faults ----------------------------------------------------------------------------------------
def test_store_outage_keeps_firing_and_a_stop_is_obeyed_once_readable(caplog: pytest.LogCaptureFixture) -> None:
    clock, sink = ScriptClock(), MemorySink()
    inner = MemoryStore([{"id": 1, "waitseconds": 0.5}, {"id": 2, "waitseconds": 1}])
    store = FaultyStore(inner)
    clock.at(3.0, lambda: setattr(store, "down", True))
    clock.at(8.0, lambda: inner.update(1, {"running": False}))  # written while the store cannot be read
    clock.at(20.0, lambda: setattr(store, "down", False))
    caplog.set_level(logging.WARNING, "subminute.controller")
    controller = make(store, clock, sink, budget_s=25)
    controller.run()
    assert fired(sink, 2) == grid(1, 24, 1)  # never a gap
    one = fired(sink, 1)
    assert one[: len(grid(0.5, 20, 0.5))] == grid(0.5, 20, 0.5)  # the stop could not be read
    assert max(one) <= at(20 + 1)  # and is obeyed as soon as it can be
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    back = [r for r in caplog.records if "available again" in r.getMessage()]
    assert len(down) == 1 and len(back) == 1  # once per incident
    assert controller.stats["store_errors"] < 17 * 4  # retries back off
    assert missed(sink, 1) == missed(sink, 2) == 0


def test_store_outage_longer_than_grace_stops_firing_then_recovers() -> None:
    clock, sink = ScriptClock(), MemorySink()
    store = FaultyStore(MemoryStore([{"id": 1, "waitseconds": 1}]))
    clock.at(3.2, lambda: setattr(store, "down", True))
    clock.at(15.2, lambda: setattr(store, "down", False))
    make(store, clock, sink, budget_s=20, store_outage_grace_s=6).run()
    slots = fired(sink, 1)
    assert max(s for s in slots if s < at(15)) <= at(3.2 + 6 + 0.5)
    assert not [s for s in slots if at(3.2 + 6 + 1) < s < at(15.2)]
    assert next(s for s in slots if s > at(15.2)) <= at(15.2 + 1 + 1)
    assert missed(sink, 1) > 0


def test_a_standby_does_not_take_over_during_an_outage() -> None:
    """A standby needs a whole lease period of successful reads: an outage restarts its watch."""
    clock, sink = ScriptClock(), MemorySink()
    inner = MemoryStore([{"id": 1, "waitseconds": 1}])
    store = FaultyStore(inner)
    held = inner.acquire_lease("holder", 5, clock.time())
    assert held is not None
    renewals = [k * 1.0 for k in range(1, 30) if not 4 <= k <= 12]  # the holder cannot renew in the outage
    for k in renewals:
        clock.at(k, lambda: inner.renew_lease(held, 5, clock.time()))
    clock.at(4.0, lambda: setattr(store, "down", True))
    clock.at(12.0, lambda: setattr(store, "down", False))
    b = make(store, clock, sink, owner="b", budget_s=28)
    b.run()
    assert fired(sink, 1) == [] and b.state == "stopped" and b.stats["takeovers"] == 0


# -- the keeper's ticks in step with the slots (their records wait for the tick: no writer wake-up) -------
class PacedSink(MemorySink):
    """Notes each pace: (monotonic instant, the wait it announces), as BatchWriter.pace receives them."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.paces: list[tuple[float, float | None]] = []

    def pace(self, next_in_s: float | None) -> None:
        self.paces.append((self.clock.monotonic() - M0, next_in_s))


@pytest.mark.parametrize(("interval", "offset"), [(1.0, 0.0), (1.0, 0.7), (0.1, 0.0), (2.0, 0.3), (0.6, 0.0)])
def test_keeper_ticks_come_just_after_slots_and_at_most_refresh_apart(interval: float, offset: float) -> None:
    from subminute.controller.keeper import PHASE_S

    clock = ScriptClock()
    sink = PacedSink(clock)
    store = MemoryStore([{"id": 1, "waitseconds": interval, "offset": offset}])
    make(store, clock, sink, budget_s=20.2, refresh_s=1.0).run()
    assert len(fired(sink, 1)) >= 19 / interval - 1
    ticks = [t for t, nxt in sink.paces if nxt is not None]
    assert sink.paces[-1][1] is None  # the run's end: no more ticks announced
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) <= 1.0 + 1e-6, gaps  # edits are still seen within the refresh period
    settled = ticks[3:]
    assert len(settled) >= 12 and min(gaps[3:]) >= 0.5 - 1e-6, gaps  # not more often once in step
    # PHASE_S after a slot of the schedule, whose records then wait for it: each settled tick (slots a
    # second apart or closer), or each slot's next one (slots further apart)
    slots = [(s / 1000 - T0) for s in fired(sink, 1)]
    if interval <= 1.0:
        assert all(min(abs(t - PHASE_S - s) for s in slots) < 1e-6 for t in settled), (settled, slots[:5])
    else:
        later = [s for s in slots if s > settled[0]]
        assert all(min(abs(t - PHASE_S - s) for t in ticks) < 1e-6 for s in later), (ticks, later)
    # and it announced the next tick truly
    assert all(abs((t + nxt) - b) < 1e-6 for (t, nxt), b in zip(sink.paces, ticks[1:], strict=False)
               if nxt is not None and t in ticks)


@pytest.mark.parametrize(("mono", "due", "step", "expected"), [
    (0.0, float("inf"), float("nan"), 1.0),  # no slot: every refresh
    (0.0, 0.7, 1.0, 0.71),  # a slot in the second half of the wait: just after it
    (0.0, 0.2, 0.1, 0.91),  # slots 0.1 s apart: just after the last one in the wait
    (0.0, 0.05, 1.0, 0.06),  # out of step with slots a second apart: once sooner
    (0.0, 0.05, 0.3, 0.96),  # ... 0.3 s apart: the last in the wait
    (0.004, 1.0, 1.0, 0.01),  # a tick held 4 ms after a slot by the quiet window: the one just passed
    (0.02, 1.0, 1.0, 1.01),  # in step: a second later
    (0.0, -3.0, float("inf"), 1.0),  # a slot the loop has not reached (it is late): every refresh
    (0.0, 0.3, -0.2, 1.0),  # no usable spacing and a slot in the first half: every refresh
    (0.5, 5.0, 5.0, 1.5),  # the next slot beyond this wait, the last one long past
])
def test_tick_after(mono: float, due: float, step: float, expected: float) -> None:
    from subminute.controller.keeper import tick_after

    assert tick_after(mono, 1.0, due, step) == pytest.approx(expected)


@pytest.mark.parametrize(("ttl", "interval"), [(2.0, 0.2), (1.0, 0.3), (5.0, 1.0), (5.0, 0.1)])
def test_ticks_in_step_with_slots_never_start_a_renewal_too_late_for_the_outage_grace(
        ttl: float, interval: float) -> None:
    """A renewal that hangs (a file locked by another writer) is covered by the outage grace from
    HUNG_CALL_S after it started: it must start by then before the lease's validity ends, wherever the
    ticks in step with the slots fall (a tick 0.31 s after a renewal due at 0.5 put the next at 0.62:
    with a 2 s lease, slots went unfired while the renewal hung)."""
    from subminute.controller.keeper import HUNG_CALL_S, MAX_DEFER_S
    from subminute.controller.options import VALID_FRACTION

    clock, sink = ScriptClock(), MemorySink()

    class Noting(MemoryStore):
        renewals: list[float] = []

        def renew_lease(self, *args: Any, **kwargs: Any) -> Lease | None:
            self.renewals.append(clock.monotonic())
            return super().renew_lease(*args, **kwargs)

    store = Noting([{"id": 1, "waitseconds": interval}])
    make(store, clock, sink, budget_s=12.2, lease_ttl_s=ttl, refresh_s=1.0).run()
    gaps = [b - a for a, b in itertools.pairwise(store.renewals)]
    assert len(gaps) >= 12 / ttl
    latest = max(VALID_FRACTION * ttl - HUNG_CALL_S - 2 * MAX_DEFER_S, ttl * 0.25)
    assert max(gaps) <= latest + MAX_DEFER_S, (latest, gaps)  # a tick may wait out a slot's quiet moment
    assert latest + MAX_DEFER_S < VALID_FRACTION * ttl - HUNG_CALL_S or ttl < 2
