"""The fire record: what is written for every slot (fired, skipped, missed or invalid), and the bounding of
texts that go into records. Standard library only: bundled into the inline Lambda code."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MAX_ERROR_CHARS", "FireRecord", "bounded", "digest"]

MAX_ERROR_CHARS = 1000


def digest(data: bytes) -> str:
    """The short digest recorded for every body a target receives (16 hex digits of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Cut a text (an error, some output) to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 30] + f"... [{len(text) - limit + 30} more chars]"


@dataclass(slots=True)
class FireRecord:
    """One fire, as recorded in the results store. Times are epoch milliseconds."""

    schedule_id: int
    name: str
    slot_ms: int
    seq: int
    status: str  # ok | error | timeout | skipped | missed | invalid
    dispatched_ms: float | None = None  # when the controller handed the fire to the dispatcher
    lateness_ms: float | None = None  # hand-over lateness: dispatched_ms - slot_ms (negative: handed over early)
    started_ms: float | None = None  # when the target started: the function entered, the request sent
    ended_ms: float | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    bytes: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    token: int | None = None
    start_lateness_ms: float | None = None  # started_ms - slot_ms: what the user feels

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
