"""The controller Lambda's handler: hand-offs across budget-cut executions, lateness under AWS-like
latencies, and the handler's own behaviour (idle end, configuration errors), on moto in-process."""

from __future__ import annotations

import json
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
from subminute.timing.clock import SystemClock
from subminute.timing.fake import FakeClock
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
    lateness = [r.start_lateness_ms for r in records if r.start_lateness_ms is not None]
    assert len(records) >= 35 and all(r.status == "ok" for r in records)
    # the latencies really were there (the two schedules' fires of one slot share an invoke)
    assert len(store_delays) >= 20 and len(invoke_delays) >= 20
    assert percentile([r.latency_ms or 0 for r in records], 50) >= 10  # ...on the invokes too
    assert percentile(lateness, 99) <= 10.0, f"p99 start lateness {percentile(lateness, 99):.2f} ms"
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
    saved = store.load_handoff()
    assert saved is not None and saved.positions[1].next_ms == result["handoff"]["schedules"]["1"]["next"]


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
    for bad in ({}, {"handoff": None}, {"handoff": "not json"}, "text", None):
        assert read_handoff(bad) is None
    kept = read_handoff({"handoff": {"token": 3, "schedules": []}})  # a bad field takes its default
    assert kept is not None and kept.token == 3 and kept.positions == {}


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
        for bad in ({"url": "ftp://example.com/x"}, {"url": 5}, {"url": "https://x/", "method": "BREW"}, {}):
            # fired before, refused by `aws status` and by the worker, which raised on every fire
            with pytest.raises(ConfigError, match=r"target\.(url|method)"):
                dispatcher.function_for(parse_row({"id": 5, "target": {"type": "http", **bad}}))
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
    assert dispatcher.stats == {"invoked": 0, "failed": 1, "invokes": 1} and dispatcher.in_flight(1) == 0


def test_one_slots_fires_to_the_worker_travel_in_one_invoke(aws: Invokes) -> None:
    """1,000 schedules must not cost 1,000 invokes a slot: the stack's worker takes the slot's events in
    one payload (up to batch_bytes); a user's own function still gets one event per invoke."""
    from subminute.control.rows import parse_row
    from subminute.dispatch.base import Batch, Fire

    lam = _lambda()
    worker, other = make_function(lam), make_function(lam, "other")
    dispatcher = LambdaDispatcher(lam, worker, batch_bytes=2_000)
    schedules = [parse_row({"id": i}) for i in range(1, 21)] + [
        parse_row({"id": 21, "target": {"type": "lambda", "function": other}}),
        parse_row({"id": 22, "target": {"type": "http", "url": "http://127.0.0.1:9/x"}})]
    for schedule in schedules:
        dispatcher.prepare(schedule)
    dispatcher.submit(Batch(5_000, 0.0, [Fire(s, 5_000, 1, 1000, 4_990.0) for s in schedules]))
    dispatcher.close()
    assert len(aws.calls) == 22 and {payload["schedule_id"] for _, payload, _ in aws.calls} == set(range(1, 23))
    assert dispatcher.stats["invoked"] == 22 and dispatcher.stats["invokes"] < 10  # batches of ~2 KB
    assert [p["schedule_id"] for name, p, _ in aws.calls if name == "other"] == [21]
    poll = [p for _, p, _ in aws.calls if p["schedule_id"] == 22][0]
    assert poll["target"]["url"] == "http://127.0.0.1:9/x"


def test_what_the_worker_cannot_honour_is_refused_when_the_row_is_read(aws: Invokes) -> None:
    from subminute.control.rows import parse_row

    dispatcher = LambdaDispatcher(_lambda(), "worker")
    try:
        for spec, field in (({"type": "http", "url": "http://x/", "keep": "all"}, "target.keep"),
                            ({"type": "http", "url": "http://x/", "decode": "gtfs-rt"}, "target.decode")):
            with pytest.raises(ConfigError, match=rf"^{field}: .* is not allowed; leave it out on AWS"):
                dispatcher.prepare(parse_row({"id": 2, "target": spec}))
    finally:
        dispatcher.close()


def test_payloads_are_the_events_as_json(aws: Invokes) -> None:
    """The payload text is made from parts kept per schedule; it must read as the event itself."""
    from subminute.control.rows import parse_row
    from subminute.dispatch.base import Fire, make_event

    dispatcher = LambdaDispatcher(_lambda(), "worker")
    try:
        for row in ({"id": 3, "name": 'quote " and é'}, {"id": 4, "plan": "otherwise every 1.5s",
                                                          "target": {"type": "http", "url": "http://x/?a=1"}}):
            schedule = parse_row(row)
            function, spec = dispatcher.function_for(schedule)
            fire = Fire(schedule, 1_800_000_001_500, 42, 1500, 0.0, 7, 'lambda:"id"')
            expected = make_event(schedule.id, schedule.name, fire.slot_ms, 42, 1500, 'lambda:"id"')
            if spec is not None:
                expected["target"] = dict(spec)
            assert json.loads(dispatcher._payload(fire, spec)) == expected
    finally:
        dispatcher.close()


@pytest.mark.realtime
def test_a_reused_environment_invoked_again_long_after_fires_no_burst(
        ddb: Any, aws: Invokes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda reuses an environment (module state, cached clients) for the next execution, which may come
    long after the last: the second invocation fires the slots of its own time, catches up only those
    within grace, counts the older ones missed, and sends nothing twice (the original sample bursts here)."""
    import time

    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "running": True, "waitseconds": 0.2, "grace": 0.3})
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("WORKER_FUNCTION", make_function(_lambda()))
    monkeypatch.setenv("SAFETY_MARGIN_S", "0.5")
    first = controller_handler({}, LambdaContext(SystemClock(), timeout_s=1.5))
    _wait_for(aws, 3)
    sent_first = len(aws.calls)
    time.sleep(2.0)  # long after, in slots: 10 intervals
    begun_ms = time.time() * 1000
    second = controller_handler({"handoff": first["handoff"], "running": True},
                                LambdaContext(SystemClock(), timeout_s=1.5))
    _wait_for(aws, sent_first + 3)
    time.sleep(0.2)
    slots = [payload["slot_ms"] for _, payload, _ in aws.calls]
    assert len(slots) == len(set(slots)) and all(s % 200 == 0 for s in slots)
    again = sorted(slots[sent_first:])
    assert again and again[0] >= begun_ms - 300 - 200, "slots older than grace were fired"
    assert len(again) <= (1.0 + 0.3) / 0.2 + 2, f"a burst: {len(again)} invokes in about 1 s"
    assert second["handoff"]["stats"]["missed"] >= 5  # the gap, counted
    seqs = [payload["seq"] for _, payload, _ in aws.calls]
    assert seqs == sorted(seqs)  # numbering continues across the two invocations
