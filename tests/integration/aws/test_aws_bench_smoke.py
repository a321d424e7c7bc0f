"""The AWS measuring scripts run (bench/aws_cost.py, bench/aws_restart.py): each with --quick, as a child
process with its own moto server and stand-in endpoint. Only loose things are checked (they run, print their
tables, count calls, price them); the figures themselves are for the scripts' full runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.aws, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[3] / "bench"


def _run(tmp_path: Path, script: str, *args: str, timeout: float = 120) -> tuple[str, dict[str, Any]]:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout, json.loads(out.read_text())


def test_cost_quick(tmp_path: Path) -> None:
    text, report = _run(tmp_path, "aws_cost.py", "--rows", "1,100", "--rows-seconds", "3", "--minutes", "0.15")
    assert "FIXED" in text and "original (from its code)" in text and "RRU" in text
    assert report["calls_total"] > 0
    assert math.isfinite(report["fixed_usd"]) and report["fixed_usd"] > 0
    assert math.isfinite(report["total_usd"]) and report["total_usd"] >= report["fixed_usd"]
    assert {c["op"] for c in report["calls"]} >= {"Invoke"}  # the worker was invoked through the stand-in
    assert [r["rows"] for r in report["rows"]] == [1, 100] and all(r["rru_month"] > 0 for r in report["rows"])
    assert math.isfinite(report["original"]["fixed"])


def test_restart_quick(tmp_path: Path) -> None:
    text, report = _run(tmp_path, "aws_restart.py", "--restarts", "2")
    assert "first slot lateness ms" in text
    assert report["restarts"] == 2 and report["calls_total"] > 0 and report["steady"]["count"] > 0


def test_many_schedules_quick(tmp_path: Path) -> None:
    text, report = _run(tmp_path, "aws_restart.py", "--schedules", "100", "--seconds", "5")
    assert "invokes/s" in text
    assert report["sent"] > 0 and report["calls_total"] > 0 and math.isfinite(report["lateness"]["p50"])
