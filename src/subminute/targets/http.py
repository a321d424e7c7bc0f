"""The HTTP(S) target: one request per fire, on kept-alive connections reused across fires.

Spec::

    {"type": "http", "url": "https://api.example.com/predictions?stop=42", "method": "GET",
     "headers": {"Accept": "application/json"}, "body": null, "timeout": 5, "expect": [200]}

    {"type": "http", "url": "https://api.example.com/feed.pb",
     "auth": {"type": "bearer", "env": "FEED_TOKEN"},
     "retries": 2, "backoff": 0.05, "retry_on": [429, 502, 503, 504],
     "keep": {"mode": "change", "retain": 500}, "decode": "gtfs-rt"}

- ``expect``: status codes or classes (``"2xx"``); the default is any 2xx. ``body``: text, or a JSON
  value sent as JSON. ``timeout``: seconds for the whole fire, retries included (the schedule's timeout
  otherwise); ``attempt_timeout`` bounds one attempt (default: the time left).
- ``retries`` (default 0) more attempts after a connection error, an attempt timeout or a status in
  ``retry_on``; the wait before retry *n* is ``backoff * 2**(n-1)`` seconds (with jitter, at most
  ``backoff_max``). Retries stay inside the slot: none starts after the next slot is due or when the
  fire's time is up. The record's detail says ``attempts`` when there was more than one.
- ``auth``: the secret is read from an environment variable (``"env"``) or a file (``"file"``, re-read
  when it changes), never from the spec, and is never written to records or logs:
  ``{"type": "bearer", "env": "TOKEN"}``, ``{"type": "basic", "username": "me", "env": "PASSWORD"}``,
  ``{"type": "header", "name": "X-Api-Key", "file": "/run/secrets/key"}``,
  ``{"type": "query", "name": "api_key", "env": "KEY"}`` (added to the URL's query).
- ``max_bytes``: the largest body read (default 16 MiB; a larger one is an error).
- ``keep``: keep bodies (every fire or on change), secrets hidden; see :mod:`subminute.results.keep`.
- ``decode``: ``"gtfs-rt"`` checks the body is a GTFS-realtime feed and records a short summary
  (entity counts, feed age) in the detail; needs the ``gtfs`` extra.
- ``verify``: ``false`` accepts any TLS certificate (test servers only).

Client: HTTP/1.1 spoken by :mod:`subminute.targets.wire` on kept-alive sockets (TLS from :mod:`ssl`).
``bench/http_poll.py clients`` measures it against the standard library's ``http.client`` (which it
replaced: its header parsing made each request cost twice the CPU), httpx and aiohttp
(docs/targets.md has the table); CPU per request is what limits a 2-core controller, and the core needs
no third-party HTTP client.
"""

from __future__ import annotations

import base64
import json
import random
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError
from ..results.records import digest
from ..secrets import Secret, secret_from_spec
from .base import Result, TargetEnv
from .fields import hide, int_field, one_line, only_fields, seconds_field
from .wire import Connection, Response, Stale, WireError, exchange

__all__ = ["ConnectionPool", "HttpTarget"]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_AUTH_TYPES = ("bearer", "basic", "header", "query")
_AUTH_FIELDS = {"bearer": ("type", "env", "file"), "basic": ("type", "username", "env", "file"),
                "header": ("type", "name", "env", "file"), "query": ("type", "name", "env", "file")}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
DEFAULT_RETRY_ON = (429, 502, 503, 504)


def _parse_expect(value: Any, field: str = "target.expect") -> tuple[set[int], set[int]]:
    items = value if isinstance(value, list) else [value]
    codes: set[int] = set()
    classes: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        elif isinstance(item, str) and len(item) == 3 and item[0] in "12345" and item[1:].lower() == "xx":
            classes.add(int(item[0]))
        elif isinstance(item, str) and item.isdecimal() and 100 <= int(item) <= 599:
            codes.add(int(item))
        else:
            raise ConfigError(field, value, "use status codes like [200, 204] or classes like \"2xx\"")
    return codes, classes


