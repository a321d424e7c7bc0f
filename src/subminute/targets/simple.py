"""The no-op target and the Python-callable target (in a worker thread, or in a child process).

Spec::

    {"type": "noop"}
    {"type": "python", "ref": "mypackage.checks:probe"}
    {"type": "python", "ref": "mypackage.checks:probe", "isolation": "process"}

``isolation``: ``"thread"`` (the default) calls the function in the dispatcher's worker thread; a call that
never returns cannot be stopped (a thread cannot be killed) and keeps counting against its schedule.
``"process"`` calls it in a child Python process that is killed at the fire's timeout: see
:mod:`subminute.targets.process`.
"""

from __future__ import annotations

import importlib
import importlib.util
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..results.records import bounded
from ..secrets import redact
from .base import Result, Target
from .fields import error_line, one_line, only_fields

__all__ = ["ISOLATIONS", "NoopTarget", "PythonTarget", "outcome", "python_target", "resolve_callable"]

_REF_RULE = "use package.module:function, importable by the controller's Python"
ISOLATIONS = ("thread", "process")
PYTHON_FIELDS = ("type", "ref", "isolation")


class NoopTarget:
    """Does nothing: the fire is recorded with its timing. The default when a row names no target."""

    kind = "noop"
    fields = ("type",)

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        only_fields(spec or {}, self.fields)

    def run(self, event: Mapping[str, Any], timeout_s: float) -> None:
        return None


def _split_ref(ref: object, field: str) -> tuple[str, str]:
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(field, ref, _REF_RULE)
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(field, ref, _REF_RULE)
    return module_name, attr


def _failed(exc: BaseException) -> str:
    return bounded(one_line(f"{exc.__class__.__name__}: {exc}"), 300)


def resolve_callable(ref: object, field: str = "target.ref") -> Callable[..., Any]:
    """Import ``module:function`` (``function`` may be dotted) in this process; :class:`ConfigError` naming
    ``field`` on one line if it cannot be (whatever the module's import raises)."""
    module_name, attr = _split_ref(ref, field)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(field, ref, f"{_REF_RULE} (import failed: {one_line(str(exc))})") from None
    except (Exception, SystemExit) as exc:  # the module itself fails: a SyntaxError, an error at import
        raise ConfigError(field, ref, f"{_REF_RULE} (importing {module_name} failed: {_failed(exc)})") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(field, ref, f"{_REF_RULE} ({module_name} has no {attr})")
    if not callable(obj):
        raise ConfigError(field, ref, f"{_REF_RULE} ({attr} is not callable)")
    return obj  # type: ignore[no-any-return]


def find_module(ref: object, field: str = "target.ref") -> str:
    """Check that ``module:function`` names a module that exists, without running it (its package's
    ``__init__`` does run); return the ref. For a function that runs in another process."""
    module_name, _ = _split_ref(ref, field)
    try:
        found = importlib.util.find_spec(module_name)
    except (Exception, SystemExit) as exc:
        raise ConfigError(field, ref, f"{_REF_RULE} (finding {module_name} failed: {_failed(exc)})") from None
    if found is None:
        raise ConfigError(field, ref, f"{_REF_RULE} (no module named {module_name!r})")
    return str(ref)


def _short_repr() -> reprlib.Repr:
    """``repr`` that stops early: a value's own ``repr`` for everything of ordinary size, and no 50 MB
    text made (and searched for secrets) on a worker's thread to keep 500 characters of it."""
    short = reprlib.Repr()
    short.maxlevel = 6
    short.maxtuple = short.maxlist = short.maxarray = short.maxdict = short.maxset = short.maxfrozenset = \
        short.maxdeque = 100
    short.maxstring = short.maxlong = short.maxother = 1000
    return short


_REPR = _short_repr()


def outcome(ref: str, value: Any) -> Result:
    """The result of a call that returned ``value``: a :class:`Result` as it is, ``False`` an error, any
    other value ok (its repr kept, bounded, in the detail)."""
    if isinstance(value, Result):
        return value
    if value is False:
        return Result.failure(f"{ref} returned False")
    detail: dict[str, Any] = {}
    if value is not None and value is not True:
        detail["returned"] = bounded(redact(_REPR.repr(value)), 500)
    return Result(detail=detail)


class PythonTarget:
    """Calls ``package.module:function(event)`` in the worker thread. A dict it returns is kept (bounded)
    in the record's detail; an exception is recorded as an error. A call that outlives its timeout is
    recorded as a timeout by the dispatcher (a Python thread cannot be killed; its late result is
    dropped); ``"isolation": "process"`` makes a call killable."""

    kind = "python"
    fields = PYTHON_FIELDS

    def __init__(self, spec: Mapping[str, Any]) -> None:
        only_fields(spec, self.fields)
        self.ref: str = spec.get("ref")  # type: ignore[assignment]
        self.func = resolve_callable(self.ref)

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result | None:
        try:
            value = self.func(event)  # the fire's own event: nothing else reads it
        except BaseException as exc:  # noqa: BLE001 - the function's error (sys.exit included), on one line
            return Result.failure(error_line(exc))
        return None if value is None or value is True else outcome(self.ref, value)


def python_target(spec: Mapping[str, Any]) -> Target:
    """The python target of ``spec``, in a thread or in a child process (``isolation``)."""
    only_fields(spec, PYTHON_FIELDS)
    isolation = spec.get("isolation", "thread")
    if isolation not in ISOLATIONS:
        raise ConfigError("target.isolation", isolation, "use thread (the default: called in a worker thread) or "
                                                         "process (called in a child process, killed at the timeout)")
    if isolation == "process":
        from .process import ProcessPythonTarget

        return ProcessPythonTarget(spec)
    return PythonTarget(spec)
