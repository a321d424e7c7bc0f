"""Control rows: parse_row, schedule_from_row and normalize_row, the one parser every backend shares."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subminute.control.rows import (
    DEFAULT_GRACE_MS,
    DEFAULT_TIMEOUT_S,
    ROW_FIELDS,
    normalize_row,
    parse_row,
    plain,
    schedule_from_row,
)
from subminute.errors import ConfigError
from subminute.timing.plan import Plan, parse_plan
from subminute.timing.slots import Every

AWS_SAMPLE_ROW = '{"id":1,"running":true,"waitseconds":5}'


def test_the_aws_samples_row() -> None:
    schedule = parse_row(json.loads(AWS_SAMPLE_ROW))
    assert schedule.id == 1 and schedule.name == "default" and schedule.running
    assert schedule.timetable == Every(5000)
    assert schedule.waitseconds == 5
    assert schedule.error is None
    assert normalize_row(json.loads(AWS_SAMPLE_ROW)) == {
        "id": 1,
        "name": "default",
        "running": True,
        "waitseconds": 5,
    }


def test_the_aws_samples_row_as_dynamodb_returns_it() -> None:
    """boto3's resource layer gives numbers as Decimal."""
    row = {"id": Decimal("1"), "running": True, "waitseconds": Decimal("5")}
    assert parse_row(row) == parse_row(json.loads(AWS_SAMPLE_ROW))
    assert normalize_row(row) == {"id": 1, "name": "default", "running": True, "waitseconds": 5}
    assert type(normalize_row(row)["waitseconds"]) is int


def test_defaults() -> None:
    schedule = parse_row({"id": 7})
    assert schedule.name == "schedule-7"
    assert schedule.running is True
    assert schedule.timetable == Every(5000)
    assert schedule.target is None
    assert schedule.overlap == "allow"
    assert schedule.timeout_s == DEFAULT_TIMEOUT_S
    assert schedule.grace_ms == DEFAULT_GRACE_MS
    assert normalize_row({"id": 7}) == {"id": 7, "name": "schedule-7", "running": True, "waitseconds": 5}


def test_a_full_row() -> None:
    row = {
        "id": 2,
        "name": "buses",
        "running": "yes",
        "waitseconds": "500ms",
        "target": {"type": "http", "url": "http://127.0.0.1:8080/predictions"},
        "overlap": "skip",
        "timeout": "2s",
        "offset": 0.25,
        "grace": 0,
    }
    schedule = parse_row(row)
    assert schedule.timetable == Every(500, 250)
    assert schedule.target == {"type": "http", "url": "http://127.0.0.1:8080/predictions"}
    assert (schedule.overlap, schedule.timeout_s, schedule.grace_ms) == ("skip", 2.0, 0)
    normal = normalize_row(row)
    assert normal == {
        "id": 2,
        "name": "buses",
        "running": True,
        "waitseconds": 0.5,
        "target": '{"type":"http","url":"http://127.0.0.1:8080/predictions"}',
        "overlap": "skip",
        "timeout": "2s",
        "offset": 0.25,
        "grace": 0,
    }
    assert parse_row(normal) == schedule


def test_decimal_numbers_everywhere() -> None:
    """A DynamoDB row keeps a plan or a target as a map: its numbers are Decimals too, at any depth."""
    row = {
        "id": Decimal("3"),
        "running": Decimal("1"),
        "waitseconds": Decimal("0.5"),
        "target": {
            "type": "http",
            "url": "http://x/",
            "expect": [Decimal("200"), Decimal("204")],
            "timeout": Decimal("2.5"),
        },
        "timeout": Decimal("5"),
        "offset": Decimal("0.1"),
        "grace": Decimal("1.5"),
    }
    schedule = parse_row(row)
    assert schedule.running is True
    assert schedule.timetable == Every(500, 100)
    assert schedule.target == {"type": "http", "url": "http://x/", "expect": [200, 204], "timeout": 2.5}
    assert (schedule.timeout_s, schedule.grace_ms) == (5.0, 1500)
    normal = normalize_row(row)
    assert json.loads(normal["target"])["expect"] == [200, 204]
    assert normal["offset"] == 0.1 and normal["timeout"] == 5
    plan_row = {
        "id": 4,
        "plan": {
            "tz": "UTC",
            "default": Decimal("30"),
            "windows": [{"from": "06:00", "to": "20:00", "every": Decimal("2")}],
        },
    }
    assert parse_row(plan_row).timetable == parse_plan("06:00-20:00 every 2s; otherwise every 30s")


