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
from urllib.parse import quote, quote_plus

import pytest

from subminute.cli import main
from subminute.control.memory import MemoryStore
from subminute.control.sqlite import SqliteStore
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.local import LocalDispatcher
from subminute.results.bodies import BodyItem, JsonlBodies, read_bodies
from subminute.results.export import export_bodies
from subminute.results.records import FireRecord
from subminute.results.sinks import SqliteSink
from subminute.runtime.local import LocalRuntime
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


def test_every_directory_made_is_0700_at_every_level_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = SqliteStore(tmp_path / "db1" / "db2" / "c.db")  # the database file's parents
        store.close()
        bodies = JsonlBodies(tmp_path / "j1" / "j2")  # a jsonl body directory
        bodies.add([BodyItem(1, "s", 1_800_000_000_000, 1, "d", 2, b"hi")])
        assert export_bodies(tmp_path / "j1" / "j2", directory=tmp_path / "f1" / "f2") == 1  # export --files
    finally:
        os.umask(old)
    for name in ("db1", "db1/db2", "j1", "j1/j2", "f1", "f1/f2"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o700, name
    for path in [*(tmp_path / "j1" / "j2").iterdir(), *(tmp_path / "f1" / "f2").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


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

    status = 500

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = f"{'denied' if self.status >= 400 else 'echo'} {self.path} {self.headers}".encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _EchoOk(_Echo):
    """Answers 200 with what it received: kept bodies hold the request's secrets unless hidden."""

    status = 200


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo_server() -> Iterator[int]:
    yield from _serve(_Echo)


@pytest.fixture
def echo_ok_server() -> Iterator[int]:
    yield from _serve(_EchoOk)


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


@pytest.mark.realtime
def test_kept_bodies_and_their_export_hold_no_secret(
        tmp_path: Path, echo_ok_server: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A server that echoes the request, a bearer token and a query key from the environment, keep all
    (SQLite and JSON Lines): the secrets reach no byte of the files, nor ``export bodies``."""
    # "/+=" make the URL-encoded form of the query key differ from the key itself
    token, key = secrets.token_hex(16) + "/+=", secrets.token_hex(16) + "/+="
    monkeypatch.setenv("SUBMINUTE_TEST_BEARER", token)
    monkeypatch.setenv("SUBMINUTE_TEST_KEY", key)
    url = f"http://127.0.0.1:{echo_ok_server}/feed?stop=42"
    bearer = {"type": "bearer", "env": "SUBMINUTE_TEST_BEARER"}
    query = {"type": "query", "name": "api_key", "env": "SUBMINUTE_TEST_KEY"}
    jsonl = tmp_path / "bodies"
    db = tmp_path / "s.db"
    runtime = LocalRuntime(db, budget_s=1.2)
    for sid, auth, keep in ((1, bearer, "all"), (2, query, "all"),
                            (3, bearer, {"mode": "all", "format": "jsonl", "path": str(jsonl)}),
                            (4, query, {"mode": "all", "format": "jsonl", "path": str(jsonl)})):
        runtime.store.put({"id": sid, "waitseconds": 0.2,
                           "target": {"type": "http", "url": url, "auth": auth, "keep": keep}})
    runtime.run()
    runtime.store.close()

    kept = read_bodies(db, None, limit=None) + read_bodies(jsonl, None, limit=None)
    assert {k["schedule_id"] for k in kept} == {1, 2, 3, 4}
    assert all("***" in k["body"] and "stop=42" in k["body"] for k in kept)  # kept, the secrets hidden
    assert main(["--db", str(db), "export", "bodies"]) == 0
    assert main(["--db", str(db), "export", "bodies", "--bodies-from", str(jsonl), "-f", "csv"]) == 0
    exported = capsys.readouterr().out
    assert exported.count("***") >= len(kept)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("bodies-") for p in files) and db in files
    for secret in (token, key):
        core = secret[:32]  # the random part: no piece of the secret survives, in any encoding
        for text in (secret, quote(secret, safe=""), quote_plus(secret), core):
            assert text not in exported
            for path in files:
                assert text.encode() not in path.read_bytes(), (text, path.name)


@pytest.fixture
def request_line_echo_server() -> Iterator[int]:
    """Answers every request with its own request line in place of a status line (the query key in it)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(conn.recv(65536).split(b"\r\n", 1)[0] + b"\r\n\r\n")
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.mark.realtime
def test_a_secret_a_command_prints_or_a_server_echoes_reaches_no_record_body_export_or_file(
        tmp_path: Path, echo_ok_server: int, request_line_echo_server: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Schedule 1 (HTTP) reads a token from the environment; schedule 2, a command, prints that token on
    stdout and stderr, fails, and keeps its stdout; schedule 3's server echoes the request line, its query
    key URL-encoded, in place of a status line. The secrets reach no fire record (detail, error), no kept
    body, no `subminute export` output and no byte of the files."""
    token, key = secrets.token_hex(16) + "/+=", secrets.token_hex(16) + "/+="
    monkeypatch.setenv("SUBMINUTE_TEST_E2E_TOKEN", token)
    monkeypatch.setenv("SUBMINUTE_TEST_E2E_KEY", key)
    db = tmp_path / "s.db"
    runtime = LocalRuntime(db, budget_s=1.2)
    runtime.store.put({"id": 1, "waitseconds": 0.2, "target": {
        "type": "http", "url": f"http://127.0.0.1:{echo_ok_server}/feed",
        "auth": {"type": "bearer", "env": "SUBMINUTE_TEST_E2E_TOKEN"}}})
    runtime.store.put({"id": 2, "waitseconds": 0.2, "target": {
        "type": "command", "shell": True, "keep": "all",
        "argv": 'echo "token: $SUBMINUTE_TEST_E2E_TOKEN"; echo "denied for $SUBMINUTE_TEST_E2E_TOKEN" >&2; exit 1'}})
    runtime.store.put({"id": 3, "waitseconds": 0.2, "target": {
        "type": "http", "url": f"http://127.0.0.1:{request_line_echo_server}/feed?stop=42",
        "auth": {"type": "query", "name": "api_key", "env": "SUBMINUTE_TEST_E2E_KEY"}}})
    runtime.run()
    runtime.store.close()

    conn = sqlite3.connect(db)
    records = conn.execute("SELECT schedule_id, status, error, detail FROM fires").fetchall()
    conn.close()
    command = [r for r in records if r[0] == 2 and r[1] == "error"]
    echoed = [r for r in records if r[0] == 3 and r[1] == "error"]
    assert command and all("exit 1: denied for ***" in r[2] and "token: ***" in r[3] for r in command)
    assert echoed and all("BadStatusLine: GET /feed?stop=42&api_key=***" in r[2] for r in echoed)
    kept = read_bodies(db, 2, limit=None)
    assert kept and all(k["body"] == "token: ***\n" for k in kept)
    assert main(["--db", str(db), "export"]) == 0
    assert main(["--db", str(db), "export", "-f", "csv"]) == 0
    assert main(["--db", str(db), "export", "bodies"]) == 0
    exported = capsys.readouterr().out
    assert "token: ***" in exported and "api_key=***" in exported
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    for secret in (token, key):
        for text in (secret, quote(secret, safe=""), quote_plus(secret), secret[:32]):
            assert text not in exported, text
            assert text not in "\n".join(str(r) for r in records), text
            for path in files:
                assert text.encode() not in path.read_bytes(), (text, path.name)
