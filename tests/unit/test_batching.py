"""The record writer's batching, in real time with loose bounds: a steady trickle of items is committed in
batches (not one commit an item), every item within about ``batch_interval_s`` of its put, and an item
after a quiet spell is committed at once."""

from __future__ import annotations

import threading
import time

from subminute.errors import StoreError
from subminute.results.batching import PACED_MAX, BatchWriter


class Recorded(BatchWriter[float]):
    """Items are their put times; each commit notes (commit time, items)."""

    def __init__(self) -> None:
        self.commits: list[tuple[float, list[float]]] = []
        self.lock = threading.Lock()
        super().__init__("test items", "memory", batch_interval_s=0.05)

    def _write_batch(self, items: list[float]) -> None:
        with self.lock:
            self.commits.append((time.monotonic(), list(items)))


def test_a_trickle_is_committed_in_batches_each_item_within_the_interval() -> None:
    writer = Recorded()
    try:
        end = time.monotonic() + 0.5
        put = 0
        while time.monotonic() < end:  # an item every millisecond, as fires 1 ms apart
            writer.put(time.monotonic())
            put += 1
            time.sleep(0.001)
        assert writer.flush(2)
    finally:
        writer.close()
    items = [item for _, batch in writer.commits for item in batch]
    assert len(items) == put
    assert len(writer.commits) <= 0.5 / 0.05 + 3, len(writer.commits)  # one commit an item would be ~400
    waits = [at - item for at, batch in writer.commits for item in batch]
    assert max(waits) < 0.05 + 0.1, max(waits)  # the interval, and slack for a busy machine


def test_an_item_after_a_quiet_spell_is_committed_at_once() -> None:
    writer = Recorded()
    try:
        writer.put(time.monotonic())
        assert writer.flush(2)
        time.sleep(0.08)  # longer than the interval since the last commit
        put = time.monotonic()
        writer.put(put)
        assert writer.flush(2)
    finally:
        writer.close()
    assert writer.commits[-1][0] - put < 0.03


# -- a pacer: a thread that wakes anyway writes the items put just before it comes --------------------------
class Threads(Recorded):
    """Notes which thread committed each item; ``fail`` makes the next commits on the pacer's thread fail
    (the file busy, as when another process holds the write lock)."""

    def __init__(self) -> None:
        self.by: dict[float, str] = {}
        self.fail = 0
        super().__init__()

    def _write_batch(self, items: list[float]) -> None:
        name = threading.current_thread().name
        if self.fail and name == "MainThread":
            self.fail -= 1
            raise StoreError("database is locked")
        super()._write_batch(items)
        self.by.update((item, name) for item in items)


def test_items_put_just_before_the_pacer_comes_are_written_on_its_thread() -> None:
    writer = Threads()
    try:
        writer.pace(0.02)
        first = time.monotonic()
        writer.put(first)  # the pacer comes in 20 ms: it waits for it
        time.sleep(0.06)  # longer than a batch interval: the writer's thread would have written it
        assert writer.commits == []
        writer.pace(1.0)  # the pacer's tick: written here
        assert writer.by == {first: "MainThread"}
        later = time.monotonic()
        writer.put(later)  # the pacer comes in a second: the writer's thread, at once
        assert writer.flush(2)
    finally:
        writer.close()
    assert writer.by[later] == "subminute-test-items"
    assert writer.commits[-1][0] - later < 0.03


def test_a_burst_a_late_pacer_flush_and_close_leave_nothing_waiting() -> None:
    writer = Threads()
    try:
        writer.pace(0.02)
        burst = [time.monotonic() + i for i in range(PACED_MAX + 1)]
        for item in burst:  # more than PACED_MAX: all of them to the thread
            writer.put(item)
        deadline = time.monotonic() + 2
        while len(writer.by) < len(burst) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert set(writer.by) == set(burst) and set(writer.by.values()) == {"subminute-test-items"}

        writer.pace(0.02)
        held = time.monotonic() + 1000
        writer.put(held)
        time.sleep(0.05)  # the pacer is late (its store call blocks): the next item takes both along
        assert held not in writer.by
        writer.put(held + 1)
        assert writer.flush(2) and writer.by[held] == writer.by[held + 1] == "subminute-test-items"

        for end in ("flush", "pace(None)", "close"):
            writer.pace(0.02)
            item = time.monotonic() + 2000 + len(writer.by)
            writer.put(item)
            if end == "flush":
                assert writer.flush(2)
            elif end == "pace(None)":
                writer.pace(None)  # the keeper's last tick: written there, and nothing waits any more
                assert writer.by[item] == "MainThread"
                after = item + 0.5
                writer.put(after)
                assert writer.flush(2) and writer.by[after] == "subminute-test-items"
            else:
                writer.close()
            assert item in writer.by, end
    finally:
        writer.close()
    assert len(writer.by) == len(burst) + 2 + 4


def test_items_the_pacer_cannot_write_go_to_the_writer_thread() -> None:
    writer = Threads()
    try:
        writer.fail = 1
        writer.pace(0.02)
        item = time.monotonic()
        writer.put(item)
        writer.pace(1.0)  # fails: handed to the thread, which writes it
        assert writer.flush(2)
    finally:
        writer.close()
    assert writer.by == {item: "subminute-test-items"} and writer.fail == 0
