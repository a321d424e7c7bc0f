"""The HTTP/1.1 wire code of the HTTP target, one response at a time over a socket pair: framing
(Content-Length, chunked, to the end), interim answers, when a connection may be kept, and every lie."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from subminute.targets.wire import MAX_HEAD, Connection, Response, Stale, WireError, exchange

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    client, server = socket.socketpair()
    yield Connection(client), server
    client.close()
    server.close()


def answer(pair: tuple[Connection, socket.socket], data: bytes, *, close: bool = False, max_bytes: int = 1 << 20,
           head_only: bool = False, timeout: float = 2.0) -> Response:
    conn, server = pair
    server.sendall(data)
    if close:
        server.shutdown(socket.SHUT_WR)
    response = exchange(conn, REQUEST, time.monotonic() + timeout, max_bytes, head_only)
    assert server.recv(65536) == REQUEST
    return response


def test_content_length_body_and_a_kept_connection(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    assert (got.status, got.reason, got.body, got.headers["content-type"]) == (200, "OK", b"hello", "text/plain")
    assert got.reusable and not got.cut and not got.too_big
    again = answer(pair, b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno")  # the same connection
    assert (again.status, again.body, again.reusable) == (404, b"no", True)


def test_chunked_with_extensions_and_trailers(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n")
    assert got.body == b"hello!" and got.reusable


def test_interim_answers_are_skipped(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                       b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert (got.status, got.body, got.reusable) == (201, b"", True)


@pytest.mark.parametrize(("head", "kept"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),  # bytes past the response: a lie
])
def test_when_a_connection_is_kept(pair: tuple[Connection, socket.socket], head: bytes, kept: bool) -> None:
    got = answer(pair, head)
    assert got.body == b"ok" and got.reusable is kept


def test_a_body_to_the_end_of_the_connection(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 200_000, close=True)
    assert got.body == b"x" * 200_000 and not got.reusable


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_answers(pair: tuple[Connection, socket.socket], status: int) -> None:
    got = answer(pair, b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
    assert got.body == b"" and got.reusable


def test_head_reads_no_body(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_only=True)
    assert (got.status, got.body, got.reusable) == (200, b"", True)


def test_bare_line_feeds_folded_and_repeated_headers(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\nX-A: one\n  two\nX-B: 1\nX-B: 2\nnot a header\nContent-Length: 1\n\n!")
    assert got.headers["x-a"] == "one two" and got.headers["x-b"] == "1, 2" and got.body == b"!"


def test_too_big_bodies_are_not_read(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", max_bytes=999)
    assert got.too_big and not got.reusable and got.body == b""


def test_too_big_chunked_and_to_the_end() -> None:
    for data, close in ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n", False),
                        (b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 30, True)):
        client, server = socket.socketpair()
        with client, server:
            got = answer((Connection(client), server), data, close=close, max_bytes=10)
            assert got.too_big and not got.reusable


@pytest.mark.parametrize(("data", "fault"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "BadStatusLine: SSH-2.0-OpenSSH_9.6"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "BadStatusLine"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n", "LineTooLong"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nok\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "two different Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", "Content-Length is not a number"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n", "longer than its size"),
])
def test_lies_are_wire_errors(pair: tuple[Connection, socket.socket], data: bytes, fault: str) -> None:
    with pytest.raises(WireError, match=fault):
        answer(pair, data)


def test_the_connection_ending_inside_the_body(pair: tuple[Connection, socket.socket]) -> None:
    got = answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", close=True)
    assert got.cut and got.missing == 90 and got.body == b"0123456789" and not got.reusable


def test_the_connection_ending_inside_a_chunked_body() -> None:
    client, server = socket.socketpair()
    with client, server:
        got = answer((Connection(client), server), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                   b"a\r\n0123456789\r\n14\r\n01234", close=True)
        assert got.cut and got.body == b"0123456789" b"01234" and not got.reusable  # what came of it


def test_the_end_before_any_byte_is_stale_and_inside_the_head_is_a_lie(pair: tuple[Connection, socket.socket]) -> None:
    with pytest.raises(Stale):
        answer(pair, b"", close=True)
    client, server = socket.socketpair()
    with client, server, pytest.raises(WireError, match="IncompleteRead"):
        answer((Connection(client), server), b"HTTP/1.1 200 OK\r\nContent-", close=True)


def test_a_reset_before_the_answer_is_stale() -> None:
    client, server = socket.socketpair()
    with client:
        server.close()
        with pytest.raises(Stale):
            exchange(Connection(client), REQUEST, time.monotonic() + 1, 100, False)


def test_the_deadline_covers_the_whole_answer(pair: tuple[Connection, socket.socket]) -> None:
    """A server that sends a byte now and then never resets a per-read timeout: the deadline is for all."""
    conn, server = pair
    stop = threading.Event()

    def trickle() -> None:
        server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        while not stop.wait(0.05):
            server.sendall(b"x")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        exchange(conn, REQUEST, began + 0.3, 1000, False)
    stop.set()
    thread.join()
    assert 0.25 < time.monotonic() - began < 1.5


def _tiny_chunks(server: socket.socket, count: int, end: bool) -> None:
    server.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    block = b"2\r\nxy\r\n" * 4096
    try:
        for _ in range(count // 4096):
            server.sendall(block)
        if end:
            server.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the client gave up (the deadline test)


def test_a_body_of_tiny_chunks_keeps_no_object_a_chunk_and_no_copy_a_line() -> None:
    # legal HTTP, 2 bytes a chunk: each chunk was an object of its own (550 MB of memory for an 8 MB body)
    # and each chunk line sliced the rest of the 64 KiB buffer (8 MB took a worker 26 to 36 s of CPU)
    client, server = socket.socketpair()
    with client, server:
        feeder = threading.Thread(target=_tiny_chunks, args=(server, 1 << 16, True), daemon=True)
        feeder.start()
        tracemalloc.start()
        try:
            got = exchange(Connection(client), REQUEST, time.monotonic() + 30, 16 << 20, False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        feeder.join(5)
    assert got.body == b"xy" * (1 << 16) and got.reusable
    assert peak < 1_000_000, f"{peak:,} bytes at the peak for a body of 131,072"  # was 8.2 MB: an object a chunk, and copies


def test_the_deadline_ends_a_body_of_tiny_chunks_that_needs_no_read() -> None:
    client, server = socket.socketpair()
    with client, server:
        server.setblocking(True)
        feeder = threading.Thread(target=_tiny_chunks, args=(server, 1 << 22, False), daemon=True)
        feeder.start()
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            exchange(Connection(client), REQUEST, began + 0.5, 1 << 30, False)
        assert time.monotonic() - began < 1.5
        client.shutdown(socket.SHUT_RDWR)
        feeder.join(5)
