"""The worker Lambda: the demo worker (logs each fire, the sample's role) and the ready HTTP poller.

``worker_handler`` polls when there is something to poll (the ``URL`` variable is set, or the event
carries an http ``target``) and otherwise logs the event, so the one deployed worker function is both;
``demo_handler`` and ``http_worker_handler`` are each mode alone. Both receive the fire event of :func:`subminute.targets.base.make_event` and write one JSON log line, with
``delay_ms``: how long after its slot the fire arrived. The poller makes one request per fire on a
connection kept alive across warm invocations. It is configured by the environment unless the event
carries a ``target`` spec (a control row with ``{"type": "http", "url": ...}``):

========  =====================================================================
URL       the http:// or https:// address to request (required)
METHOD    GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS
HEADERS   a JSON object of header names to text values (default none)
TIMEOUT   seconds for the request (default 10)
========  =====================================================================

This is the small Lambda-side twin of :mod:`subminute.targets.http` (which carries retries, secrets,
body keeping and feed decoding for the local runtime, and would triple the inline code): it keeps only
one request and its result. Standard library only: bundled, alone, as the workers' inline code.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["Poller", "demo_handler", "http_worker_handler", "poller_spec", "worker_handler"]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _delay(event: Mapping[str, Any], now_ms: float) -> float | None:
    slot = event.get("slot_ms")
    return round(now_ms - slot, 1) if isinstance(slot, (int, float)) and not isinstance(slot, bool) else None


def _log(line: Mapping[str, Any]) -> None:
    print(json.dumps(line, default=str), flush=True)


def worker_handler(event: Any, context: Any) -> dict[str, Any]:
    """Poll if configured to (``URL`` set, or an http ``target`` in the event), else log the event."""
    target = event.get("target") if isinstance(event, Mapping) else None
    if os.environ.get("URL") or (isinstance(target, Mapping) and target.get("type") == "http"):
        return http_worker_handler(event, context)
    return demo_handler(event, context)


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


class Poller:
    """One HTTP(S) request per call, on a connection kept alive between calls."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        url = spec.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("URL", url, "use an absolute http:// or https:// address")
        method = str(spec.get("method") or "GET").upper()
        if method not in METHODS:
            raise ConfigError("METHOD", spec.get("method"), "use one of " + ", ".join(METHODS))
        headers = spec.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError("HEADERS", headers, "use a JSON object of header names to text values")
        self.url, self.method, self.headers = str(url), method, dict(headers)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = float(spec.get("timeout") or 10)
        body = spec.get("body")
        self.body = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def poll(self) -> dict[str, Any]:
        """``{"status", "http_status", "bytes", "digest", "error"}``; never raises for a failed request."""
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once, fresh
            conn = self._connection()
            try:
                conn.request(self.method, self.path, body=self.body, headers=self.headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                self._drop()
                return {"status": "timeout", "error": f"no answer from {self.url} within {self.timeout:g}s"}
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop()
                if attempt == 1:
                    continue
                return {"status": "error", "error": f"{self.method} {self.url}: {exc}"}
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                return {"status": "error", "error": f"{self.method} {self.url}: {exc.__class__.__name__}: {exc}"}
            if response.will_close:
                self._drop()
            ok = 200 <= response.status < 300
            return {"status": "ok" if ok else "error", "http_status": response.status, "bytes": len(data),
                    "digest": hashlib.sha256(data).hexdigest()[:16],
                    "error": None if ok else f"HTTP {response.status} {response.reason} from {self.url}"}
        raise AssertionError("unreachable")


_POLLERS: dict[str, Poller] = {}


def http_worker_handler(event: Any, context: Any) -> dict[str, Any]:
    """The HTTP poller: one request per fire and one structured JSON log line per result."""
    event = event if isinstance(event, Mapping) else {}
    spec = poller_spec(event)
    key = json.dumps(spec, sort_keys=True, default=str)
    poller = _POLLERS.get(key)
    if poller is None:
        poller = _POLLERS[key] = Poller(spec)
    started = time.time() * 1000
    result = poller.poll()
    ended = time.time() * 1000
    line = {"msg": "poll", "schedule_id": event.get("schedule_id"), "slot": event.get("slot"),
            "seq": event.get("seq"), "url": poller.url, **result, "latency_ms": round(ended - started, 1),
            "delay_ms": _delay(event, started)}
    _log(line)
    return line
