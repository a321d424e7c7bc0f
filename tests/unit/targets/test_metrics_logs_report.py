"""Metrics counting, JSON logs with redaction, the report's text summary, --since parsing."""

from __future__ import annotations

import io
import json
import logging

import pytest

from subminute.cli.results_cmd import parse_since
from subminute.errors import ConfigError
from subminute.observe.logs import JsonFormatter, LogSink, configure_logging
from subminute.observe.metrics import Metrics, MetricsSink
from subminute.observe.report import format_summary, plotted, summarize_fires
from subminute.results.records import FireRecord
from subminute.results.sinks import MemorySink
from subminute.secrets import register_secret


def rec(status: str, lateness: float | None = 1.0, latency: float | None = 5.0, **kw: object) -> FireRecord:
    return FireRecord(1, "feed", 1_800_000_000_000, 1, status, lateness_ms=lateness, latency_ms=latency, **kw)  # type: ignore[arg-type]


def test_metrics_count_every_kind_of_record() -> None:
    metrics = Metrics()
    inner = MemorySink()
    sink = MetricsSink(inner, metrics)
    for r in [rec("ok"), rec("ok", 3.0), rec("error"), rec("timeout", latency=None),
              rec("skipped", None, None), rec("missed", None, None, detail={"missed": 4})]:
        sink.write(r)
    assert len(inner.records) == 6
    reg = metrics.registry
    labels = {"schedule_id": "1", "schedule": "feed"}
    assert reg.get_sample_value("subminute_fires_total", {**labels, "status": "ok"}) == 2
    assert reg.get_sample_value("subminute_fires_total", {**labels, "status": "skipped"}) == 1
    assert reg.get_sample_value("subminute_fire_errors_total", labels) == 2
    assert reg.get_sample_value("subminute_missed_slots_total", labels) == 4
    assert reg.get_sample_value("subminute_dispatch_lateness_seconds_count", labels) == 4
    assert reg.get_sample_value("subminute_dispatch_lateness_seconds_bucket", {**labels, "le": "0.002"}) == 3
    assert reg.get_sample_value("subminute_target_latency_seconds_count", labels) == 3
    assert reg.get_sample_value("subminute_last_fire_timestamp_seconds", labels) == 1_800_000_000
    assert "subminute_fires_total" in metrics.text()
    few = Metrics(per_schedule=False)
    few.observe(rec("ok"))
    assert few.registry.get_sample_value("subminute_fires_total",
                                         {"schedule_id": "all", "schedule": "all", "status": "ok"}) == 1


def test_metrics_port_errors() -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        Metrics().serve(70000)


def test_json_logs_carry_extras_and_hide_secrets() -> None:
    register_secret("tok-123456")
    stream = io.StringIO()
    handler = configure_logging(logging.DEBUG, json_format=True, stream=stream)
    try:
        log = logging.getLogger("subminute.test")
        log.warning("auth with %s failed", "tok-123456", extra={"schedule_id": 3})
        LogSink(None, every=True).write(rec("error", error="HTTP 401 for tok-123456"))
        LogSink(None).write(rec("ok"))
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "subminute.test"
    assert lines[0]["msg"] == "auth with *** failed" and lines[0]["schedule_id"] == 3
    assert lines[0]["ts"].endswith("Z")
    assert lines[1]["event"] == "fire" and lines[1]["fire"]["status"] == "error"
    assert "tok-123456" not in stream.getvalue()
    assert len(lines) == 3 and lines[2]["level"] == "DEBUG"


def test_plain_logs_hide_secrets_too() -> None:
    register_secret("plain-secret-9")
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream=stream)
    try:
        logging.getLogger("subminute.x").info("value %s", "plain-secret-9")
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue() == "subminute: INFO: value ***\n"
    formatted = JsonFormatter().format(logging.LogRecord("a", 20, "", 0, "plain-secret-9", (), None))
    assert "plain-secret-9" not in formatted


def test_report_summary_text() -> None:
    rows = [rec("ok", lateness=float(i), latency=2.0).as_dict() for i in range(1, 101)]
    rows.append(rec("error", error="HTTP 503 Service Unavailable from http://x").as_dict())
    rows.append(rec("missed", None, None, detail={"missed": 3}).as_dict())
    s = summarize_fires(rows)
    assert s["fires"] == 101 and s["missed_slots"] == 3 and s["counts"] == {"ok": 100, "error": 1, "missed": 1}
    text = format_summary(s)
    assert "101 fires" in text and "(99.0% ok)" in text and "p50 50.00  p99 99.00  max 100.00" in text
    assert "error x1: HTTP 503 Service Unavailable from http" in text
    assert format_summary(summarize_fires([])) == "no fire records"


def test_report_counts_errors_by_kind_with_their_cause() -> None:
    # errors were grouped by their first part: every failure of one URL was "GET http://x/", whatever its cause
    errors = ["GET http://x/: ConnectionRefusedError: [Errno 111] Connection refused"] * 3 + [
        "GET http://x/: no answer from http://x/ within 2s"] * 2 + ["ValueError: bad row", "ValueError: bad row"]
    s = summarize_fires([rec("error", error=e).as_dict() for e in errors])
    assert s["top_errors"] == [("GET http://x/: ConnectionRefusedError", 3),
                               ("GET http://x/: no answer from http://x/ within 2s", 2), ("ValueError: bad row", 2)]


def test_report_shows_start_lateness_first_and_plots_it() -> None:
    """Start lateness (where the user feels it) before the hand-over's; the plot takes the start too, and
    the hand-over only for records that have no start, saying so."""
    rows = [rec("ok", lateness=-2.0, started_ms=1_800_000_000_000 + i / 10, start_lateness_ms=i / 10).as_dict()
            for i in range(1, 101)]
    s = summarize_fires(rows)
    assert s["start_lateness_ms"]["p99"] == pytest.approx(9.9) and s["lateness_ms"]["p99"] == pytest.approx(-2.0)
    lines = format_summary(s).splitlines()
    assert lines[2].startswith("start lateness ms:") and "p99 9.90  max 10.00" in lines[2]
    assert lines[3].startswith("hand-over lateness ms:") and "p99 -2.00" in lines[3]
    assert plotted(rows) == ("start lateness", "start_lateness_ms")
    old = [rec("ok", lateness=1.0).as_dict()]  # a file from before starts were recorded
    assert plotted(old) == ("hand-over lateness (no start recorded)", "lateness_ms")
    assert format_summary(summarize_fires(old)).splitlines()[2] == "start lateness ms:     p50 -  p99 -  max -"


def test_parse_since() -> None:
    now = 1_800_000_000_000
    assert parse_since("10m", now) == now - 600_000
    assert parse_since("90", now) == now - 90_000
    assert parse_since("2027-01-15T08:00:00Z", now) == 1_800_000_000_000
    assert parse_since("2027-01-15T09:00:00+01:00", now) == 1_800_000_000_000
    assert parse_since(None) is None
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday", now)
