"""The command target with real programs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from processes import gone
from subminute.dispatch.base import make_event
from subminute.errors import ConfigError
from subminute.secrets import register_secret
from subminute.targets.base import build_target

EVENT = make_event(7, "job", 1_800_000_000_500, 12, 500, "host:1")
PY = sys.executable


def test_event_on_stdin_and_in_environment() -> None:
    script = ("import json, os, sys; e = json.load(sys.stdin); "
              "print(json.dumps({'stdin': e, 'env': {k: v for k, v in os.environ.items() if k.startswith('SUBMINUTE_')}}))")
    result = build_target({"type": "command", "argv": [PY, "-c", script], "record_output": 10000}).run(EVENT, 5)
    assert result.ok, result.error
    out = json.loads(result.detail["stdout"])
    assert out["stdin"] == EVENT
    env = out["env"]
    assert env["SUBMINUTE_SCHEDULE_ID"] == "7" and env["SUBMINUTE_SCHEDULE"] == "job"
    assert env["SUBMINUTE_SLOT"] == "2027-01-15T08:00:00.500Z" and env["SUBMINUTE_SLOT_MS"] == "1800000000500"
    assert env["SUBMINUTE_SEQ"] == "12" and env["SUBMINUTE_INTERVAL"] == "0.5"
    assert json.loads(env["SUBMINUTE_EVENT"]) == EVENT
    assert result.detail["exit"] == 0 and result.bytes == result.detail["stdout_bytes"]


def test_exit_code_and_stderr_make_the_error() -> None:
    result = build_target({"type": "command", "argv": [PY, "-c", "import sys; sys.stderr.write('disk full'); sys.exit(3)"]}
                          ).run(EVENT, 5)
    assert result.status == "error" and result.detail["exit"] == 3
    assert "exit 3: disk full" in (result.error or "")
    allowed = build_target({"type": "command", "argv": [PY, "-c", "raise SystemExit(3)"], "expect_exit": [0, 3]})
    assert allowed.run(EVENT, 5).ok


def test_output_is_bounded_but_fully_drained() -> None:
    script = "import sys; sys.stdout.write('x' * 3_000_000); sys.stderr.write('e' * 100_000)"
    result = build_target({"type": "command", "argv": [PY, "-c", script], "max_output": 1000,
                           "record_output": 50}).run(EVENT, 10)
    assert result.ok
    assert result.detail["stdout_bytes"] == 3_000_000 and result.detail["stderr_bytes"] == 100_000
    assert len(result.detail["stdout"]) <= 53 and len(result.detail["stderr"]) <= 53


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    t0 = time.monotonic()
    result = build_target({"type": "command", "argv": script, "shell": True, "timeout": 0.3}).run(EVENT, 10)
    assert result.status == "timeout" and "killed" in (result.error or "")
    assert time.monotonic() - t0 < 3
    child = int(pidfile.read_text())
    time.sleep(0.1)
    assert gone(child)


def test_no_shell_unless_asked(tmp_path: Path) -> None:
    plain = build_target({"type": "command", "argv": ["echo", "$HOME", "|", "wc"]}).run(EVENT, 5)
    assert plain.detail["stdout"] == "$HOME | wc\n"
    shell = build_target({"type": "command", "argv": "echo $SUBMINUTE_SEQ | tr 1 X", "shell": True}).run(EVENT, 5)
    assert shell.detail["stdout"] == "X2\n"
    with pytest.raises(ConfigError, match='"shell": true'):
        build_target({"type": "command", "argv": "echo hi"})


def test_missing_program_and_stdin_none(tmp_path: Path) -> None:
    missing = build_target({"type": "command", "argv": [str(tmp_path / "nope")]}).run(EVENT, 5)
    assert missing.status == "error" and "cannot run" in (missing.error or "")
    closed = build_target({"type": "command", "argv": [PY, "-c", "import sys; print(len(sys.stdin.read()))"],
                           "stdin": "none", "env": {"EXTRA": "1"}, "cwd": str(tmp_path)}).run(EVENT, 5)
    assert closed.ok and closed.detail["stdout"] == "0\n"


def test_a_secret_the_command_prints_is_hidden_before_the_tails_are_cut() -> None:
    """The tails are cut at ``record_output`` characters: a secret across the cut must not leave a piece."""
    secret = "cmd-secret-" + os.urandom(12).hex()
    register_secret(secret)  # as an HTTP target that read it from the environment does
    script = (f"import sys; sys.stdout.write('A' * 100 + {secret!r} + 'B' * 5); "
              f"sys.stderr.write('E' * 400 + {secret!r} + 'F' * 5); sys.exit(1)")
    result = build_target({"type": "command", "argv": [PY, "-c", script], "record_output": 20}).run(EVENT, 5)
    assert result.status == "error"
    texts = [result.detail["stdout"], result.detail["stderr"], result.error or ""]
    assert result.detail["stdout"].endswith("***BBBBB") and (result.error or "").endswith("***FFFFF")
    pieces = {secret[i:i + 8] for i in range(len(secret) - 7)}
    assert not [p for p in pieces for text in texts if p in text], texts


def test_a_command_still_running_when_run_ends_is_recorded_and_ended(tmp_path: Path) -> None:
    # it outlived `subminute run --budget` (a session of its own), and its fire had no record at all
    from subminute.control.sqlite import SqliteStore
    from subminute.results.sinks import FireLog
    from subminute.runtime.local import LocalRuntime

    db, pidfile = tmp_path / "control.db", tmp_path / "child.pid"
    store = SqliteStore(db)
    store.put({"id": 1, "name": "stuck", "waitseconds": 1, "overlap": "skip", "timeout": 300,
               "target": {"type": "command", "argv": f"sleep 300 & echo $! > {pidfile}; wait", "shell": True}})
    store.put({"id": 2, "name": "quick", "waitseconds": 0.5, "target": {"type": "noop"}})
    LocalRuntime(db, budget_s=2.5).run()  # the first fire hangs, the next are skipped; 5 s for it, then the end
    records = FireLog(db).history(1)
    assert [r["status"] for r in records if r["seq"] == 1] == ["timeout"]
    assert {r["status"] for r in records if r["seq"] > 1} == {"skipped"}
    first = next(r for r in records if r["seq"] == 1)
    assert first["error"].startswith("still running when subminute stopped (it waited 5s")
    assert "its process is ended" in first["error"]
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child)
    assert {r["status"] for r in FireLog(db).history(2)} == {"ok"}


def test_a_command_that_ignores_sigterm_is_recorded_by_its_own_kill(tmp_path: Path) -> None:
    # the dispatcher's monitor recorded it first, as a thread it cannot stop ("keeps counting against its
    # schedule"), before the command's TERM, one second, KILL had ended it
    from subminute.control.sqlite import SqliteStore
    from subminute.results.sinks import FireLog
    from subminute.runtime.local import LocalRuntime

    db = tmp_path / "control.db"
    SqliteStore(db).put({"id": 1, "name": "deaf", "waitseconds": 1, "overlap": "skip", "timeout": 0.3,
                         "target": {"type": "command", "argv": "trap '' TERM; sleep 30", "shell": True}})
    LocalRuntime(db, budget_s=1.5).run()
    records = [r for r in FireLog(db).history(1) if r["status"] != "skipped"]
    assert records and all(r["status"] == "timeout" for r in records)
    assert all("still running after 0.3s; killed" in r["error"] for r in records), records[0]["error"]
