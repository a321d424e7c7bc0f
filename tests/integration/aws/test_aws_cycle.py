"""The whole AWS system on moto: the state machine restarts itself with the hand-off, and the worker
receives every slot exactly once across executions, through a change of interval and a stop."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from subminute.cli import main

pytestmark = pytest.mark.aws


def _wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(system: Any, *args: str) -> int:
    action, *rest = args
    return main(["aws", action, "--table", system.table, "--state-machine", system.machine, *rest])


def test_full_cycle_start_restart_change_stop(system: Any, moto: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sfn = system.clients["stepfunctions"]
    # moto restarts take from 0.1 to over 2 s on a busy 2-core machine (AWS: a few hundred ms): a grace
    # longer than that makes the successor catch every slot of the gap up, which is what is checked
    system.store.update(1, {"grace": 10})
    assert _cli(system, "start") == 0
    # three executions: the first and two restarts, each carrying the hand-off to the next
    _wait(lambda: len(system.executions()) >= 3, 20, "two restarts")
    assert _cli(system, "set", "--every", "0.25") == 0
    _wait(lambda: len(system.executions()) >= 5, 20, "two more restarts")
    assert _cli(system, "status") == 0
    status_text = capsys.readouterr().out
    assert "every 250ms" in status_text and "subminute-" in status_text

    assert _cli(system, "stop") == 0
    _wait(lambda: all(e["status"] != "RUNNING" for e in system.executions()), 20, "the execution to end")
    executions = system.executions()
    assert all(e["status"] == "SUCCEEDED" for e in executions)

    events = sorted(moto.events("index.worker_handler"), key=lambda e: e["slot_ms"])
    slots = [e["slot_ms"] for e in events]
    assert len(slots) == len(set(slots)), "a slot was fired twice"
    # every slot is fired or reported: a stall of this busy machine longer than an interval makes the
    # controller fire only the latest due slot and report the others missed (no burst); the hand-offs
    # between executions lose none (grace 10 s)
    seqs = [e["seq"] for e in events]
    unfired = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    reported = sum(result["handoff"]["stats"]["missed"] for name, result in moto.results
                   if name == "index.controller_handler" and isinstance(result, dict))
    assert seqs == sorted(seqs) and len(unfired) == reported, f"unfired {unfired}, reported missed {reported}"
    assert len(unfired) <= 3, f"too many slots missed: {unfired}"
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap % 250 == 0 for gap in gaps), f"slots off the grid: {sorted(set(gaps))}"
    assert gaps[:5] == [500] * 5 and gaps[-1] == 250  # the new interval at the end
    controllers = {e["controller"] for e in events}
    assert len(controllers) >= 4, "the fires did not span several executions"

    # the last execution's controller found nothing running; the execution read row 1 again (not
    # running) and ended in Stopped, without starting another
    last = max(executions, key=lambda e: e["startDate"])
    history = sfn.get_execution_history(executionArn=last["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[-1] == "Stopped" and "Restart" not in entered, entered
    # every restart's input carried the hand-off of the execution before
    inputs = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
              for e in sorted(executions, key=lambda e: e["startDate"])]
    carried = [i for i in inputs if i.get("handoff")]
    assert len(carried) >= 4 and all(i["handoff"]["schedules"] for i in carried[:-1])


def test_a_second_chain_stands_by_and_ends(system: Any, moto: Any) -> None:
    """Two executions started together: one fires, the other finds the lease taken and ends."""
    sfn = system.clients["stepfunctions"]
    for name in ("first", "second"):
        sfn.start_execution(stateMachineArn=system.machine, name=name, input="{}")
    standby = _wait(lambda: [e for e in system.executions() if e["status"] == "SUCCEEDED" and
                             "Standby" in json.dumps(sfn.get_execution_history(
                                 executionArn=e["executionArn"])["events"], default=str)], 20,
                     "a chain to stand by")
    assert standby
    assert _cli(system, "stop") == 0
    _wait(lambda: all(e["status"] != "RUNNING" for e in system.executions()), 20, "the executions to end")
    slots = [e["slot_ms"] for e in moto.events("index.worker_handler")]
    assert slots and len(slots) == len(set(slots)), "two chains fired the same slot"


def test_a_row_the_controller_refuses_starts_no_storm(system: Any, moto: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Row 1 running with a value the controller refuses (written by hand, as in the console): the
    controller ends at once saying why, and the execution waits a minute (Idle) instead of restarting;
    `aws status` and the execution's output name the field."""
    ddb, sfn = system.clients["dynamodb"], system.clients["stepfunctions"]
    ddb.put_item(TableName=system.table, Item={"id": {"N": "1"}, "running": {"BOOL": True},
                                               "waitseconds": {"N": "0"}})
    assert _cli(system, "start") == 2  # the CLI refuses to start it, naming the field; the console does not
    sfn.start_execution(stateMachineArn=system.machine, name="console", input="{}")
    results = _wait(lambda: [r for name, r in moto.results if name == "index.controller_handler"], 20,
                    "the controller to return")
    time.sleep(3.0)  # a storm would have started several executions by now (moto restarts in < 1 s)
    executions = system.executions()
    assert len(executions) == 1 and executions[0]["status"] == "RUNNING", executions
    history = sfn.get_execution_history(executionArn=executions[0]["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[-1] == "Idle" and "Restart" not in entered, entered
    result = results[0]
    assert len(results) == 1 and result["idle"] and not result["running"], result
    assert "waitseconds" in result["invalid"]["1"] and "not allowed" in result["invalid"]["1"], result
    capsys.readouterr()
    assert _cli(system, "status") == 0
    shown = capsys.readouterr().out
    assert "waitseconds" in shown and "not allowed" in shown, shown
    assert _cli(system, "stop", "--now") == 0
    _wait(lambda: all(e["status"] != "RUNNING" for e in system.executions()), 20, "the execution to end")
