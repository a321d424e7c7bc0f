"""The worker Lambda: the demo worker (logs each fire, the sample's role) and the ready HTTP poller.

``worker_handler`` polls when there is something to poll (the ``URL`` variable is set, or the event
carries an http ``target``) and otherwise logs the event, so the one deployed worker function is both;
``demo_handler`` and ``http_worker_handler`` are each mode alone. Both receive the fire event of
:func:`subminute.dispatch.base.make_event` (an invoke from the controller may carry a slot's fires
together: ``{"events": [...]}``) and write one JSON log line per fire, with ``delay_ms``: how long after
its slot the fire arrived. The poller is the local runtime's own HTTP target
(:mod:`subminute.targets.http`, bundled: auth from the environment or a file, ``expect``, ``retries``,
size limits; the controller refuses what it cannot do here, ``keep`` and ``decode``), on connections
kept alive across warm invocations. It is configured by the environment unless the event carries a
``target`` spec (a control row with ``{"type": "http", "url": ...}``):

========  =====================================================================
URL       the http:// or https:// address to request (required)
METHOD    GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS
HEADERS   a JSON object of header names to text values (default none)
TIMEOUT   seconds for the request (default 10)
========  =====================================================================

Standard library only (and the core it bundles): the workers' inline code.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..targets.http import HttpTarget

__all__ = ["demo_handler", "http_worker_handler", "poller", "poller_spec", "worker_handler"]


def _delay(event: Mapping[str, Any], now_ms: float) -> float | None:
    slot = event.get("slot_ms")
    return round(now_ms - slot, 1) if isinstance(slot, (int, float)) and not isinstance(slot, bool) else None


_LOG_LOCK = threading.Lock()  # polls of a batch log side by side: one whole line at a time


def _log(line: Mapping[str, Any]) -> None:
    text = json.dumps(line, default=str) + "\n"
    with _LOG_LOCK:
        sys.stdout.write(text)
        sys.stdout.flush()


BATCH_THREADS = 16  # polls of one batched invoke run this many at a time


def worker_handler(event: Any, context: Any) -> dict[str, Any]:
    """Poll if configured to (``URL`` set, or an http ``target`` in the event), else log the event. An
    invoke from the controller may carry a slot's fires together (``{"events": [...]}``): each is handled
    as if it came alone, polls side by side."""
    if isinstance(event, Mapping) and isinstance(event.get("events"), list):
        events = [e for e in event["events"] if isinstance(e, Mapping)]
        if len(events) > 1 and any(_polls(e) for e in events):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(BATCH_THREADS, len(events))) as pool:
                lines = list(pool.map(lambda e: _one(e, context), events))
        else:
            lines = [_one(e, context) for e in events]
        return {"msg": "batch", "fires": len(lines), "errors": sum(1 for line in lines if line.get("error"))}
    return _one(event, context)


def _polls(event: Any) -> bool:
    target = event.get("target") if isinstance(event, Mapping) else None
    return bool(os.environ.get("URL")) or (isinstance(target, Mapping) and target.get("type") == "http")


def _one(event: Any, context: Any) -> dict[str, Any]:
    return http_worker_handler(event, context) if _polls(event) else demo_handler(event, context)


def demo_handler(event: Any, context: Any) -> dict[str, Any]:
    """The demo worker: log the fire event and how late it arrived."""
    now_ms = time.time() * 1000
    event = event if isinstance(event, Mapping) else {"event": event}
    line = {"msg": "fire", **event, "received_ms": round(now_ms), "delay_ms": _delay(event, now_ms)}
    _log(line)
    return line


def poller_spec(event: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The poller's request: the event's ``target`` spec, else ``URL``/``METHOD``/``HEADERS``/``TIMEOUT``."""
    target = event.get("target")
    if isinstance(target, Mapping):
        return dict(target)
    env = os.environ if environ is None else environ
    headers_text = env.get("HEADERS", "") or "{}"
    try:
        headers = json.loads(headers_text)
    except json.JSONDecodeError:
        raise ConfigError("HEADERS", headers_text, "use a JSON object such as {\"Accept\": \"text/plain\"}",
                          where="environment") from None
    timeout_text = env.get("TIMEOUT", "") or "10"
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 900:
        raise ConfigError("TIMEOUT", timeout_text, "use a number of seconds from 0.01 to 900", where="environment")
    return {"type": "http", "url": env.get("URL", ""), "method": env.get("METHOD", "") or "GET",
            "headers": headers, "timeout": timeout}


_TARGETS: dict[str, HttpTarget] = {}  # one per spec: its connections are kept across warm invocations
_ENV_NAMES = {"target.url": "URL", "target.method": "METHOD", "target.headers": "HEADERS",
              "target.timeout": "TIMEOUT"}


def poller(event: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> HttpTarget:
    """The HTTP target for ``event`` (built once per spec); a bad setting of the environment is named as
    the variable (``URL``, ``METHOD``, ...)."""
    spec = poller_spec(event, environ)
    key = json.dumps(spec, sort_keys=True, default=str)
    target = _TARGETS.get(key)
    if target is None:
        try:
            target = HttpTarget(spec)
        except ConfigError as exc:
            if isinstance(event.get("target"), Mapping) or exc.field not in _ENV_NAMES:
                raise
            raise ConfigError(_ENV_NAMES[exc.field], exc.value, exc.allowed, where="environment") from None
        _TARGETS[key] = target
    return target


def http_worker_handler(event: Any, context: Any) -> dict[str, Any]:
    """The HTTP poller: one request per fire, made by the local runtime's own HTTP target (auth, expect,
    retries, size limits: one meaning per row), and one structured JSON log line per result."""
    event = event if isinstance(event, Mapping) else {}
    target = poller(event)
    started = time.time() * 1000
    result = target.run(event, target.timeout_s or 10.0)
    ended = time.time() * 1000
    line = {"msg": "poll", "schedule_id": event.get("schedule_id"), "slot": event.get("slot"),
            "seq": event.get("seq"), "url": target.url, "status": result.status, "http_status": result.http_status,
            "bytes": result.bytes, "digest": result.detail.get("digest"), "error": result.error,
            "latency_ms": round(ended - started, 1), "delay_ms": _delay(event, started)}
    if result.detail.get("attempts"):
        line["attempts"] = result.detail["attempts"]
    _log(line)
    return line