class _Auth:
    """Adds the secret to a request: a header, or a query parameter."""

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, Mapping):
            raise ConfigError("target.auth", spec, 'use an object such as {"type": "bearer", "env": "TOKEN"}')
        kind = spec.get("type")
        if kind not in _AUTH_TYPES:
            raise ConfigError("target.auth.type", kind, "use one of " + ", ".join(_AUTH_TYPES))
        self.kind: str = kind
        literal = {"bearer": "token", "basic": "password", "header": "value", "query": "value"}[kind]
        if spec.get(literal) is None:  # a literal secret gets its own message (from secret_from_spec)
            only_fields(spec, _AUTH_FIELDS[kind], "target.auth")
        secret = secret_from_spec(spec, "target.auth", literal_key=literal)
        if secret is None:
            raise ConfigError("target.auth", {"type": kind}, "add env (a variable name) or file (a path) "
                                                              "holding the secret")
        self.secret: Secret = secret
        self.name = ""
        self.username = ""
        if kind in ("header", "query"):
            name = spec.get("name")
            if not isinstance(name, str) or not name or any(c in name for c in ":\r\n "):
                raise ConfigError("target.auth.name", name, f"name the {kind} that carries the secret")
            self.name = name
        if kind == "basic":
            username = spec.get("username")
            if not isinstance(username, str) or not username or ":" in username:
                raise ConfigError("target.auth.username", username, "use the user name (without a colon)")
            self.username = username

    def _pair(self, value: str) -> str:
        return base64.b64encode(f"{self.username}:{value}".encode()).decode("ascii")

    def sent(self) -> list[str]:
        """The secret texts a request carries (hidden from kept bodies, also URL-encoded)."""
        value = self.secret.get()
        return [value, self._pair(value)] if self.kind == "basic" else [value]

    def apply(self, headers: dict[str, str], path: str) -> str:
        value = self.secret.get()
        if self.kind == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        elif self.kind == "basic":
            headers["Authorization"] = f"Basic {self._pair(value)}"
        elif self.kind == "header":
            headers[self.name] = value
        else:
            path += ("&" if "?" in path else "?") + urlencode({self.name: value})
        return path


