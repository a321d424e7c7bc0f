"""Interval plans: windows of local time of day in an IANA zone, around DST changes, midnight and
weekdays. Instants are compared by their UTC value (``iso_utc``), never as aware local datetimes."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import reduce
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subminute.errors import ConfigError
from subminute.timing.plan import Plan, Window, parse_plan
from subminute.timing.slots import iso_utc

H, M, S = 3_600_000, 60_000, 1000


def utc(text: str) -> int:
    """``2026-03-08T07:00:00Z`` -> epoch ms."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def local(zone: str, text: str, fold: int = 0) -> int:
    """A local wall-clock time in ``zone`` (``fold=1``: the second pass of a repeated hour) -> epoch ms."""
    naive = datetime.fromisoformat(text)
    return int(naive.replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp() * 1000)


def walk(plan: Plan, after: int, upto: int) -> list[int]:
    """Every slot in ``(after, upto]``, by repeated next_slot."""
    out, slot = [], plan.next_slot(after)
    while slot <= upto:
        out.append(slot)
        slot = plan.next_slot(slot)
    return out


def brute_next(plan: Plan, after: int) -> int:
    """The definition of a slot, checked point by point: the first instant after ``after`` that lies on
    the grid of the interval in force at that instant. Every slot of every interval lies on the grid of
    the intervals' greatest common divisor, so stepping along that grid finds it."""
    step = reduce(math.gcd, [plan.default_ms, *(w.interval_ms for w in plan.windows)])
    off = plan.offset_ms
    s = off + ((after - off) // step + 1) * step
    while (s - off) % plan.interval_at(s):
        s += step
    return s


# -- forms -----------------------------------------------------------------------------------------

PARIS = "tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; 22:00-06:00 every 10s; otherwise every 30s"


def test_text_and_json_forms_give_the_same_plan() -> None:
    text = parse_plan(PARIS)
    from_json = parse_plan(
        '{"tz": "Europe/Paris", "default": "30s", "windows": ['
        '{"days": "mon-fri", "from": "06:00", "to": "20:00", "every": "2s"},'
        '{"from": "22:00", "to": "06:00", "every": 10}]}'
    )
    assert text == from_json
    assert text is not None and text.windows == (
        Window(6 * 3600, 20 * 3600, 2000, frozenset(range(5))),
        Window(22 * 3600, 6 * 3600, 10_000),
    )
    assert text.default_ms == 30_000 and text.tz == "Europe/Paris"


def test_describe_and_to_json_read_back() -> None:
    plan = parse_plan(PARIS)
    assert plan is not None
    assert plan.describe() == PARIS
    assert parse_plan(plan.describe()) == plan
    assert parse_plan(plan.to_json()) == plan
    assert parse_plan(plan.to_dict()) == plan
    assert hash(parse_plan(plan.to_json())) == hash(plan)


@pytest.mark.parametrize(
    ("days", "written"),
    [
        ("mon,tue,wed,thu,fri", "mon-fri"),
        ("sat,sun", "sat,sun"),
        ("sat-sun", "sat,sun"),
        ("fri,sat,sun,mon", "fri-mon"),
        ("mon,wed,fri", "mon,wed,fri"),
        ("mon-sun", "daily"),
        ("Monday-Thursday", "mon-thu"),
        ("wed,sat-mon", "wed,sat-mon"),
        ("sun", "sun"),
        (["mon", "tue", "wed"], "mon-wed"),
    ],
)
def test_weekday_sets_are_written_as_ranges(days: object, written: str) -> None:
    plan = parse_plan(
        {"default": "30s", "windows": [{"days": days, "from": "06:00", "to": "07:00", "every": 2}]}
    )
    assert plan is not None
    assert plan.to_dict()["windows"][0]["days"] == written
    prefix = "" if written == "daily" else written + " "
    assert f"; {prefix}06:00-07:00 every 2s;" in plan.describe()
    assert parse_plan(plan.describe()) == plan


def test_text_form_spellings() -> None:
    plan = parse_plan("TZ = Asia/Kathmandu; Fri-Mon 22:00-06:00 2 s; default 500 ms; offset 250ms")
    assert plan is not None
    assert plan.tz == "Asia/Kathmandu" and plan.default_ms == 500 and plan.offset_ms == 250
    assert plan.windows == (Window(22 * 3600, 6 * 3600, 2000, frozenset({4, 5, 6, 0})),)
    assert (
        plan.describe()
        == "tz=Asia/Kathmandu; fri-mon 22:00-06:00 every 2s; otherwise every 500ms; offset 250ms"
    )


def test_no_plan() -> None:
    assert parse_plan(None) is None
    assert parse_plan("") is None
    assert parse_plan({}) is None
    plan = parse_plan("otherwise every 5s")
    assert parse_plan(plan) is plan
    assert plan is not None and plan.tz == "UTC" and plan.windows == ()


@pytest.mark.parametrize(
    ("value", "field", "shown", "allowed"),
    [
        ("tz=Mars/Olympus; otherwise every 30s", "plan.tz", "'Mars/Olympus'", "IANA time zone"),
        ("tz=../etc/passwd; otherwise every 30s", "plan.tz", "'../etc/passwd'", "IANA time zone"),
        ("06:00-20:00 every 2s", "plan", "'06:00-20:00 every 2s'", "otherwise every 30s"),
        ("otherwise every 0s", "plan.default", "'0s'", "from 0.1 to 86400"),
        ("otherwise", "plan.default", "''", "from 0.1 to 86400"),
        ("25:00-26:00 every 2s; otherwise 30s", "plan.windows[0].from", "'25:00'", "HH:MM"),
        ("06:60-07:00 every 2s; otherwise 30s", "plan.windows[0].from", "'06:60'", "HH:MM"),
        ("06:00-24:30 every 2s; otherwise 30s", "plan.windows[0].to", "'24:30'", "HH:MM"),
        ("funday 06:00-07:00 every 2s; otherwise 30s", "plan.windows[0].days", "'funday'", "mon-fri"),
        ("monkey 06:00-07:00 every 2s; otherwise 30s", "plan.windows[0].days", "'monkey'", "mon-fri"),
        (
            "mon-tue-wed 06:00-07:00 every 2s; otherwise 30s",
            "plan.windows[0].days",
            "'mon-tue-wed'",
            "mon-fri",
        ),
        ("06:00-07:00 every fast; otherwise 30s", "plan.windows[0].every", "'fast'", "from 0.1 to 86400"),
        (
            "06:00-07:00 every 2s; 08:00-09:00 every 25h; otherwise 30s",
            "plan.windows[1].every",
            "'25h'",
            "from 0.1 to 86400",
        ),
        ("at noon every 2s; otherwise 30s", "plan", "'at noon every 2s'", "[days] HH:MM-HH:MM every 2s"),
        ("otherwise 30s; otherwise 1m", "plan", "'otherwise 1m'", "give one 'otherwise"),
        ("otherwise 30s; offset -5s", "plan.offset", "'-5s'", "duration"),
        ('{"default": "30s", "colour": "red"}', "plan.colour", "'red'", "tz, default, windows and offset"),
        ('{"windows": []}', "plan.default", "None", "e.g. 30s"),
        ('{"default": "30s", "windows": {}}', "plan.windows", "{}", "a list of windows"),
        ('{"default": "30s", "windows": ["06:00"]}', "plan.windows[0]", "'06:00'", "from, to and every"),
        (
            '{"default": "30s", "windows": [{"from": "06:00", "to": "07:00"}]}',
            "plan.windows[0].every",
            "None",
            "from, to and every",
        ),
        (
            '{"default": "30s", "windows": [{"from": "06:00", "to": "07:00", "every": 2, "evry": 3}]}',
            "plan.windows[0].evry",
            "3",
            "days, from, to and every",
        ),
        ('{"default": "30s", "tz": 5}', "plan.tz", "5", "IANA time zone"),
        ('{"default": "30s", "offset": "25h"}', "plan.offset", "'25h'", "from 0 to 86399.999"),
        ('{"default": "30s",', "plan", '\'{"default": "30s",\'', "JSON object"),
        (42, "plan", "42", "JSON object"),
        (["otherwise 5s"], "plan", "['otherwise 5s']", "JSON object"),
    ],
)
def test_parse_errors_name_the_part_the_value_and_what_is_allowed(
    value: object, field: str, shown: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_plan(value)
    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith(f"{field}: {shown} is not allowed; ")
    assert allowed in message
    assert "\n" not in message


def test_parse_errors_take_the_callers_field_name() -> None:
    with pytest.raises(ConfigError, match=r"^schedules\.buses\.plan\.tz: 'Nowhere'"):
        parse_plan("tz=Nowhere; otherwise 5s", field="schedules.buses.plan")


# -- what applies when -----------------------------------------------------------------------------


def test_weekday_window_applies_only_on_its_days() -> None:
    plan = parse_plan(PARIS)
    assert plan is not None
    z = "Europe/Paris"
    assert datetime(2026, 11, 16).strftime("%a") == "Mon"
    assert plan.interval_at(local(z, "2026-11-16T06:00:00")) == 2000
    assert plan.interval_at(local(z, "2026-11-16T05:59:59")) == 10_000  # still the night window
    assert plan.interval_at(local(z, "2026-11-20T19:59:59")) == 2000  # friday
    assert plan.interval_at(local(z, "2026-11-20T20:00:00")) == 30_000
    assert plan.interval_at(local(z, "2026-11-21T10:00:00")) == 30_000  # saturday
    assert plan.interval_at(local(z, "2026-11-22T21:59:59")) == 30_000  # sunday evening
    assert plan.interval_at(local(z, "2026-11-22T22:00:00")) == 10_000


def test_weekday_window_segment_spans_the_weekend() -> None:
    plan = parse_plan("tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s")
    assert plan is not None
    friday_evening = local("Europe/Paris", "2026-11-20T20:00:00")
    interval, end = plan.segment(friday_evening)
    assert interval == 30_000
    assert iso_utc(end) == "2026-11-23T05:00:00.000Z"  # monday 06:00 in Paris
    assert plan.next_slot(end - 1) == end
    assert plan.next_slot(end) == end + 2000


def test_weekday_window_wrapping_range() -> None:
    plan = parse_plan("fri-mon 12:00-13:00 every 1s; otherwise every 1m")
    assert plan is not None
    noon = {d: utc(f"2026-11-{d}T12:30:00Z") for d in range(16, 23)}  # mon 16 .. sun 22
    assert [plan.interval_at(noon[d]) for d in range(16, 23)] == [1000, M, M, M, 1000, 1000, 1000]


def test_midnight_wrap_window_covers_both_sides_of_midnight() -> None:
    plan = parse_plan("22:00-06:00 every 2s; otherwise every 1m")
    assert plan is not None
    assert plan.interval_at(utc("2026-11-20T21:59:59.999Z")) == M
    assert plan.interval_at(utc("2026-11-20T22:00:00Z")) == 2000
    assert plan.interval_at(utc("2026-11-20T23:59:59.999Z")) == 2000
    assert plan.interval_at(utc("2026-11-21T00:00:00Z")) == 2000
    assert plan.interval_at(utc("2026-11-21T05:59:59Z")) == 2000
    assert plan.interval_at(utc("2026-11-21T06:00:00Z")) == M
    # slots run straight through midnight on the 2 s grid
    assert iso_utc(plan.next_slot(utc("2026-11-20T23:59:58Z"))) == "2026-11-21T00:00:00.000Z"
    night = walk(plan, utc("2026-11-20T22:00:00Z") - 1, utc("2026-11-21T06:00:00Z") - 1)
    assert len(night) == 8 * 1800
    assert {b - a for a, b in pairwise(night)} == {2000}


def test_midnight_wrap_weekdays_name_the_starting_day() -> None:
    plan = parse_plan("fri 22:00-06:00 every 2s; otherwise every 1m")
    assert plan is not None
    assert datetime(2026, 11, 20).strftime("%a") == "Fri"
    assert plan.interval_at(utc("2026-11-20T23:00:00Z")) == 2000  # friday night
    assert plan.interval_at(utc("2026-11-21T05:59:59Z")) == 2000  # saturday morning: friday's night
    assert plan.interval_at(utc("2026-11-21T23:00:00Z")) == M  # saturday night
    assert plan.interval_at(utc("2026-11-20T05:00:00Z")) == M  # friday morning: thursday's night
    interval, end = plan.segment(utc("2026-11-20T22:00:00Z"))
    assert (interval, iso_utc(end)) == (2000, "2026-11-21T06:00:00.000Z")


def test_midnight_wrap_across_the_spring_gap() -> None:
    """New York, night of 7-8 March 2026: 22:00 EST to 06:00 EDT is 7 hours, not 8."""
    plan = parse_plan("tz=America/New_York; 22:00-06:00 every 2s; otherwise every 1m")
    assert plan is not None
    start, end = local("America/New_York", "2026-03-07T22:00"), local("America/New_York", "2026-03-08T06:00")
    assert end - start == 7 * H
    night = walk(plan, start - 1, end - 1)
    assert len(night) == 7 * 1800
    assert night[0] == start and night[-1] == end - 2000


def test_window_from_equal_to_covers_a_whole_day() -> None:
    plan = parse_plan("wed 10:00-10:00 every 2s; otherwise every 1m")
    assert plan is not None
    assert plan.interval_at(utc("2026-11-18T10:00:00Z")) == 2000  # wednesday 10:00
    assert plan.interval_at(utc("2026-11-19T09:59:59Z")) == 2000  # to thursday 10:00
    assert plan.interval_at(utc("2026-11-19T10:00:00Z")) == M
    assert plan.interval_at(utc("2026-11-18T09:59:59Z")) == M


def test_window_edges_at_whole_seconds_apply_to_the_whole_second() -> None:
    plan = parse_plan("06:00:07-07:00 every 1s; otherwise every 5s")
    assert plan is not None
    edge = utc("2026-11-18T06:00:07Z")
    assert plan.interval_at(edge - 1) == 5000
    assert plan.interval_at(edge) == 1000
    assert plan.interval_at(edge + 999) == 1000
    assert plan.next_slot(edge - 1) == edge


# -- DST -------------------------------------------------------------------------------------------


def test_spring_gap_window_edge_inside_the_gap_takes_effect_at_the_transition() -> None:
    """New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT at 07:00Z. A window from 02:30 opens then."""
    plan = parse_plan("tz=America/New_York; 02:30-03:30 every 2s; otherwise every 30m")
    assert plan is not None
    transition = utc("2026-03-08T07:00:00Z")
    assert plan.interval_at(transition - 1) == 30 * M
    assert plan.interval_at(transition) == 2000
    assert [iso_utc(s) for s in walk(plan, utc("2026-03-08T06:00:00Z"), transition + 4000)] == [
        "2026-03-08T06:30:00.000Z",
        "2026-03-08T07:00:00.000Z",
        "2026-03-08T07:00:02.000Z",
        "2026-03-08T07:00:04.000Z",
    ]
    # the window closes at 03:30 EDT = 07:30Z, after 30 minutes of 2 s slots
    fast = walk(plan, transition - 1, utc("2026-03-08T07:30:00Z") - 1)
    assert len(fast) == 900
    assert iso_utc(plan.next_slot(fast[-1])) == "2026-03-08T07:30:00.000Z"
    assert plan.interval_at(utc("2026-03-08T07:30:00Z")) == 30 * M


def test_spring_gap_window_wholly_inside_the_gap_never_applies() -> None:
    plan = parse_plan("tz=America/New_York; 02:05-02:55 every 2s; otherwise every 5m")
    assert plan is not None
    day_start, day_end = (
        local("America/New_York", "2026-03-08T00:00"),
        local("America/New_York", "2026-03-09T00:00"),
    )
    assert day_end - day_start == 23 * H
    slots = walk(plan, day_start - 1, day_end - 1)
    assert len(slots) == 23 * 12
    assert {plan.interval_at(s) for s in slots} == {5 * M}
    # on an ordinary day it does apply
    assert plan.interval_at(local("America/New_York", "2026-03-09T02:30")) == 2000


def test_spring_gap_hourly_slots_neither_repeat_nor_skip() -> None:
    plan = parse_plan("tz=America/New_York; otherwise every 1h")
    assert plan is not None
    slots = walk(
        plan,
        local("America/New_York", "2026-03-08T00:00") - 1,
        local("America/New_York", "2026-03-09T00:00") - 1,
    )
    assert len(slots) == 23
    assert {b - a for a, b in pairwise(slots)} == {H}
    hours = [datetime.fromtimestamp(s / 1000, ZoneInfo("America/New_York")).hour for s in slots]
    assert 2 not in hours and hours[:4] == [0, 1, 3, 4]


def test_autumn_overlap_window_is_active_in_both_passes() -> None:
    """New York, 1 November 2026: 02:00 EDT falls back to 01:00 EST at 06:00Z; 01:00-01:30 happens twice."""
    plan = parse_plan("tz=America/New_York; 01:00-01:30 every 10m; otherwise every 1h")
    assert plan is not None
    z = "America/New_York"
    assert local(z, "2026-11-01T01:00", fold=0) == utc("2026-11-01T05:00:00Z")
    assert local(z, "2026-11-01T01:00", fold=1) == utc("2026-11-01T06:00:00Z")
    assert [iso_utc(s) for s in walk(plan, utc("2026-11-01T04:30:00Z"), utc("2026-11-01T08:00:00Z"))] == [
        "2026-11-01T05:00:00.000Z",
        "2026-11-01T05:10:00.000Z",
        "2026-11-01T05:20:00.000Z",  # first pass
        "2026-11-01T06:00:00.000Z",
        "2026-11-01T06:10:00.000Z",
        "2026-11-01T06:20:00.000Z",  # second pass
        "2026-11-01T07:00:00.000Z",
        "2026-11-01T08:00:00.000Z",
    ]
    assert plan.interval_at(local(z, "2026-11-01T01:15", fold=0)) == 10 * M
    assert plan.interval_at(local(z, "2026-11-01T01:15", fold=1)) == 10 * M
    assert plan.interval_at(local(z, "2026-11-01T01:45", fold=0)) == H
    assert plan.interval_at(local(z, "2026-11-01T01:45", fold=1)) == H


def test_autumn_overlap_window_edge_inside_the_repeated_hour() -> None:
    """A window from 01:30 opens in the first pass, closes when 01:00 comes again, reopens at 01:30."""
    plan = parse_plan("tz=America/New_York; 01:30-03:00 every 1m; otherwise every 15m")
    assert plan is not None
    assert plan.interval_at(utc("2026-11-01T05:30:00Z")) == M  # 01:30 EDT
    assert plan.interval_at(utc("2026-11-01T06:00:00Z")) == 15 * M  # 01:00 EST
    assert plan.interval_at(utc("2026-11-01T06:29:59Z")) == 15 * M
    assert plan.interval_at(utc("2026-11-01T06:30:00Z")) == M  # 01:30 EST
    assert plan.interval_at(utc("2026-11-01T08:00:00Z")) == 15 * M  # 03:00 EST
    slots = walk(plan, utc("2026-11-01T05:00:00Z") - 1, utc("2026-11-01T08:30:00Z"))
    assert len(slots) == 2 + 30 + 2 + 90 + 3  # 15m, 1m, 15m, 1m, 15m stretches


def test_autumn_overlap_hourly_slots_neither_repeat_nor_skip() -> None:
    plan = parse_plan("tz=America/New_York; otherwise every 1h")
    assert plan is not None
    slots = walk(
        plan,
        local("America/New_York", "2026-11-01T00:00") - 1,
        local("America/New_York", "2026-11-02T00:00") - 1,
    )
    assert len(slots) == 25
    assert {b - a for a, b in pairwise(slots)} == {H}
    assert plan.count_and_last(slots[0] - 1, slots[-1]) == (25, slots[-1])


def test_autumn_overlap_in_europe_covers_the_repeated_hour_twice() -> None:
    """Paris, 25 October 2026: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:00-03:00 lasts two hours."""
    plan = parse_plan("tz=Europe/Paris; 02:00-03:00 every 5s; otherwise every 1m")
    assert plan is not None
    count, last = plan.count_and_last(utc("2026-10-25T00:00:00Z") - 1, utc("2026-10-25T02:00:00Z") - 1)
    assert (count, iso_utc(last or 0)) == (1440, "2026-10-25T01:59:55.000Z")
    assert plan.interval_at(utc("2026-10-25T02:00:00Z")) == M


def test_transition_at_local_midnight() -> None:
    """Santiago leaves DST at 00:00 local (04:00Z->03:00Z of 5 April 2026): 23:00-24:00 happens twice."""
    plan = parse_plan("tz=America/Santiago; 23:00-24:00 every 1m; otherwise every 1h")
    assert plan is not None
    fast = [
        s
        for s in walk(plan, utc("2026-04-05T00:00:00Z"), utc("2026-04-05T06:00:00Z"))
        if plan.interval_at(s) == M
    ]
    assert len(fast) == 120
    assert [brute_next(plan, s) for s in fast[:3]] == fast[1:4]


# -- boundaries ------------------------------------------------------------------------------------


def test_interval_change_at_boundary_no_burst_no_gap() -> None:
    plan = parse_plan("06:00-20:00 every 2s; otherwise every 30s")
    assert plan is not None
    morning = walk(plan, utc("2026-11-18T05:59:00Z") - 1, utc("2026-11-18T06:00:04Z"))
    assert [iso_utc(s)[11:19] for s in morning] == [
        "05:59:00",
        "05:59:30",
        "06:00:00",
        "06:00:02",
        "06:00:04",
    ]
    evening = walk(plan, utc("2026-11-18T19:59:56Z") - 1, utc("2026-11-18T20:01:00Z"))
    assert [iso_utc(s)[11:19] for s in evening] == [
        "19:59:56",
        "19:59:58",
        "20:00:00",
        "20:00:30",
        "20:01:00",
    ]


@pytest.mark.parametrize(("old", "new"), [(5, 7), (7, 5), (30, 0.25), (0.25, 30), (60, 45), (3600, 1)])
def test_interval_change_at_an_unaligned_boundary_no_burst_no_gap(old: float, new: float) -> None:
    """Whatever the intervals, the first slot of the new one is its first grid point at or after the
    boundary: exactly one slot in [boundary, boundary + new), none of the old interval after it."""
    plan = parse_plan(f"06:00:01-23:00 every {new}; otherwise every {old}")
    assert plan is not None
    boundary, old_ms, new_ms = utc("2026-11-18T06:00:01Z"), round(old * 1000), round(new * 1000)
    slots = walk(plan, boundary - 2 * old_ms, boundary + 3 * new_ms)
    before = [s for s in slots if s < boundary]
    after = [s for s in slots if s >= boundary]
    assert before and after
    assert before[-1] > boundary - old_ms - 1  # the old interval ran up to the boundary
    assert boundary <= after[0] < boundary + new_ms  # no gap longer than the new interval
    assert len([s for s in after if s < boundary + new_ms]) == 1  # no burst
    assert all(s % new_ms == 0 for s in after)
    assert all(s % old_ms == 0 for s in before)


def test_boundary_in_odd_offset_zone() -> None:
    """Kathmandu is UTC+05:45: local 06:00 is 00:15Z, which is on the 15-minute grid but not the hourly."""
    plan = parse_plan("tz=Asia/Kathmandu; 06:00-20:00 every 1h; otherwise every 10m")
    assert plan is not None
    boundary = local("Asia/Kathmandu", "2026-11-18T06:00")
    assert iso_utc(boundary) == "2026-11-18T00:15:00.000Z"
    slots = walk(plan, utc("2026-11-18T00:00:00Z") - 1, utc("2026-11-18T02:00:00Z"))
    assert [iso_utc(s)[11:16] for s in slots] == ["00:00", "00:10", "01:00", "02:00"]
    # the window closes at 20:00 local = 14:15Z: the 10 min grid resumes at 14:20Z
    evening = walk(plan, utc("2026-11-18T13:59:00Z"), utc("2026-11-18T14:30:00Z"))
    assert [iso_utc(s)[11:16] for s in evening] == ["14:00", "14:20", "14:30"]
    quarter = parse_plan("tz=Asia/Kathmandu; 06:00-20:00 every 15m; otherwise every 1h")
    assert quarter is not None
    assert quarter.next_slot(boundary - 1) == boundary


def test_offset_shifts_every_grid() -> None:
    plan = parse_plan("06:00-20:00 every 2s; otherwise every 30s; offset 250ms")
    assert plan is not None
    slots = walk(plan, utc("2026-11-18T05:59:00Z"), utc("2026-11-18T06:00:03Z"))
    assert [iso_utc(s)[11:23] for s in slots] == [
        "05:59:00.250",
        "05:59:30.250",
        "06:00:00.250",
        "06:00:02.250",
    ]


# -- agreement, drift, consistency -----------------------------------------------------------------


def test_all_processes_agree_on_slots() -> None:
    """Two processes parse the same plan and start at different moments (and with different look-up
    caches): from the later start on they compute the very same slots."""
    text = "tz=America/New_York; mon-fri 06:00-20:00 every 2s; 22:00-06:00 every 10s; otherwise every 30s"
    a, b = parse_plan(text), parse_plan(text)
    assert a is not None and b is not None
    b.next_slot(utc("2026-12-25T00:00:00Z"))  # b's cache now holds a later stretch
    seq_a = walk(a, utc("2026-03-07T12:00:00Z"), utc("2026-03-08T12:00:00Z"))
    start_b = utc("2026-03-08T03:17:41.123Z")
    seq_b = walk(b, start_b, utc("2026-03-08T12:00:00Z"))
    assert seq_b == [s for s in seq_a if s > start_b]
    assert all(s % 2000 == 0 for s in seq_a)


def test_no_drift_over_a_year_of_slots() -> None:
    """A year of a weekday plan in New York, each slot from the previous one: every slot stays on its grid
    (two DST changes included), and the count matches the closed form."""
    plan = parse_plan("tz=America/New_York; mon-fri 07:00-09:00 every 1m; otherwise every 1h")
    assert plan is not None
    start, end = utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z")
    slots = walk(plan, start - 1, end - 1)
    assert all(b > a for a, b in pairwise(slots))
    assert all(s % plan.interval_at(s) == 0 for s in slots)
    weekdays = sum(1 for d in range(365) if (datetime(2026, 1, 1) + timedelta(days=d)).weekday() < 5)
    # a weekday has 22 hourly slots outside the window (both window edges are on the hour) + 120 minutes
    assert len(slots) == 365 * 24 - 1 + 1 - weekdays * 2 + weekdays * 120  # -1 spring gap hour, +1 autumn
    assert plan.count_and_last(start - 1, end - 1) == (len(slots), slots[-1])


def test_segment_cache_does_not_leak_between_queries() -> None:
    plan = parse_plan("06:00-20:00 every 2s; otherwise every 30s")
    assert plan is not None
    late = plan.next_slot(utc("2026-11-18T12:00:00Z"))
    early = plan.next_slot(utc("2026-11-18T05:00:00.5Z"))
    again = plan.next_slot(utc("2026-11-18T12:00:00Z"))
    assert (iso_utc(late)[11:19], iso_utc(early)[11:19], again) == ("12:00:02", "05:00:30", late)
    assert plan.interval_at(utc("2026-11-18T05:00:00Z")) == 30_000
    assert plan.interval_at(utc("2026-11-18T12:00:00Z")) == 2000


# -- properties over many plans --------------------------------------------------------------------

TRANSITIONS = {  # the zone's UTC-offset changes in 2026 (or, with none, an ordinary midnight)
    "UTC": ["2026-11-18T00:00:00Z"],
    "Asia/Kathmandu": ["2026-11-17T18:15:00Z"],
    "America/New_York": ["2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"],
    "Europe/Paris": ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"],
    "Australia/Lord_Howe": ["2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z"],  # a 30 min DST shift
    "America/St_Johns": ["2026-03-08T05:30:00Z", "2026-11-01T04:30:00Z"],
    "America/Santiago": ["2026-04-05T03:00:00Z", "2026-09-06T04:00:00Z"],  # at local midnight
    "Pacific/Chatham": ["2026-04-04T14:00:00Z", "2026-09-26T14:00:00Z"],  # +12:45 / +13:45
}
INTERVALS_MS = [1000, 2000, 3000, 5000, 15_000, 60_000, 600_000]


@st.composite
def plans_near_a_transition(draw: st.DrawFn) -> tuple[Plan, int]:
    """A random plan in a zone, and an instant within 3 hours of one of the zone's offset changes. Many
    window edges fall near the local time of the change, where the gap and the overlap are."""
    zone = draw(st.sampled_from(sorted(TRANSITIONS)))
    transition = utc(draw(st.sampled_from(TRANSITIONS[zone])))
    before = datetime.fromtimestamp(transition / 1000 - 1, ZoneInfo(zone))
    wall = (before.hour * 3600 + before.minute * 60 + before.second + 1) % 86_400
    times = st.one_of(
        st.integers(-8, 8).map(lambda q: (wall + q * 900) % 86_400),
        st.integers(0, 96).map(lambda q: q * 900),
        st.integers(0, 86_400),
    )
    windows = tuple(
        Window(
            draw(times),
            draw(times),
            draw(st.sampled_from(INTERVALS_MS)),
            frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    plan = Plan(zone, windows, draw(st.sampled_from(INTERVALS_MS)), draw(st.sampled_from([0, 0, 250, 1000])))
    return plan, transition + draw(st.integers(-3 * H, 3 * H))


FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=plans_near_a_transition())
def test_next_slot_is_the_first_instant_on_the_grid_of_its_own_interval(case: tuple[Plan, int]) -> None:
    """Walk up to 40 slots from a random instant near a DST change; each is checked point by point."""
    plan, after = case
    for _ in range(40):
        slot = plan.next_slot(after)
        assert slot == brute_next(plan, after)
        after = slot


@FAST
@given(case=plans_near_a_transition(), span=st.integers(0, 2 * H))
def test_count_and_last_agrees_with_repeated_next_slot(case: tuple[Plan, int], span: int) -> None:
    plan, after = case
    slots = walk(plan, after, after + span)
    assert all(b > a for a, b in pairwise(slots))
    assert all((s - plan.offset_ms) % plan.interval_at(s) == 0 for s in slots)
    fresh = Plan(plan.tz, plan.windows, plan.default_ms, plan.offset_ms)  # a cold cache, another process
    assert fresh.count_and_last(after, after + span) == (len(slots), slots[-1] if slots else None)
    # no slot is skipped: between two consecutive slots there is no instant on its own grid
    for a, b in pairwise(slots[:51]):
        assert brute_next(fresh, a) == b


@settings(max_examples=100, deadline=None)
@given(case=plans_near_a_transition())
def test_text_and_json_forms_read_back(case: tuple[Plan, int]) -> None:
    plan, _ = case
    assert parse_plan(plan.describe()) == plan
    assert parse_plan(plan.to_json()) == plan
    assert parse_plan(plan.describe()).windows == plan.windows  # type: ignore[union-attr]
