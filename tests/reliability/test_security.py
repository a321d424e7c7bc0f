"""Security: SQLite files readable by their owner only; commands without a shell unless asked for;
HTTP secrets (from the environment) never in fire records, the SQLite file or the logs."""

from __future__ import annotations

import http.server
import logging
import os
import secrets
import socket
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from subminute.control.memory import MemoryStore
from subminute.control.sqlite import SqliteStore
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.local import LocalDispatcher
from subminute.results.records import FireRecord
from subminute.results.sinks import SqliteSink
from subminute.targets.base import build_target
from subminute.timing.clock import SystemClock


def test_sqlite_files_are_created_user_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: the code, not the umask, must keep the files private
    try:
        db = tmp_path / "sub" / "c.db"
        store = SqliteStore(db)
        store.put({"id": 1, "waitseconds": 1})
        sink = SqliteSink(db)
        sink.write(FireRecord(1, "x", 1, 1, "ok"))
        assert sink.flush(5)
        files = [p for p in db.parent.iterdir() if p.name.startswith("c.db")]
        assert {p.name for p in files} >= {"c.db", "c.db-wal", "c.db-shm"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p.name, oct(p.stat().st_mode))
        sink.close()
        store.close()
    finally:
        os.umask(old)


def test_commands_run_without_a_shell_unless_asked(tmp_path: Path) -> None:
    mark = tmp_path / "MARK"
    plain = build_target({"type": "command", "argv": ["/bin/echo", f"hi; touch {mark}"]})
    result = plain.run({"schedule_id": 1, "seq": 1}, 5)
    assert result.ok and not mark.exists()  # the ; reached echo as text
    shelled = build_target({"type": "command", "argv": f"echo hi; touch {mark}", "shell": True})
    assert shelled.run({"schedule_id": 1, "seq": 1}, 5).ok and mark.exists()
    with pytest.raises(ValueError, match="target.argv"):
        build_target({"type": "command", "argv": f"echo hi; touch {mark}"})  # one text needs shell: true


class _Echo(http.server.BaseHTTPRequestHandler):
    """Fails every request, echoing what it received: a server that would leak what it is sent."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = f"denied {self.path} {self.headers}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.realtime
def test_http_secrets_never_reach_records_files_or_logs(
        tmp_path: Path, echo_server: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    token, key = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv("SUBMINUTE_TEST_TOKEN", token)
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    base = f"http://127.0.0.1:{echo_server}/feed"
    rows = [
        {"id": 1, "waitseconds": 0.25, "target": {"type": "http", "url": base,
                                                   "auth": {"type": "bearer", "env": "SUBMINUTE_TEST_TOKEN"}}},
        {"id": 2, "waitseconds": 0.25, "target": {"type": "http", "url": base,
                                                   "auth": {"type": "query", "name": "api_key", "file": str(key_file)}}},
        {"id": 3, "waitseconds": 0.25, "target": {
            "type": "http", "url": f"http://127.0.0.1:{_closed_port()}/x",
            "auth": {"type": "query", "name": "api_key", "env": "SUBMINUTE_TEST_TOKEN"}}},
    ]
    db = tmp_path / "s.db"
    sink = SqliteSink(db)
    dispatcher = LocalDispatcher(sink)
    caplog.set_level(logging.DEBUG)
    controller = Controller(MemoryStore(rows), dispatcher, SystemClock(), ControllerOptions(budget_s=1.6), sink=sink)
    controller.run()
    dispatcher.close(timeout_s=5)
    sink.close()

    conn = sqlite3.connect(db)
    records = conn.execute("SELECT schedule_id, status, error, detail FROM fires").fetchall()
    conn.close()
    assert {r[0] for r in records if r[1] == "error"} == {1, 2, 3}  # every one failed, with an error text
    everything = "\n".join(str(r) for r in records)
    for secret in (token, key):
        assert secret not in everything
        assert secret not in caplog.text
        for path in tmp_path.iterdir():
            if path.name.startswith("s.db"):
                assert secret.encode() not in path.read_bytes(), path.name
