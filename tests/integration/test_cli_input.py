"""Bad input to the CLI: every numeric flag through one checked parser, every way in through one row check,
unique names, references that are checked before anything changes. One line, exit code 2, no traceback."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from subminute.cli import main
from subminute.control.sqlite import SqliteStore


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "control.db")
    SqliteStore(path).put({"id": 1, "name": "a", "waitseconds": 5})
    return path


def run(db: str, *argv: str) -> int:
    try:
        return main(["--db", db, *argv])
    except SystemExit as exc:  # argparse's own checks
        return int(exc.code or 0)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("subminute: error: ") and "Traceback" not in err
    return lines[0]


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["add", "--id", HUGE], f"--id: '{HUGE}' is not allowed; use a whole number from 1 to 2147483647"),
        (["add", "--id", "0"], "--id: 0 is not allowed; use a whole number from 1 to 2147483647"),
        (["add", "--id", "-1"], "--id: '-1' is not allowed; use a whole number from 1"),
        (["history", "--limit", HUGE], f"--limit: '{HUGE}' is not allowed; use a whole number from 1 to 1000000"),
        (["history", "--limit", "0"], "--limit: '0' is not allowed; use a whole number from 1 to 1000000"),
        (["history", "--limit", "ten"], "--limit: 'ten' is not allowed"),
        (["export", "--limit", HUGE], "--limit: "),
        (["export", "--since", "99999999999999h"], "--since: '99999999999999h' is not allowed"),
        (["report", "--last", HUGE, "--no-plot"], "--last: "),
        (["report", "--size", f"{HUGE}x2", "--no-plot"], "--size: "),
        (["run", "--lease-ttl", "0.01"], "--lease-ttl: '0.01' is not allowed; use a number of seconds from 1 to 3600"),
        (["run", "--lease-ttl", HUGE], "--lease-ttl: "),
        (["run", "--budget", "0"], "--budget: '0' is not allowed"),
        (["run", "--budget", "1e999"], "--budget: '1e999' is not allowed"),
        (["run", "--metrics-port", HUGE], "--metrics-port: "),
        (["run", "--metrics-port", "70000"], "--metrics-port: '70000' is not allowed; use a port from 0 to 65535"),
        (["demo", "--seconds", "1e999"], "--seconds: '1e999' is not allowed"),
        (["stop", HUGE], f"schedule: '{HUGE}' is not allowed; use a whole number from 1 to 2147483647"),
        (["stop", "0"], "schedule: 0 is not allowed; use a whole number from 1 to 2147483647"),
        (["set", "-5", "--every", "1"], "schedule: '-5' is not allowed; use a whole number from 1"),
        (["add", "--tcp", f"127.0.0.1:{HUGE}"], "--tcp port: "),
        (["add", "--tcp", "127.0.0.1:0"], "--tcp port: '0' is not allowed; use a port from 1 to 65535"),
        (["add", "--command", "echo 'unclosed"], "--command: "),
        (["add", "--target", "[" * 100000], "--target: "),
        (["add", "--http", "http://127.0.0.1:9/", "--expect", HUGE], "--expect: "),
        (["add", "--every", HUGE], "waitseconds: "),
        (["add", "--timeout", HUGE], "timeout: "),
        (["add", "--offset", HUGE], "offset: "),
        (["add", "--grace", HUGE], "grace: "),
        # digits that str.isdigit() takes and int() does not (a traceback before)
        (["add", "--id", "\u00b2"], "--id: '\u00b2' is not allowed; use a whole number from 1"),
        (["stop", "\u00b2"], "no schedule '\u00b2'; the schedules are: 1 (a)"),
        (["history", "--limit", "\u00b2"], "--limit: '\u00b2' is not allowed"),
        (["history", "--limit", "\u0665"], "--limit: '\u0665' is not allowed"),  # an Arabic-Indic 5
        (["report", "--size", "\u00b2x\u00b2", "--no-plot"], "--size: "),
        (["add", "--tcp", "127.0.0.1:\u00b2"], "--tcp port: "),
    ],
)
def test_every_numeric_flag_is_checked_with_its_range(db: str, argv: list[str], needle: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, *argv) == 2
    assert needle in one_error_line(capsys)


def test_an_empty_db_path_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", "", "status"]) == 2
    assert "--db: '' is not allowed" in one_error_line(capsys)


@pytest.mark.parametrize("what", ["binary", "directory", "missing", "not-utf8", "device", "pipe", "deep"])
def test_run_config_that_is_no_toml_file_is_one_line(db: str, tmp_path: Path, what: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a device's size reads 0 (/dev/zero filled the memory), a pipe may never end, a deep nesting of
    # tables overflowed the TOML parser's recursion (a RecursionError traceback)
    path = {"binary": Path("/bin/true"), "directory": tmp_path, "missing": tmp_path / "nope.toml",
            "not-utf8": tmp_path / "latin.toml", "device": Path("/dev/zero"), "pipe": tmp_path / "fifo",
            "deep": tmp_path / "deep.toml"}[what]
    if what == "not-utf8":
        path.write_bytes(b'[[schedule]]\nname = "caf\xe9"\n')
    if what == "pipe":
        os.mkfifo(path)
    if what == "deep":
        path.write_text('[[schedule]]\nid = 2\nevery = "2s"\nx = ' + "[" * 5000 + "1" + "]" * 5000 + "\n")
    assert run(db, "run", "--config", str(path), "--budget", "0.2", "--no-live") == 2
    assert f"--config: '{path}' is not allowed" in one_error_line(capsys)


def test_budget_and_lease_ttl_take_durations(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from subminute.cli.args import seconds_flag

    assert seconds_flag("2m", "--budget", 0.001, 10 * 365 * 86400) == 120.0
    assert seconds_flag("1.5", "--lease-ttl", 1, 3600) == 1.5
    assert run(db, "run", "--budget", "300ms", "--lease-ttl", "2s", "--no-live") == 0


# -- one full check for every way in --------------------------------------------------------------------

BAD_TARGETS = [
    ({"type": "nope"}, "target.type: 'nope' is not allowed"),
    ({"type": "http"}, "target.url: None is not allowed"),
    ({"type": "python", "ref": "no_such_module_xyz:f"}, "target.ref: 'no_such_module_xyz:f' is not allowed"),
    ({"type": "tcp", "host": "127.0.0.1", "port": 0}, "target.port: 0 is not allowed"),
    ({"type": "http", "url": "ftp://example.com/x"}, "target.url: 'ftp://example.com/x' is not allowed"),
    ({"type": "http", "url": "http://127.0.0.1:9/", "auth": {"type": "bearer", "token": "abc"}},
     "target.auth.token: '(hidden)' is not allowed; never put a secret in the spec"),
    ({"type": "http", "url": "http://127.0.0.1:9/", "expect": ["\u00b2"]},  # int() refuses it: a ValueError before
     "target.expect: ['\u00b2'] is not allowed; use status codes like [200, 204]"),
]


@pytest.mark.parametrize(("target", "needle"), BAD_TARGETS)
def test_add_and_set_refuse_a_bad_target(db: str, target: dict[str, object], needle: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--name", "b", "--target", json.dumps(target)) == 2
    assert needle in one_error_line(capsys)
    assert run(db, "set", "a", "--target", json.dumps(target)) == 2
    assert needle in one_error_line(capsys)
    assert [r["name"] for r in SqliteStore(db).rows()] == ["a"] and "target" not in SqliteStore(db).get(1)


def test_a_target_whose_secret_the_cli_lacks_is_added_with_a_note(db: str, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SUBMINUTE_TEST_NO_SUCH_TOKEN", raising=False)
    target = {"type": "http", "url": "http://127.0.0.1:9/",
              "auth": {"type": "bearer", "env": "SUBMINUTE_TEST_NO_SUCH_TOKEN"}}
    assert run(db, "add", "--name", "secret", "--target", json.dumps(target)) == 0
    out, err = capsys.readouterr()
    assert "added schedule 2 (secret)" in out
    assert "SUBMINUTE_TEST_NO_SUCH_TOKEN" in err and "controller" in err


@pytest.mark.parametrize(("target", "needle"), BAD_TARGETS)
def test_a_toml_file_with_a_bad_target_is_refused_before_anything_is_written(
        tmp_path: Path, target: dict[str, object], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "fresh" / "control.db"
    config = tmp_path / "s.toml"
    spec = ", ".join(f"{k} = {json.dumps(v)}" for k, v in target.items() if not isinstance(v, dict))
    auth = target.get("auth")
    if isinstance(auth, dict):
        spec += ", auth = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in auth.items()) + " }"
    config.write_text('[[schedule]]\nid = 1\nname = "ok"\nevery = "1s"\n\n'
                      f'[[schedule]]\nid = 2\nname = "feed"\nevery = "1s"\ntarget = {{ {spec} }}\n')
    assert run(str(db), "run", "--config", str(config), "--budget", "0.2", "--no-live") == 2
    line = one_error_line(capsys)
    assert needle in line and str(config) in line and "schedule 2" in line
    assert not db.exists() and not db.parent.exists()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('id = 2\nname = "x"\nevery = "1s"\nplan = "tz=UTC; otherwise every 5s"\n', "give every or plan, not both"),
        ('id = 2\nname = "x"\nwaitseconds = 1\nplan = "tz=UTC; otherwise every 5s"\n',
         "waitseconds: 1 is not allowed; leave it out with a plan, or give the plan's own default (5s"),
        ('id = 2\nname = "2"\nevery = "1s"\n', "name: '2' is not allowed; use a name that is not a number"),
        ('id = 2\nname = "a"\nevery = "1s"\n', "name: 'a' is not allowed; schedule 1 has that name"),
    ],
)
def test_toml_every_with_plan_numeric_and_duplicate_names_are_refused(
        db: str, tmp_path: Path, body: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "s.toml"
    config.write_text("[[schedule]]\n" + body)
    assert run(db, "run", "--config", str(config), "--budget", "0.2", "--no-live") == 2
    line = one_error_line(capsys)
    assert needle in line and str(config) in line
    assert [r["id"] for r in SqliteStore(db).rows()] == [1]


def test_toml_duplicate_names_within_the_file(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "s.toml"
    config.write_text('[[schedule]]\nid = 2\nname = "x"\n\n[[schedule]]\nid = 3\nname = "x"\n')
    assert run(db, "run", "--config", str(config), "--budget", "0.2", "--no-live") == 2
    assert "name: 'x' is not allowed" in one_error_line(capsys)
    assert [r["id"] for r in SqliteStore(db).rows()] == [1]


def test_toml_entries_that_are_not_tables(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "s.toml"
    config.write_text("schedule = [1, 2]\n")
    assert run(db, "run", "--config", str(config), "--budget", "0.2", "--no-live") == 2
    assert str(config) in one_error_line(capsys)


# -- names ------------------------------------------------------------------------------------------------

def test_set_refuses_a_name_another_schedule_has(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--name", "b", "--every", "1s") == 0
    capsys.readouterr()
    assert run(db, "set", "b", "--name", "a") == 2
    assert "name: 'a' is not allowed; schedule 1 has that name" in one_error_line(capsys)
    assert run(db, "add", "--name", "a", "--every", "1s") == 2
    assert "schedule 1 has that name" in one_error_line(capsys)
    assert run(db, "set", "b", "--name", "2") == 2
    assert "use a name that is not a number" in one_error_line(capsys)
    assert [r["name"] for r in SqliteStore(db).rows()] == ["a", "b"]


def test_an_ambiguous_reference_is_refused_with_the_candidates(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteStore(db)
    store.put_raw({"id": 3, "name": "a", "waitseconds": 5, "running": 1})  # a duplicate written by hand
    store.put_raw({"id": 5, "name": "3", "waitseconds": 5, "running": 1})  # a name that reads as id 3
    assert run(db, "stop", "a") == 2
    line = one_error_line(capsys)
    assert "schedule: 'a' is not allowed" in line and "1 (a)" in line and "3 (a)" in line
    assert run(db, "stop", "3") == 2
    line = one_error_line(capsys)
    assert "schedule: '3' is not allowed" in line and "3 (a)" in line and "5 (3)" in line
    assert all(r["running"] for r in store.rows())
    assert run(db, "stop", "5") == 0  # row 5 is refused (its name reads as an id), and a stop stops it
    assert {r["id"]: bool(r["running"]) for r in store.rows()} == {1: True, 3: True, 5: False}
    assert run(db, "set", "5", "--name", "five") == 0
    assert run(db, "stop", "1", "3") == 0  # "3" is id 3 alone now; a duplicate may still be stopped
    assert not any(r["running"] for r in store.rows())


def test_a_row_refused_for_any_reason_may_be_stopped_but_not_started(db: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # docs/guarantees.md section 6: a stop is accepted on a row that is otherwise refused (it was refused)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schedules SET waitseconds = -1 WHERE id = 1")
    assert run(db, "stop", "a") == 0
    assert not SqliteStore(db).get(1)["running"]
    capsys.readouterr()
    assert run(db, "start", "a") == 2
    assert "schedule 1: waitseconds: -1 is not allowed" in one_error_line(capsys)


def test_a_name_with_a_sign_is_a_name(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # '+5' and '-7' are names (only digits read as an id), and once added they could not be referenced
    assert run(db, "add", "--name", "+5", "--every", "2s") == 0
    assert run(db, "add", "--name=-7", "--every", "2s") == 0
    assert run(db, "stop", "+5", "--", "-7") == 0
    assert {r["name"]: bool(r["running"]) for r in SqliteStore(db).rows()} == {"a": True, "+5": False, "-7": False}
    assert run(db, "remove", "+5") == 0
    capsys.readouterr()
    assert run(db, "stop", "-3") == 2  # no such name: read as an id, and refused with the id rule
    assert "schedule: '-3' is not allowed; use a whole number from 1" in one_error_line(capsys)


def test_start_stop_change_nothing_when_one_argument_is_bad(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--name", "b", "--every", "1s", "--stopped") == 0
    capsys.readouterr()
    assert run(db, "start", "b", "99") == 2
    assert "no schedule '99'" in one_error_line(capsys)
    assert run(db, "stop", "a", "nope") == 2
    one_error_line(capsys)
    running = {r["name"]: bool(r["running"]) for r in SqliteStore(db).rows()}
    assert running == {"a": True, "b": False}
    assert run(db, "remove", "nope") == 2
    one_error_line(capsys)
    assert len(SqliteStore(db).rows()) == 2


def test_a_writing_command_on_a_damaged_file_says_what_to_do(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"not a database at all" * 100)
    assert run(str(path), "stop", "1") == 1
    line = one_error_line(capsys)
    assert "is another program holding the file" not in line and "damaged" in line


def test_a_hand_written_name_that_is_a_number_shows_as_invalid(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schedules SET name = '7' WHERE id = 1")
    conn.commit()
    conn.close()
    assert run(db, "status") == 0
    assert "name: '7' is not allowed" in capsys.readouterr().out


def test_status_says_how_to_fix_a_row_whose_id_is_refused(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(db) as conn:  # it said "fix it with 'subminute set 0 ...'", which is refused
        conn.execute("INSERT INTO schedules (id, name, waitseconds) VALUES (2147483648, 'big', 5)")
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    assert "set 0" not in out and "no command can name it by its id: 'subminute remove NAME'" in out
    assert run(db, "remove", "big") == 0


def test_a_db_path_through_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain").write_text("x")
    for argv in (["add", "--every", "2s"], ["run", "--budget", "0.2", "--no-live"]):
        assert main(["--db", str(tmp_path / "plain" / "sub" / "x.db"), *argv]) == 1  # a FileExistsError before
        assert "plain is a file, not a directory; check the path" in one_error_line(capsys)


def test_output_that_cannot_be_written_is_one_line(db: str) -> None:
    # stdout on a full disk: an OSError traceback from the first print before
    for argv in (["status"], ["export", "-f", "csv"], ["history", "--json"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "subminute", "--db", db, *argv], stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines() == ["subminute: error: No space left on device; free some space or write the "
                                            "output elsewhere"]


def test_text_from_the_table_is_escaped_in_log_lines(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(db) as conn:  # another controller's lease, its owner written to drive a terminal
        conn.execute("INSERT OR REPLACE INTO lease (name, owner, token, expires_at) VALUES ('controller', ?, 7, ?)",
                     ("evil\x1b]0;TITLE\x07\x1b[2J", 4e9))
    try:
        assert run(db, "run", "--budget", "1.5", "--no-live") == 0
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "another controller (evil\\x1b]0;TITLE\\x07\\x1b[2J, token 7) holds the lease" in err
    assert "\x1b" not in err and "\x07" not in err


def test_set_refuses_no_plan_with_a_plan(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the --plan was dropped without a word
    assert run(db, "set", "a", "--no-plan", "--plan", "tz=UTC; otherwise every 5s") == 2
    assert "--no-plan: 'tz=UTC; otherwise every 5s' is not allowed; give --plan TEXT or --no-plan" in \
        one_error_line(capsys)


def test_a_toml_file_with_a_byte_order_mark_is_read(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bom.toml"  # as some editors save it: refused as "Invalid statement" before
    config.write_bytes(b'\xef\xbb\xbf[[schedule]]\nid = 2\nname = "feed"\nevery = "1s"\ntarget = { type = "noop" }\n')
    assert run(db, "run", "--config", str(config), "--budget", "0.2", "--no-live") == 0
    assert SqliteStore(db).get(2)["name"] == "feed"
