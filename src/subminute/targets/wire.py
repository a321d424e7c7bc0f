"""HTTP/1.1 over one kept-alive socket, for the HTTP target: the request written with one ``sendall``, the
response read into one buffer and cut with ``bytes.find`` and ``split``.

The standard library's ``http.client`` parses every response's headers with the ``email`` package; on this
project's 2-core VM a GET on a kept-alive local connection cost 312 µs of CPU with it, and the whole HTTP
fire (digest and result included) costs 143 with this module (``python bench/http_poll.py clients
--threads 1`` prints both). At 1,000 polls a second that difference is a sixth of a core, in a process
whose threads share one GIL. So the target speaks the protocol itself, the part a poller needs (RFC 9112):

* a response is framed by ``Transfer-Encoding: chunked``, by ``Content-Length``, or by the end of the
  connection; HEAD, 1xx, 204 and 304 answers have no body; interim 1xx answers are skipped;
* the connection is kept only when the response was read to its exact end, the server keeps it open
  (HTTP/1.1 without ``Connection: close``; HTTP/1.0 only with ``keep-alive``) and sent nothing past it;
* every lie (a bad status line, a header section over 64 KiB, a bad chunk size, two different lengths)
  is a :class:`WireError`, and the connection that carried it is closed.

Standard library only: bundled into the AWS worker.
"""

from __future__ import annotations

import re
import socket
import ssl
import time

__all__ = ["MAX_HEAD", "Connection", "Response", "Stale", "WireError", "exchange"]

MAX_HEAD = 65536  # the status line and the headers together
_READ = 65536
_BLANK = re.compile(rb"\r?\n\r?\n")  # the end of a header section (bare LF line ends are tolerated)
_NO_BODY = (204, 304)