def test_plain() -> None:
    assert plain(Decimal("5")) == 5 and type(plain(Decimal("5"))) is int
    assert plain(Decimal("0.5")) == 0.5
    assert plain({"a": [Decimal("1"), {"b": Decimal("2.5")}]}) == {"a": [1, {"b": 2.5}]}
    assert plain(Decimal("Infinity")) == float("inf")
    assert plain("text") == "text" and plain(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (Decimal("0"), False),
        ("yes", True),
        ("NO", False),
        (" true ", True),
        ("0", False),
    ],
)
def test_running_spellings(value: object, expected: bool) -> None:
    assert parse_row({"id": 5, "running": value}).running is expected


def test_id_forms() -> None:
    assert parse_row({"id": "12"}).id == 12
    assert parse_row({"id": Decimal("12")}).id == 12


def test_plan_rows() -> None:
    text = "tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s"
    schedule = parse_row({"id": 2, "plan": text, "waitseconds": 5})
    assert isinstance(schedule.timetable, Plan)
    assert schedule.waitseconds == 30  # a plan's default interval is the row's interval
    normal = normalize_row({"id": 2, "plan": text})
    assert normal["plan"] == schedule.timetable.to_json()
    assert normal["waitseconds"] == 30
    assert parse_row(normal) == schedule


def test_a_rows_offset_shifts_its_plan() -> None:
    schedule = parse_row({"id": 2, "plan": "otherwise every 1m", "offset": 15})
    assert isinstance(schedule.timetable, Plan) and schedule.timetable.offset_ms == 15_000
    assert parse_row(normalize_row({"id": 2, "plan": "otherwise every 1m", "offset": 15})) == schedule
    with pytest.raises(
        ConfigError, match=r"^schedule 2: offset: 10 is not allowed; the plan has its own offset"
    ):
        parse_row({"id": 2, "plan": "otherwise every 1m; offset 15s", "offset": 10})


def test_null_fields_are_absent_ones() -> None:
    row = {
        "id": 3,
        "name": None,
        "running": None,
        "waitseconds": None,
        "plan": None,
        "target": None,
        "overlap": None,
        "timeout": None,
        "offset": None,
        "grace": None,
    }
    assert parse_row(row) == parse_row({"id": 3})


def test_private_fields_are_ignored() -> None:
    assert parse_row({"id": 3, "_updated_at": 1.5}) == parse_row({"id": 3})


def test_timing_key_follows_the_timing_only() -> None:
    a = parse_row({"id": 3, "waitseconds": 5})
    assert (
        a.timing_key() == parse_row({"id": 3, "waitseconds": 5, "name": "x", "overlap": "skip"}).timing_key()
    )
    assert a.timing_key() != parse_row({"id": 3, "waitseconds": 2}).timing_key()
    assert a.timing_key() != parse_row({"id": 3, "waitseconds": 5, "offset": 1}).timing_key()
    assert a.timing_key() != parse_row({"id": 3, "plan": "otherwise every 5s"}).timing_key()