class ConnectionPool:
    """Idle kept-alive connections to one origin, shared by every worker thread: a fire takes the most
    recently used one (or opens one) and gives it back when its response was read to the end, so
    connections are reused across fires whichever thread runs them."""

    def __init__(self, host: str, port: int, https: bool, *, verify: bool = True, max_idle: int = 64) -> None:
        self.host, self.port, self.https = host, port, https
        self.max_idle = max_idle
        self._idle: deque[Connection] = deque()
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        if https:
            self._context = ssl.create_default_context()
            if not verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self.opened = 0

    def get(self, timeout: float) -> tuple[Connection, bool]:
        """A connection and whether it was used before; a new one is opened (connected, TLS done) within
        ``timeout`` seconds."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            return conn, True
        self.opened += 1
        return Connection.open(self.host, self.port, self._context, timeout), False

    @property
    def idle(self) -> int:
        """Connections waiting for the next fire."""
        return len(self._idle)

    def put(self, conn: Connection) -> None:
        """Keep ``conn`` for the next fire (closed if the pool is full). Only a connection whose response
        was read to its exact end, and that the server keeps open, comes back (a half-read one would
        answer the next request with the rest of this response): see ``Response.reusable``."""
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn in idle:
            conn.close()


def _parse_url(url: Any) -> tuple[str, SplitResult, int | None]:
    """An absolute http(s) URL that a request can carry: its parts and port. Credentials in it are
    refused without being shown."""
    rule = "use an absolute http:// or https:// URL"
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # an unclosed [IPv6 address
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        if isinstance(url, str) and "@" in url:
            url = "(hidden: it may hold credentials)"
        raise ConfigError("target.url", url, rule)
    if parts.username is not None or parts.password is not None:
        shown = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
        raise ConfigError("target.url", shown, "put credentials in target.auth (read from env or a file), "
                                               "not in the URL")
    try:
        port = parts.port
        if port == 0:
            raise ValueError(port)
    except ValueError:
        raise ConfigError("target.url", url, f"{rule} with a port number from 1 to 65535") from None
    if not url.isascii() or _CONTROL.search(url):
        raise ConfigError("target.url", url, "percent-encode spaces, control and non-ASCII characters (%20, %C3%A9)")
    return url, parts, port


def _check_headers(headers: Any) -> dict[str, str]:
    """Header names and values that a request can carry (else every fire would fail the same way)."""
    rule = "use an object of header names to text values, each on one line"
    if not isinstance(headers, Mapping):
        raise ConfigError("target.headers", headers, rule)
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name) or not isinstance(value, str) \
                or any(c in value for c in "\r\n\0"):
            raise ConfigError("target.headers", headers, rule)
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ConfigError("target.headers", headers, f"{rule} (header {name}: use Latin-1 characters only)") from None
    return dict(headers)


class HttpTarget:
    kind = "http"
    fields = ("type", "url", "method", "headers", "body", "timeout", "attempt_timeout", "expect", "retries",
              "backoff", "backoff_max", "retry_on", "max_bytes", "verify", "auth", "keep", "decode")

    def __init__(self, spec: Mapping[str, Any], env: TargetEnv | None = None) -> None:
        only_fields(spec, self.fields)
        url, parts, port = _parse_url(spec.get("url"))
        self.url = url
        self.https = parts.scheme == "https"
        self.host: str = parts.hostname  # type: ignore[assignment]
        self.port = port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        method = str(spec.get("method", "GET")).upper()
        if method not in _METHODS:
            raise ConfigError("target.method", spec.get("method"), "use one of " + ", ".join(_METHODS))
        self.method = method
        self.headers = _check_headers(spec.get("headers") or {})
        body = spec.get("body")
        if body is None or isinstance(body, str):
            self.body = body.encode() if isinstance(body, str) else None
        else:
            self.body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")
        self.timeout_s = seconds_field(spec, "timeout", 0.01, 3600)
        self.attempt_timeout_s = seconds_field(spec, "attempt_timeout", 0.01, 3600)
        self.expect_codes, self.expect_classes = _parse_expect(spec.get("expect", "2xx"))
        self.retries = int_field(spec, "retries", 0, 10, 0)
        self.backoff_s = seconds_field(spec, "backoff", 0, 60, 0.05) or 0.0
        self.backoff_max_s = seconds_field(spec, "backoff_max", 0, 600, 2.0) or 0.0
        retry_on = spec.get("retry_on", list(DEFAULT_RETRY_ON))
        self.retry_codes, self.retry_classes = _parse_expect(retry_on, "target.retry_on") if retry_on else (set(), set())
        self.max_bytes = int_field(spec, "max_bytes", 1, 1 << 30, 16 << 20, "a number of bytes")
        verify = spec.get("verify", True)
        if not isinstance(verify, bool):
            raise ConfigError("target.verify", verify, "use true or false")
        self.auth = _Auth(spec["auth"]) if spec.get("auth") is not None else None
        self.keeper = None
        if spec.get("keep") is not None:  # imported here: the AWS worker bundles this target without it
            from ..results.keep import keeper_from_spec

            self.keeper = keeper_from_spec(spec.get("keep"), env.bodies if env else None,
                                           secrets=self.auth.sent if self.auth else None)
        decode = spec.get("decode")
        if decode not in (None, "gtfs-rt"):
            raise ConfigError("target.decode", decode, "use gtfs-rt (or leave it out)")
        if decode:
            from ..results import gtfs

            gtfs.require()
        self.decode = decode
        self.pool = ConnectionPool(self.host, self.port, self.https, verify=verify)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == (443 if self.https else 80) else f"{host}:{self.port}"
        self._fixed = self._build(self.path, self.headers)

    def _hide(self, text: str) -> str:
        """An error text without any secret: the known ones, and this target's own in their URL-encoded
        forms too (a server that echoes the request line, the query key in it)."""
        return hide(text, self.auth.sent() if self.auth else ())

    def expected(self, status: int) -> bool:
        return status in self.expect_codes or status // 100 in self.expect_classes

    def _retryable(self, attempt: Response) -> bool:
        if attempt.cut:
            return True  # a connection error
        if attempt.status is None:
            return not attempt.too_big
        return attempt.status in self.retry_codes or attempt.status // 100 in self.retry_classes

    def _request(self) -> bytes:
        """The request's bytes: built once, or for each fire when auth adds a secret (it may change)."""
        if self.auth is None:
            return self._fixed
        headers = dict(self.headers)
        path = self.auth.apply(headers, self.path)
        return self._build(path, headers)

    def _build(self, path: str, headers: Mapping[str, str]) -> bytes:
        """The request line and headers as http.client sent them (Host, Accept-Encoding: identity unless
        given, the spec's headers, Content-Length for a body or a POST/PUT/PATCH without one), then the body."""
        given = {name.lower() for name in headers}
        lines = [f"{self.method} {path} HTTP/1.1"]
        if "host" not in given:
            lines.append(f"Host: {self._host_header}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        for value in headers.values():  # a secret (from a file or the environment) may not be sendable
            if any(c in value for c in "\r\n\0") or max(value, default="") > "\xff":
                raise ValueError("a header value holds a line break, a NUL or a character beyond Latin-1; fix the secret")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if "content-length" not in given and (self.body is not None or self.method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(self.body) if self.body else 0}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (self.body or b"")

    def _attempt(self, timeout: float) -> Response:
        try:
            request = self._request()
        except ValueError as exc:
            return self._failed(f"{self.method} {self.url}: {exc}")
        deadline = time.monotonic() + timeout
        while True:  # at most twice: a reused connection the server closed meanwhile is replaced once
            conn: Connection | None = None
            reused = False
            try:
                conn, reused = self.pool.get(max(deadline - time.monotonic(), 0.001))
                out = exchange(conn, request, deadline, self.max_bytes, self.method == "HEAD")
            except (OSError, WireError, Stale) as exc:  # (TimeoutError is an OSError)
                if conn is not None:
                    conn.close()
                if isinstance(exc, Stale) and reused:
                    continue
                if isinstance(exc, TimeoutError):
                    out = self._failed(f"no answer from {self.url} within {round(timeout, 3):g}s")
                    out.timed_out = True
                    return out
                text = str(exc) if isinstance(exc, (WireError, Stale)) else f"{exc.__class__.__name__}: {exc}"
                return self._failed(f"{self.method} {self.url}: {one_line(text)}")
            out.reason = one_line(out.reason)
            if out.too_big:
                out.error = f"{self.url}: body larger than max_bytes ({self.max_bytes})"
            elif out.cut:
                size = len(out.body)
                into = f"{size} of {size + out.missing} bytes into the body" if out.missing else \
                    f"{size} bytes into a chunked body"
                out.error = f"{self.method} {self.url}: the connection ended {into} (HTTP {out.status})"
            if out.reusable:
                self.pool.put(conn)
            else:
                conn.close()
            return out

    @staticmethod
    def _failed(error: str) -> Response:
        out = Response()
        out.error = error
        return out

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        timeout = float(self.timeout_s or timeout_s)
        start = time.monotonic()
        deadline = start + timeout
        # retries start before the next slot is due (and before the fire's time is up)
        next_slot_s = (float(event.get("slot_ms", 0)) / 1000 + float(event.get("interval", 0))) - time.time()
        retry_until = min(deadline, start + next_slot_s) if event.get("interval") else deadline
        attempts = 0
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            attempt = self._attempt(min(left, self.attempt_timeout_s or left))
            if attempts > self.retries or not self._retryable(attempt):
                break
            pause = min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s) * random.uniform(0.5, 1.0)
            if time.monotonic() + pause >= retry_until - 0.001:
                break
            time.sleep(pause)
        return self._result(attempt, attempts, event)

    def _result(self, attempt: Response, attempts: int, event: Mapping[str, Any]) -> Result:
        detail: dict[str, Any] = {}
        if attempts > 1:
            detail["attempts"] = attempts
        if attempt.status is None:
            status = "timeout" if attempt.timed_out else "error"
            return Result.failure(self._hide(attempt.error or "no response"), status=status, detail=detail)
        if attempt.too_big or attempt.cut:
            return Result.failure(self._hide(attempt.error or "body too large"), http_status=attempt.status,
                                  detail=detail)
        data = attempt.body
        body_digest = digest(data)
        detail["digest"] = body_digest
        size = len(data)
        if not self.expected(attempt.status):
            return Result.failure(self._hide(f"HTTP {attempt.status} {attempt.reason} from {self.url}"),
                                  http_status=attempt.status, bytes=size, detail=detail)
        if self.decode:
            from ..results.gtfs import brief

            try:
                detail["gtfs"] = brief(data, now_s=time.time())
            except ConfigError as exc:
                return Result.failure(self._hide(f"{self.url}: {exc}"), http_status=attempt.status, bytes=size,
                                      detail=detail)
        if self.keeper is not None:
            detail.update(self.keeper.offer(event, data, body_digest, attempt.headers.get("content-type")))
        return Result(http_status=attempt.status, bytes=size, detail=detail)