class WireError(Exception):
    """The server broke HTTP/1.1. ``str()`` names the fault first, as ``BadStatusLine: <the line>``."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f"{kind}: {text}")


class Stale(Exception):
    """The connection ended (closed or reset) before the first byte of a response: a kept-alive connection
    that the server closed while it was idle. The request may be sent again on a fresh one."""


class Connection:
    """A socket (wrapped in TLS for https) and the bytes read past the last response (none on a connection
    that is kept: see :func:`exchange`)."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def open(cls, host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> Connection:
        sock = socket.create_connection((host, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    """An answer, or why there is none (``status`` None: ``error``, ``timed_out``). ``cut``: the connection
    ended inside the body (``missing``: the bytes that ``Content-Length`` announced and did not come; 0 for
    a chunked body); ``too_big``: the body was over ``max_bytes`` (not read further); ``reusable``: the
    connection may carry the next request."""

    __slots__ = ("body", "cut", "error", "headers", "missing", "reason", "reusable", "status", "timed_out",
                 "too_big")

    def __init__(self, status: int | None = None, reason: str = "", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.body = b""
        self.missing = 0
        self.cut = self.too_big = self.reusable = self.timed_out = False
        self.error: str | None = None


class _Reader:
    """Reads from the socket under one deadline (monotonic seconds)."""

    __slots__ = ("buf", "deadline", "got", "pos", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""
        self.pos = 0  # where the unread part of ``buf`` begins (lines are taken by moving it, not by slicing)
        self.got = 0  # bytes received in all

    def unread(self) -> int:
        """Bytes received and not yet taken."""
        return len(self.buf) - self.pos

    def recv(self) -> bytes:
        """What arrives next (nothing at the end of the connection)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)
        data = self.sock.recv(_READ)
        self.got += len(data)
        return data

    def fill(self) -> bool:
        """Read what arrives next into the buffer (its taken part dropped); False at the end of the connection."""
        data = self.recv()
        self.buf, self.pos = self.buf[self.pos:] + data, 0
        return bool(data)

    def head(self) -> bytes:
        while True:
            found = _BLANK.search(self.buf, self.pos, self.pos + MAX_HEAD + 4)
            if found is not None:
                head, self.pos = self.buf[self.pos:found.start()], found.end()
                return head
            if self.unread() > MAX_HEAD:
                raise WireError("LineTooLong", f"a header section over {MAX_HEAD} bytes")
            try:
                more = self.fill()
            except ConnectionError:
                if self.got:
                    raise
                more = False
            if not more:
                if not self.got:
                    raise Stale("the server closed the connection without a response")
                raise WireError("IncompleteRead", "the connection ended in the header section")

    def line(self) -> bytes:
        """A line of a chunked body (a chunk size, a trailer), without its line end."""
        while True:
            end = self.buf.find(b"\n", self.pos)
            if end >= 0:
                line, self.pos = self.buf[self.pos:end], end + 1
                return line.rstrip(b"\r")
            if self.unread() > MAX_HEAD:
                raise WireError("LineTooLong", "a chunk size line")
            if not self.fill():
                raise EOFError

    def exactly(self, count: int) -> bytes:
        """``count`` bytes, or fewer if the connection ends first (the caller sees the shortfall); read in
        pieces joined once (a 16 MiB body is not copied at every read)."""
        if self.unread() >= count:  # already here (a small chunk): taken without copying the rest
            self.pos += count
            return self.buf[self.pos - count:self.pos]
        parts, have = [self.buf[self.pos:]], self.unread()
        while have < count:
            data = self.recv()
            if not data:
                break
            parts.append(data)
            have += len(data)
        whole = b"".join(parts)
        self.buf, self.pos = whole[count:], 0
        return whole[:count]


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, headers (names in lower case, repeated ones joined with ", "), and whether the
    server keeps the connection open by default (HTTP/1.1)."""
    lines = head.split(b"\n")
    first = lines[0].rstrip(b"\r")
    parts = first.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise WireError("BadStatusLine", first.decode("latin-1"))  # whole: cut, a secret echoed in it would escape hiding
    headers: dict[str, str] = {}
    name = ""
    for raw in lines[1:]:
        text = raw.rstrip(b"\r").decode("latin-1")
        if text[:1] in (" ", "\t"):  # a folded line continues the header before it
            if name:
                headers[name] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        if not colon:
            name = ""
            continue  # not a header line: ignored, as http.client does
        name = name.strip().lower()
        value = value.strip()
        if name not in headers:
            headers[name] = value
        elif name != "content-length":
            headers[name] += ", " + value
        elif headers[name] != value:
            raise WireError("HTTPException", "two different Content-Length headers")
    reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
    return int(parts[1]), reason, headers, parts[0] != b"HTTP/1.0"


def exchange(conn: Connection, request: bytes, deadline: float, max_bytes: int, head_only: bool) -> Response:
    """Send ``request`` on ``conn`` and read its response, all by ``deadline`` (monotonic seconds).

    Raises :class:`Stale` if the connection ended before the response began, :class:`WireError` for a
    broken response, ``TimeoutError`` when the deadline passes, ``OSError`` for the socket's errors.
    Whatever it raises, the caller closes the connection."""
    sock = conn.sock
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)
    try:
        sock.sendall(request)
    except ConnectionError:
        raise Stale("the server closed the connection without a response") from None
    reader = _Reader(sock, deadline)
    while True:
        status, reason, headers, keep = _parse_head(reader.head())
        if status >= 200 or status == 101:
            break  # (an interim 1xx answer is followed by the real one)
    response = Response(status, reason, headers)
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if keep else "keep-alive" in connection
    if head_only or status < 200 or status in _NO_BODY:
        response.reusable = keep and status >= 200 and not reader.unread()
        return response
    coding = headers.get("transfer-encoding", "").lower()
    if coding:
        if coding.rsplit(",", 1)[-1].strip() != "chunked":  # the body runs to the end of the connection
            _to_end(reader, response, max_bytes)
            return response
        _chunked(reader, response, max_bytes)
        response.reusable = keep and not response.too_big and not response.cut and not reader.unread()
        return response
    length_text = headers.get("content-length")
    if length_text is None:
        _to_end(reader, response, max_bytes)
        return response
    if not length_text.isdigit():
        raise WireError("HTTPException", f"Content-Length is not a number of bytes: {length_text!r}")
    length = int(length_text)
    if length > max_bytes:
        response.too_big = True
        return response
    body = reader.exactly(length)
    response.body = body
    response.missing = length - len(body)
    response.cut = response.missing > 0
    response.reusable = keep and not response.cut and not reader.unread()
    return response


def _to_end(reader: _Reader, response: Response, max_bytes: int) -> None:
    """A body that runs to the end of the connection (read one byte past ``max_bytes`` at most)."""
    response.body = reader.exactly(max_bytes + 1)
    response.too_big = len(response.body) > max_bytes


def _chunked(reader: _Reader, response: Response, max_bytes: int) -> None:
    """A chunked body, in one growing buffer (a body of millions of tiny chunks is legal: no object a
    chunk), the deadline looked at every 1,024 chunks as well (a buffer full of them needs no read)."""
    body = bytearray()
    size = chunks = 0
    try:
        while True:
            chunks += 1
            if not chunks & 1023 and time.monotonic() > reader.deadline:
                raise TimeoutError("timed out")
            line = reader.line()
            text = line.split(b";", 1)[0].strip()
            if not text or text.strip(b"0123456789abcdefABCDEF"):
                raise WireError("HTTPException", f"a bad chunk size: {text!r}")
            count = int(text, 16)
            if count == 0:
                while reader.line():  # trailers, up to the blank line
                    pass
                break
            size += count
            if size > max_bytes:
                response.too_big = True
                return
            chunk = reader.exactly(count)
            body += chunk
            if len(chunk) < count:
                raise EOFError
            if reader.line():
                raise WireError("HTTPException", "a chunk longer than its size")
    except EOFError:
        response.cut = True
    response.body = bytes(body)
