"""What a fire does: the target interface, the fire event, the result and the fire record.

A target is built once per schedule from its spec (the ``target`` object of the control row) and then
``run`` once per fire, in a worker, never on the controller's wake-up path. Standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..errors import ConfigError

__all__ = [
    "Target",
    "Result",
    "FireRecord",
    "make_event",
    "build_target",
    "register_target",
    "target_types",
    "bounded",
    "MAX_ERROR_CHARS",
]

MAX_ERROR_CHARS = 1000


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Cut a text (an error, some output) to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 30] + f"... [{len(text) - limit + 30} more chars]"


@dataclass
class Result:
    """What one run of a target produced."""

    ok: bool = True
    status: str = "ok"  # ok | error | timeout
    http_status: int | None = None
    bytes: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, error: str, status: str = "error", **kw: Any) -> Result:
        return cls(ok=False, status=status, error=bounded(error), **kw)


class Target(Protocol):
    kind: str

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        """Do the work for one fire; may block (it runs in a worker); must not raise for ordinary
        failures but return ``Result.failure``. Exceptions are caught and recorded all the same."""


@dataclass
class FireRecord:
    """One fire, as recorded in the results store. Times are epoch milliseconds."""

    schedule_id: int
    name: str
    slot_ms: int
    seq: int
    status: str  # ok | error | timeout | skipped | missed | invalid
    dispatched_ms: float | None = None
    lateness_ms: float | None = None
    started_ms: float | None = None
    ended_ms: float | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    bytes: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    token: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_event(schedule_id: int, name: str, slot_ms: int, seq: int, interval_ms: int,
               controller: str = "") -> dict[str, Any]:
    """The event every target receives (and the AWS worker Lambda's payload)::

        {"schedule_id": 1, "schedule": "default", "slot": "2026-11-23T10:00:05.000Z",
         "slot_ms": 1795428005000, "seq": 42, "interval": 5.0, "controller": "host:1234"}
    """
    from ..timing.slots import iso_utc

    return {
        "schedule_id": schedule_id,
        "schedule": name,
        "slot": iso_utc(slot_ms),
        "slot_ms": slot_ms,
        "seq": seq,
        "interval": interval_ms / 1000,
        "controller": controller,
    }


TargetFactory = Callable[[Mapping[str, Any]], Target]
_REGISTRY: dict[str, str | TargetFactory] = {
    "noop": "subminute.targets.simple:NoopTarget",
    "python": "subminute.targets.simple:PythonTarget",
    "http": "subminute.targets.http:HttpTarget",
    "tcp": "subminute.targets.tcp:TcpTarget",
    "command": "subminute.targets.command:CommandTarget",
}


def register_target(kind: str, factory: str | TargetFactory) -> None:
    """Add a target type: a factory taking the spec, or its ``module:name``, imported when first used."""
    _REGISTRY[kind] = factory


def target_types() -> list[str]:
    return sorted(_REGISTRY)


def build_target(spec: Mapping[str, Any] | None) -> Target:
    """Build a target from its spec; raise :class:`ConfigError` for an unknown type or bad fields."""
    spec = spec or {"type": "noop"}
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ConfigError("target.type", kind, "use one of " + ", ".join(target_types()))
    factory = _REGISTRY[kind]
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ConfigError("target.type", kind, f"this target type needs a module that is missing ({exc})") from None
        _REGISTRY[kind] = factory
    return factory(spec)
