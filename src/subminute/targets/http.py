"""The HTTP(S) target: one request per fire, on a kept-alive connection per worker thread.

Spec::

    {"type": "http", "url": "https://api.example.com/predictions?stop=42", "method": "GET",
     "headers": {"Accept": "application/json"}, "body": null, "timeout": 5, "expect": [200]}

``expect`` is a list of status codes or classes (``"2xx"``); the default is any 2xx. ``body`` may be text
or a JSON value (sent as JSON). The schedule's timeout applies unless the spec gives its own.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Result

__all__ = ["HttpTarget"]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _parse_expect(value: Any) -> tuple[set[int], set[int]]:
    items = value if isinstance(value, list) else [value]
    codes: set[int] = set()
    classes: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        elif isinstance(item, str) and len(item) == 3 and item[0] in "12345" and item[1:].lower() == "xx":
            classes.add(int(item[0]))
        elif isinstance(item, str) and item.isdigit() and 100 <= int(item) <= 599:
            codes.add(int(item))
        else:
            raise ConfigError("target.expect", value, "use status codes like [200, 204] or classes like \"2xx\"")
    return codes, classes


class HttpTarget:
    kind = "http"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        url = spec.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("target.url", url, "use an absolute http:// or https:// URL")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        method = str(spec.get("method", "GET")).upper()
        if method not in _METHODS:
            raise ConfigError("target.method", spec.get("method"), "use one of " + ", ".join(_METHODS))
        self.method = method
        headers = spec.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError("target.headers", headers, "use an object of header names to text values")
        self.headers = dict(headers)
        body = spec.get("body")
        if body is None or isinstance(body, str):
            self.body = body.encode() if isinstance(body, str) else None
        else:
            self.body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")
        self.timeout_s = spec.get("timeout")
        if self.timeout_s is not None and (isinstance(self.timeout_s, bool)
                                           or not isinstance(self.timeout_s, (int, float))
                                           or not 0 < self.timeout_s <= 3600):
            raise ConfigError("target.timeout", self.timeout_s, "use a number of seconds from 0.01 to 3600")
        self.expect_codes, self.expect_classes = _parse_expect(spec.get("expect", "2xx"))
        self._local = threading.local()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def expected(self, status: int) -> bool:
        return status in self.expect_codes or status // 100 in self.expect_classes

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        timeout = float(self.timeout_s or timeout_s)
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once, fresh
            conn = self._connection(timeout)
            try:
                conn.request(self.method, self.path, body=self.body, headers=self.headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                self._drop_connection()
                return Result.failure(f"no answer from {self.url} within {timeout:g}s", status="timeout")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop_connection()
                if attempt == 1:
                    continue
                return Result.failure(f"{self.method} {self.url}: {exc}")
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                return Result.failure(f"{self.method} {self.url}: {exc.__class__.__name__}: {exc}")
            if response.will_close:
                self._drop_connection()
            digest = hashlib.sha256(data).hexdigest()[:16]
            detail = {"digest": digest}
            if self.expected(response.status):
                return Result(http_status=response.status, bytes=len(data), detail=detail)
            return Result.failure(f"HTTP {response.status} {response.reason} from {self.url}",
                                  http_status=response.status, bytes=len(data), detail=detail)
        raise AssertionError("unreachable")
