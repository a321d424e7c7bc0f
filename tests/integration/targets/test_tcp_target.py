"""The TCP target against real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from subminute.dispatch.base import make_event
from subminute.errors import ConfigError
from subminute.results.bodies import digest, read_bodies
from subminute.targets.base import build_target

EVENT = make_event(3, "redis", 1_800_000_000_000, 1, 1000)


def spec(port: int, **kw: Any) -> dict[str, Any]:
    return {"type": "tcp", "host": "127.0.0.1", "port": port, **kw}


def test_send_and_read_until_a_delimiter(tcp_server: Callable[..., Any]) -> None:
    server = tcp_server()
    result = build_target(spec(server.port, send="PING\n", until="\n", expect="pong")).run(EVENT, 2)
    assert result.ok, result.error
    assert result.bytes == len(b"pong PING\n")
    assert result.detail["digest"] == digest(b"pong PING\n")
    assert 0 <= result.detail["connect_ms"] < 1000 and result.detail["reply_ms"] >= 0


def test_read_a_byte_count_and_until_close(tcp_server: Callable[..., Any]) -> None:
    def banner(conn: socket.socket) -> None:
        conn.sendall(b"HELLO-0123456789")
        conn.close()

    server = tcp_server(banner)
    counted = build_target(spec(server.port, until=5)).run(EVENT, 2)
    assert counted.ok and counted.bytes >= 5
    whole = build_target(spec(server.port)).run(EVENT, 2)  # until the peer closes
    assert whole.ok and whole.bytes == 16
    short = build_target(spec(server.port, until=100)).run(EVENT, 2)
    assert short.status == "error" and "after 16 of 100 bytes" in (short.error or "")
    missing = build_target(spec(server.port, until="\n")).run(EVENT, 2)
    assert missing.status == "error" and "before sending the delimiter" in (missing.error or "")


def test_expect_mismatch_is_an_error(tcp_server: Callable[..., Any]) -> None:
    server = tcp_server()
    result = build_target(spec(server.port, send="x\n", until="\n", expect="+OK")).run(EVENT, 2)
    assert result.status == "error" and "does not contain '+OK'" in (result.error or "")


def test_a_silent_server_is_a_timeout_with_bytes_so_far(tcp_server: Callable[..., Any]) -> None:
    gate = threading.Event()

    def partial(conn: socket.socket) -> None:
        conn.sendall(b"par")
        gate.wait(5)

    server = tcp_server(partial)
    t0 = time.monotonic()
    result = build_target(spec(server.port, until="\n", timeout=0.2)).run(EVENT, 5)
    gate.set()
    assert result.status == "timeout" and result.bytes == 3
    assert "3 bytes read" in (result.error or "")
    assert 0.15 < time.monotonic() - t0 < 1.5


def test_connect_only_and_refused(tcp_server: Callable[..., Any]) -> None:
    server = tcp_server()
    ok = build_target(spec(server.port, until=0)).run(EVENT, 2)
    assert ok.ok and ok.bytes == 0
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free_port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    refused = build_target(spec(free_port, until=0)).run(EVENT, 2)
    assert refused.status == "error" and "refused" in (refused.error or "").lower()


def test_every_fire_opens_a_connection_and_keep_all_keeps_each_reply(tcp_server: Callable[..., Any],
                                                                     tmp_path: Path) -> None:
    server = tcp_server()
    target = build_target(spec(server.port, send="v\n", until="\n",
                               keep={"mode": "all", "format": "jsonl", "path": str(tmp_path), "retain": 2}))
    for seq in range(1, 4):
        detail = target.run(make_event(3, "redis", 1_800_000_000_000 + seq, seq, 1000), 2).detail
        assert detail["kept"] is True
    assert server.connections == 3
    assert target.keeper.flush()
    kept = read_bodies(tmp_path, 3)
    assert 2 <= len(kept) <= 3 and kept[-1]["seq"] == 3 and kept[-1]["body"] == "pong v\n"


def test_a_reply_cut_by_max_bytes_before_its_delimiter_is_an_error(tcp_server: Callable[..., Any]) -> None:
    """The reply is incomplete whether the peer stopped early or our limit did: never recorded ok."""
    gate = threading.Event()

    def endless(conn: socket.socket) -> None:
        conn.sendall(b"x" * 100)  # no delimiter within max_bytes
        gate.wait(5)

    server = tcp_server(endless)
    try:
        cut = build_target(spec(server.port, until="\n", max_bytes=8)).run(EVENT, 2)
        assert cut.status == "error" and cut.bytes == 8
        assert "max_bytes (8)" in (cut.error or "") and "delimiter" in (cut.error or "")
    finally:
        gate.set()


def test_a_byte_count_over_max_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"target.until: 100 is not allowed; use at most max_bytes \(50\)"):
        build_target(spec(1, until=100, max_bytes=50))
