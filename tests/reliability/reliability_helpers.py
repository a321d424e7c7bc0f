"""Helpers for the reliability suite: real `subminute run` processes on one SQLite file, read back with
a separate connection, as an operator would."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

RECORD_FIELDS = "id, schedule_id, slot_ms, seq, status, dispatched_ms, token, error, detail, started_ms, start_lateness_ms"


class Run:
    """One `python -m subminute run` process."""

    def __init__(self, db: Path, *args: str, log: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        """``env``: variables added to this process's environment; ``cwd``: where it runs."""
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in wait()/kill()
        # faulthandler: a SIGABRT prints every thread's stack (see terminate)
        environ = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "subminute", "--db", str(db), "run", "--no-live", *args],
            stdout=self._out, stderr=subprocess.STDOUT, env=environ, cwd=cwd, start_new_session=True)
        self.pid = self.proc.pid
        self.owner_suffix = f":{self.pid}"

    def kill9(self) -> float:
        """kill -9; returns the wall-clock instant (ms) it was sent."""
        at = time.time() * 1000
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()
        return at

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and its exit code; a process still alive after ``timeout`` fails the test showing where
        each of its threads stood (SIGABRT: faulthandler's dump)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGABRT)
            self.proc.wait(10)
            self._out.close()
            raise AssertionError(f"still running {timeout:g}s after SIGTERM:\n{self.output()[-6000:]}") from None
        self._out.close()
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


def runs_fixture(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Start `subminute run` processes; any still alive at the end are killed (by their own pid)."""
    started: list[Run] = []

    def start(db: Path, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Run:
        run = Run(db, *args, log=tmp_path / f"run-{len(started)}.log", env=env, cwd=cwd)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.alive():
            run.proc.kill()
            run.proc.wait(10)
        if not run._out.closed:
            run._out.close()


def read_fires(db: Path, where: str = "1 = 1", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Committed fire records, read with a connection of our own (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'fires'").fetchone():
            return []
        cols = [c.strip() for c in RECORD_FIELDS.split(",")]
        rows = conn.execute(f"SELECT {RECORD_FIELDS} FROM fires WHERE {where} ORDER BY id", args).fetchall()
        return [dict(zip(cols, r)) for r in rows]
    finally:
        conn.close()


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s")


def fired(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] in ("ok", "error", "timeout")]
