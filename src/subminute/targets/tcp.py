"""The TCP target: connect, optionally send bytes, read a reply; record connect time, bytes and digest.

Spec::

    {"type": "tcp", "host": "127.0.0.1", "port": 6379, "send": "PING\\r\\n", "until": "\\r\\n",
     "expect": "PONG", "timeout": 2}

- ``send``: text (UTF-8) to send after connecting, or ``{"hex": "0a0b"}`` / ``{"base64": "..."}``;
  absent: send nothing.
- ``until``: when the reply is complete: a delimiter text (``"\\n"``), a byte count (``64``), ``"close"``
  (read until the peer closes, the default) or ``0`` (read nothing: a plain connect check).
- ``expect``: a text the reply must contain, else the fire is an error.
- ``max_bytes``: stop reading after this many bytes (default 1 MiB); ``keep``: see :mod:`subminute.results.keep`.
- ``timeout``: seconds for the whole fire (connect, send and read); the schedule's timeout otherwise.

Not reaching the delimiter or count in time is a ``timeout``, with the bytes read so far recorded.
Each fire opens a new connection: the connect time is part of what is watched.
"""

from __future__ import annotations

import base64
import binascii
import socket
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..results.keep import keeper_from_spec
from ..results.records import digest
from .base import Result, TargetEnv
from .fields import int_field, only_fields, seconds_field

__all__ = ["TcpTarget"]


def _parse_send(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, Mapping) and len(value) == 1:
        try:
            if "hex" in value and isinstance(value["hex"], str):
                return bytes.fromhex(value["hex"])
            if "base64" in value and isinstance(value["base64"], str):
                return base64.b64decode(value["base64"], validate=True)
        except (ValueError, binascii.Error):
            pass
    raise ConfigError("target.send", value, 'use a text, {"hex": "0d0a"} or {"base64": "..."}')


class TcpTarget:
    kind = "tcp"
    fields = ("type", "host", "port", "send", "until", "expect", "max_bytes", "timeout", "keep")

    def __init__(self, spec: Mapping[str, Any], env: TargetEnv | None = None) -> None:
        only_fields(spec, self.fields)
        host = spec.get("host")
        if not isinstance(host, str) or not host or len(host) > 253 or any(c.isspace() or c == "\0" for c in host):
            raise ConfigError("target.host", host, "use a host name or IP address")
        self.host = host
        port = spec.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError("target.port", port, "use a port number from 1 to 65535")
        self.port = port
        self.send = _parse_send(spec.get("send"))
        until = spec.get("until", "close")
        self.until_count: int | None = None
        self.until_delim: bytes | None = None
        if isinstance(until, int) and not isinstance(until, bool) and 0 <= until <= 1 << 30:
            self.until_count = until
        elif until == "close":
            pass
        elif isinstance(until, str) and until:
            self.until_delim = until.encode("utf-8")
        else:
            raise ConfigError("target.until", until, 'use a delimiter text such as "\\n", a byte count, or "close"')
        expect = spec.get("expect")
        if expect is not None and (not isinstance(expect, str) or not expect):
            raise ConfigError("target.expect", expect, "use a text the reply must contain")
        self.expect = expect.encode("utf-8") if expect else None
        self.max_bytes = int_field(spec, "max_bytes", 1, 1 << 30, 1 << 20, "a number of bytes")
        if self.until_count is not None and self.until_count > self.max_bytes:
            raise ConfigError("target.until", until, f"use at most max_bytes ({self.max_bytes}), or raise max_bytes")
        self.timeout_s = seconds_field(spec, "timeout", 0.01, 3600)
        self.keeper = keeper_from_spec(spec.get("keep"), env.bodies if env else None)
        self.where = f"{host}:{port}"

    def _complete(self, data: bytearray) -> bool:
        if self.until_count is not None:
            return len(data) >= self.until_count
        if self.until_delim is not None:
            return self.until_delim in data
        return False

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        timeout = float(self.timeout_s or timeout_s)
        start = time.perf_counter()
        deadline = start + timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError:
            return Result.failure(f"cannot connect to {self.where} within {round(timeout, 3):g}s", status="timeout")
        except OSError as exc:
            return Result.failure(f"cannot connect to {self.where}: {exc.strerror or exc}")
        connected = time.perf_counter()
        detail: dict[str, Any] = {"connect_ms": round((connected - start) * 1000, 3)}
        data = bytearray()
        closed = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.send:
                sock.settimeout(max(deadline - time.perf_counter(), 0.001))
                sock.sendall(self.send)
            if self.until_count != 0:
                while not self._complete(data) and len(data) < self.max_bytes:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    chunk = sock.recv(min(65536, self.max_bytes - len(data)))
                    if not chunk:
                        closed = True
                        break
                    data += chunk
        except TimeoutError:
            detail["digest"] = digest(bytes(data))
            return Result.failure(f"{self.where}: reply incomplete after {timeout:g}s ({len(data)} bytes read)",
                                  status="timeout", bytes=len(data), detail=detail)
        except OSError as exc:
            detail["digest"] = digest(bytes(data))
            return Result.failure(f"{self.where}: {exc.strerror or exc}", bytes=len(data), detail=detail)
        finally:
            sock.close()
        reply = bytes(data)
        detail["reply_ms"] = round((time.perf_counter() - connected) * 1000, 3)
        detail.update(self._describe(reply, event))
        if self.until_delim is not None and closed and self.until_delim not in reply:
            return Result.failure(f"{self.where} closed the connection before sending the delimiter",
                                  bytes=len(reply), detail=detail)
        if self.until_count and closed and len(reply) < self.until_count:
            return Result.failure(f"{self.where} closed the connection after {len(reply)} of "
                                  f"{self.until_count} bytes", bytes=len(reply), detail=detail)
        if self.until_delim is not None and not closed and self.until_delim not in reply:
            return Result.failure(f"{self.where}: the reply reached max_bytes ({self.max_bytes}) before the "
                                  "delimiter", bytes=len(reply), detail=detail)
        if self.expect is not None and self.expect not in reply:
            return Result.failure(f"{self.where}: the reply does not contain {self.expect.decode()!r}",
                                  bytes=len(reply), detail=detail)
        return Result(bytes=len(reply), detail=detail)

    def _describe(self, reply: bytes, event: Mapping[str, Any]) -> dict[str, Any]:
        body_digest = digest(reply)
        out: dict[str, Any] = {"digest": body_digest}
        if self.keeper is not None:
            out.update(self.keeper.offer(event, reply, body_digest))
        return out
