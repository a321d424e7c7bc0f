"""Property-based tests (hypothesis) of the two parsers that take hand-written input: control rows and
interval plans. Whatever the input, they return a value or raise ConfigError naming the field; they never
crash, and what they accept survives a round trip through the stored form."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subminute.control.rows import ROW_FIELDS, normalize_row, parse_row, schedule_from_row
from subminute.errors import ConfigError
from subminute.timing.plan import Plan, parse_plan

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**15, 10**15), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["1", "0.5", "2s", "500ms", "5m", "1h", "true", "skip", "allow", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)
field_names = st.sampled_from([*ROW_FIELDS, "colour", "_meta"])
rows = st.dictionaries(field_names, values, max_size=8)

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo"]
DAYS = ["mon-fri", "sat,sun", "daily", "tue", "fri-mon", None]
durations = st.sampled_from(["100ms", "250ms", "1s", "2s", "5s", "30s", "1m", "5m", "1h"])
times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
windows = st.builds(lambda d, a, b, e: {"days": d, "from": a, "to": b, "every": e},
                    st.sampled_from(DAYS), times, times, durations).filter(lambda w: w["from"] != w["to"])
plans = st.builds(lambda tz, ws, default: {"tz": tz, "windows": ws, "default": default},
                  st.sampled_from(ZONES), st.lists(windows, max_size=3), durations)


def _named_field(exc: ConfigError) -> bool:
    return bool(exc.field) and f"{exc.field}:" in str(exc)


@SETTINGS
@given(st.integers(1, 10**6), rows)
def test_a_row_parses_or_names_its_bad_field(sid: int, raw: dict[str, Any]) -> None:
    raw = {**raw, "id": sid}
    try:
        schedule = parse_row(raw)
    except ConfigError as exc:
        assert _named_field(exc) and f"schedule {sid}" in str(exc)
        disabled = schedule_from_row(raw)
        assert disabled.error == str(exc) and not disabled.running and disabled.id == sid
        return
    assert schedule.id == sid
    assert 100 <= schedule.timetable.interval_at(1_800_000_000_000) <= 86_400_000
    again = parse_row(normalize_row(raw))  # the stored form means the same schedule
    assert again.timing_key() == schedule.timing_key()
    assert (again.running, again.target, again.overlap, again.grace_ms) == \
        (schedule.running, schedule.target, schedule.overlap, schedule.grace_ms)


@SETTINGS
@given(values)
def test_anything_at_all_becomes_a_schedule_or_a_disabled_one(raw: Any) -> None:
    schedule = schedule_from_row(raw)  # never raises
    assert schedule.error is not None or schedule.running in (True, False)


@SETTINGS
@given(st.one_of(st.floats(), st.integers(-10**12, 10**12), st.sampled_from([1e306, 1.7e308, -1e306])))
def test_waitseconds_is_accepted_exactly_in_range(wait: float) -> None:
    ms = wait * 1000  # checked exactly: in range before any rounding, and whole milliseconds
    ok = math.isfinite(ms) and 100 - 1e-6 <= ms <= 86_400_000 + 1e-6 and abs(ms - round(ms)) <= 1e-6
    try:
        schedule = parse_row({"id": 3, "waitseconds": wait})
    except ConfigError as exc:
        assert not ok and exc.field == "waitseconds" and "schedule 3" in str(exc)
    else:
        assert ok and schedule.timetable.interval_at(0) == round(wait * 1000)


@SETTINGS
@given(st.text(max_size=120))
def test_any_plan_text_parses_or_says_why(text: str) -> None:
    try:
        plan = parse_plan(text)
    except ConfigError as exc:
        assert exc.field.startswith("plan")
        return
    assert plan is None or isinstance(plan, Plan)


@SETTINGS
@given(plans, st.integers(1_700_000_000_000, 1_900_000_000_000))
def test_plans_round_trip_and_their_slots_are_consistent(data: dict[str, Any], t: int) -> None:
    plan = parse_plan(data)
    assert plan is not None
    assert parse_plan(plan.to_json()) == plan
    slot = plan.next_slot(t)
    assert t < slot <= t + 86_400_000  # never stuck, never further than the longest interval
    assert slot % plan.interval_at(slot) == plan.offset_ms % plan.interval_at(slot)  # on its interval's grid
    after = plan.next_slot(slot)
    count, last = plan.count_and_last(t, after)  # (t, after] holds exactly slot and after
    assert (count, last) == (2, after)
