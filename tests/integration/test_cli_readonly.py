"""Read-only commands (status, history, export, report) open the control file read-only, work on a file
this user cannot write, and never create anything; writing commands say how to fix the permissions.

The tests run the CLI in a child process as another user (``nobody``) when they run as root (root writes
any file), else they take the write permission away from the file and its directory.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from subminute.cli import main
from subminute.control.sqlite import SqliteStore
from subminute.results.records import FireRecord
from subminute.results.sinks import SqliteSink

NOBODY = 65534
ROOT = os.geteuid() == 0

# The child imports everything it may need first: once it is another user, the interpreter's own files
# (under root's home) may be out of its reach.
_CHILD = """
import os, sys
import subminute.cli, subminute.cli.schedules, subminute.cli.status_cmd, subminute.cli.results_cmd, subminute.cli.run_cmd
import subminute.cli.checks, subminute.observe.logs, subminute.observe.report, subminute.results.export
import subminute.results.bodies, subminute.targets.http, subminute.targets.tcp, subminute.targets.command
import subminute.targets.simple, subminute.runtime.local, json, csv, tomllib, logging.handlers, encodings.idna
subminute.cli.build_parser()
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
sys.exit(subminute.cli.main(sys.argv[1:]))
""".replace("NOBODY", str(NOBODY))


def as_reader(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CHILD, *argv], text=True, capture_output=True, timeout=60,
                          cwd="/")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory the reader may enter but not write (outside pytest's base directory, which is private
    to its user)."""
    path = Path(tempfile.mkdtemp(prefix="subminute-ro-"))
    path.chmod(0o755)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def readonly_db(shared: Path) -> Iterator[Path]:
    db = shared / "control.db"
    store = SqliteStore(db)
    store.put({"id": 1, "name": "feed", "waitseconds": 1})
    store.close()
    sink = SqliteSink(db)
    sink.write(FireRecord(1, "feed", 1_000, 1, "ok", lateness_ms=0.4, start_lateness_ms=1.5, latency_ms=3.0))
    assert sink.flush()
    sink.close()
    db.chmod(0o444)
    if not ROOT:
        shared.chmod(0o555)
    yield db
    shared.chmod(0o755)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["history"], ["history", "feed", "--json"],
                                  ["export"], ["report", "feed", "--no-plot"]])
def test_read_only_commands_work_on_a_file_this_user_cannot_write(readonly_db: Path, argv: list[str]) -> None:
    before = files(readonly_db.parent)
    result = as_reader("--db", str(readonly_db), *argv)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "feed" in result.stdout or " ok " in result.stdout or '"schedule_id":1' in result.stdout
    assert files(readonly_db.parent) == before  # nothing created: no -wal, no -shm


def test_a_writing_command_on_a_read_only_file_says_to_fix_the_permissions(readonly_db: Path) -> None:
    result = as_reader("--db", str(readonly_db), "stop", "feed")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "writable" in line and "another program" not in line


def test_read_only_commands_never_create_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    for argv in (["status"], ["history"], ["export"], ["report", "--no-plot"]):
        assert main(["--db", str(missing), *argv]) == 2, argv
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "no control file" in line and "subminute add" in line
    assert not (tmp_path / "no").exists()


def test_status_on_a_file_older_than_the_schema_says_to_run_a_writing_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schedules (id INTEGER PRIMARY KEY, name TEXT, running, waitseconds, plan TEXT, "
                 "target TEXT, overlap TEXT, timeout, offset, grace, updated_at REAL)")
    conn.execute("INSERT INTO schedules (id, waitseconds) VALUES (1, 5)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    assert main(["--db", str(db), "status"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "older" in line and "writing command" in line
    assert db.read_bytes() == before
    assert main(["--db", str(db), "stop", "1"]) == 0  # a writing command brings it up to date
    capsys.readouterr()
    assert main(["--db", str(db), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schedules"][0]["running"] is False


def test_status_creates_nothing_beside_the_file_whether_a_writer_has_it_open_or_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.db"
    SqliteStore(db).put({"id": 1, "waitseconds": 1})
    gc.collect()  # the last connection closed: the WAL is folded into the file and removed
    assert files(tmp_path) == ["c.db"]
    for argv in (["status"], ["history"], ["export"]):
        assert main(["--db", str(db), *argv]) == 0
        assert files(tmp_path) == ["c.db"], argv
    writer = SqliteStore(db)  # a live writer, as a running controller: -wal and -shm exist
    writer.update(1, {"waitseconds": 2})
    before = files(tmp_path)
    capsys.readouterr()
    assert main(["--db", str(db), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schedules"][0]["interval_now_ms"] == 2000  # read through the WAL
    assert files(tmp_path) == before
    writer.close()
