"""bench/soak.py, shortened for CI: 100 schedules at 1 s for 90 s with a fault every 20 s (store outage,
controller kill with standby take-over, clock step). It exits non-zero on a duplicated slot or a slot
missed outside an injected fault."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.slow
@pytest.mark.realtime
def test_short_soak_has_no_duplicate_and_no_stray_miss() -> None:
    done = subprocess.run([sys.executable, str(SOAK), "--minutes", "1.5", "--fault-every", "20"],
                          capture_output=True, text=True, timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "duplicated 0" in out and "outside faults 0;" in out
    for fault in ("store outage", "controller kill", "clock step"):
        assert fault in out.split("== soak result")[1], out
