"""The shared lane's bookkeeping: records made from what a fire returned, counts given back, starts noted."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from subminute.control.rows import Schedule
from subminute.dispatch.base import Batch, Fire
from subminute.dispatch.local import LocalDispatcher
from subminute.results.sinks import MemorySink
from subminute.targets.base import Result, register_target
from subminute.timing.slots import Every

SEEN: list[dict[str, Any]] = []


class Quiet:
    """A custom target that returns nothing: it went well."""

    kind = "quiet"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.reply = spec.get("reply")

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result | None:
        return Result(detail={"n": 1}) if self.reply == "result" else None


register_target("quiet", Quiet)


def mutate(event: dict[str, Any]) -> dict[str, Any]:
    """A python target that changes its event: only its own fire's event."""
    SEEN.append(dict(event))
    event["slot_ms"] = -1
    event.clear()
    return {"kept": True}


def _run(schedules: list[Schedule], dispatcher: LocalDispatcher, slot_ms: int) -> None:
    fires = [Fire(s, slot_ms, 7, 1000, dispatched_ms=time.time() * 1000) for s in schedules]
    due = time.monotonic() + (slot_ms - time.time() * 1000) / 1000
    batch = Batch(slot_ms, due, fires)
    dispatcher.submit(batch)
    deadline = time.monotonic() + 5
    while len(dispatcher.sink.records) < len(fires) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.005)
    assert sorted(sid for sid, _ in batch.log.drain()) == sorted(s.id for s in schedules)


def test_records_of_a_shared_lane_say_what_each_target_returned() -> None:
    sink = MemorySink()
    dispatcher = LocalDispatcher(sink)
    schedules = [
        Schedule(1, "none", True, Every(1000), {"type": "quiet"}),
        Schedule(2, "result", True, Every(1000), {"type": "quiet", "reply": "result"}),
        Schedule(3, "noop", True, Every(1000), None),
        Schedule(4, "mutate", True, Every(1000), {"type": "python", "ref": f"{__name__}:mutate"}),
    ]
    for schedule in schedules:
        dispatcher.prepare(schedule)
    slot = int(time.time() * 1000) + 50
    try:
        _run(schedules, dispatcher, slot)
    finally:
        dispatcher.close()
    records = {r.schedule_id: r for r in sink.records}
    assert {sid: r.status for sid, r in records.items()} == {1: "ok", 2: "ok", 3: "ok", 4: "ok"}
    assert records[1].detail == {} and records[2].detail == {"n": 1}
    assert records[4].detail == {"returned": "{'kept': True}"}
    assert records[1].detail is not records[3].detail  # each record its own detail
    for r in records.values():
        assert r.slot_ms == slot and r.seq == 7  # the event a target changed is not what is recorded
        assert r.started_ms is not None and r.ended_ms is not None and r.started_ms <= r.ended_ms
        assert r.start_lateness_ms == round(r.started_ms - slot, 3) and r.start_lateness_ms > -1
    assert SEEN[-1]["slot_ms"] == slot and SEEN[-1]["schedule_id"] == 4
    assert all(dispatcher.in_flight(s.id) == 0 for s in schedules)  # every count given back, the last one too


HOLD = threading.Event()


def held(event: dict[str, Any]) -> None:
    HOLD.wait(10)


def test_a_short_timeout_is_watched_while_the_monitor_sleeps_for_a_long_one() -> None:
    """A quick fire with a 60 s timeout sends the monitor to sleep until then; a fire with a 0.2 s timeout
    started later must still be recorded as a timeout about 0.2 s after its start."""
    sink = MemorySink()
    dispatcher = LocalDispatcher(sink)
    long = Schedule(1, "long", True, Every(1000), {"type": "quiet"}, timeout_s=60)
    short = Schedule(2, "short", True, Every(1000), {"type": "python", "ref": f"{__name__}:held"}, timeout_s=0.2)
    for schedule in (long, short):
        dispatcher.prepare(schedule)
    HOLD.clear()
    try:
        _run([long], dispatcher, int(time.time() * 1000) + 20)
        assert dispatcher._watch_until > time.monotonic() + 30  # asleep for the long timeout's sake
        slot = int(time.time() * 1000) + 20
        dispatcher.submit(Batch(slot, time.monotonic() + 0.02, [Fire(short, slot, 1, 1000)]))
        deadline = time.monotonic() + 3
        while not any(r.status == "timeout" for r in sink.records) and time.monotonic() < deadline:
            time.sleep(0.005)
        timeout = next(r for r in sink.records if r.status == "timeout")
        assert timeout.schedule_id == 2 and 190 <= timeout.ended_ms - slot <= 600, timeout
    finally:
        HOLD.set()
        dispatcher.close()
