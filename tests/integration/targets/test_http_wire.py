"""What the HTTP target puts on the wire (it speaks HTTP/1.1 itself, see subminute.targets.wire) and TLS
against a real server with a self-signed certificate."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from subminute.dispatch.base import make_event
from subminute.targets.base import build_target


def event() -> dict[str, object]:
    return make_event(1, "feed", int(time.time() * 1000), 1, 1000)


class Recorder:
    """Accepts connections and answers every request 200 "ok", keeping the raw bytes of each request."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.listener.close()


@pytest.mark.parametrize(("spec", "sent"), [
    ({"url": "/feed?stop=1"},
     b"GET /feed?stop=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n\r\n"),
    ({"url": "/f", "method": "POST"},
     b"POST /f HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\nContent-Length: 0\r\n\r\n"),
    ({"url": "/f", "method": "put", "body": {"a": 1}},
     b"PUT /f HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\nContent-Type: application/json\r\n"
     b"Content-Length: 8\r\n\r\n{\"a\": 1}"),
    ({"url": "", "headers": {"host": "api.example", "Accept-Encoding": "gzip", "X-A": "b"}},
     b"GET / HTTP/1.1\r\nhost: api.example\r\nAccept-Encoding: gzip\r\nX-A: b\r\n\r\n"),
])
def test_the_request_on_the_wire(recorder: Recorder, spec: dict[str, Any], sent: bytes) -> None:
    target = build_target({"type": "http", **spec, "url": f"http://127.0.0.1:{recorder.port}{spec['url']}"})
    assert target.run(event(), 2).ok
    assert target.run(event(), 2).ok  # the same bytes again, on the kept connection
    assert recorder.requests == [sent % recorder.port] * 2 if b"%d" in sent else [sent] * 2


def test_a_secret_with_a_line_break_never_becomes_a_header(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBMINUTE_TEST_BROKEN", "s3cret\r\nX-Injected: 1")
    target = build_target({"type": "http", "url": f"http://127.0.0.1:{recorder.port}/",
                           "auth": {"type": "bearer", "env": "SUBMINUTE_TEST_BROKEN"}})
    result = target.run(event(), 2)
    assert result.status == "error" and "line break" in (result.error or "") and "s3cret" not in (result.error or "")
    assert recorder.requests == []


# -- TLS ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with ``cryptography``, which the test extras hold)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"secure " * 3000  # several TLS records, sent chunked
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 5000):
                piece = body[start:start + 5000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}/feed"
    server.shutdown()
    server.server_close()


def test_tls_with_verify_false_reads_a_chunked_body_and_keeps_the_connection(tls_url: str) -> None:
    target: Any = build_target({"type": "http", "url": tls_url, "verify": False})
    for _ in range(3):
        result = target.run(event(), 5)
        assert result.ok and result.bytes == len(b"secure ") * 3000, result.error
    assert target.pool.opened == 1


def test_tls_refuses_a_certificate_it_cannot_verify(tls_url: str) -> None:
    result = build_target({"type": "http", "url": tls_url}).run(event(), 5)
    assert result.status == "error" and "CERTIFICATE_VERIFY_FAILED" in (result.error or "")


def test_an_echoed_request_line_never_shows_part_of_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers with the request line: the key sits 300 characters in, so an error text cut
    before hiding would show its first part."""
    key = "k3y" + "Z" * 40 + "tail"
    monkeypatch.setenv("SUBMINUTE_TEST_LONG_KEY", key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(65536).split(b"\r\n", 1)[0] + b"\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    target = build_target({"type": "http", "url": f"http://127.0.0.1:{port}/{'p' * 300}",
                           "auth": {"type": "query", "name": "api_key", "env": "SUBMINUTE_TEST_LONG_KEY"}})
    result = target.run(event(), 2)
    thread.join(5)
    listener.close()
    assert result.status == "error" and "BadStatusLine" in (result.error or "") and "api_key=***" in (result.error or "")
    assert "k3yZZZ" not in (result.error or "")
