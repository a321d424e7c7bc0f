"""Control rows: the one parser and checker of the rows every backend stores and every way in writes
(``add``, ``set``, a TOML file, a row written by hand, ``aws set``).

A control row is a plain mapping, the same in SQLite and DynamoDB::

    {"id": 1, "running": True, "waitseconds": 5}                 # a row of the original AWS sample
    {"id": 2, "name": "buses", "running": True, "waitseconds": 2,
     "plan": "tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s",
     "target": {"type": "http", "url": "http://127.0.0.1:8080/predictions"},
     "overlap": "skip", "timeout": 5, "offset": 0, "grace": 2}

Only ``id`` is required; the rest has defaults. With a ``plan``, ``waitseconds`` is the plan's default
interval (kept in the row for readers of the original sample's table). A row that does not parse becomes
a disabled :class:`Schedule` whose ``error`` says why, so one bad row never stops the others. Limits (a
row is read on every change, and its timing is computed on the controller's path): a name of at most
100 printable characters that is not a number, a target of at most 8 KB as JSON nested at most 32 levels
deep, a plan of at most 4 KB and 48 windows, a whole row of at most 16 KB. Whatever a row holds, the parser
returns a schedule or raises :class:`ConfigError`, nothing else. Standard library only: bundled into the
inline Lambda code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..errors import ConfigError
from ..timing.durations import parse_interval_ms, parse_seconds
from ..timing.plan import Plan, parse_plan
from ..timing.slots import Every
from ..timing.timetable import Timetable

__all__ = [
    "DEFAULT_GRACE_MS",
    "DEFAULT_TIMEOUT_S",
    "MAX_DEPTH",
    "MAX_NAME_CHARS",
    "MAX_ROW_BYTES",
    "MAX_TARGET_BYTES",
    "OVERLAP_POLICIES",
    "ROW_FIELDS",
    "Schedule",
    "apply_changes",
    "check_name",
    "normalize_row",
    "parse_id",
    "parse_row",
    "plain",
    "schedule_from_row",
]

OVERLAP_POLICIES = ("allow", "skip")
ROW_FIELDS = ("id", "name", "running", "waitseconds", "plan", "target", "overlap", "timeout", "offset",
              "grace")
DEFAULT_WAITSECONDS = 5
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_GRACE_MS = 2000
MAX_NAME_CHARS = 100
MAX_TARGET_BYTES = 8192
MAX_ROW_BYTES = 16384


@dataclass(frozen=True)
class Schedule:
    """One parsed control row. ``error`` is set (and ``running`` false) when the row is invalid."""

    id: int
    name: str
    running: bool
    timetable: Timetable
    target: Mapping[str, Any] | None = None
    overlap: str = "allow"
    timeout_s: float = DEFAULT_TIMEOUT_S
    grace_ms: int = DEFAULT_GRACE_MS
    error: str | None = None

    @property
    def waitseconds(self) -> float:
        return self.timetable.base_ms / 1000

    def timing_key(self) -> tuple[Any, ...]:
        """What decides the slots: when it changes, the next slot is computed afresh."""
        return self.timetable.key()


def plain(value: Any) -> Any:
    """DynamoDB numbers arrive as Decimal, also inside maps and lists (a plan or a target stored as a
    map): make them plain ``int``/``float``, all the way down."""
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


MAX_ID = 2_147_483_647
ID_RULE = f"use a whole number from 1 to {MAX_ID} (1 is the default schedule)"


def parse_id(value: Any, field: str = "id") -> int:
    """A schedule id: a whole number from 1 to 2^31 - 1 (given as a number or its digits)."""
    value = plain(value)
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 12:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ConfigError(field, value, ID_RULE)
    return value


def check_name(value: Any, field: str = "name") -> str:
    """A schedule name: 1 to 100 printable characters, not only digits (that would read as an id)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_CHARS or not value.isprintable() \
            or value != value.strip():
        raise ConfigError(field, value, f"use 1 to {MAX_NAME_CHARS} printable characters, without control "
                                        "characters or surrounding spaces")
    if value.isdigit():
        raise ConfigError(field, value, "use a name that is not a number (numbers are ids)")
    return value


