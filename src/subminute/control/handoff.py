"""The hand-off: where each schedule is (its next slot and slot number), who made it, with which lease.

A controller saves one while it runs (for a successor after a crash, and for ``status``) and returns a final
one when it ends; the successor continues from it. It crosses process boundaries as JSON (a Step Functions
input, a SQLite row, a DynamoDB attribute)::

    {"version": 2, "owner": "host:1234", "token": 7, "at_ms": 1795428005123,
     "schedules": {"1": {"next": 1795428006000, "seq": 42}}, "stats": {"fired": 41, ...},
     "role": "holder", "final": true, "released": false, "save_every_ms": 1000}

:meth:`Handoff.from_raw` reads anything that arrives, field by field, including what subminute 0.1.0
wrote: a bad field takes its default, a bad schedule entry is dropped (that schedule starts afresh).
Standard library only: bundled into the inline Lambda code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .rows import plain

__all__ = ["HANDOFF_VERSION", "Handoff", "Position"]

HANDOFF_VERSION = 2  # 1: subminute 0.1.0 (the same fields)


def _int(value: Any, low: int, high: int) -> int | None:
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


class Position(NamedTuple):
    """A schedule's place: its next slot (``None``: start afresh at the next slot) and its last slot number.
    A named tuple: a controller of 1,000 schedules makes 1,000 of them for every hand-off it saves."""

    next_ms: int | None
    seq: int = 0


@dataclass(frozen=True)
class Handoff:
    owner: str = ""
    token: int | None = None
    at_ms: int = 0
    positions: Mapping[int, Position] = field(default_factory=dict)
    stats: Mapping[str, int] = field(default_factory=dict)
    role: str = "holder"  # holder | standby
    final: bool = False  # its controller stopped firing: a successor may take the lease with its token
    released: bool = False  # the lease was given up (a clean stop), not handed on
    save_every_ms: int = 1000  # how often its controller saved a hand-off while it ran
    version: int = HANDOFF_VERSION

    # -- forms ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "owner": self.owner, "token": self.token, "at_ms": self.at_ms,
            "schedules": {str(sid): {"next": p.next_ms, "seq": p.seq} for sid, p in self.positions.items()},
            "stats": dict(self.stats), "role": self.role, "final": self.final, "released": self.released,
            "save_every_ms": self.save_every_ms,
        }

    def to_json(self) -> str:
        """The JSON text (as ``to_dict``), the positions written directly: 1,000 schedules' hand-off is
        saved every second."""
        head = self.to_dict()
        del head["schedules"]
        schedules = ",".join(f'"{sid}":{{"next":{json.dumps(p.next_ms)},"seq":{p.seq}}}'
                             for sid, p in sorted(self.positions.items()))
        text = json.dumps(head, separators=(",", ":"), sort_keys=True)
        return text[:-1] + ',"schedules":{' + schedules + "}}"

    @classmethod
    def from_raw(cls, raw: Any) -> Handoff | None:
        """A hand-off from outside (JSON text, a mapping, DynamoDB's Decimals); ``None`` if it is none."""
        if isinstance(raw, (str, bytes)):
            try:
                raw = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested too deeply
                return None
        if not isinstance(raw, Mapping):
            return None
        schedules = raw.get("schedules")
        if not isinstance(schedules, Mapping):  # a bad field takes its default: the token still counts
            schedules = None
        positions: dict[int, Position] = {}
        for key, entry in (schedules or {}).items():
            sid = _int(int(key) if isinstance(key, str) and key.isdecimal() and len(key) < 12 else key, 1, 2**31 - 1)
            if sid is None or not isinstance(entry, Mapping):
                continue
            positions[sid] = Position(_int(entry.get("next"), 1, 2**53), _int(entry.get("seq", 0), 0, 2**53) or 0)
        stats = raw.get("stats")
        owner = raw.get("owner")
        return cls(
            owner=owner if isinstance(owner, str) else "",
            token=_int(raw.get("token"), 0, 2**53),
            at_ms=_int(raw.get("at_ms"), 0, 2**53) or 0,
            positions=positions,
            stats={k: v for k, v in (stats.items() if isinstance(stats, Mapping) else ())
                   if isinstance(k, str) and _int(v, 0, 2**53) is not None},
            role="standby" if raw.get("role") == "standby" else "holder",
            final=raw.get("final") is True,
            released=raw.get("released") is True,
            save_every_ms=_int(raw.get("save_every_ms", 1000), 0, 3_600_000) or 1000,
            version=_int(raw.get("version"), 1, 1000) or 1,
        )

    # -- uses ----------------------------------------------------------------------------------------------
    def numbers_only(self) -> dict[int, Position]:
        """The positions without their next slots: the schedules start afresh, their numbering continues."""
        return {sid: Position(None, p.seq) for sid, p in self.positions.items()}

    def but(self, **changes: Any) -> Handoff:
        return replace(self, **changes)
