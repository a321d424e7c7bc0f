"""The HTTP target against a real server on 127.0.0.1: reuse, retries, auth, limits, kept bodies."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from subminute.dispatch.base import make_event
from subminute.errors import ConfigError
from subminute.results.bodies import read_bodies
from subminute.results.gtfs import build_feed
from subminute.targets.base import build_target

HttpServer = Any  # the conftest's server: .url, .seen (what it saw, what it answers), .close()


def event(seq: int = 1, interval_ms: int = 1000, sid: int = 1) -> dict[str, object]:
    return make_event(sid, "feed", int(time.time() * 1000), seq, interval_ms)


def test_connections_are_reused_across_fires_and_threads(http_server: HttpServer) -> None:
    target = build_target({"type": "http", "url": f"{http_server.url}/a?x=1"})
    for i in range(5):
        assert target.run(event(i), 2).ok
    threads = [threading.Thread(target=lambda: target.run(event(), 2)) for _ in range(4)]
    for t in threads:
        t.start()
        t.join()  # one after another, each from a new thread
    assert len(http_server.seen.paths) == 9
    assert http_server.seen.paths[0] == "/a?x=1"
    assert len(http_server.seen.connections) == 1
    assert target.pool.opened == 1


def test_a_connection_the_server_closed_is_replaced_without_counting_a_retry(http_server: HttpServer) -> None:
    target = build_target({"type": "http", "url": http_server.url})
    assert target.run(event(), 2).ok
    time.sleep(0.7)  # the server closes the idle kept-alive connection after 0.5 s
    result = target.run(event(), 2)
    assert result.ok and "attempts" not in result.detail
    assert target.pool.opened == 2


def test_retries_with_backoff_until_success(http_server: HttpServer) -> None:
    http_server.seen.answers = [(503, b"busy"), (502, b"bad gateway")]
    target = build_target({"type": "http", "url": http_server.url, "retries": 3, "backoff": 0.02})
    t0 = time.monotonic()
    result = target.run(event(interval_ms=5000), 5)
    elapsed = time.monotonic() - t0
    assert result.ok and result.http_status == 200
    assert result.detail["attempts"] == 3
    assert len(http_server.seen.paths) == 3
    assert 0.02 <= elapsed < 2  # waited 0.01-0.02 then 0.02-0.04 s


def test_no_retry_for_a_status_not_listed(http_server: HttpServer) -> None:
    http_server.seen.answers = [(404, b"nope")]
    target = build_target({"type": "http", "url": http_server.url, "retries": 3, "backoff": 0.01})
    result = target.run(event(), 2)
    assert not result.ok and result.http_status == 404 and "HTTP 404" in (result.error or "")
    assert len(http_server.seen.paths) == 1


def test_retries_stop_before_the_next_slot(http_server: HttpServer) -> None:
    http_server.seen.default = (503, b"down")
    target = build_target({"type": "http", "url": http_server.url, "retries": 10, "backoff": 0.1,
                           "backoff_max": 0.1})
    t0 = time.monotonic()
    result = target.run(make_event(1, "feed", int(time.time() * 1000), 1, 300), 5)
    elapsed = time.monotonic() - t0
    assert result.status == "error" and result.http_status == 503
    assert elapsed < 0.35  # inside the 300 ms slot, not 10 retries x 0.05-0.1 s
    assert 2 <= result.detail["attempts"] < 10


def test_attempt_timeout_is_retried(http_server: HttpServer) -> None:
    http_server.seen.delay_s = 0.3
    target = build_target({"type": "http", "url": http_server.url, "attempt_timeout": 0.1, "retries": 1,
                           "backoff": 0.01, "timeout": 1})
    result = target.run(event(interval_ms=5000), 1)
    assert result.status == "timeout" and result.detail["attempts"] == 2
    assert "within 0.1s" in (result.error or "")


def test_bearer_token_from_env_is_sent_and_never_recorded(http_server: HttpServer, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FEED_TOKEN", "s3cret-token-value")
    http_server.seen.answers = [(401, b"who are you")]
    target = build_target({"type": "http", "url": http_server.url, "auth": {"type": "bearer", "env": "FEED_TOKEN"}})
    failed = target.run(event(), 2)
    assert http_server.seen.headers[0]["Authorization"] == "Bearer s3cret-token-value"
    assert "s3cret" not in json.dumps(failed.detail) + (failed.error or "")
    from subminute.observe.logs import JsonFormatter

    record = logging.LogRecord("subminute.x", logging.ERROR, "", 0, "request with %s failed", ("s3cret-token-value",),
                               None)
    assert "s3cret" not in JsonFormatter().format(record)


def test_basic_and_header_and_query_auth_from_files(http_server: HttpServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pa55word\n")
    for auth, check in [
        ({"type": "basic", "username": "me", "file": str(secret)},
         lambda h, p: h["Authorization"] == "Basic bWU6cGE1NXdvcmQ="),
        ({"type": "header", "name": "X-Api-Key", "file": str(secret)}, lambda h, p: h["X-Api-Key"] == "pa55word"),
        ({"type": "query", "name": "api_key", "file": str(secret)}, lambda h, p: p == "/feed?stop=1&api_key=pa55word"),
    ]:
        target = build_target({"type": "http", "url": f"{http_server.url}/feed?stop=1", "auth": auth})
        assert target.run(event(), 2).ok
        assert check(http_server.seen.headers[-1], http_server.seen.paths[-1]), auth
    # a rotated secret file is picked up on the next fire
    time.sleep(0.01)
    secret.write_text("rotated-value")
    target.run(event(), 2)
    assert http_server.seen.paths[-1].endswith("api_key=rotated-value")


def test_secrets_never_in_the_spec_or_url() -> None:
    with pytest.raises(ConfigError, match="never put a secret in the spec") as info:
        build_target({"type": "http", "url": "http://127.0.0.1/", "auth": {"type": "bearer", "token": "abcd1234"}})
    assert "abcd1234" not in str(info.value)
    with pytest.raises(ConfigError, match="put credentials in target.auth") as info:
        build_target({"type": "http", "url": "http://user:hunter22@127.0.0.1:8080/x"})
    assert "hunter22" not in str(info.value)
    with pytest.raises(ConfigError, match="set the environment variable NO_SUCH_VAR_X"):
        build_target({"type": "http", "url": "http://127.0.0.1/", "auth": {"type": "bearer", "env": "NO_SUCH_VAR_X"}})


def test_a_body_over_max_bytes_is_an_error(http_server: HttpServer) -> None:
    http_server.seen.default = (200, b"x" * 5000)
    target = build_target({"type": "http", "url": http_server.url, "max_bytes": 1000})
    result = target.run(event(), 2)
    assert not result.ok and "larger than max_bytes" in (result.error or "")
    assert target.run(event(), 2).status == "error"  # and the next fire works on a fresh connection


def test_keep_on_change_stores_only_new_bodies(http_server: HttpServer, tmp_path: Path) -> None:
    db = tmp_path / "bodies.db"
    http_server.seen.answers = [(200, b"v1"), (200, b"v1"), (200, b"v2"), (200, b"v2"), (200, b"v1")]
    target = build_target({"type": "http", "url": http_server.url,
                           "keep": {"mode": "change", "retain": 10, "path": str(db)}})
    details = [target.run(event(i), 2).detail for i in range(1, 6)]
    assert [d["changed"] for d in details] == [True, False, True, False, True]
    assert [d["kept"] for d in details] == [True, False, True, False, True]
    assert target.keeper.flush()
    kept = read_bodies(db, 1)
    assert [k["body"] for k in kept] == ["v1", "v2", "v1"]
    assert [k["seq"] for k in kept] == [1, 3, 5]
    assert kept[0]["content_type"] == "application/json"


def test_decode_gtfs_realtime(http_server: HttpServer) -> None:
    http_server.seen.default = (200, build_feed(vehicles=[{"id": "bus-1", "lat": 1.0, "lon": 2.0}],
                                                alerts=[{"id": "a", "header": "detour"}]))
    target = build_target({"type": "http", "url": http_server.url, "decode": "gtfs-rt"})
    result = target.run(event(), 2)
    assert result.ok and result.detail["gtfs"]["vehicles"] == 1 and result.detail["gtfs"]["alerts"] == 1
    assert 0 <= result.detail["gtfs"]["age_s"] < 60
    http_server.seen.default = (200, b"<html>not a feed</html>")
    broken = target.run(event(), 2)
    assert not broken.ok and "GTFS-realtime" in (broken.error or "")


def test_error_texts_that_echo_the_request_hold_no_query_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers that echo the request line (with the query key, URL-encoded) in place of a status line or in
    the reason phrase: the error text hides the key in every form."""
    import socket

    key = "k3y-" + secrets.token_hex(8) + "/+= "  # its URL-encoded forms differ from it
    monkeypatch.setenv("SUBMINUTE_TEST_QUERY_KEY", key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for answer in (b"%s\r\n\r\n", b"HTTP/1.1 500 %s\r\nContent-Length: 0\r\n\r\n"):
            conn, _ = listener.accept()
            with conn:
                request_line = conn.recv(65536).split(b"\r\n", 1)[0]
                conn.sendall(answer % request_line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    target = build_target({"type": "http", "url": f"http://127.0.0.1:{port}/feed?stop=1",
                           "auth": {"type": "query", "name": "api_key", "env": "SUBMINUTE_TEST_QUERY_KEY"}})
    garbage, reason = target.run(event(), 2), target.run(event(), 2)
    thread.join(5)
    listener.close()
    assert "BadStatusLine: GET /feed?stop=1&api_key=***" in (garbage.error or "")
    assert reason.http_status == 500 and "HTTP 500 GET /feed?stop=1&api_key=*** HTTP/1.1 from" in (reason.error or "")
    for result in (garbage, reason):
        for form in (key, quote(key, safe=""), quote_plus(key), key[4:20]):
            assert form not in (result.error or ""), (form, result.error)
