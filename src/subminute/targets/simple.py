"""The no-op target and the Python-callable target."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..results.records import bounded
from .base import Result

__all__ = ["NoopTarget", "PythonTarget", "resolve_callable"]

_REF_RULE = "use package.module:function, importable by the controller's Python"


class NoopTarget:
    """Does nothing: the fire is recorded with its timing. The default when a row names no target."""

    kind = "noop"

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        pass

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        return Result()


def resolve_callable(ref: object, field: str = "target.ref") -> Callable[..., Any]:
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(field, ref, _REF_RULE)
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(field, ref, f"{_REF_RULE} (import failed: {exc})") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(field, ref, f"{_REF_RULE} ({module_name} has no {attr})")
    if not callable(obj):
        raise ConfigError(field, ref, f"{_REF_RULE} ({attr} is not callable)")
    return obj  # type: ignore[no-any-return]


class PythonTarget:
    """Calls ``package.module:function(event)``. A dict it returns is kept (bounded) in the record's
    detail; an exception is recorded as an error. A call that outlives its timeout is recorded as a
    timeout by the dispatcher (a Python thread cannot be killed; its late result is dropped)."""

    kind = "python"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.ref = spec.get("ref")
        self.func = resolve_callable(self.ref)

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        value = self.func(dict(event))
        if isinstance(value, Result):
            return value
        if value is False:
            return Result.failure(f"{self.ref} returned False")
        detail: dict[str, Any] = {}
        if value is not None and value is not True:
            detail["returned"] = bounded(repr(value), 500)
        return Result(detail=detail)
