"""Smoke test of bench/timing.py, issue 8's timing benchmark: a ``--quick`` run of every system on cases 3
(1 schedule at 0.1 s), 5 (100 schedules on the same 0.1 s instants) and 6 (HTTP polls against the server
process), in a subprocess, about 40 s.

Loose assertions only, none on timing: the script runs, prints every system, every run fires and fires no
slot twice, and the JSON holds together. The benchmark measures; this checks that it still can."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realtime, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("floor", "apscheduler", "asyncio", "subminute", "subminute-api")
CASES = ("3", "5", "6")


def test_quick_run_of_every_system_on_three_cases(tmp_path: Path) -> None:
    out = tmp_path / "timing.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "timing.py"), "--quick", "--cases", ",".join(CASES),
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    lines = proc.stdout.splitlines()
    for system in SYSTEMS:  # a row per case, and a p99 column in the summary
        assert sum(line.startswith(f"| {system} ") for line in lines) == len(CASES), (system, proc.stdout)
        assert f"{system} p99" in proc.stdout
    assert "## Summary" in proc.stdout

    data = json.loads(out.read_text())
    assert data["systems"] == list(SYSTEMS)
    assert [c["case"]["key"] for c in data["cases"]] == list(CASES)
    for case in data["cases"]:
        assert [r["system"] for r in case["runs"]] == list(SYSTEMS)
        for run in case["runs"]:
            where = f"case {case['case']['key']}, {run['system']}"
            assert "failed" not in run, (where, run)
            assert 0 < run["fires"] <= run["expected"], (where, run)
            assert run["dup"] == 0, (where, run)  # slots known, or inferred one per fire
            assert run["lateness"]["p50"] is not None and run["cpu_ms"] >= 0, (where, run)
            if case["case"]["http"]:
                assert run["arrival"]["fires"] > 0, (where, run["arrival"])
            if run["system"] == "subminute" and sys.platform == "linux":  # where the CPU goes, and the wake-ups
                assert run["cpu_ms_per_s_by_thread"]["subminute-runtime"] > 0, (where, run)
                assert run["wakes_per_s_by_thread"]["subminute-runtime"] >= 1, (where, run)
    verdicts = {t["verdict"] for t in data["targets"]}
    assert data["targets"] and verdicts <= {"met", "NOT MET", "not measured"}
