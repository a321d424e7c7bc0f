"""What ``status``, ``history`` and the live view show: every row checked whole, the lease as it is, missed
slots, start lateness, text from anywhere shown with its control characters escaped."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from subminute.cli import main
from subminute.control.sqlite import SqliteStore
from subminute.results.records import FireRecord
from subminute.results.sinks import SqliteSink


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "control.db")


def run(db: str, *argv: str) -> int:
    return main(["--db", db, *argv])


def cli(db: str, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "subminute", "--db", db, *argv], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def sql(db: str, statement: str, *args: Any) -> None:
    conn = sqlite3.connect(db)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


# -- every row checked whole -------------------------------------------------------------------------------

def test_status_checks_each_row_fully_target_included(db: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SUBMINUTE_TEST_NO_SUCH_TOKEN", raising=False)
    store = SqliteStore(db)
    store.put({"id": 1, "name": "good", "waitseconds": 5})
    bad = {
        2: {"type": "nope"},
        3: {"type": "http"},
        4: {"type": "python", "ref": "no_such_module_xyz:f"},
        5: {"type": "tcp", "host": "127.0.0.1", "port": 0},
        6: {"type": "command", "argv": "ls -l"},
    }
    for sid, target in bad.items():
        store.put_raw({"id": sid, "name": f"bad{sid}", "waitseconds": 5, "running": 1, "target": json.dumps(target)})
    store.put_raw({"id": 7, "name": "secret", "waitseconds": 5, "running": 1, "target": json.dumps(
        {"type": "http", "url": "http://127.0.0.1:9/", "auth": {"type": "bearer", "env": "SUBMINUTE_TEST_NO_SUCH_TOKEN"}})})
    store.put_raw({"id": 8, "name": "good", "waitseconds": 5, "running": 1})  # a duplicate name
    assert run(db, "status", "--json") == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["schedules"]}
    assert rows[1]["error"] is None and rows[1]["running"] is True
    for sid in bad:
        assert rows[sid]["running"] is False and rows[sid]["state"] == "invalid", rows[sid]
        assert rows[sid]["error"].startswith(f"schedule {sid}: target") and "\n" not in rows[sid]["error"]
    assert "target.port: 0 is not allowed" in rows[5]["error"]
    assert rows[7]["error"] is None and rows[7]["running"] is True
    assert "SUBMINUTE_TEST_NO_SUCH_TOKEN" in rows[7]["note"]
    assert rows[8]["state"] == "invalid" and "it is schedule 1's name" in rows[8]["error"]
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0]
    for sid in (*bad, 8):
        assert f"{sid}  bad{sid}" in table or str(sid) in table
    assert out.count("INVALID") == len(bad) + 1
    assert "target.type: 'nope' is not allowed" in out and "SUBMINUTE_TEST_NO_SUCH_TOKEN" in out


# -- the lease as it is ------------------------------------------------------------------------------------

def test_status_after_a_budget_says_the_lease_is_kept_for_a_successor(db: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--every", "200ms") == 0
    assert run(db, "run", "--budget", "0.4", "--no-live") == 0
    capsys.readouterr()
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    assert "handed over to a successor; it may take it until " in out
    assert "while it runs" not in out and "renewed" not in out
    assert run(db, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["controller"] is None and status["lease"]["state"] == "handed-over"


def test_status_after_a_clean_stop_says_released(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--every", "200ms") == 0
    proc = cli(db, "run", "--no-live")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lease = SqliteStore(db).read_lease()
        if lease is not None and lease.expires_at > time.time():
            break
        time.sleep(0.1)
    capsys.readouterr()
    assert run(db, "status") == 0
    assert "holds the lease" in capsys.readouterr().out
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    assert "released the lease" in out and "holds the lease" not in out


@pytest.mark.parametrize(("column", "value"), [("expires_at", "x"), ("token", "abc"), ("owner", None)])
def test_a_damaged_lease_row_counts_as_expired(db: str, column: str, value: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--every", "200ms") == 0
    assert run(db, "run", "--budget", "0.3", "--no-live") == 0
    if value is None:  # NOT NULL: make a new table that lets a hand edit through
        sql(db, "DROP TABLE lease")
        sql(db, "CREATE TABLE lease (name TEXT PRIMARY KEY, owner, token, expires_at)")
        sql(db, "INSERT INTO lease VALUES ('controller', NULL, 1, 1e12)")
    else:
        sql(db, f"UPDATE lease SET {column} = ?", value)
    capsys.readouterr()
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    assert "damaged" in out and "Traceback" not in out
    assert run(db, "status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["lease"]["state"] == "damaged"
    proc = cli(db, "run", "--budget", "3", "--lease-ttl", "1", "--no-live", "--json")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out[out.index("{"):])["token"] is not None
    lease = SqliteStore(db).read_lease()
    assert lease is not None and lease.damaged is None and isinstance(lease.token, int) and lease.token >= 1
    assert run(db, "history", "--json", "--limit", "1000") == 0
    records = json.loads(capsys.readouterr().out)
    assert sum(1 for r in records if r["status"] == "ok" and r["token"] == lease.token) >= 3


# -- missed slots, start lateness, seq ---------------------------------------------------------------------

def write_records(db: str, records: list[FireRecord]) -> None:
    sink = SqliteSink(db)
    for record in records:
        sink.write(record)
    assert sink.flush()
    sink.close()


def test_missed_counts_slots_not_records(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--every", "1s") == 0
    write_records(db, [
        FireRecord(1, "default", 1_000, 1, "ok", lateness_ms=0.5, start_lateness_ms=3.0),
        FireRecord(1, "default", 2_000, 2, "missed", detail={"missed": 24}),
        FireRecord(1, "default", 30_000, 3, "missed", detail={"missed": 2}),
        FireRecord(1, "default", 31_000, 4, "ok", lateness_ms=0.5, start_lateness_ms=5.0),
    ])
    capsys.readouterr()
    assert run(db, "status", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)["schedules"]
    assert row["missed"] == 26
    assert row["start_p50_ms"] == pytest.approx(4.0, abs=1.01) and row["start_p99_ms"] >= 4.9
    assert row["p50_ms"] == pytest.approx(0.5)
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("ID"))
    assert "START P50 MS" in header and "START P99 MS" in header and "MISSED" in header
    assert header.index("START P50 MS") < header.index("FIRES")
    line = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert line.split()[-1] == "26"
    assert run(db, "history") == 0
    out = capsys.readouterr().out
    assert "START LATE MS" in out and "5.00" in out


def test_seq_continues_after_stop_and_start_with_a_real_controller(db: str) -> None:
    assert run(db, "add", "--every", "200ms") == 0
    proc = cli(db, "run", "--no-live", "--budget", "5")
    try:
        time.sleep(1.8)
        assert run(db, "stop", "1") == 0
        time.sleep(0.8)
        assert run(db, "start", "1") == 0
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    records = SqliteStore(db)  # noqa: F841 - the file is closed by the controller now
    conn = sqlite3.connect(db)
    fired = conn.execute("SELECT slot_ms, seq FROM fires WHERE status = 'ok' ORDER BY slot_ms").fetchall()
    conn.close()
    seqs = [s for _, s in fired]
    gaps = [b[0] - a[0] for a, b in zip(fired, fired[1:])]
    assert max(gaps) >= 600, "the schedule was not stopped for a while"
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # no restart at 1 after the start


# -- control characters ------------------------------------------------------------------------------------

ESC_NAME = "\x1b]0;pwned\x07\x1b[2J"
ESC_URL = "http://127.0.0.1:9/\x1b[2J\x1b]0;title\x07"


def test_control_characters_are_escaped_whatever_the_source(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteStore(db)
    store.put({"id": 1, "name": "fine", "waitseconds": 5})
    store.put_raw({"id": 2, "name": ESC_NAME, "waitseconds": 5, "running": 1,
                   "target": json.dumps({"type": "http", "url": ESC_URL})})
    store.put_raw({"id": 3, "name": "url", "waitseconds": 5, "running": 1,
                   "target": json.dumps({"type": "http", "url": "ftp://\x1b[2J"})})
    write_records(db, [FireRecord(1, "fine", 1_000, 1, "error", error=f"GET {ESC_URL}: 500 \x1b[31mboom\x1b[0m")])
    sql(db, "INSERT OR REPLACE INTO lease VALUES ('controller', ?, 3, ?)", "evil\x1b[2J", time.time() + 60)
    capsys.readouterr()
    for argv in (["status"], ["history"], ["history", "1"]):
        assert run(db, *argv) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out, argv
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    assert "INVALID" in out and "\\x1b]0;pwned\\x07" in out and "evil\\x1b[2J" in out
    assert run(db, "history") == 0
    assert "\\x1b[31mboom" in capsys.readouterr().out


def test_the_live_view_escapes_control_characters() -> None:
    from subminute.cli.live import LiveView, summary_table
    from subminute.timing.slots import Every

    class Fake:
        state = "holding"
        lease = None
        stats = {"fired": 1, "missed": 0, "skipped": 0}
        invalid = {2: f"schedule 2: target.url: {ESC_URL}"}

        def status_rows(self) -> list[dict[str, Any]]:
            return [{"id": 1, "name": ESC_NAME, "timetable": Every(1000), "next_slot_ms": 1000, "last_slot_ms": None,
                     "fired": 1, "missed": 0, "skipped": 0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0}]

    out = io.StringIO()
    view = LiveView(Fake(), out=out, tty=True, title=f"run {ESC_NAME}")  # type: ignore[arg-type]
    view.render()
    text = out.getvalue()
    assert text.startswith("\x1b[H\x1b[J")  # its own redraw, and nothing else raw
    assert "\x1b" not in text[len("\x1b[H\x1b[J"):] and "\x07" not in text
    assert "START P50 MS" in text and "START P99 MS" in text
    summary = summary_table(Fake())  # type: ignore[arg-type]
    assert "\x1b" not in summary and "START P50 MS" in summary


# -- pipes -------------------------------------------------------------------------------------------------

def test_a_closed_pipe_ends_quietly(db: str) -> None:
    store = SqliteStore(db)
    for sid in range(1, 1501):
        store.put_raw({"id": sid, "name": f"schedule-number-{sid:05d}-" + "x" * 60, "waitseconds": 5, "running": 1})
    proc = cli(db, "status")
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert err == ""
    assert proc.returncode in (0, 128 + signal.SIGPIPE)
    shell = subprocess.run(f"{sys.executable} -m subminute --db {db} status | head -1", shell=True, text=True,
                           capture_output=True, timeout=60, env={**os.environ})
    assert shell.stdout.startswith("control file:") and shell.stderr == ""
