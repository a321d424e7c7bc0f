"""The control-store interface, and the one parser of control rows shared by every backend.

A control row is a plain mapping, the same in SQLite and DynamoDB::

    {"id": 1, "running": True, "waitseconds": 5}                 # a row of the original AWS sample
    {"id": 2, "name": "buses", "running": True, "waitseconds": 2,
     "plan": "tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s",
     "target": {"type": "http", "url": "http://127.0.0.1:8080/predictions"},
     "overlap": "skip", "timeout": 5, "offset": 0, "grace": 2}

Only ``id`` is required; the rest has defaults. A row that does not parse becomes a disabled
:class:`Schedule` whose ``error`` says why, so one bad row never stops the others.
Standard library only: this module is bundled into the inline Lambda code.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..errors import ConfigError, NotFoundError
from ..timing.plan import Plan, parse_plan
from ..timing.slots import Every, parse_duration_ms, parse_interval_ms

__all__ = [
    "OVERLAP_POLICIES",
    "ROW_FIELDS",
    "Schedule",
    "Snapshot",
    "Lease",
    "ControlStore",
    "parse_row",
    "schedule_from_row",
    "normalize_row",
    "apply_changes",
    "missing",
    "plain",
]

OVERLAP_POLICIES = ("allow", "skip")
ROW_FIELDS = ("id", "name", "running", "waitseconds", "plan", "target", "overlap", "timeout", "offset",
              "grace")
DEFAULT_WAITSECONDS = 5
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_GRACE_MS = 2000


@dataclass(frozen=True)
class Schedule:
    """One parsed control row. ``error`` is set (and ``running`` false) when the row is invalid."""

    id: int
    name: str
    running: bool
    timetable: Every | Plan
    target: Mapping[str, Any] | None = None
    overlap: str = "allow"
    timeout_s: float = DEFAULT_TIMEOUT_S
    grace_ms: int = DEFAULT_GRACE_MS
    error: str | None = None

    @property
    def waitseconds(self) -> float:
        return (self.timetable.default_ms if isinstance(self.timetable, Plan)
                else self.timetable.interval_ms) / 1000

    def timing_key(self) -> tuple[Any, ...]:
        """What decides the slots: when it changes, the next slot is computed afresh."""
        if isinstance(self.timetable, Plan):
            return ("plan", self.timetable.to_json())
        return ("every", self.timetable.interval_ms, self.timetable.offset_ms)


@dataclass(frozen=True)
class Snapshot:
    """Everything a controller needs from the store at one moment."""

    version: Any
    schedules: tuple[Schedule, ...] = ()

    def by_id(self) -> dict[int, Schedule]:
        return {s.id: s for s in self.schedules}


@dataclass(frozen=True)
class Lease:
    """The right to fire, held by one controller. ``token`` grows with every new holder (fencing)."""

    owner: str
    token: int
    expires_at: float  # wall-clock epoch seconds


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


def _parse_id(value: Any) -> int:
    value = plain(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("id", value, "use a whole number from 1 up (1 is the default schedule)")
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


def _parse_json_object(value: Any, name: str) -> Mapping[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(name, value, _OBJECT_RULE) from None
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, _OBJECT_RULE)
    result: dict[str, Any] = plain(value)
    kind = result.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{name}.type", kind,
                          "name the target type: http, python, tcp, command, lambda or noop")
    return result


def _parse_seconds(value: Any, name: str, low: float, high: float) -> float:
    value = plain(value)
    try:
        seconds = parse_duration_ms(value, name) / 1000
    except ConfigError:
        seconds = math.nan
    if not (low <= seconds <= high):
        raise ConfigError(name, value, f"use a number of seconds from {low:g} to {high:g}")
    return seconds


def parse_row(raw: Mapping[str, Any]) -> Schedule:
    """Parse and check one control row; raise :class:`ConfigError` naming the first bad field."""
    if not isinstance(raw, Mapping):
        raise ConfigError("row", raw, "use a mapping of field names to values")
    if raw.get("id") is None:
        raise ConfigError("id", None, "every row needs a numeric id")
    sid = _parse_id(raw["id"])
    raw = {k: v for k, v in raw.items() if v is not None}  # a null field is an absent one
    try:
        unknown = [k for k in raw if k not in ROW_FIELDS and not str(k).startswith("_")]
        if unknown:
            raise ConfigError(str(unknown[0]), raw[unknown[0]],
                              "use only the fields " + ", ".join(ROW_FIELDS))
        name = raw.get("name") or ("default" if sid == 1 else f"schedule-{sid}")
        if not isinstance(name, str) or len(name) > 100:
            raise ConfigError("name", name, "use a text of at most 100 characters")
        running = _parse_bool(raw.get("running", True), "running")
        plan = parse_plan(plain(raw.get("plan")))
        offset_ms = round(_parse_seconds(raw.get("offset", 0), "offset", 0, 86_399.999) * 1000)
        timetable: Every | Plan
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
        overlap = raw.get("overlap", "allow") or "allow"
        if overlap not in OVERLAP_POLICIES:
            raise ConfigError("overlap", overlap, "use allow or skip")
        timeout_s = _parse_seconds(raw.get("timeout", DEFAULT_TIMEOUT_S), "timeout", 0.01, 3600)
        grace_s = _parse_seconds(raw.get("grace", DEFAULT_GRACE_MS / 1000), "grace", 0, 3600)
    except ConfigError as exc:
        raise exc.located(f"schedule {sid}") from None
    return Schedule(sid, name, running, timetable, target, overlap, timeout_s, round(grace_s * 1000))


def schedule_from_row(raw: Mapping[str, Any]) -> Schedule:
    """Like :func:`parse_row`, but an invalid row becomes a disabled schedule carrying its error."""
    try:
        return parse_row(raw)
    except ConfigError as exc:
        try:
            sid = _parse_id(raw.get("id")) if isinstance(raw, Mapping) else 0
        except ConfigError:
            sid = 0
        name = raw.get("name") if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) else ""
        return Schedule(sid, name or f"schedule-{sid}", False, Every(DEFAULT_WAITSECONDS * 1000),
                        error=str(exc))


def normalize_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check a row and return it in canonical stored form (plan and target as JSON text)."""
    schedule = parse_row(raw)
    waitseconds = schedule.waitseconds
    row: dict[str, Any] = {"id": schedule.id, "name": schedule.name, "running": schedule.running,
                           "waitseconds": int(waitseconds) if waitseconds.is_integer() else waitseconds}
    if isinstance(schedule.timetable, Plan):
        row["plan"] = schedule.timetable.to_json()
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
    The id of a schedule cannot change."""
    if "id" in changes:
        try:
            new_id: int | None = _parse_id(changes["id"])
        except ConfigError:
            new_id = None
        if new_id != schedule_id:
            raise ConfigError("id", plain(changes["id"]), "the id of a schedule cannot change; remove it and "
                              "add a new one", where=f"schedule {schedule_id}")
    return normalize_row({**row, **changes})


def missing(schedule_id: int) -> NotFoundError:
    return NotFoundError(f"schedule {schedule_id} does not exist; see 'subminute status' for the ids")


class ControlStore(ABC):
    """Where control rows, the controller's lease and its hand-off live.

    ``load`` may be slow (a network call); the controller calls it from a watcher thread, never on the
    path from a wake-up to a fire. ``version`` is a cheap change token: when it is unchanged since the
    last ``load``, the rows are unchanged too. Backends raise :class:`StoreError` for transient faults.
    """

    # -- control rows --------------------------------------------------------------------------------
    @abstractmethod
    def rows(self) -> list[dict[str, Any]]:
        """Every control row, raw, ordered by id."""

    def version(self) -> Any:
        """A token that changes whenever a row changes; ``None`` if the backend cannot tell cheaply."""
        return None

    def load(self) -> Snapshot:
        version = self.version()
        return Snapshot(version, tuple(schedule_from_row(r) for r in self.rows()))

    @abstractmethod
    def put(self, row: Mapping[str, Any]) -> None:
        """Insert or replace a whole row (checked with :func:`normalize_row` first)."""

    @abstractmethod
    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        """Change some fields of an existing row, atomically (see :func:`apply_changes`); raise
        :class:`NotFoundError` if there is none. Two concurrent updates of one row lose neither."""

    @abstractmethod
    def delete(self, schedule_id: int) -> None:
        """Remove a row; raise :class:`NotFoundError` if there is none."""

    def get(self, schedule_id: int) -> dict[str, Any]:
        for row in self.rows():
            if plain(row.get("id")) == schedule_id:
                return row
        raise missing(schedule_id)

    # -- lease and hand-off ----------------------------------------------------------------------------
    @abstractmethod
    def acquire_lease(self, owner: str, ttl_s: float, now: float, token: int | None = None) -> Lease | None:
        """Take the lease if it is free, expired, already ours, or handed to us (``token`` equals the
        current token, from a hand-off). Return the lease held, or ``None`` if someone else holds it."""

    @abstractmethod
    def renew_lease(self, lease: Lease, ttl_s: float, now: float) -> Lease | None:
        """Extend our lease; ``None`` if it was taken over (its token changed)."""

    @abstractmethod
    def release_lease(self, lease: Lease, now: float) -> None:
        """Give the lease up so that a successor may take it at once."""

    @abstractmethod
    def read_lease(self) -> Lease | None:
        """The current lease, whoever holds it."""

    @abstractmethod
    def save_handoff(self, handoff: Mapping[str, Any]) -> None:
        """Keep the last hand-off (next slot of each schedule), for a successor and for status."""

    @abstractmethod
    def load_handoff(self) -> dict[str, Any] | None:
        """The last saved hand-off, if any."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""
