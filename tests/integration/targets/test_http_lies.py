"""HTTP servers that lie (a body shorter than its Content-Length, a chunked body cut in the middle, garbage
instead of a status line, no answer at all, a huge header): each lie is an error or a timeout, the
connection that carried it is never used again, and the next fire on the same origin is ok. Run against
the HTTP target, and through the AWS worker's poller (which is the same HTTP target, bundled)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from subminute.aws.worker import http_worker_handler
from subminute.dispatch.base import make_event
from subminute.targets.base import build_target

GOOD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\ngood"
LIES: dict[str, bytes] = {
    # 10 bytes of the 100 announced, then the server closes
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
    # a 10-byte chunk, then a 20-byte chunk cut after 5 bytes, then the server closes
    "chunked-cut": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n14\r\n01234",
    "garbage": b"SSH-2.0-OpenSSH_9.6 not an HTTP server\r\n\r\n",
    "silent": b"",  # reads the request, never answers
    "huge-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 4\r\n\r\ngood",
    # 10 bytes of the 100 announced, and the connection stays open (the client waits for the rest)
    "short-body-held": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
}
HOLD = {"silent", "short-body-held"}  # the server keeps these connections open after its answer


class LyingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers each request with the next entry of ``script`` (then
    ``good``), keeping connections alive after a good answer; ``log`` lists (connection number, answer)."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.log: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/feed"
        self.count = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.count += 1
            threading.Thread(target=self._serve, args=(conn, self.count), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        with conn:
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                _, buffer = buffer.split(b"\r\n\r\n", 1)  # requests without a body (GET)
                with self.lock:
                    answer = self.script.pop(0) if self.script else "good"
                    self.log.append((number, answer))
                try:
                    conn.sendall(GOOD if answer == "good" else LIES[answer])
                except OSError:
                    return
                if answer in HOLD:
                    self.stop.wait(10)
                if answer != "good":
                    return

    def after_a_lie(self) -> list[tuple[int, str]]:
        """Requests that arrived on a connection that had carried a lie (there must be none)."""
        lied: set[int] = set()
        wrong = []
        for number, answer in self.log:
            if number in lied:
                wrong.append((number, answer))
            if answer != "good":
                lied.add(number)
        return wrong

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def liar() -> Iterator[LyingServer]:
    server = LyingServer()
    yield server
    server.close()


def _event() -> dict[str, Any]:
    return make_event(1, "feed", int(time.time() * 1000), 1, 60_000)


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lie_is_a_failure_and_its_connection_is_never_reused(liar: LyingServer, lie: str) -> None:
    target: Any = build_target({"type": "http", "url": liar.url})
    pool = target.pool
    first = target.run(_event(), 5)
    assert first.ok and first.bytes == 4
    assert pool.idle == 1 and pool.opened == 1  # the good answer's connection waits for the next fire
    for round_ in range(2):  # good, lie, good, lie, good: never ok, error, ok, error ...
        liar.script.append(lie)
        lied = target.run(_event(), 0.5 if lie in HOLD else 5)  # the fire's timeout
        assert lied.status == ("timeout" if lie in HOLD else "error"), (round_, lied)
        assert lied.error and "\n" not in lied.error
        assert pool.idle == 0, "the connection that carried the lie went back to the pool"
        after = target.run(_event(), 5)
        assert after.ok and after.bytes == 4, (round_, after.error)
        assert pool.idle == 1 and pool.opened == 2 + round_
    assert [answer for _, answer in liar.log] == ["good", lie, "good", lie, "good"]
    assert liar.after_a_lie() == []
    if lie == "short-body":
        assert "10 of 100 bytes" in (lied.error or "")


def test_lies_in_a_row_and_concurrent_fires_never_share_a_broken_connection(liar: LyingServer) -> None:
    target: Any = build_target({"type": "http", "url": liar.url, "timeout": 5})
    liar.script.extend(["short-body", "chunked-cut", "garbage", "huge-header", "short-body"])
    results: list[Any] = []

    def fire() -> None:
        results.append(target.run(_event(), 5))

    threads = [threading.Thread(target=fire) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results) == ["error"] * 5 + ["ok"] * 5
    assert all(r.bytes == 4 for r in results if r.ok)
    for _ in range(5):
        assert target.run(_event(), 5).ok
    assert liar.after_a_lie() == []


@pytest.mark.parametrize("lie", [lie for lie in LIES if lie != "short-body-held"])
def test_the_aws_poller_drops_a_connection_that_lied(liar: LyingServer, lie: str) -> None:
    event = {"schedule_id": 1, "target": {"type": "http", "url": liar.url, "timeout": 1.5}}
    assert http_worker_handler(event, None)["status"] == "ok"
    liar.script.append(lie)
    lied = http_worker_handler(event, None)
    assert lied["status"] == ("timeout" if lie in HOLD else "error"), lied
    after = http_worker_handler(event, None)
    assert after["status"] == "ok" and after["bytes"] == 4, after
    assert liar.after_a_lie() == []  # the connection that carried the lie was not kept


def test_the_aws_poller_does_not_repeat_a_request_on_a_fresh_connection(liar: LyingServer) -> None:
    """A server that drops a fresh connection without answering may have acted on the request: only a
    kept-alive connection that the server closed while idle is retried."""
    seen: list[int] = []

    def drop(conn: socket.socket) -> None:
        conn.recv(65536)
        seen.append(1)
        conn.close()

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            drop(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        spec = {"type": "http", "url": f"http://127.0.0.1:{port}/x", "method": "POST", "body": "charge", "timeout": 1}
        result = http_worker_handler({"schedule_id": 1, "target": spec}, None)
    finally:
        listener.close()
    assert result["status"] == "error"
    assert seen == [1]

