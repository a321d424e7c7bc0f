"""Smoke test of bench/timing.py, issue 8's timing benchmark: a ``--quick`` run of every system on cases 3
(1 schedule at 0.1 s), 5 (100 schedules on the same 0.1 s instants), 6 (HTTP polls against the server
process) and 7 (idle, 3 s), in a subprocess, about 70 s.

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
SYSTEMS = ("floor", "floor-3", "floor-3-store", "apscheduler", "asyncio", "subminute", "subminute-api")
CASES = ("3", "5", "6", "7")
IDLE_ONLY = ("floor-3", "floor-3-store")  # in the idle case only, unless named with --systems


def systems_of(case: str) -> list[str]:
    return [s for s in SYSTEMS if s not in IDLE_ONLY or case == "7"]


def test_quick_run_of_every_system_on_four_cases(tmp_path: Path) -> None:
    out = tmp_path / "timing.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "timing.py"), "--quick", "--cases", ",".join(CASES),
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    lines = proc.stdout.splitlines()
    for system in SYSTEMS:  # a row per case it runs in, and a p99 column in the summary
        rows = sum(line.startswith(f"| {system} ") for line in lines)
        assert rows == sum(system in systems_of(case) for case in CASES), (system, proc.stdout)
        assert f"{system} p99" in proc.stdout
    assert "## Summary" in proc.stdout

    data = json.loads(out.read_text())
    assert data["systems"] == list(SYSTEMS)
    assert [c["case"]["key"] for c in data["cases"]] == list(CASES)
    for case in data["cases"]:
        assert [r["system"] for r in case["runs"]] == systems_of(case["case"]["key"])
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
            if run["system"].startswith("floor-3") and sys.platform == "linux":  # three threads wake a second
                wakes = run["wakes_per_s_by_thread"]
                for name in ("loop", "worker", "keeper"):
                    assert wakes[f"floor-3-{name}"] >= 0.5, (where, wakes)
            if run["system"] == "floor-3-store":  # its store work was done: the records reached the file
                assert "every record put was written to SQLite" in run["notes"], (where, run["notes"])
    verdicts = {t["verdict"] for t in data["targets"]}
    assert data["targets"] and verdicts <= {"met", "NOT MET", "not measured"}