def _parse_bool(value: Any, name: str) -> bool:
    value = plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ConfigError(name, value, "use true or false")


_OBJECT_RULE = 'use a JSON object such as {"type": "http", "url": ...}'
MAX_DEPTH = 32  # how deep a target's values nest (objects in lists in objects ...)


def _depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests (a scalar: 0), counted without recursion, up to ``limit + 1``."""
    deepest, level, todo = 0, 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, Mapping):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            deepest = max(deepest, level)
            if level > limit:
                break
            todo.extend((child, level + 1) for child in item)
    return deepest


def _load_json(text: str, name: str, rule: str) -> Any:
    """``json.loads``; what it cannot read (bad JSON, a number of more than 4,300 digits, nesting deeper
    than Python's recursion limit) is a :class:`ConfigError` naming ``name``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ConfigError(name, text, f"{rule}, nested at most {MAX_DEPTH} levels deep") from None
    except ValueError:  # JSONDecodeError, or a number too long to convert
        raise ConfigError(name, text, rule) from None


def _parse_json_object(value: Any, name: str) -> Mapping[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = _load_json(value, name, _OBJECT_RULE)
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, _OBJECT_RULE)
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:  # before anything walks it recursively (and fails on it)
        raise ConfigError(name, f"JSON nested more than {MAX_DEPTH} levels deep",
                          f"{_OBJECT_RULE}, nested at most {MAX_DEPTH} levels deep")
    result: dict[str, Any] = plain(value)
    size = len(json.dumps(result, separators=(",", ":"), default=str))
    if size > MAX_TARGET_BYTES:
        raise ConfigError(name, f"{size} bytes of JSON", f"keep a target under {MAX_TARGET_BYTES} bytes")
    kind = result.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{name}.type", kind,
                          "name the target type: http, tcp, command, python, callable, lambda or noop")
    return result


def _check_size(fields: Mapping[str, Any]) -> None:
    """Refuse a row over MAX_ROW_BYTES as JSON. Its texts are at least as long once encoded: a row whose texts
    alone are over the limit is refused on their length, without encoding it (encoding a plan of 100,000
    windows would hold the controller's threads for tens of milliseconds, on every read of the table)."""
    texts = sum(len(v) for v in fields.values() if isinstance(v, (str, bytes)))
    if texts > MAX_ROW_BYTES:
        raise ConfigError("row", f"{texts} characters of text", f"keep a row under {MAX_ROW_BYTES} bytes")
    try:
        size = len(json.dumps(fields, default=str))
    except (RecursionError, ValueError):  # a value nested too deeply (or within itself), given in memory
        raise ConfigError("row", "values nested too deeply", f"nest values at most {MAX_DEPTH} levels deep") from None
    if size > MAX_ROW_BYTES:
        raise ConfigError("row", f"{size} bytes of JSON", f"keep a row under {MAX_ROW_BYTES} bytes")


def _parse_plan(value: Any) -> Plan | None:
    """The row's plan; one nested too deeply for the plan parser's JSON reader is refused, not raised."""
    try:
        return parse_plan(plain(value))
    except RecursionError:
        raise ConfigError("plan", value, f"write a plan as text or a JSON object nested at most {MAX_DEPTH} "
                                         "levels deep") from None


