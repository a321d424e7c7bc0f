"""bench/http_poll.py still runs: one low rate per target kind, against its own local server process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

BENCH = Path(__file__).resolve().parents[3] / "bench" / "http_poll.py"


def test_bench_runs_and_reports_each_kind() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--rates", "200", "--seconds", "1"], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| http ", "| tcp "))]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "200" and 150 <= float(cells[2]) <= 210 and cells[7] == "0"  # asked, achieved, errors
        assert 0 <= float(cells[4]) < 100, row  # start p99: at or after the slot, never before it
    assert "http: highest rate with start p99 < 10 ms:" in done.stdout
    assert "tcp: highest rate with start p99 < 10 ms:" in done.stdout