BAD_FIELDS: list[tuple[dict[str, Any], str, str]] = [
    ({"name": 5}, "name: 5", "1 to 100 printable characters"),
    ({"name": "x" * 101}, "name: 'xxxx", "1 to 100 printable characters"),
    ({"name": "\x1b[2J\x1b]0;pwned\x07"}, "name: '\\x1b[2J", "without control characters"),
    ({"name": " padded"}, "name: ' padded'", "surrounding spaces"),
    ({"name": "42"}, "name: '42'", "not a number (numbers are ids)"),
    ({"target": {"type": "http", "url": "http://x/" + "a" * 9000}}, "target: '", "under 8192 bytes"),
    ({"waitseconds": 0.0995}, "waitseconds: 0.0995", "from 0.1 to 86400"),
    ({"offset": 0.0005}, "offset: 0.0005", "whole milliseconds"),
    ({"running": "maybe"}, "running: 'maybe'", "use true or false"),
    ({"running": 2}, "running: 2", "use true or false"),
    ({"running": []}, "running: []", "use true or false"),
    ({"waitseconds": 0}, "waitseconds: 0", "from 0.1 to 86400"),
    ({"waitseconds": -1}, "waitseconds: -1", "from 0.1 to 86400"),
    ({"waitseconds": 86_401}, "waitseconds: 86401", "from 0.1 to 86400"),
    ({"waitseconds": "fast"}, "waitseconds: 'fast'", "from 0.1 to 86400"),
    ({"waitseconds": True}, "waitseconds: True", "from 0.1 to 86400"),
    ({"waitseconds": Decimal("0.05")}, "waitseconds: 0.05", "from 0.1 to 86400"),
    ({"plan": "tz=Nowhere; otherwise 5s"}, "plan.tz: 'Nowhere'", "IANA time zone"),
    ({"plan": "every now and then"}, "plan: 'every now and then'", "HH:MM-HH:MM"),
    ({"plan": 5}, "plan: 5", "JSON object with tz, default and windows"),
    ({"target": "not json"}, "target: 'not json'", "JSON object"),
    ({"target": [1]}, "target: [1]", "JSON object"),
    ({"target": {"url": "http://x/"}}, "target.type: None", "name the target type"),
    ({"target": '{"type": ""}'}, "target.type: ''", "name the target type"),
    ({"overlap": "sometimes"}, "overlap: 'sometimes'", "use allow or skip"),
    ({"overlap": 5}, "overlap: 5", "use allow or skip"),
    ({"overlap": 0}, "overlap: 0", "use allow or skip"),  # falsy values were taken as allow
    ({"overlap": False}, "overlap: False", "use allow or skip"),
    ({"overlap": []}, "overlap: []", "use allow or skip"),
    ({"overlap": {}}, "overlap: {}", "use allow or skip"),
    ({"name": 0}, "name: 0", "printable characters"),  # falsy names were taken as the default name
    ({"name": False}, "name: False", "printable characters"),
    ({"name": []}, "name: []", "printable characters"),
    ({"timeout": 0}, "timeout: 0", "from 0.01 to 3600"),
    ({"timeout": 3601}, "timeout: 3601", "from 0.01 to 3600"),
    ({"timeout": "soon"}, "timeout: 'soon'", "from 0.01 to 3600"),
    ({"offset": -1}, "offset: -1", "from 0 to 86399.999"),
    ({"offset": "1d"}, "offset: '1d'", "from 0 to 86399.999"),
    ({"offset": 86_400}, "offset: 86400", "from 0 to 86399.999"),
    ({"grace": -0.5}, "grace: -0.5", "from 0 to 3600"),
    ({"grace": "x"}, "grace: 'x'", "from 0 to 3600"),
    ({"colour": "red"}, "colour: 'red'", "use only the fields id, name, running, waitseconds, plan"),
]


