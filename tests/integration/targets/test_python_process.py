"""The python target with ``"isolation": "process"``: the function runs in a child process that is killed at
the fire's timeout; crashes are errors naming the exit; nothing piles up. Real processes, real time."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from grid import assert_every_slot_once
from processes import child_processes, gone
from subminute.control.memory import MemoryStore
from subminute.controller import Controller, ControllerOptions
from subminute.dispatch.base import make_event
from subminute.dispatch.local import LocalDispatcher
from subminute.results.sinks import MemorySink
from subminute.targets.base import Target, build_target
from subminute.targets.process import MAX_IDLE
from subminute.timing.clock import SystemClock

pytestmark = pytest.mark.realtime
FUNCTIONS = "process_functions"  # tests/integration/targets/process_functions.py


def isolated(name: str) -> Any:
    return build_target({"type": "python", "ref": f"{FUNCTIONS}:{name}", "isolation": "process"})


def event(seq: int = 1, **extra: Any) -> dict[str, Any]:
    return {**make_event(1, "probe", int(time.time() * 1000), seq, 1000), **extra}


def children() -> dict[int, str]:
    """This process's child processes and their states (``Z``: a zombie nobody reaped)."""
    return child_processes(os.getpid())


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture(autouse=True)
def no_child_left() -> Any:
    before = set(children())
    yield
    deadline = time.monotonic() + 2
    while set(children()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(children()) - before == set(), "a child process of a target was left behind"


def test_a_normal_function_runs_in_a_child_that_serves_the_next_fires() -> None:
    target = isolated("echo")
    assert target.kind == "python-process"
    assert build_target({"type": "python", "ref": f"{FUNCTIONS}:echo"}).kind == "python"  # thread: the default
    before = time.time() * 1000
    first = target.run(event(1), 5)
    assert first.ok and first.status == "ok", first.error
    returned = eval(first.detail["returned"])  # the function's return value, recorded as in the thread mode
    assert returned["seq"] == 1 and returned["pid"] != os.getpid()
    assert first.started_ms is not None and before <= first.started_ms <= time.time() * 1000
    t0 = time.perf_counter()
    second = target.run(event(2), 5)
    per_call_ms = (time.perf_counter() - t0) * 1000
    assert eval(second.detail["returned"]) == {"seq": 2, "pid": returned["pid"]}  # the same, warm child
    assert per_call_ms < 50
    target.close()
    assert gone(returned["pid"])


def test_return_values_exceptions_exits_and_prints_as_in_the_thread_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isolated("returns_false").run(event(), 5).error == f"{FUNCTIONS}:returns_false returned False"
    raised = isolated("raises").run(event(), 5)
    assert raised.status == "error" and raised.error == "ValueError: bad thing here"
    custom = isolated("returns_a_result").run(event(), 5)
    assert (custom.ok, custom.status, custom.error, custom.http_status, custom.detail) == (
        False, "error", "custom failure", 418, {"a": 1})
    chatty = isolated("chatty").run(event(), 5)
    assert chatty.ok and chatty.detail == {"returned": "42"}  # its prints did not reach the protocol
    exits = isolated("exits")
    assert exits.run(event(), 5).error == "SystemExit: 5"
    assert exits.run(event(), 5).error == "SystemExit: 5"  # sys.exit in the function: the child serves on
    huge = isolated("huge").run(event(), 5)
    assert huge.ok and huge.detail["truncated"] > 3_000_000 and len(huge.detail["start"]) == 8000
    secret = "process-secret-" + os.urandom(6).hex()
    monkeypatch.setenv("SUBMINUTE_TEST_PROCESS_SECRET", secret)
    from subminute.secrets import register_secret

    register_secret(secret)  # as a target reading it from the environment does
    leaked = isolated("leaks_a_secret").run(event(), 5)
    assert leaked.error == "RuntimeError: denied for ***"
    missing = isolated("no_such_function").run(event(), 5)
    assert missing.status == "error" and "cannot be loaded in its process: AttributeError" in (missing.error or "")
    assert "is not callable" in (isolated("NOT_CALLABLE").run(event(), 5).error or "")


def test_a_crash_is_an_error_naming_the_exit_and_the_next_fire_gets_a_fresh_child() -> None:
    crash = isolated("crash")
    result = crash.run(event(), 5)
    assert result.status == "error" and result.error == f"{FUNCTIONS}:crash: its process exited with code 3"
    assert crash.run(event(), 5).error == result.error  # again: a fresh child, the same crash
    segfault = isolated("segfault").run(event(), 5)
    assert segfault.error == f"{FUNCTIONS}:segfault: its process was killed by signal 11 (SIGSEGV)"
    echo = isolated("echo")
    pids = set()
    for seq in range(3):
        ok = echo.run(event(seq), 5)
        pids.add(eval(ok.detail["returned"])["pid"])
    assert len(pids) == 1
    assert not [s for s in children().values() if s == "Z"], "a dead child was not reaped"


def test_a_hung_call_is_killed_at_its_timeout_with_what_it_started(tmp_path: Path) -> None:
    target = isolated("hang_with_a_subprocess")
    pidfile = tmp_path / "sleep.pid"
    t0 = time.monotonic()
    result = target.run(event(pidfile=str(pidfile)), 0.5)
    elapsed = time.monotonic() - t0
    assert result.status == "timeout" and "still running after the 0.5s timeout; its process was killed" in (
        result.error or "")
    assert 0.5 <= elapsed < 0.8, elapsed
    assert result.started_ms is not None
    time.sleep(0.05)
    assert gone(int(pidfile.read_text()))  # the function's own subprocess went with the child
    assert children() == {} or all(s != "Z" for s in children().values())
    again = isolated("echo").run(event(), 5)
    assert again.ok


def test_overlapping_fires_each_get_a_child_and_idle_ones_are_bounded() -> None:
    target = isolated("pid_after_a_while")  # sleeps 0.3 s, returns its pid

    def burst(size: int) -> tuple[list[int], float]:
        results: list[Any] = []
        workers = [threading.Thread(target=lambda: results.append(target.run(event(), 5))) for _ in range(size)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return [int(r.detail["returned"]) for r in results], time.monotonic() - t0

    try:
        cold, _ = burst(3)
        assert len(set(cold)) == 3 and os.getpid() not in cold  # a child each
        warm, elapsed = burst(3)
        assert set(warm) == set(cold) and elapsed < 0.6  # the same children again, side by side (3 x 0.3 s
        many, _ = burst(MAX_IDLE + 2)  # one after the other would take 0.9 s)
        assert len(set(many)) == MAX_IDLE + 2
        assert len(target.children.idle) == MAX_IDLE
        deadline = time.monotonic() + 3  # the others were killed (a loaded machine may take a moment)
        while len([p for p in many if not gone(p)]) > MAX_IDLE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len([p for p in many if not gone(p)]) == MAX_IDLE, {p: children().get(p) for p in many}
    finally:
        target.close()
    assert all(gone(pid) for pid in many)


def test_a_function_that_hangs_for_ever_times_out_every_fire_and_nothing_piles_up() -> None:
    """0.2 s interval, 0.5 s timeout: every fire is a timeout after about 0.5 s; threads and child processes
    stay bounded; the schedule keeps firing on its grid; a thread-mode schedule beside it is untouched."""
    store = MemoryStore([
        {"id": 1, "name": "hung", "waitseconds": 0.2, "timeout": 0.5,
         "target": {"type": "python", "ref": f"{FUNCTIONS}:hang", "isolation": "process"}},
        {"id": 2, "name": "quick", "waitseconds": 0.2, "target": {"type": "python", "ref": f"{FUNCTIONS}:echo"}},
    ])
    built: list[Target] = []

    def build(spec: Any) -> Target:
        built.append(build_target(spec))
        return built[-1]

    sink = MemorySink()
    dispatcher = LocalDispatcher(sink, build=build)
    controller = Controller(store, dispatcher, SystemClock(), ControllerOptions(budget_s=4.0), sink=sink)
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append((threads(), len(children())))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        controller.run()
    finally:
        stop.set()
        sampler.join()
        dispatcher.close(timeout_s=2)
        for target in built:
            getattr(target, "close", lambda: None)()
    records = sorted((r for r in sink.records if r.schedule_id == 1), key=lambda r: r.slot_ms)
    fired = [r for r in records if r.status in ("ok", "error", "timeout")]
    assert len(fired) >= 15, [(r.status, r.error) for r in records]
    assert {r.status for r in fired} == {"timeout"}, {(r.status, r.error) for r in fired}
    # each fire ends at its timeout, counted from the slot (the record's start is when the child got the
    # event, after the child started; its latency is the function's own time)
    ends = [r.ended_ms - r.slot_ms for r in fired if r.ended_ms is not None]
    assert ends and all(480 <= ms <= 800 for ms in ends), ends
    assert all(r.started_ms is not None and r.latency_ms is not None and r.latency_ms <= 800 for r in fired)
    assert_every_slot_once([r.as_dict() for r in records], 200)  # every slot has a record
    assert [r for r in records if r.status == "skipped"] == []  # each call really ended at its timeout
    settled = samples[len(samples) // 4:]  # after the first fires
    assert max(c for _, c in samples) <= 4, samples  # about 0.5 / 0.2 + 1 children at a time, never more
    assert max(t for t, _ in settled) - min(t for t, _ in settled) <= 3, samples  # no thread piles up
    quick = [r for r in sink.records if r.schedule_id == 2]
    assert len(quick) >= 18 and {r.status for r in quick} == {"ok"}
