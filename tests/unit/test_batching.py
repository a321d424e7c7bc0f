"""The record writer's batching, in real time with loose bounds: a steady trickle of items is committed in
batches (not one commit an item), every item within about ``batch_interval_s`` of its put, and an item
after a quiet spell is committed at once."""

from __future__ import annotations

import threading
import time

from subminute.results.batching import BatchWriter


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
