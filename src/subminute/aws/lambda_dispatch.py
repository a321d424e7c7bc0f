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
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..control.rows import Schedule
from ..dispatch.base import Batch, Fire, fire_record
from ..errors import ConfigError
from ..results.records import FireRecord, bounded
from ..timing.clock import Clock, SystemClock

__all__ = ["LambdaDispatcher"]

log = logging.getLogger("subminute.aws")


class LambdaDispatcher:
    """A :class:`~subminute.dispatch.base.Dispatcher` that invokes Lambda functions asynchronously."""

    def __init__(self, client: Any, default_function: str | None, *, poller_function: str | None = None,
                 workers: int = 4, on_record: Callable[[FireRecord], None] | None = None,
                 clock: Clock | None = None) -> None:
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.default_function = default_function or None
        self.poller_function = poller_function or None
        self.on_record = on_record
        self._functions: dict[int, tuple[str, Mapping[str, Any] | None]] = {}
        self._queue: deque[tuple[Batch, Fire] | None] = deque()
        self._ready = self.clock.event()
        self._never = self.clock.event()
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}
        self.stats = {"invoked": 0, "failed": 0}
        self._threads = [self.clock.thread(self._work, f"subminute-invoke-{i}") for i in range(max(1, workers))]
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

    def submit(self, batch: Batch) -> None:
        with self._lock:
            for fire in batch.fires:
                sid = fire.schedule.id
                self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
                self._queue.append((batch, fire))
        self._ready.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the queued invokes go out (for at most ``timeout_s``), then stop the threads."""
        clock = self.clock
        deadline = clock.monotonic() + timeout_s
        while any(self._in_flight.values()) and clock.monotonic() < deadline:
            clock.wait(self._never, 0.005)
        for _ in self._threads:
            self._queue.append(None)
        self._ready.set()
        for thread in self._threads:
            clock.join(thread, max(0.0, deadline - clock.monotonic()) + 0.1)

    # -- the invoking threads ------------------------------------------------------------------------------
    def _work(self) -> None:
        clock = self.clock
        while True:
            try:
                item = self._queue.popleft()
            except IndexError:
                clock.wait(self._ready, float("inf"))
                self._ready.clear()
                continue
            if item is None:
                self._ready.set()
                return
            batch, fire = item
            delay = batch.due_mono - clock.monotonic()
            if delay > 0:
                clock.wait(self._never, delay)
            try:
                self._invoke(fire, batch)
            finally:
                with self._lock:
                    self._in_flight[fire.schedule.id] -= 1

    def _invoke(self, fire: Fire, batch: Batch) -> None:
        function, spec = self._functions.get(fire.schedule.id) or self.function_for(fire.schedule)
        event = fire.event()
        if spec is not None:
            event["target"] = dict(spec)
        started = self.clock.time() * 1000
        batch.log.started(fire, started)
        try:
            response = self.client.invoke(FunctionName=function, InvocationType="Event",
                                          Payload=json.dumps(event, separators=(",", ":")).encode())
            status = int(response.get("StatusCode", 0))
            error = None if status == 202 else f"Lambda answered {status} to an Event invoke of {function}"
        except Exception as exc:  # noqa: BLE001 - botocore errors, throttling, timeouts: recorded, never raised
            status, error = 0, bounded(f"invoke {function}: {exc.__class__.__name__}: {exc}")
        ended = self.clock.time() * 1000
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