def parse_row(raw: Mapping[str, Any]) -> Schedule:
    """Parse and check one control row; raise :class:`ConfigError` naming the first bad field."""
    if not isinstance(raw, Mapping):
        raise ConfigError("row", raw, "use a mapping of field names to values")
    if raw.get("id") is None:
        raise ConfigError("id", None, "every row needs a numeric id")
    sid = parse_id(raw["id"])
    raw = {k: v for k, v in raw.items() if v is not None}  # a null field is an absent one
    try:
        unknown = [k for k in raw if k not in ROW_FIELDS and not str(k).startswith("_")]
        if unknown:
            raise ConfigError(str(unknown[0]), raw[unknown[0]],
                              "use only the fields " + ", ".join(ROW_FIELDS))
        _check_size({k: v for k, v in raw.items() if not str(k).startswith("_")})
        name = check_name(raw["name"]) if raw.get("name", "") != "" else ("default" if sid == 1 else f"schedule-{sid}")
        running = _parse_bool(raw.get("running", True), "running")
        plan = _parse_plan(raw.get("plan"))
        offset_ms = round(parse_seconds(plain(raw.get("offset", 0)), "offset", 0, 86_399.999) * 1000)
        timetable: Timetable
        if plan is not None:
            if offset_ms and plan.offset_ms not in (0, offset_ms):
                raise ConfigError("offset", raw.get("offset"),
                                  f"the plan has its own offset {plan.offset_ms} ms; give one of them")
            if offset_ms and not plan.offset_ms:  # the row's offset shifts the plan's grids
                plan = Plan(plan.tz, plan.windows, plan.default_ms, offset_ms)
            timetable = plan
        else:
            interval_ms = parse_interval_ms(plain(raw.get("waitseconds", DEFAULT_WAITSECONDS)))
            timetable = Every(interval_ms, offset_ms % interval_ms)
        target = _parse_json_object(raw.get("target"), "target")
        overlap = raw.get("overlap", "")
        overlap = "allow" if overlap == "" else overlap  # (0, false or [] are no policy: refused)
        if not isinstance(overlap, str) or overlap not in OVERLAP_POLICIES:
            raise ConfigError("overlap", overlap, "use allow or skip")
        timeout_s = parse_seconds(plain(raw.get("timeout", DEFAULT_TIMEOUT_S)), "timeout", 0.01, 3600)
        grace_s = parse_seconds(plain(raw.get("grace", DEFAULT_GRACE_MS / 1000)), "grace", 0, 3600)
    except ConfigError as exc:
        raise exc.located(f"schedule {sid}") from None
    return Schedule(sid, name, running, timetable, target, overlap, timeout_s, round(grace_s * 1000))


def schedule_from_row(raw: Mapping[str, Any]) -> Schedule:
    """Like :func:`parse_row`, but an invalid row becomes a disabled schedule carrying its error."""
    try:
        return parse_row(raw)
    except ConfigError as exc:
        try:
            sid = parse_id(raw.get("id")) if isinstance(raw, Mapping) else 0
        except ConfigError:
            sid = 0
        try:
            name = check_name(raw.get("name")) if isinstance(raw, Mapping) and raw.get("name") else ""
        except ConfigError:
            name = ""  # a name that cannot be shown as it is
        return Schedule(sid, name or f"schedule-{sid}", False, Every(DEFAULT_WAITSECONDS * 1000),
                        error=str(exc))


def normalize_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check a row and return it in canonical stored form (plan and target as JSON text)."""
    schedule = parse_row(raw)
    row: dict[str, Any] = {"id": schedule.id, "name": schedule.name, "running": schedule.running,
                           **schedule.timetable.row_fields()}
    if schedule.target is not None:
        row["target"] = json.dumps(schedule.target, separators=(",", ":"), sort_keys=True)
    if schedule.overlap != "allow":
        row["overlap"] = schedule.overlap
    for key in ("timeout", "offset", "grace"):
        if raw.get(key) is not None:
            row[key] = plain(raw[key])
    return row


def apply_changes(row: Mapping[str, Any], changes: Mapping[str, Any], schedule_id: int) -> dict[str, Any]:
    """``row`` with ``changes`` applied (``None`` clears a field), checked and in stored form.
    The id of a schedule cannot change. Setting ``running`` to false alone is accepted on any row, a
    refused one too (the rest of it is kept as it is)."""
    if "id" in changes:
        try:
            new_id: int | None = parse_id(changes["id"])
        except ConfigError:
            new_id = None
        if new_id != schedule_id:
            raise ConfigError("id", plain(changes["id"]), "the id of a schedule cannot change; remove it and "
                              "add a new one", where=f"schedule {schedule_id}")
    try:
        return normalize_row({**row, **changes})
    except ConfigError:
        if dict(changes) == {"running": False}:  # a stop never makes a row worse: even a bad one stops
            return {**row, "running": False}
        raise
