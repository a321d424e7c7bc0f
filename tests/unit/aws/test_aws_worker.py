"""The worker Lambda's handlers on the sample events: the demo log line, and the HTTP poller against a real
HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from subminute.aws.handlers import read_handoff
from subminute.aws.worker import demo_handler, http_worker_handler, worker_handler
from subminute.errors import ConfigError

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            body = b'{"buses": 3}' if self.path.startswith("/ok") else b"no"
            self.send_response(200 if self.path.startswith("/ok") else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", paths
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_demo_worker_logs_the_event(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("URL", raising=False)
    event = _event("worker_fire.json")
    result = worker_handler(event, None)
    line = json.loads(capsys.readouterr().out)
    assert line == result and line["msg"] == "fire" and line["seq"] == 42 and line["slot"] == event["slot"]
    assert line["delay_ms"] == pytest.approx(line["received_ms"] - event["slot_ms"], abs=1)
    assert demo_handler("not a mapping", None)["event"] == "not a mapping"


def test_the_poller_from_the_environment(server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    url, paths = server
    monkeypatch.setenv("URL", f"{url}/ok?stop=42")
    monkeypatch.setenv("HEADERS", '{"Accept": "application/json"}')
    monkeypatch.setenv("TIMEOUT", "2")
    first = worker_handler(_event("worker_fire.json"), None)  # URL set: the worker polls
    second = http_worker_handler(_event("worker_fire.json"), None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [first, second] and paths == ["/ok?stop=42", "/ok?stop=42"]
    assert first["status"] == "ok" and first["http_status"] == 200 and first["bytes"] == 12 and first["digest"]
    assert first["msg"] == "poll" and first["seq"] == 42 and first["latency_ms"] >= 0


def test_the_poller_from_the_events_target(server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, paths = server
    monkeypatch.delenv("URL", raising=False)
    event = _event("worker_http_fire.json")
    event["target"]["url"] = f"{url}/down"
    result = worker_handler(event, None)
    assert result["status"] == "error" and result["http_status"] == 503 and "503" in result["error"]
    assert paths == ["/down"]


def test_the_poller_reports_an_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("URL", f"http://127.0.0.1:{port}/")
    result = http_worker_handler({"seq": 1}, None)
    assert result["status"] == "error" and "Connection" in result["error"]


@pytest.mark.parametrize(("env", "field"), [
    ({"URL": "ftp://x"}, "URL"), ({"URL": "http://x", "HEADERS": "[1]"}, "HEADERS"),
    ({"URL": "http://x", "HEADERS": "{oops"}, "HEADERS"), ({"URL": "http://x", "TIMEOUT": "0"}, "TIMEOUT"),
    ({"URL": "http://x", "METHOD": "FETCH"}, "METHOD"),
])
def test_poller_settings_are_checked(env: dict[str, str], field: str) -> None:
    from subminute.aws.worker import poller

    with pytest.raises(ConfigError, match=rf"^environment: {field}: "):
        poller({}, env)


def test_the_sample_restart_event_carries_a_handoff() -> None:
    handoff = read_handoff(_event("controller_restart.json"))
    assert handoff is not None and handoff.token == 7 and handoff.positions[1].seq == 4211
    assert read_handoff(_event("controller_start.json")) is None


def test_a_batched_invoke_is_handled_fire_by_fire(capsys: pytest.CaptureFixture[str]) -> None:
    from subminute.dispatch.base import make_event

    events = [make_event(i, f"s{i}", 1_800_000_000_000, 1, 1000) for i in (1, 2, 3)]
    result = worker_handler({"events": events}, None)
    assert result == {"msg": "batch", "fires": 3, "errors": 0}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["schedule_id"] for line in lines] == [1, 2, 3] and all(line["msg"] == "fire" for line in lines)
