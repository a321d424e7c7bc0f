"""Targets that hang, raise, return garbage, exit non-zero or write huge output never stop or delay the
schedule, and their errors are recorded with a bounded size. Bounded real time (about 5 s)."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import read_fires

from subminute.control.memory import MemoryStore
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.local import LocalDispatcher
from subminute.results.records import MAX_ERROR_CHARS
from subminute.results.sinks import MAX_DETAIL_CHARS, SqliteSink
from subminute.targets.base import Result, register_target
from subminute.timing.clock import SystemClock

pytestmark = pytest.mark.realtime
RELEASE = threading.Event()  # lets the hung targets go at the end


class Misbehaving:
    """A target type for this test only: ``{"type": "misbehave", "mode": ...}``."""

    kind = "misbehave"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.mode = spec["mode"]

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Any:
        if self.mode == "hang":
            RELEASE.wait(60)
            return Result()
        if self.mode == "raise":
            raise RuntimeError("boom " + "x" * 5_000_000)
        if self.mode == "garbage":
            return {"not": "a Result"} if event["seq"] % 2 else object()
        if self.mode == "huge-detail":
            return Result(detail={"blob": "z" * 3_000_000, "obj": object()})
        raise AssertionError(self.mode)


register_target("misbehave", Misbehaving)


def _command(code: str, **extra: Any) -> dict[str, Any]:
    return {"type": "command", "argv": [sys.executable, "-c", code], **extra}


def test_misbehaving_targets_never_delay_the_schedule(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    rows = [
        {"id": 1, "name": "canary", "waitseconds": 0.2},
        {"id": 2, "waitseconds": 0.2, "timeout": 0.3, "target": {"type": "misbehave", "mode": "hang"}},
        {"id": 3, "waitseconds": 0.2, "target": {"type": "misbehave", "mode": "raise"}},
        {"id": 4, "waitseconds": 0.2, "target": {"type": "misbehave", "mode": "garbage"}},
        {"id": 5, "waitseconds": 0.5, "target": {"type": "misbehave", "mode": "huge-detail"}},
        {"id": 6, "waitseconds": 1, "target": _command("import sys; sys.exit(3)")},
        {"id": 7, "waitseconds": 1, "target": _command("import sys; sys.stdout.write('y' * 20_000_000); "
                                                       "sys.stderr.write('e' * 3_000_000)")},
        {"id": 8, "waitseconds": 1, "timeout": 0.5, "target": {"type": "command", "argv": ["sleep", "30"]}},
    ]
    store = MemoryStore(rows)
    sink = SqliteSink(db)
    dispatcher = LocalDispatcher(sink)
    controller = Controller(store, dispatcher, SystemClock(), ControllerOptions(budget_s=4.2), sink=sink)
    try:
        controller.run()
    finally:
        RELEASE.set()
        dispatcher.close(timeout_s=5)
        sink.close()
    records = read_fires(db)
    by_id: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_id.setdefault(r["schedule_id"], []).append(r)

    canary = sorted((r for r in by_id[1] if r["status"] == "ok"), key=lambda r: r["slot_ms"])
    slots = [r["slot_ms"] for r in canary]
    assert len(slots) >= 19 and all(b - a == 200 for a, b in itertools.pairwise(slots)), by_id[1]
    late = sorted(r["dispatched_ms"] - r["slot_ms"] for r in canary)
    assert late[-2] < 50 and late[-1] < 250, late[-5:]  # the others' trouble does not reach the wake-up

    for sid in range(3, 9):  # each misbehaving schedule kept firing on its own grid
        fired_slots = [r["slot_ms"] for r in by_id[sid] if r["status"] in ("ok", "error", "timeout")]
        assert len(fired_slots) >= (3 if sid >= 6 else 7), sid
    # the hung schedule: its calls keep counting until they return, so it holds at most its cap of threads
    # (timeout / interval + 1 = 3) and records every later slot as skipped, saying why
    hung = [r for r in by_id[2] if r["status"] == "timeout"]
    assert len(hung) == 3 and all("timeout" in r["error"] for r in hung)
    skipped = [r for r in by_id[2] if r["status"] == "skipped"]
    assert len(skipped) >= 15 and all("3 earlier fires of this schedule are still running" in r["error"]
                                       for r in skipped)
    assert {r["status"] for r in by_id[3]} == {"error"}
    assert all("instead of a Result" in r["error"] for r in by_id[4])
    assert all("exit 3" in r["error"] for r in by_id[6])
    assert {r["status"] for r in by_id[8]} == {"timeout"}
    for r in records:  # errors and details have bounded sizes, whatever the target produced
        assert r["error"] is None or len(r["error"]) <= MAX_ERROR_CHARS + 50, (r["schedule_id"], len(r["error"]))
        assert r["detail"] is None or len(r["detail"]) <= MAX_DETAIL_CHARS, (r["schedule_id"], len(r["detail"]))
    assert db.stat().st_size < 5_000_000


def test_a_lane_whose_last_fire_hangs_still_records_the_fires_before_it() -> None:
    """Quick fires share one worker; when the last of them hangs and nothing waits behind it, the fires it
    ran before are recorded at once (the monitor writes them), not when the hung one returns."""
    from subminute.control.rows import parse_row
    from subminute.dispatch.base import Batch, Fire
    from subminute.results.sinks import MemorySink

    RELEASE.clear()  # (the test above lets its hung targets go at its end)
    sink = MemorySink()
    dispatcher = LocalDispatcher(sink)
    quick = [parse_row({"id": i, "waitseconds": 1, "target": {"type": "noop"}}) for i in (1, 2, 3)]
    hung = parse_row({"id": 9, "waitseconds": 1, "timeout": 30, "target": {"type": "misbehave", "mode": "hang"}})
    for schedule in (*quick, hung):
        dispatcher.prepare(schedule)
    clock = SystemClock()
    slot_ms = int(clock.time() * 1000) + 20
    fires = [Fire(s, slot_ms, 1, 1000, dispatched_ms=clock.time() * 1000) for s in (*quick, hung)]
    try:
        dispatcher.submit(Batch(slot_ms, clock.monotonic() + 0.02, fires))
        deadline = clock.monotonic() + 1.0
        while len(sink.records) < 3 and clock.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(r.schedule_id for r in sink.records) == [1, 2, 3]  # the hung one is still running
        assert all(r.status == "ok" for r in sink.records)
    finally:
        RELEASE.set()
        dispatcher.close(2.0)


def test_the_dispatcher_never_holds_more_threads_than_its_cap() -> None:
    """Every fire hangs and each holds a worker: past ``max_threads`` the fires are recorded as skipped, naming
    the cap, and no further thread is started (docs/guarantees.md, section 5)."""
    from subminute.control.rows import parse_row
    from subminute.dispatch.base import Batch, Fire
    from subminute.results.sinks import MemorySink

    RELEASE.clear()
    sink = MemorySink()
    dispatcher = LocalDispatcher(sink, workers=1, max_threads=3)
    hung = [parse_row({"id": i, "waitseconds": 1, "timeout": 30, "target": {"type": "misbehave", "mode": "hang"}})
            for i in range(1, 7)]
    for schedule in hung:
        dispatcher.prepare(schedule)
    clock = SystemClock()
    slot_ms = int(clock.time() * 1000) + 20
    fires = [Fire(s, slot_ms, 1, 1000, dispatched_ms=clock.time() * 1000) for s in hung]
    before = set(threading.enumerate())
    try:
        dispatcher.submit(Batch(slot_ms, clock.monotonic() + 0.02, fires))
        deadline = clock.monotonic() + 2.0
        while len(sink.records) < 3 and clock.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # (no further thread may start meanwhile)
        started = [t for t in threading.enumerate() if t not in before]  # (threads of earlier tests may end)
        assert len(dispatcher._all) == 3 and len(started) == 2, started  # 1 worker was there
        skipped = sorted(r.schedule_id for r in sink.records)
        assert skipped == [4, 5, 6] and all(r.status == "skipped" and "all 3 worker threads are busy" in r.error
                                            for r in sink.records)
    finally:
        RELEASE.set()
        dispatcher.close(2.0)
