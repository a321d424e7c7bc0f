"""Slots on the epoch-aligned grid, durations, and their text forms. Pure integer arithmetic, no clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subminute.errors import ConfigError
from subminute.timing.durations import (
    MAX_INTERVAL_MS,
    MIN_INTERVAL_MS,
    format_ms,
    parse_duration_ms,
    parse_interval_ms,
)
from subminute.timing.slots import Every, iso_utc, next_grid_slot

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, an arbitrary instant in ms
YEAR_MS = 365 * 86_400_000

intervals = st.integers(MIN_INTERVAL_MS, MAX_INTERVAL_MS)
instants = st.integers(0, 4_000_000_000_000)


# -- the grid ---------------------------------------------------------------------------------------------


def test_next_grid_slot_is_strictly_after_and_on_the_grid() -> None:
    assert next_grid_slot(0, 5000) == 5000
    assert next_grid_slot(4999, 5000) == 5000
    assert next_grid_slot(5000, 5000) == 10_000  # strictly after: a slot is never returned twice
    assert next_grid_slot(5000, 5000, 250) == 5250
    assert next_grid_slot(5250, 5000, 250) == 10_250
    assert next_grid_slot(-1, 1000) == 0  # before the epoch: floor division, not truncation


@given(after=instants, interval=intervals, offset=st.integers(0, MAX_INTERVAL_MS - 1))
def test_next_grid_slot_is_the_first_grid_point_after(after: int, interval: int, offset: int) -> None:
    slot = next_grid_slot(after, interval, offset)
    assert after < slot <= after + interval
    assert (slot - offset) % interval == 0


def test_every_5s_fires_on_the_utc_five_second_marks() -> None:
    every = Every(5000)
    after = T0 + 1234  # 08:00:01.234Z
    got = [every.next_slot(after)]
    for _ in range(3):
        got.append(every.next_slot(got[-1]))
    assert [iso_utc(s) for s in got] == [
        "2027-01-15T08:00:05.000Z",
        "2027-01-15T08:00:10.000Z",
        "2027-01-15T08:00:15.000Z",
        "2027-01-15T08:00:20.000Z",
    ]


def test_all_processes_agree_on_slots() -> None:
    """Two processes that start at different moments compute the same slots (epoch alignment)."""
    a, b = Every(2500, 100), Every(2500, 100)
    seq_a = [a.next_slot(T0 + 17)]
    seq_b = [b.next_slot(T0 + 9_999)]
    while len(seq_a) < 20:
        seq_a.append(a.next_slot(seq_a[-1]))
        seq_b.append(b.next_slot(seq_b[-1]))
    common = sorted(set(seq_a) & set(seq_b))
    assert len(common) >= 15
    assert seq_b[: len(common)] == common


def test_no_drift_over_a_year_of_slots() -> None:
    """A year of 5-minute slots, each from the previous one: the last is exactly start + n * interval."""
    every = Every(300_000, 7)
    start = every.next_slot(T0)
    slot, n = start, 0
    while slot < start + YEAR_MS:
        nxt = every.next_slot(slot)
        assert nxt - slot == 300_000
        slot, n = nxt, n + 1
    assert n == YEAR_MS // 300_000
    assert slot == start + n * 300_000
    assert (slot - 7) % 300_000 == 0
    # the closed form agrees with the walk
    assert every.count_and_last(start - 1, slot) == (n + 1, slot)


def test_no_drift_at_the_fastest_interval() -> None:
    """0.1 s given as a float is 100 integer ms; 100 000 steps land exactly 10 000 s later."""
    every = Every(parse_interval_ms(0.1))
    slot = every.next_slot(T0)
    first = slot
    for _ in range(100_000):
        slot = every.next_slot(slot)
    assert slot - first == 10_000_000
    assert every.count_and_last(T0, T0 + YEAR_MS) == (YEAR_MS // 100, T0 + YEAR_MS)


@settings(max_examples=200)
@given(interval=intervals, offset=st.integers(0, 10_000), after=instants, span=st.integers(0, 2_000_000))
def test_count_and_last_agrees_with_repeated_next_slot(
    interval: int, offset: int, after: int, span: int
) -> None:
    every = Every(interval, offset)
    upto = after + span
    walked, slot = [], every.next_slot(after)
    while slot <= upto and len(walked) < 25_000:
        walked.append(slot)
        slot = every.next_slot(slot)
    count, last = every.count_and_last(after, upto)
    assert count == len(walked)
    assert last == (walked[-1] if walked else None)


def test_count_and_last_of_an_empty_range() -> None:
    every = Every(1000)
    assert every.count_and_last(T0, T0) == (0, None)
    assert every.count_and_last(T0, T0 + 999) == (0, None)
    assert every.count_and_last(T0 - 1, T0) == (1, T0)
    assert every.count_and_last(T0, T0 - 5000) == (0, None)


def test_every_describes_itself() -> None:
    assert Every(5000).describe() == "every 5s"
    assert Every(500, 250).describe() == "every 500ms offset 250ms"
    assert Every(90_000).interval_at(T0) == 90_000


# -- durations ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (5, 5000),
        (0.5, 500),
        (0.1, 100),
        (86400, 86_400_000),
        ("2", 2000),
        ("2s", 2000),
        ("500ms", 500),
        ("500 ms", 500),
        ("1.5s", 1500),
        ("5m", 300_000),
        ("5min", 300_000),
        ("1h", 3_600_000),
        ("2 SEC", 2000),
        (" .25s ", 250),
        (0.1 + 0.2, 300),
    ],
)
def test_parse_duration_forms(value: object, ms: int) -> None:
    assert parse_duration_ms(value, "waitseconds") == ms


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        "",
        "abc",
        "5 days",
        "-1",
        "1e3",
        "2s2",
        [5],
        {"s": 5},
        math.nan,
        math.inf,
        -math.inf,
    ],
)
def test_parse_duration_rejects_bad_values_on_one_line(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration_ms(value, "timeout")
    message = str(caught.value)
    assert message.startswith("timeout: ")
    assert repr(value)[:20] in message
    assert "use a number of seconds from 0 to " in message  # the field's range, before any rounding
    assert "\n" not in message


@pytest.mark.parametrize(("value", "low", "high", "rule"), [
    (0.0995, 100, 86_400_000, "from 0.1 to 86400"),  # not rounded up into range
    ("99.5ms", 100, 86_400_000, "from 0.1 to 86400"),
    (0.0005, 0, 86_399_999, "whole milliseconds"),  # not rounded down to nothing
    ("1.0001s", 0, 10_000, "whole milliseconds"),
    ("2m", 0, 60_000, "from 0 to 60"),
])
def test_the_range_is_checked_on_the_exact_value(value: object, low: int, high: int, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        parse_duration_ms(value, "x", low_ms=low, high_ms=high)


@pytest.mark.parametrize("value", [0, 0.05, "99ms", -1, 86_401, "25h", 0.0])
def test_parse_interval_rejects_out_of_range(value: object) -> None:
    with pytest.raises(
        ConfigError, match=r"^waitseconds: .* is not allowed; use a number of seconds from 0.1"
    ):
        parse_interval_ms(value)


def test_parse_interval_accepts_the_bounds() -> None:
    assert parse_interval_ms(0.1) == MIN_INTERVAL_MS
    assert parse_interval_ms("24h") == MAX_INTERVAL_MS
    assert parse_interval_ms("100ms", "plan.default") == 100


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (250, "250ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (90_000, "90s"),
        (300_000, "5m"),
        (3_600_000, "1h"),
        (5_400_000, "90m"),
        (1_234_567, "1234.567s"),
        (86_399_999, "86399.999s"),
    ],
)
def test_format_ms(ms: int, text: str) -> None:
    assert format_ms(ms) == text


@given(ms=st.integers(1, MAX_INTERVAL_MS))
def test_format_ms_reads_back_exactly(ms: int) -> None:
    assert parse_duration_ms(format_ms(ms), "x") == ms


def test_iso_utc() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(T0 + 5_007) == "2027-01-15T08:00:05.007Z"
    assert iso_utc(-1) == "1969-12-31T23:59:59.999Z"


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_iso_utc_is_the_iso_text_of_the_instant(ms: int) -> None:
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert iso_utc(ms) == instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_iso_utc_outside_the_years_1_to_9999_says_so() -> None:
    with pytest.raises(ValueError, match="outside the years 1-9999"):
        iso_utc(253_402_300_800_000)
