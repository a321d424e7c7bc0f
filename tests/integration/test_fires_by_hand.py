"""Fire records written by hand into the ``fires`` table (an operator's sqlite3 shell, another program):
status, history, export and report read every other record, and show the bad one with its unreadable
values empty. Before, each of these rows made one or more of those commands end in a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from subminute.cli import main
from subminute.control.sqlite import SqliteStore
from subminute.results.records import FireRecord
from subminute.results.sinks import SqliteSink

BAD_ROWS = {
    "text in the lateness columns": "(1, 'fast', 1000, 9, 'ok', 'abc', 'abc', NULL, NULL)",
    "a detail that is no JSON": "(1, 'fast', 1000, 9, 'ok', NULL, NULL, '{\"a\":', NULL)",
    "a missed record whose detail is a list": "(1, 'fast', 1000, 9, 'missed', NULL, NULL, '[1,2]', NULL)",
    "an error that is no UTF-8": "(1, 'fast', 1000, 9, 'error', NULL, NULL, NULL, CAST(X'C328' AS TEXT))",
    "a slot that is text": "(1, 'fast', 'abc', 9, 'ok', NULL, NULL, NULL, NULL)",
    "a slot no date can show": "(1, 'fast', 9223372036854775807, 9, 'ok', NULL, NULL, NULL, NULL)",
    "a schedule id that is text": "('one', 'fast', 1000, 9, 'ok', NULL, NULL, NULL, NULL)",
    "a detail that is a blob": "(1, 'fast', 1000, 9, 'ok', NULL, NULL, X'FF00', NULL)",
    "blobs in number columns": "(1, 'fast', 1000, 9, 'ok', X'00', X'00', NULL, NULL)",
}
READS = (["status"], ["status", "--json"], ["history"], ["history", "fast", "--json"], ["export"],
         ["report", "fast", "--no-plot"], ["report", "fast", "--json", "--out", "{tmp}/plot.png"])


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "control.db")
    SqliteStore(path).put({"id": 1, "name": "fast", "waitseconds": 1})
    sink = SqliteSink(path)
    for seq in (1, 2):
        sink.write(FireRecord(1, "fast", 1_800_000_000_000 + seq * 1000, seq, "ok", lateness_ms=0.5,
                              start_lateness_ms=0.7, latency_ms=3.0))
    sink.close()
    return path


@pytest.mark.parametrize("bad", list(BAD_ROWS), ids=list(BAD_ROWS))
def test_every_read_command_copes_with_a_record_written_by_hand(db: str, bad: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO fires (schedule_id, name, slot_ms, seq, status, lateness_ms, start_lateness_ms, "
                     f"detail, error) VALUES {BAD_ROWS[bad]}")
    for argv in READS:
        capsys.readouterr()
        code = main(["--db", db, *(a.format(tmp=tmp_path) for a in argv)])
        out, err = capsys.readouterr()
        assert code == 0 and "Traceback" not in err and not err.strip(), (argv, err)
        if argv == ["history", "fast", "--json"]:
            good = [r for r in json.loads(out) if r["seq"] in (1, 2)]
            assert [r["start_lateness_ms"] for r in good] == [0.7, 0.7]  # the others are all there
            assert all(isinstance(r["detail"], dict) for r in json.loads(out))
