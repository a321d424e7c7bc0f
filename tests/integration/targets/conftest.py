"""Real local servers on 127.0.0.1 for the target tests: an HTTP server whose answers a test scripts,
and a TCP server whose behaviour a test picks."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Seen:
    """What the HTTP server saw and what it answers next."""

    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    answers: list[tuple[int, bytes]] = field(default_factory=list)  # consumed first, then `default`
    default: tuple[int, bytes] = (200, b'{"ok": true}')
    content_type: str = "application/json"
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> tuple[int, bytes]:
        with self.lock:
            return self.answers.pop(0) if self.answers else self.default


class HttpServer:
    def __init__(self) -> None:
        seen = self.seen = Seen()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 0.5  # an idle kept-alive connection is closed by the server after this

            def do_GET(self) -> None:
                with seen.lock:
                    seen.paths.append(self.path)
                    seen.headers.append(dict(self.headers))
                    seen.connections.add(self.client_address)
                if seen.delay_s:
                    threading.Event().wait(seen.delay_s)
                status, body = seen.next_answer()
                self.send_response(status)
                self.send_header("Content-Type", seen.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.closed = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def new_http_server() -> Iterator[Callable[[], HttpServer]]:
    servers: list[HttpServer] = []

    def make() -> HttpServer:
        servers.append(HttpServer())
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def http_server(new_http_server: Callable[[], HttpServer]) -> HttpServer:
    return new_http_server()


class TcpServer:
    """Each connection is handled by ``behaviour(conn)``; the default answers each line with
    ``pong <line>`` and closes when the client does."""

    def __init__(self, behaviour: Callable[[socket.socket], None] | None = None) -> None:
        self.behaviour = behaviour or self.pong
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                outer.behaviour(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @staticmethod
    def pong(conn: socket.socket) -> None:
        buffer = b""
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                conn.sendall(b"pong " + line + b"\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tcp_server() -> Iterator[Callable[..., TcpServer]]:
    servers: list[TcpServer] = []

    def make(behaviour: Callable[[socket.socket], None] | None = None) -> TcpServer:
        servers.append(TcpServer(behaviour))
        return servers[-1]

    yield make
    for server in servers:
        server.close()
