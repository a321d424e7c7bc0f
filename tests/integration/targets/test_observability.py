"""Metrics scraped from the real endpoint during a real run; the report's PNG; export through the CLI."""

from __future__ import annotations

import json
import re
import struct
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from subminute.cli import main
from subminute.control.memory import MemoryStore
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.local import LocalDispatcher
from subminute.observe.metrics import Metrics, MetricsSink
from subminute.results.bodies import BodyItem, SqliteBodies
from subminute.results.records import FireRecord
from subminute.results.sinks import SqliteSink
from subminute.timing.clock import SystemClock

pytestmark = pytest.mark.realtime


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus exposition text."""
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


def test_metrics_endpoint_during_a_real_run(tmp_path: Path, http_server: Any) -> None:
    http_server.seen.answers = [(500, b"boom")]
    store = MemoryStore([
        {"id": 1, "name": "feed", "waitseconds": 0.1, "target": {"type": "http", "url": http_server.url}},
        {"id": 2, "name": "quiet", "waitseconds": 0.2, "target": {"type": "noop"}},
    ])
    metrics = Metrics()
    port = metrics.serve(0)
    sink = MetricsSink(SqliteSink(tmp_path / "fires.db"), metrics)
    dispatcher = LocalDispatcher(sink)
    controller = Controller(store, dispatcher, SystemClock(), ControllerOptions(budget_s=1.2), sink=sink)
    try:
        controller.run()
        dispatcher.close(2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
    finally:
        metrics.close()
        sink.close()
    ok1 = _sample(text, "subminute_fires_total", schedule_id="1", schedule="feed", status="ok")
    err1 = _sample(text, "subminute_fires_total", schedule_id="1", schedule="feed", status="error")
    ok2 = _sample(text, "subminute_fires_total", schedule_id="2", schedule="quiet", status="ok")
    assert 8 <= ok1 + err1 <= 14 and err1 == 1
    assert 4 <= ok2 <= 7
    assert _sample(text, "subminute_fire_errors_total", schedule_id="1") == 1
    count = _sample(text, "subminute_dispatch_lateness_seconds_count", schedule_id="1")
    assert count == ok1 + err1
    within_50ms = _sample(text, "subminute_dispatch_lateness_seconds_bucket", schedule_id="1", le="0.05")
    assert within_50ms >= 0.9 * count  # loose: the benchmark measures precisely
    assert _sample(text, "subminute_target_latency_seconds_count", schedule_id="2") == ok2
    assert _sample(text, "subminute_last_fire_timestamp_seconds", schedule_id="1") > time.time() - 5


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def _records(db: Path, count: int = 300) -> None:
    sink = SqliteSink(db)
    start = 1_800_000_000_000
    for i in range(count):
        status = "timeout" if i % 100 == 7 else "ok"
        sink.write(FireRecord(4, "buses", start + i * 500, i + 1, status, dispatched_ms=start + i * 500 + 0.3,
                              lateness_ms=0.2 + (i % 10) / 10, latency_ms=3.0 + i % 5,
                              error="no answer from http://x within 2s" if status != "ok" else None))
    sink.write(FireRecord(4, "buses", start + count * 500, count, "missed", detail={"missed": 2}))
    sink.flush()
    sink.close()


def test_report_writes_a_valid_png_of_the_asked_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.db"
    _records(db)
    png = tmp_path / "out" / "report.png"
    assert main(["--db", str(db), "report", "4", "--out", str(png), "--size", "900x600"]) == 0
    out = capsys.readouterr().out
    assert _png_size(png) == (900, 600)
    from PIL import Image  # matplotlib's own dependency: a second, independent PNG reader

    with Image.open(png) as image:
        image.load()
        assert image.size == (900, 600) and image.format == "PNG"
        assert len(image.getcolors(1_000_000) or []) > 10  # a drawn plot, not a blank canvas
    assert "300 fires" in out and "timeout 3" in out and "missed slots: 2" in out
    assert "p50 0.60" in out or "p50 0.70" in out
    assert "error x3: no answer from http" in out
    assert main(["--db", str(db), "report", "4", "--no-plot", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fires"] == 300 and summary["png"] is None and summary["lateness_ms"]["max"] == pytest.approx(1.1)


def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.db"
    _records(db, 5)
    assert main(["--db", str(db), "report", "4", "--size", "big"]) == 2
    assert "--size: 'big' is not allowed; use WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["--db", str(db), "report", "99", "--no-plot"]) == 2
    assert "pick a schedule with fire records" in capsys.readouterr().err


def test_export_fires_and_bodies_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 http_server: Any) -> None:
    db = tmp_path / "c.db"
    _records(db, 20)
    out = tmp_path / "fires.csv"
    assert main(["--db", str(db), "export", "--schedule", "4", "--format", "csv", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("schedule_id,name,slot_ms,seq,status") and len(lines) == 22
    assert main(["--db", str(db), "export", "--limit", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok", "missed"] and rows[-1]["detail"] == {"missed": 2}

    from subminute.dispatch.base import make_event
    from subminute.targets.base import build_target

    http_server.seen.answers = [(200, b'{"v": 1}'), (200, b'{"v": 2}')]
    target = build_target({"type": "http", "url": http_server.url, "keep": {"mode": "all", "path": str(db)}})
    for seq in (1, 2):
        target.run(make_event(4, "buses", 1_800_000_000_000 + seq * 500, seq, 500), 2)
    assert target.keeper.flush()
    assert main(["--db", str(db), "export", "bodies", "--decode", "json", "-f", "json"]) == 0
    bodies = json.loads(capsys.readouterr().out)
    assert [b["summary"] for b in bodies] == [{"v": 1}, {"v": 2}]
    files = tmp_path / "files"
    assert main(["--db", str(db), "export", "bodies", "--files", str(files)]) == 0
    written = sorted(p.name for p in files.iterdir())
    assert len(written) == 2 and all(name.startswith("4-20270115T08") and name.endswith(".json") for name in written)
    assert (files / written[0]).read_bytes() == b'{"v": 1}'


def test_history_bodies_helper_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subminute.cli.results_cmd import print_bodies

    store = SqliteBodies(tmp_path / "b.db")
    store.add([BodyItem(1, "a", 1_800_000_000_000, 1, "abcd", 5, b"hello"),
               BodyItem(1, "a", 1_800_000_000_500, 2, "ef01", 3, b"\xff\x00\x01")])
    store.close()
    assert print_bodies(tmp_path / "b.db", 1) == 2
    out = capsys.readouterr().out
    assert "hello" in out and "(3 bytes of binary)" in out and "abcd" in out

