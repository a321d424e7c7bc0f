"""Two programs adding schedules to one control file at the same moment: each new row's id is chosen in
the write's own transaction, so neither takes the id the other just took and replaces its row (before,
a run of two programs adding 50 functions each left 64 to 77 rows, with no error)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from subminute.control.sqlite import SqliteStore

ADDERS = 2
EACH = 40

SCHEDULER_ADDS = """
    import sys, time
    from subminute import Scheduler
    path, prefix, at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    s = Scheduler(path)
    time.sleep(max(0.0, at - time.time()))
    for i in range(count):
        s.add(lambda: None, every="1s", name=f"{prefix}{i}")
"""

CLI_ADDS = """
    import sys, time
    from subminute.cli import main
    path, prefix, at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    time.sleep(max(0.0, at - time.time()))
    for i in range(count):
        assert main(["--db", path, "add", "--name", f"{prefix}{i}", "--every", "1s", "--command", "true"]) == 0
"""


def run_adders(script: str, path: Path) -> None:
    SqliteStore(path).close()  # the file exists before both start
    at = time.time() + 1.5  # both processes are up by then: their adds interleave
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(path), prefix, str(at), str(EACH)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for prefix in "ab"[:ADDERS]]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def names_in(path: Path) -> dict[int, str]:
    store = SqliteStore(path)
    try:
        return {int(r["id"]): r["name"] for r in store.rows()}
    finally:
        store.close()


def test_two_programs_adding_functions_at_once_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    run_adders(SCHEDULER_ADDS, path)
    found = names_in(path)
    assert sorted(found.values()) == sorted(f"{p}{i}" for p in "ab" for i in range(EACH))
    assert sorted(found) == list(range(1, ADDERS * EACH + 1))


def test_two_cli_adds_at_once_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    run_adders(CLI_ADDS, path)
    found = names_in(path)
    assert sorted(found.values()) == sorted(f"{p}{i}" for p in "ab" for i in range(EACH))
    out = subprocess.run([sys.executable, "-m", "subminute", "--db", str(path), "status", "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert len(json.loads(out)["schedules"]) == ADDERS * EACH


def test_a_removed_schedules_id_is_not_given_again(tmp_path: Path) -> None:
    # the next add took the removed id, and the old schedule's records counted as the new one's in status
    from subminute import Scheduler
    from subminute.cli import main
    from subminute.results.records import FireRecord
    from subminute.results.sinks import SqliteSink

    path = tmp_path / "ids.db"
    for name in ("a", "b"):
        assert main(["--db", str(path), "add", "--name", name, "--every", "1s"]) == 0
    sink = SqliteSink(path)
    sink.write(FireRecord(2, "b", 1_800_000_000_000, 1, "ok"))
    sink.close()
    assert main(["--db", str(path), "remove", "b"]) == 0
    assert main(["--db", str(path), "add", "--name", "c", "--every", "1s"]) == 0
    assert names_in(path) == {1: "a", 3: "c"}
    sink = SqliteSink(path)
    sink.write(FireRecord(3, "c", 1_800_000_000_000, 1, "ok"))
    sink.close()
    assert main(["--db", str(path), "remove", "c"]) == 0
    scheduler = Scheduler(path)  # the records of 3 keep it taken with no row of 2 or 3 left
    assert scheduler.add(lambda: None, every="1s", name="d") == "d"
    assert names_in(path) == {1: "a", 4: "d"}

    memory = Scheduler()
    memory.add(lambda: None, every="1s", name="first")
    memory.add(lambda: None, every="1s", name="second")
    memory.remove("second")
    memory.add(lambda: None, every="1s", name="third")
    assert [(r["id"], r["name"]) for r in memory.status()] == [(1, "first"), (3, "third")]
