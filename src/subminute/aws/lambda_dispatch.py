"""Fire by invoking Lambda functions asynchronously (``InvocationType='Event'``), each invoke sent at the slot.

The controller hands a slot's fires over a few milliseconds before the slot. Here they become *invokes*,
their payloads made at once; a small pool of sender threads sleeps to the slot and sends them. The fires of
one slot that go to the stack's own worker travel together: one invoke carries up to ``batch_bytes`` of
events (``{"events": [...]}``, about 1,000 fires in 200 KB), so 1,000 schedules cost one or a few invokes a
slot, not 1,000 (the worker fans them out). An invoke to a function of the user's own (``lambda`` target)
carries its one event, as the original sample's worker expects. Which function a schedule invokes comes
from its ``target``:

- none: the default worker (the stack's worker function, ``WORKER_FUNCTION``);
- ``{"type": "lambda", "function": "name-or-arn"}``: that function, with the fire event as payload;
- ``{"type": "http", "url": ...}``: the poller function (``POLLER_FUNCTION``, else the default worker,
  which polls when an event carries an http target), with the target spec in the event, so one function
  serves many URLs. The worker polls with the very HTTP target of the local runtime (auth, expect,
  retries); what it cannot do on AWS (``keep``, ``decode``) is refused when the row is read.

A slow or throttled Lambda API never delays the controller: only the sender threads wait for it.
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
from ..timing.slots import iso_utc

__all__ = ["AWS_REFUSED_FIELDS", "BATCH_BYTES", "LambdaDispatcher", "function_for"]

log = logging.getLogger("subminute.aws")

BATCH_BYTES = 200_000  # events per worker invoke, at most (an async invoke takes 256 KB)
# fields of an http target that the worker Lambda cannot honour: refused when the row is read
AWS_REFUSED_FIELDS = {"keep": "bodies are kept only by the local runtime", "decode": "feeds are decoded only "
                      "by the local runtime"}
_INF = float("inf")


def function_for(schedule: Schedule, default_function: str | None, poller_function: str | None = None,
             ) -> tuple[str, Mapping[str, Any] | None]:
    """The function a schedule invokes and the target spec to put in its event (or ``None``); raise
    :class:`ConfigError` for a target the AWS home cannot run (the rule ``aws set`` checks with too)."""
    spec = schedule.target
    kind = spec.get("type") if spec else None
    if kind in (None, "noop", "worker"):
        if not default_function:
            raise ConfigError("target", spec, "name a function: {\"type\": \"lambda\", \"function\": \"...\"}"
                              " (this controller has no default worker)")
        return default_function, None
    if kind == "lambda":
        function = spec.get("function") if spec else None
        if not isinstance(function, str) or not function:
            raise ConfigError("target.function", function, "use the name or ARN of a Lambda function")
        return function, None
    if kind == "http":
        assert spec is not None
        for key, why in AWS_REFUSED_FIELDS.items():
            if spec.get(key) not in (None, False, "none"):
                raise ConfigError(f"target.{key}", spec[key], f"leave it out on AWS: {why}")
        function = poller_function or default_function
        if not function:
            raise ConfigError("target.type", kind, "set POLLER_FUNCTION or WORKER_FUNCTION, or use lambda")
        from ..targets.http import HttpTarget

        HttpTarget(spec)  # checked whole here, as the poller will build it: a bad spec disables its row
        return function, spec
    raise ConfigError("target.type", kind, "on AWS use lambda (a function) or http (the poller)")


class _Invoke:
    __slots__ = ("due_mono", "fires", "function", "log", "payload")

    def __init__(self, due_mono: float, function: str, fires: list[Fire], payload: bytes, log_: Any) -> None:
        self.due_mono = due_mono
        self.function = function
        self.fires = fires
        self.payload = payload
        self.log = log_


class LambdaDispatcher:
    """A :class:`~subminute.dispatch.base.Dispatcher` that invokes Lambda functions asynchronously."""

    def __init__(self, client: Any, default_function: str | None, *, poller_function: str | None = None,
                 workers: int = 4, on_record: Callable[[FireRecord], None] | None = None,
                 clock: Clock | None = None, batch_bytes: int = BATCH_BYTES) -> None:
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.default_function = default_function or None
        self.poller_function = poller_function or None
        self.on_record = on_record
        self.batch_bytes = batch_bytes
        self._functions: dict[int, tuple[str, Mapping[str, Any] | None]] = {}
        self._texts: dict[int, tuple[Schedule, str, str]] = {}  # id -> (schedule, name and tail as JSON)
        self._ours = {f for f in (self.default_function, self.poller_function) if f}  # they take batches
        self._queue: deque[_Invoke | None] = deque()
        self._ready = self.clock.event()
        self._never = self.clock.event()
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}
        self.stats = {"invoked": 0, "failed": 0, "invokes": 0}
        self._threads = [self.clock.thread(self._work, f"subminute-invoke-{i}") for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def function_for(self, schedule: Schedule) -> tuple[str, Mapping[str, Any] | None]:
        return function_for(schedule, self.default_function, self.poller_function)

    # -- Dispatcher ----------------------------------------------------------------------------------------
    def prepare(self, schedule: Schedule) -> None:
        self._functions[schedule.id] = self.function_for(schedule)

    def in_flight(self, schedule_id: int) -> int:
        """Invokes not yet accepted by Lambda (an async invoke is done once Lambda has queued it)."""
        return self._in_flight.get(schedule_id, 0)

    def submit(self, batch: Batch) -> None:
        """Make the slot's invokes now (payloads serialised); the senders send them at the slot."""
        by_function: dict[str, list[tuple[Fire, bytes]]] = {}
        for fire in batch.fires:
            function, spec = self._functions.get(fire.schedule.id) or self.function_for(fire.schedule)
            by_function.setdefault(function, []).append((fire, self._payload(fire, spec)))
        invokes: list[_Invoke] = []
        for function, items in by_function.items():
            if function not in self._ours:  # a user's function takes one event per invoke
                invokes.extend(_Invoke(batch.due_mono, function, [fire], body, batch.log) for fire, body in items)
                continue
            chunk: list[tuple[Fire, bytes]] = []
            size = 0
            for item in items:
                if chunk and size + len(item[1]) + 1 > self.batch_bytes:
                    invokes.append(self._batched(batch, function, chunk))
                    chunk, size = [], 0
                chunk.append(item)
                size += len(item[1]) + 1
            if chunk:
                invokes.append(self._batched(batch, function, chunk))
        with self._lock:
            for invoke in invokes:
                for fire in invoke.fires:
                    sid = fire.schedule.id
                    self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
                self._queue.append(invoke)
        self._ready.set()

    def _payload(self, fire: Fire, spec: Mapping[str, Any] | None) -> bytes:
        """The fire's event as JSON, the same as ``json.dumps(make_event(...))`` (with the http target's
        spec) but made from parts kept per schedule: 1,000 fires are made in about a millisecond."""
        schedule = fire.schedule
        kept = self._texts.get(schedule.id)
        if kept is None or kept[0] is not schedule:
            tail = "" if spec is None else ',"target":' + json.dumps(dict(spec), separators=(",", ":"))
            kept = self._texts[schedule.id] = (schedule, json.dumps(schedule.name), tail)
        _, name, tail = kept
        slot_text = fire.slot_text or iso_utc(fire.slot_ms)
        return (f'{{"schedule_id":{schedule.id},"schedule":{name},"slot":"{slot_text}","slot_ms":{fire.slot_ms},'
                f'"seq":{fire.seq},"interval":{fire.interval_ms / 1000!r},"controller":{json.dumps(fire.controller)}'
                f'{tail}}}').encode()

    @staticmethod
    def _batched(batch: Batch, function: str, chunk: list[tuple[Fire, bytes]]) -> _Invoke:
        if len(chunk) == 1:
            return _Invoke(batch.due_mono, function, [chunk[0][0]], chunk[0][1], batch.log)
        payload = b'{"events":[' + b",".join(body for _, body in chunk) + b"]}"
        return _Invoke(batch.due_mono, function, [fire for fire, _ in chunk], payload, batch.log)

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

    # -- the sender threads --------------------------------------------------------------------------------
    def _work(self) -> None:
        clock = self.clock
        while True:
            try:
                item = self._queue.popleft()
            except IndexError:
                clock.wait(self._ready, _INF)
                self._ready.clear()
                continue
            if item is None:
                self._ready.set()  # the next sender sees its own end
                return
            delay = item.due_mono - clock.monotonic()
            if delay > 0:
                clock.wait(self._never, delay)
            try:
                self._invoke(item)
            finally:
                with self._lock:
                    for fire in item.fires:
                        self._in_flight[fire.schedule.id] -= 1

    def _invoke(self, item: _Invoke) -> None:
        function = item.function
        started = self.clock.time() * 1000
        for fire in item.fires:
            item.log.started(fire, started)
        try:
            response = self.client.invoke(FunctionName=function, InvocationType="Event", Payload=item.payload)
            status = int(response.get("StatusCode", 0))
            error = None if status == 202 else f"Lambda answered {status} to an Event invoke of {function}"
        except Exception as exc:  # noqa: BLE001 - botocore errors, throttling, timeouts: recorded, never raised
            status, error = 0, bounded(f"invoke {function}: {exc.__class__.__name__}: {exc}")
        ended = self.clock.time() * 1000
        self.stats["invokes"] += 1
        if error is None:
            self.stats["invoked"] += len(item.fires)
        else:
            self.stats["failed"] += len(item.fires)
            log.error(json.dumps({"msg": "invoke failed", "function": function, "fires": len(item.fires),
                                  "schedules": sorted({f.schedule.id for f in item.fires})[:20], "error": error}))
        if self.on_record is not None:
            detail = {"function": function, "status": status, "batch": len(item.fires)}
            for fire in item.fires:
                self.on_record(fire_record(fire, "ok" if error is None else "error", started_ms=started,
                                           ended_ms=ended, latency_ms=round(ended - started, 3), error=error,
                                           detail=detail))
