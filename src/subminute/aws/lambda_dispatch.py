"""Fire by invoking a worker Lambda asynchronously (``InvocationType='Event'``).

``submit`` only puts the fire on a queue; a small pool of threads makes the invoke calls (10-50 ms each),
so a slow or throttled Lambda API never delays the controller's next slot. Which function a schedule
invokes comes from its ``target``:

- none: the default worker (the stack's worker function, ``WORKER_FUNCTION``);
- ``{"type": "lambda", "function": "name-or-arn"}``: that function, with the fire event as payload;
- ``{"type": "http", "url": ...}``: the poller function (``POLLER_FUNCTION``, else the default worker,
  which polls when its event carries an http target), with the target spec in the event, so one
  function serves many URLs.

Standard library plus a boto3 Lambda client passed in: this module is bundled into the inline Lambda code.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..control.base import Schedule
from ..dispatch.base import Fire, fire_record
from ..errors import ConfigError
from ..results.records import FireRecord, bounded

__all__ = ["LambdaDispatcher"]

log = logging.getLogger("subminute.aws")


class LambdaDispatcher:
    """A :class:`~subminute.dispatch.base.Dispatcher` that invokes Lambda functions asynchronously."""

    def __init__(self, client: Any, default_function: str | None, *, poller_function: str | None = None,
                 workers: int = 4, on_record: Callable[[FireRecord], None] | None = None,
                 wall_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.client = client
        self.default_function = default_function or None
        self.poller_function = poller_function or None
        self.on_record = on_record
        self._wall_ms = wall_ms
        self._functions: dict[int, tuple[str, Mapping[str, Any] | None]] = {}
        self._queue: queue.SimpleQueue[Fire | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}
        self.stats = {"invoked": 0, "failed": 0}
        self._threads = [threading.Thread(target=self._work, name=f"subminute-invoke-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def function_for(self, schedule: Schedule) -> tuple[str, Mapping[str, Any] | None]:
        """The function a schedule invokes and the target spec to put in its event (or ``None``)."""
        spec = schedule.target
        kind = spec.get("type") if spec else None
        if kind in (None, "noop", "worker"):
            if not self.default_function:
                raise ConfigError("target", spec, "name a function: {\"type\": \"lambda\", \"function\": \"...\"}"
                                  " (this controller has no default worker)")
            return self.default_function, None
        if kind == "lambda":
            function = spec.get("function") if spec else None
            if not isinstance(function, str) or not function:
                raise ConfigError("target.function", function, "use the name or ARN of a Lambda function")
            return function, None
        if kind == "http":
            function = self.poller_function or self.default_function
            if not function:
                raise ConfigError("target.type", kind, "set POLLER_FUNCTION or WORKER_FUNCTION, or use lambda")
            return function, spec
        raise ConfigError("target.type", kind, "on AWS use lambda (a function) or http (the poller)")

    # -- Dispatcher ----------------------------------------------------------------------------------------
    def prepare(self, schedule: Schedule) -> None:
        self._functions[schedule.id] = self.function_for(schedule)

    def in_flight(self, schedule_id: int) -> int:
        """Invokes not yet accepted by Lambda (an async invoke is done once Lambda has queued it)."""
        return self._in_flight.get(schedule_id, 0)

    def submit(self, fire: Fire) -> None:
        sid = fire.schedule.id
        with self._lock:
            self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
        self._queue.put(fire)

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the queued invokes go out (for at most ``timeout_s``), then stop the threads."""
        deadline = time.monotonic() + timeout_s
        while any(self._in_flight.values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.1)

    # -- the invoking threads ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            fire = self._queue.get()
            if fire is None:
                return
            try:
                self._invoke(fire)
            finally:
                with self._lock:
                    self._in_flight[fire.schedule.id] -= 1

    def _invoke(self, fire: Fire) -> None:
        function, spec = self._functions.get(fire.schedule.id) or self.function_for(fire.schedule)
        event = fire.event()
        if spec is not None:
            event["target"] = dict(spec)
        started = self._wall_ms()
        try:
            response = self.client.invoke(FunctionName=function, InvocationType="Event",
                                          Payload=json.dumps(event, separators=(",", ":")).encode())
            status = int(response.get("StatusCode", 0))
            error = None if status == 202 else f"Lambda answered {status} to an Event invoke of {function}"
        except Exception as exc:  # noqa: BLE001 - botocore errors, throttling, timeouts: recorded, never raised
            status, error = 0, bounded(f"invoke {function}: {exc.__class__.__name__}: {exc}")
        ended = self._wall_ms()
        if error is None:
            self.stats["invoked"] += 1
        else:
            self.stats["failed"] += 1
            log.error(json.dumps({"msg": "invoke failed", "schedule_id": fire.schedule.id,
                                  "slot": event["slot"], "error": error}))
        if self.on_record is not None:
            self.on_record(fire_record(fire, "ok" if error is None else "error", started_ms=started,
                                       ended_ms=ended, latency_ms=round(ended - started, 3), error=error,
                                       detail={"function": function, "status": status}))
