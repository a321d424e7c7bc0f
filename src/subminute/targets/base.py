"""What a fire does: the target interface, its result, and the registry of target types.

A target is built once per schedule from its spec (the ``target`` object of the control row) and then
``run`` once per fire, in a worker, never on the controller's wake-up path. What the runtime lends the
targets it builds (where kept bodies go) comes in a :class:`TargetEnv`. Standard library only.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from ..results.records import bounded

if TYPE_CHECKING:  # (not at run time: the AWS worker bundles this module, not the body writers)
    from ..results.writers import BodyWriters

__all__ = ["Target", "TargetEnv", "Result", "build_target", "register_target", "target_types"]


@dataclass(frozen=True)
class TargetEnv:
    """What a runtime gives the targets it builds. ``bodies``: its body writers (where ``keep`` writes);
    ``None`` (a target built only to check its spec) makes a keeper that opens nothing until it keeps.
    ``callables``: the functions a :class:`~subminute.runtime.scheduler.Scheduler` registered, by name (the
    ``callable`` target calls them); ``None``: this runtime has none."""

    bodies: BodyWriters | None = None
    callables: Mapping[str, Callable[..., Any]] | None = None


@dataclass(slots=True)
class Result:
    """What one run of a target produced."""

    ok: bool = True
    status: str = "ok"  # ok | error | timeout
    http_status: int | None = None
    bytes: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: when the work really started (epoch ms), for a target that starts it later than it is called: the
    #: python target with process isolation writes the event to its child then. ``None``: when called.
    started_ms: float | None = None

    @classmethod
    def failure(cls, error: str, status: str = "error", **kw: Any) -> Result:
        return cls(ok=False, status=status, error=bounded(error), **kw)


class Target(Protocol):
    kind: str

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result | None:
        """Do the work for one fire; may block (it runs in a worker); must not raise for ordinary
        failures but return ``Result.failure``. Exceptions are caught and recorded all the same. ``None``
        means it went well with nothing to add (the same as ``Result()``, without making one)."""


#: ``factory(spec)`` or ``factory(spec, env)`` (a factory that takes two arguments is given the TargetEnv)
TargetFactory = Callable[..., Target]
_REGISTRY: dict[str, str | TargetFactory] = {
    "noop": "subminute.targets.simple:NoopTarget",
    "python": "subminute.targets.simple:python_target",
    "http": "subminute.targets.http:HttpTarget",
    "tcp": "subminute.targets.tcp:TcpTarget",
    "command": "subminute.targets.command:CommandTarget",
    "callable": "subminute.targets.callables:callable_target",
}


def register_target(kind: str, factory: str | TargetFactory) -> None:
    """Add a target type: a factory taking the spec (or the spec and the :class:`TargetEnv`), or its
    ``module:name``, imported when first used."""
    _REGISTRY[kind] = factory


def _takes_env(factory: TargetFactory) -> bool:
    """Whether ``factory`` accepts a second positional argument (the env)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): the one-argument form
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def target_types() -> list[str]:
    return sorted(_REGISTRY)


def build_target(spec: Mapping[str, Any] | None, *, env: TargetEnv | None = None) -> Target:
    """Build a target from its spec; raise :class:`ConfigError` for an unknown type or bad fields. ``env``
    (the runtime's, see :class:`TargetEnv`) is passed on to factories that take it."""
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
    return factory(spec, env) if _takes_env(factory) else factory(spec)
