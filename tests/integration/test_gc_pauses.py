"""The collector's full passes stop every thread, those starting fires too, for as long as they walk the heap
(bench/timing.py case 5 at 1,000 schedules: the Scheduler's p99 42.6 ms with records kept as objects, 12.2 as
untracked tuples). So records kept in memory are kept as objects the collector does not track, and the engine
freezes the heap it starts with, for as long as it runs."""

from __future__ import annotations

import gc
import threading

from subminute import Scheduler
from subminute.results.records import FireRecord
from subminute.results.sinks import BoundedSink


def _record(i: int) -> FireRecord:
    return FireRecord(i % 7, f"s{i % 7}", 1000 * i, i, "ok", 1.5, -0.5, 2.0, 3.0, 1.0, 200, 10, None,
                      {"returned": str(i), "n": i} if i % 2 else {}, 3, 1.0)


def test_records_kept_in_memory_are_untracked_and_come_back_whole() -> None:
    sink = BoundedSink(limit=5)
    written = [_record(i) for i in range(70)]
    for record in written:
        sink.write(record)
    gc.collect()
    gc.collect()  # (a tuple is untracked once the tuples inside it are: a pass may see it first)
    kept = [item for part in sink._recent.values() for item in part]
    assert len(kept) == 35 and not any(gc.is_tracked(item) for item in kept)
    assert sink.records() == [r for r in written if r.seq >= 35]  # the last 5 of each of the 7 schedules
    assert sink.history(3, limit=1) == [written[66].as_dict()]


def test_the_engine_freezes_the_heap_while_it_runs_and_thaws_it_after() -> None:
    seen: list[int] = []
    fired = threading.Event()
    before = gc.get_freeze_count()

    def probe() -> None:
        seen.append(gc.get_freeze_count())
        fired.set()

    with Scheduler() as scheduler:
        scheduler.add(probe, every="100ms")
        scheduler.start()
        assert fired.wait(5)
    assert seen[0] > before  # the objects that existed at the start were frozen
    assert gc.get_freeze_count() == before  # and are collectable again