@pytest.mark.parametrize(
    ("fields", "shown", "allowed"),
    BAD_FIELDS,
    ids=[f"{next(iter(f))}-{i}" for i, (f, _, _) in enumerate(BAD_FIELDS)],
)
def test_a_bad_field_gives_one_line_naming_schedule_field_value_and_what_is_allowed(
    fields: dict[str, Any], shown: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_row({"id": 3, **fields})
    message = str(caught.value)
    assert message.startswith(f"schedule 3: {shown}")
    assert " is not allowed; " in message
    assert allowed in message
    assert "\n" not in message


@pytest.mark.parametrize("value", [0, -1, 1.5, "abc", True, Decimal("2.5"), [1], 2**31, 99999999999999999999,
                                   "99999999999999999999"])
def test_a_bad_id(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^id: .* is not allowed; use a whole number from 1 to 2147483647"):
        parse_row({"id": value})


def test_a_missing_id_or_a_row_that_is_no_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^id: None is not allowed; every row needs a numeric id$"):
        parse_row({"running": True})
    with pytest.raises(ConfigError, match=r"^row: \[1, 2\] is not allowed; use a mapping"):
        parse_row([1, 2])  # type: ignore[arg-type]


def test_a_bad_row_becomes_a_disabled_schedule_carrying_its_error() -> None:
    schedule = schedule_from_row({"id": 4, "name": "buses", "running": True, "waitseconds": 0})
    assert (schedule.id, schedule.name, schedule.running) == (4, "buses", False)
    assert schedule.error is not None and schedule.error.startswith(
        "schedule 4: waitseconds: 0 is not allowed"
    )
    nameless = schedule_from_row({"id": 5, "overlap": "never"})
    assert (nameless.id, nameless.name, nameless.running) == (5, "schedule-5", False)
    no_id = schedule_from_row({"id": "x", "name": 5})
    assert (no_id.id, no_id.name, no_id.running) == (0, "schedule-0", False)
    assert no_id.error == "id: 'x' is not allowed; use a whole number from 1 to 2147483647 (1 is the default schedule)"
    not_a_row = schedule_from_row("garbage")  # type: ignore[arg-type]
    assert not_a_row.id == 0 and not not_a_row.running and not_a_row.error


def test_a_good_row_parses_the_same_either_way() -> None:
    row = {"id": 9, "waitseconds": 2, "overlap": "skip"}
    assert schedule_from_row(row) == parse_row(row)
    assert schedule_from_row(row).error is None


# -- normalize_row is canonical: a second pass changes nothing ----------------------------------------------

valid_rows = st.fixed_dictionaries(
    {"id": st.integers(1, 10_000)},
    optional={
        "name": st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs")), min_size=0, max_size=20)
        .filter(lambda n: n.isprintable() and not n.isdigit()),
        "running": st.sampled_from([True, False, 1, 0, "yes", "no", Decimal("1")]),
        "waitseconds": st.one_of(
            st.integers(1, 86_400), st.sampled_from([0.1, 0.25, 1.5, "500ms", "2s", "5m", Decimal("0.5")])
        ),
        "plan": st.sampled_from(
            [
                None,
                "otherwise every 30s",
                "tz=Asia/Kathmandu; sat,sun 22:00-06:00 every 2s; otherwise every 1m",
            ]
        ),
        "target": st.sampled_from([None, {"type": "noop"}, '{"type":"http","url":"http://127.0.0.1/"}']),
        "overlap": st.sampled_from(["allow", "skip", None]),
        "timeout": st.sampled_from([0.5, 10, "3s", Decimal("2.5")]),
        "offset": st.sampled_from([0, 0.25, "1s"]),
        "grace": st.sampled_from([0, 2, "500ms"]),
    },
)


@given(valid_rows)
def test_normalize_row_is_idempotent_and_keeps_the_meaning(row: dict[str, Any]) -> None:
    normal = normalize_row(row)
    assert set(normal) <= set(ROW_FIELDS)
    assert normalize_row(normal) == normal
    assert parse_row(normal) == parse_row(row)
    json.dumps(normal)  # storable as it is: no Decimal, no nested objects
    assert all(not isinstance(v, (dict, list, Decimal)) for v in normal.values())
