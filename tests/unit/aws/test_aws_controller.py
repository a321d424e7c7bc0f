"""The controller Lambda's handler: hand-offs across budget-cut executions, lateness under AWS-like
latencies, and the handler's own behaviour (idle end, configuration errors), on moto in-process."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aws_unit_support import REGION, TABLE, Invokes, add_latency, make_function

from aws_context import LambdaContext
from subminute.aws.dynamodb import DynamoStore
from subminute.aws.handlers import controller_handler, read_handoff, run_controller
from subminute.aws.lambda_dispatch import LambdaDispatcher
from subminute.control.handoff import Position
from subminute.errors import ConfigError
from subminute.results.records import FireRecord
from subminute.timing.clock import FakeClock, SystemClock
from subminute.timing.stats import percentile


def _lambda() -> Any:
    import boto3

    return boto3.client("lambda", region_name=REGION)


def _wait_for(invokes: Invokes, count: int, timeout_s: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while len(invokes.calls) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_run_cut_into_executions_by_a_short_budget_fires_every_slot_once(ddb: Any, aws: Invokes) -> None:
    clock = FakeClock(wall=1_800_000_000.2)
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "running": True, "waitseconds": 1})
    store.put({"id": 2, "running": True, "waitseconds": 0.25})
    worker = make_function(_lambda())
    event: dict[str, Any] = {}
    results = []
    for _ in range(5):  # five executions of 10 s (budget 9 s), each restarted 0.3 s after the last
        context = LambdaContext(clock, timeout_s=10)
        dispatcher = LambdaDispatcher(_lambda(), worker, clock=clock)
        result = run_controller(event, context, store=store, dispatcher=dispatcher, clock=clock, margin_s=1.0)
        assert context.get_remaining_time_in_millis() >= 900, "the execution overran its margin"
        results.append(result)
        event = {"handoff": result["handoff"], "running": result["running"]}
        clock.advance(0.3)
    assert all(r["running"] and not r["standby"] for r in results)
    fired: dict[int, list[int]] = {1: [], 2: []}
    for _, payload, _ in aws.calls:
        fired[payload["schedule_id"]].append(payload["slot_ms"])
    for sid, interval_ms in ((1, 1000), (2, 250)):
        slots = sorted(fired[sid])
        assert Counter(slots).most_common(1)[0][1] == 1, f"schedule {sid}: a slot fired twice"
        assert slots == list(range(slots[0], slots[-1] + 1, interval_ms)), f"schedule {sid}: a slot was lost"
        assert slots[-1] - slots[0] >= 44_000  # the five executions span 46.5 s
    owners = {payload["controller"] for _, payload, _ in aws.calls}
    assert len(owners) == 5
    tokens = [r["handoff"]["token"] for r in results]
    assert tokens == sorted(tokens) and len(set(tokens)) == 5


@pytest.mark.realtime
def test_lateness_stays_small_with_dynamodb_and_invoke_latencies(ddb: Any, aws: Invokes) -> None:
    """Every DynamoDB and Lambda call takes 10-50 ms more; the fires still leave on time, because no
    store read or invoke is on the path from wake-up to fire."""
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "running": True, "waitseconds": 0.1})
    store.put({"id": 2, "running": True, "waitseconds": 0.2})
    lam = _lambda()
    worker = make_function(lam)
    store_delays, invoke_delays = add_latency(ddb, seed=1), add_latency(lam, seed=2)
    records: list[FireRecord] = []
    dispatcher = LambdaDispatcher(lam, worker, on_record=records.append)
    clock = SystemClock()
    result = run_controller({}, LambdaContext(clock, timeout_s=4.0), store=store, dispatcher=dispatcher,
                            clock=clock, margin_s=1.0, refresh_s=0.1)
    lateness = [r.lateness_ms for r in records if r.lateness_ms is not None]
    assert len(records) >= 35 and all(r.status == "ok" for r in records)
    assert len(store_delays) >= 20 and len(invoke_delays) >= 35  # the latencies really were there
    assert percentile([r.latency_ms or 0 for r in records], 50) >= 10  # ...on the invokes too
    assert percentile(lateness, 99) <= 5.0, f"p99 lateness {percentile(lateness, 99):.2f} ms"
    assert result["running"]


def test_the_handler_ends_when_nothing_runs(ddb: Any, aws: Invokes, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "running": False, "waitseconds": 5})
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("WORKER_FUNCTION", make_function(_lambda()))
    context = LambdaContext(SystemClock(), timeout_s=30)
    result = controller_handler({"handoff": None, "running": False}, context)
    assert result["running"] is False and result["standby"] is False and result["handoff"]["schedules"] == {}
    assert context.get_remaining_time_in_millis() > 25_000  # it did not wait for its budget
    assert aws.calls == []


def test_the_handler_fires_from_the_environment(ddb: Any, aws: Invokes, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "running": True, "waitseconds": 0.2})
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("WORKER_FUNCTION", make_function(_lambda()))
    monkeypatch.setenv("SAFETY_MARGIN_S", "0.5")
    result = controller_handler({}, LambdaContext(SystemClock(), timeout_s=1.5))
    _wait_for(aws, 4)
    assert result["running"] and result["handoff"]["token"] == 1
    assert {name for name, _, _ in aws.calls} == {"worker"} and 4 <= len(aws.calls) <= 6
    assert store.load_handoff()["schedules"]["1"]["next"] == result["handoff"]["schedules"]["1"]["next"]


def test_the_handler_names_a_missing_setting(aws: Invokes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME", raising=False)
    with pytest.raises(ConfigError, match="TABLE_NAME"):
        controller_handler({}, LambdaContext(SystemClock(), timeout_s=5))
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("SAFETY_MARGIN_S", "lots")
    with pytest.raises(ConfigError, match="SAFETY_MARGIN_S: 'lots'"):
        controller_handler({}, LambdaContext(SystemClock(), timeout_s=5))


def test_read_handoff_forms() -> None:
    handoff = {"token": 3, "schedules": {"1": {"next": 5, "seq": 2}}}
    read = read_handoff({"handoff": handoff})
    assert read is not None and read.token == 3 and read.positions[1] == Position(5, 2)
    text = read_handoff({"handoff": '{"token": 3, "schedules": {}}'})
    assert text is not None and text.token == 3 and text.positions == {}
    for bad in ({}, {"handoff": None}, {"handoff": "not json"}, {"handoff": {"schedules": []}}, "text", None):
        assert read_handoff(bad) is None


def test_dispatcher_targets(aws: Invokes) -> None:
    from subminute.control.rows import parse_row

    dispatcher = LambdaDispatcher(_lambda(), "worker", poller_function=None)
    try:
        assert dispatcher.function_for(parse_row({"id": 1})) == ("worker", None)
        spec = {"type": "http", "url": "https://example.com/x"}
        assert dispatcher.function_for(parse_row({"id": 2, "target": spec})) == ("worker", spec)
        assert dispatcher.function_for(parse_row({"id": 3, "target": {"type": "lambda", "function": "f"}}))[0] == "f"
        with pytest.raises(ConfigError, match="target.type"):
            dispatcher.function_for(parse_row({"id": 4, "target": {"type": "command", "argv": ["ls"]}}))
        with pytest.raises(ConfigError, match="target.function"):
            dispatcher.function_for(parse_row({"id": 5, "target": {"type": "lambda"}}))
    finally:
        dispatcher.close()


def test_a_failed_invoke_is_recorded_not_raised(aws: Invokes) -> None:
    from subminute.control.rows import parse_row
    from subminute.dispatch.base import Batch, Fire

    records: list[FireRecord] = []
    dispatcher = LambdaDispatcher(_lambda(), "no-such-function", on_record=records.append)
    schedule = parse_row({"id": 1})
    dispatcher.prepare(schedule)
    dispatcher.submit(Batch(1_000, 0.0, [Fire(schedule, 1_000, 1, 5000, 1_000.5)]))
    dispatcher.close()
    assert [r.status for r in records] == ["error"] and "no-such-function" in (records[0].error or "")
    assert dispatcher.stats == {"invoked": 0, "failed": 1} and dispatcher.in_flight(1) == 0
