"""The Lambda handlers: the controller, the demo worker and the HTTP poller worker.

The controller runs the shared :class:`~subminute.controller.Controller` against the DynamoDB table for
as long as its Lambda may run (less a safety margin), invoking the worker asynchronously at every slot,
and returns ``{"handoff", "running", "standby", "idle", "invalid"}`` for the state machine, which passes the
hand-off to the next execution (``idle``: rows want to run but none is valid, ``invalid`` says why; the
state machine then looks again a minute later instead of restarting at once). Environment:

=================  ==============================================================================
TABLE_NAME         the control table (required)
WORKER_FUNCTION    the default worker function, name or ARN
POLLER_FUNCTION    the function for rows whose target is ``{"type": "http", ...}`` (default: the worker)
SAFETY_MARGIN_S    seconds kept free before the Lambda timeout (default 10)
MAX_BUDGET_S       cut each execution shorter than the Lambda timeout (optional)
REFRESH_S          how often the table is scanned for changes (default 1)
LEASE_TTL_S        lease time to live (default 30); a dead controller is replaced after this
=================  ==============================================================================

The workers' handlers are in :mod:`subminute.aws.worker`. Standard library plus boto3: this module is bundled into the inline Lambda code.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from ..control.base import ControlStore
from ..control.handoff import Handoff
from ..controller import Controller, ControllerOptions
from ..controller.heap import frozen_heap
from ..dispatch.base import Dispatcher
from ..errors import ConfigError
from ..timing.clock import Clock, SystemClock
from .dynamodb import DynamoStore
from .lambda_dispatch import LambdaDispatcher

__all__ = ["controller_handler", "read_handoff", "run_controller"]

log = logging.getLogger("subminute.aws")
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # in Lambda the root logger is at WARNING: show our INFO lines
    logging.getLogger("subminute").setLevel(logging.INFO)


def _env_float(name: str, default: float, low: float, high: float) -> float:
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ConfigError(name, text, f"use a number of seconds from {low:g} to {high:g}", where="environment")
    return value


def read_handoff(event: Any) -> Handoff | None:
    """The hand-off in a state machine input (a mapping or its JSON text), or ``None``."""
    return Handoff.from_raw(event.get("handoff")) if isinstance(event, Mapping) else None


def run_controller(event: Any, context: Any, *, store: ControlStore, dispatcher: Dispatcher, clock: Clock,
                   margin_s: float | None = None, max_budget_s: float | None = None,
                   **options: Any) -> dict[str, Any]:
    """Run one controller execution; the seam the handler and the tests share."""
    margin = margin_s if margin_s is not None else _env_float("SAFETY_MARGIN_S", 10.0, 0.1, 600)
    cap = max_budget_s if max_budget_s is not None else _env_float("MAX_BUDGET_S", 0.0, 0, 900) or None
    budget = context.get_remaining_time_in_millis() / 1000 - margin
    if cap is not None:
        budget = min(budget, cap)
    if budget <= 0:
        raise ConfigError("SAFETY_MARGIN_S", margin, "keep the margin below the function's timeout",
                          where="environment")
    request = getattr(context, "aws_request_id", "") or f"{os.getpid()}-{time.time_ns()}"
    opts = ControllerOptions(
        owner=f"lambda:{request}", budget_s=budget, stop_when_idle=True, end_after_last_fire=True,
        refresh_s=_env_float("REFRESH_S", 1.0, 0.05, 60),
        lease_ttl_s=_env_float("LEASE_TTL_S", 30.0, 1, 300),
    )
    for key, value in options.items():
        setattr(opts, key, value)
    controller = Controller(store, dispatcher, clock, opts, handoff=read_handoff(event))
    try:
        with frozen_heap():
            handoff = controller.run()
    finally:
        dispatcher.close(timeout_s=max(0.1, min(3.0, margin / 2)))
    standby = handoff.token is None
    running = bool(controller.tracks) and not standby
    invalid = {str(sid): error for sid, error in sorted(controller.invalid.items())}
    # idle: rows are there but none that runs is valid; the state machine then waits a minute (no storm)
    result = {"handoff": handoff.to_dict(), "running": running, "standby": standby,
              "idle": not running and not standby and bool(invalid), "invalid": invalid}
    print(json.dumps({"msg": "controller done", "owner": opts.owner, "token": handoff.token, "running": running,
                      "standby": standby, "idle": result["idle"], "invalid": invalid,
                      "stats": dict(handoff.stats)}))
    return result


_CLIENTS: dict[str, Any] = {}  # kept across warm invocations: making a client takes 100 ms or more


def _client(service: str) -> Any:
    """A boto3 client made once per Lambda environment, so that a restart's first slot is not late."""
    client = _CLIENTS.get(service)
    if client is None:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"},
                        max_pool_connections=16)
        client = _CLIENTS[service] = boto3.client(service, config=config)
    return client


def controller_handler(event: Any, context: Any) -> dict[str, Any]:
    """The controller Lambda: DynamoDB store + Lambda dispatcher + the system clock."""
    table = os.environ.get("TABLE_NAME", "")
    if not table:
        raise ConfigError("TABLE_NAME", table, "set it to the control table's name", where="environment")
    store = DynamoStore(_client("dynamodb"), table)
    dispatcher = LambdaDispatcher(_client("lambda"), os.environ.get("WORKER_FUNCTION"),
                                  poller_function=os.environ.get("POLLER_FUNCTION"))
    return run_controller(event, context, store=store, dispatcher=dispatcher, clock=SystemClock())
