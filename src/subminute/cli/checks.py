"""THE check of a control row, for every way in (``add``, ``set``, ``run --config``, ``aws set``) and for
what ``status`` shows: the row parser (:func:`~subminute.control.rows.normalize_row`: every field with its
range, the name included) and then the target, built as the controller that runs the row will build it,
starting nothing (no request, no connection, no process).

* local (``subminute run``): :func:`~subminute.targets.base.build_target`, without a runtime's body writers;
* AWS (the Step Functions controller): the function :meth:`LambdaDispatcher.function_for` would invoke
  (lambda, http or the stack's worker), and an http target as the poller builds it.

A target whose secret comes from an environment variable or a file that this process cannot read is not
refused: the controller may well have it. It passes with a ``note`` saying what the controller needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..control.rows import Schedule, normalize_row, parse_row
from ..errors import ConfigError
from ..runtime.status import check_rows

__all__ = ["RowCheck", "check_row", "inspect_rows"]

Runtime = Literal["local", "aws"]


@dataclass(frozen=True)
class RowCheck:
    """One row, checked: its schedule (disabled when ``error`` is set), and a ``note`` for a valid row
    whose target needs something this process lacks (a secret)."""

    raw: Mapping[str, Any]
    schedule: Schedule
    error: str | None = None
    note: str | None = None


def check_row(raw: Mapping[str, Any], *, runtime: Runtime = "local") -> tuple[dict[str, Any], str | None]:
    """Check ``raw`` whole; return it in stored form and a note for the user (or ``None``); raise
    :class:`ConfigError` (located at ``schedule N``) naming the first bad field."""
    row = normalize_row(raw)
    schedule = parse_row(row)
    try:
        return row, _check_target(schedule, runtime)
    except ConfigError as exc:
        raise exc.located(f"schedule {schedule.id}") from None


def inspect_rows(rows: Sequence[Mapping[str, Any]], *, runtime: Runtime = "local") -> list[RowCheck]:
    """Every row checked whole, as the controller will (a later row that takes an earlier one's name is
    disabled); never raises: a bad row carries its one-line error."""
    checked = check_rows(rows, lambda schedule: _check_target(schedule, runtime))
    return [RowCheck(raw, state.schedule, state.error,
                     f"schedule {state.schedule.id}: {state.note}" if state.note else None)
            for raw, state in zip(rows, checked, strict=True)]


def _check_target(schedule: Schedule, runtime: Runtime) -> str | None:
    """A note for a target that needs what this process lacks; :class:`ConfigError` (not located) for a
    target that cannot be built."""
    try:
        if runtime == "aws":
            return _check_aws_target(schedule)
        return _check_local_target(schedule.target)
    except ConfigError as exc:
        if _from_reading_a_secret(exc):
            return (f"{exc.field} comes from {exc.value}, which this process cannot read; make sure the "
                    f"controller can: {exc.allowed}")
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a target's module raises, as the controller records it
        raise ConfigError("target", _short(schedule.target), f"give a target that can be built ({exc!r})") from None


def _check_local_target(spec: Mapping[str, Any] | None) -> str | None:
    from ..targets.base import build_target

    target = build_target(spec)
    close = getattr(target, "close", None)
    if callable(close):
        close()
    return None


def _check_aws_target(schedule: Schedule) -> str | None:
    from ..aws.lambda_dispatch import function_for

    # the AWS controller's own rule: lambda, or http (the poller, which the worker runs with the HTTP
    # target; its spec checked whole)
    function_for(schedule, "(the stack's worker)")
    return None


def _from_reading_a_secret(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while reading a secret's value (its variable or file), rather than by
    the spec itself: the innermost frame is :meth:`subminute.secrets.Secret.get`."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    frame = tb.tb_frame
    return frame.f_code.co_name == "get" and frame.f_globals.get("__name__") == "subminute.secrets"


def _short(spec: Any) -> Any:
    text = repr(spec)
    return spec if len(text) <= 80 else text[:77] + "..."
