"""read_pair: the monotonic and wall clocks read at one instant, even when the thread pauses between reads."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from subminute.timing.clock import PAIR_TRIES, SystemClock, read_pair


class Scripted:
    """Clock reads from a script: each monotonic read and each wall read takes the next value."""

    def __init__(self, mono: list[float], wall: list[float]) -> None:
        self._mono: Iterator[float] = iter(mono)
        self._wall: Iterator[float] = iter(wall)

    def monotonic(self) -> float:
        return next(self._mono)

    def time(self) -> float:
        return next(self._wall)


def test_no_pause_takes_the_second_monotonic_read() -> None:
    assert read_pair(Scripted([10.0, 10.00002], [500.0])) == (10.00002, 500.0)  # type: ignore[arg-type]


def test_a_pause_is_read_again() -> None:
    clock = Scripted([10.0, 10.002, 10.003, 10.00301], [500.0015, 500.003])
    assert read_pair(clock) == (10.00301, 500.003)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ["before the wall read", "after the wall read"])
def test_pauses_on_every_try_keep_the_tightest_pair_and_are_never_early(where: str) -> None:
    """Each try pauses 2 ms, one 1 ms; the wall clock runs 500 s ahead of the monotonic one. Whether the
    pause came before or after the wall read, the deadline computed from the pair is not early."""
    gaps = [0.002, 0.001] + [0.002] * (PAIR_TRIES - 2)
    mono, wall, t = [], [], 10.0
    for gap in gaps:
        mono.append(t)
        wall.append(500 + t + (gap if where == "before the wall read" else 0.0))
        mono.append(t + gap)
        t += gap + 0.01
    got_mono, got_wall = read_pair(Scripted(mono, wall))  # type: ignore[arg-type]
    assert got_mono == mono[3] and got_wall == wall[1]
    assert got_wall - got_mono <= 500 + 1e-9  # a slot at wall w is due at mono >= the true instant


def test_the_real_clocks_pair_up() -> None:
    clock = SystemClock()
    mono, wall = read_pair(clock)
    assert abs((time.time() - time.monotonic()) - (wall - mono)) < 0.05
