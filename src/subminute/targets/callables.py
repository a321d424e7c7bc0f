"""Functions of the running program, added with a :class:`~subminute.runtime.scheduler.Scheduler`.

Spec (the Scheduler writes it; the row's name and the function's are the same)::

    {"type": "callable", "name": "probe", "program": "app.py"}

The function itself lives only in the process that registered it: the runtime lends the targets it builds
its registry (``TargetEnv.callables``, name -> function). A row whose function this process does not have
(``subminute run`` on the file of a program, or a second program) cannot be built: the error names the
program that owns it. A build with no env at all only checks the spec (the CLI's ``add``, ``set`` and
``status`` check rows that way), and the target it makes refuses to run.

How a function is called is decided once, from its signature (:func:`calling_convention`): with the event
if it takes an argument, without one if it takes none. A plain function runs in the dispatcher's worker
threads, as the python target does (``kind = "python"``, the same result handling: a returned
:class:`~subminute.targets.base.Result` as it is, ``False`` an error, an exception an error); a coroutine
function (``async def``) runs on the dispatcher's event loop (``kind = "async"``), one task per fire.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Result, Target, TargetEnv
from .fields import error_line, only_fields
from .simple import outcome

__all__ = ["CALLABLE_FIELDS", "CallableTarget", "Convention", "CoroutineTarget", "UnboundTarget",
           "callable_target", "calling_convention"]

CALLABLE_FIELDS = ("type", "name", "program")
_SIGNATURE_RULE = "give a function that takes the event as its one argument, or no argument"


@dataclass(frozen=True)
class Convention:
    """How a function is called: on the event loop (``is_async``) or in a worker; with the event or not."""

    is_async: bool
    takes_event: bool


def calling_convention(func: object, field: str = "function") -> Convention:
    """How ``func`` is called, from its signature; :class:`ConfigError` naming ``field`` if it cannot be
    (not callable, a generator, more than one required argument, a required keyword argument)."""
    label = getattr(func, "__qualname__", None) or func
    if not callable(func):
        raise ConfigError(field, func, "give a function (def or async def) or another callable")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise ConfigError(field, label, "give a function that returns (a generator function only makes a generator)")
    method = getattr(type(func), "__call__", None)  # noqa: B004 - an object whose __call__ is an async def
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(method)
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # no signature to read (some builtins): give it the event
        return Convention(is_async, True)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if len(required) > 1:
        raise ConfigError(field, label, f"{_SIGNATURE_RULE} (it requires {len(required)}: "
                                        f"{', '.join(p.name for p in required)})")
    if keyword_only:
        raise ConfigError(field, label, f"{_SIGNATURE_RULE} (it requires the keyword {keyword_only[0]})")
    takes_event = bool(positional) or any(p.kind == p.VAR_POSITIONAL for p in params)
    return Convention(is_async, takes_event)


class CallableTarget:
    """A plain function, called in the worker thread."""

    kind = "python"

    def __init__(self, name: str, func: Callable[..., Any], takes_event: bool) -> None:
        self.name = name
        self.func = func
        self.takes_event = takes_event

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result | None:
        try:
            value = self.func(event) if self.takes_event else self.func()  # the fire's own event
        except BaseException as exc:  # noqa: BLE001 - the function's error (sys.exit included), on one line
            return Result.failure(error_line(exc))
        if value is not None and inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if callable(close):
                close()  # never awaited: no warning at garbage collection
            return Result.failure(f"{self.name} returned an awaitable; declare it with async def so that it runs "
                                  "on the event loop")
        return None if value is None or value is True else outcome(self.name, value)


class CoroutineTarget:
    """A coroutine function, awaited on the dispatcher's event loop (its timeout cancels it there)."""

    kind = "async"

    def __init__(self, name: str, func: Callable[..., Any], takes_event: bool) -> None:
        self.name = name
        self.func = func
        self.takes_event = takes_event

    async def run_async(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        try:
            value = await (self.func(dict(event)) if self.takes_event else self.func())
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # cancelled from outside (its timeout): goes through
                raise
            return Result.failure(error_line(exc))  # raised by the function itself
        except BaseException as exc:  # noqa: BLE001 - the function's error (sys.exit included), on one line
            return Result.failure(error_line(exc))
        return outcome(self.name, value)

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        """For a dispatcher without an event loop: a coroutine function cannot run there."""
        return Result.failure(f"{self.name} is a coroutine function: it runs only on an event loop, and this "
                              "dispatcher has none")


class UnboundTarget:
    """A callable spec checked without a runtime (``build_target(spec)``): valid, but nothing to call."""

    kind = "python"

    def __init__(self, name: str, program: str | None) -> None:
        self.name = name
        self.program = program

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        return Result.failure(_not_here(self.name, self.program))


def _owner(program: str | None) -> str:
    return f"the program {program}" if program else "another program"


def _not_here(name: str, program: str | None) -> str:
    return (f"{name!r} is a function of {_owner(program)} (added with subminute.Scheduler), and only that "
            "program's process can call it")


def _text(spec: Mapping[str, Any], key: str, required: bool) -> str | None:
    value = spec.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or not value.isprintable():
        raise ConfigError(f"target.{key}", value, "use 1 to 200 printable characters"
                          + (" (the name the function was added under)" if key == "name" else ""))
    return value


def callable_target(spec: Mapping[str, Any], env: TargetEnv | None) -> Target:
    """The target of a registered function; see the module docstring."""
    only_fields(spec, CALLABLE_FIELDS)
    name = _text(spec, "name", True)
    program = _text(spec, "program", False)
    assert name is not None
    if env is None:
        return UnboundTarget(name, program)
    func = (env.callables or {}).get(name)
    if func is None:
        where = f"run {program}" if program else "run that program"
        raise ConfigError("target.name", name, f"it is a function of {_owner(program)} (added with "
                                               f"subminute.Scheduler), and only that program's process can call it: "
                                               f"{where} to fire it, or give this schedule another target")
    convention = calling_convention(func, "target.name")
    made = CoroutineTarget if convention.is_async else CallableTarget
    return made(name, func, convention.takes_event)
