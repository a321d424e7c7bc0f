"""The Scheduler API on a fake clock: the engine's real threads (the scheduler's, the firing loop, the lease
keeper, the dispatcher's workers) run on virtual time that jumps whenever all of them wait. The test's own
thread made the clock: time moves only while it waits (``clock.wait(clock.event(), seconds)``), and while
it runs (``set``, ``pause``, ``status`` ...) nothing else does."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from subminute import ConfigError, FakeClock, LocalRuntime, NotFoundError, Scheduler
from subminute.runtime.scheduler import SchedulerStateError

T0 = 1_800_000_000.0  # wall clock at the start (a whole second)
CLOCKS: list[FakeClock] = []


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    made = FakeClock(wall=T0, mono=1000.0)
    CLOCKS.append(made)
    yield made
    assert made.stalls == 0  # virtual time never had to wait for a busy thread: the run was deterministic


def sleep(clock: FakeClock, seconds: float) -> None:
    """Let ``seconds`` of virtual time pass (the engine's threads run meanwhile)."""
    clock.wait(clock.event(), seconds)


def at(t: float) -> int:
    return round((T0 + t) * 1000)


def grid(first: float, last: float, every: float) -> list[int]:
    lo, hi, step = round(first * 1000), round(last * 1000), round(every * 1000)
    return [round(T0 * 1000) + ms for ms in range(lo, hi + 1, step)]


def slots(s: Scheduler, name: str, statuses: tuple[str, ...] = ("ok", "error", "timeout")) -> list[int]:
    return [r["slot_ms"] for r in s.history(name, 100_000) if r["status"] in statuses]


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- firing ----------------------------------------------------------------------------------------------
def test_decorated_functions_fire_on_their_grid_with_the_event_or_nothing(clock: FakeClock) -> None:
    events: list[dict[str, Any]] = []
    bare: list[int] = []
    with Scheduler(clock=clock) as s:

        @s.every("500ms", overlap="skip")
        def probe(event: dict[str, Any]) -> None:
            events.append(event)

        @s.every(timedelta(seconds=1))
        def tick() -> None:
            bare.append(1)

        assert probe.__name__ == "probe"  # the decorator gives the function back
        s.start()
        sleep(clock, 3.2)
    assert slots(s, "probe") == grid(0.5, 3, 0.5)
    assert slots(s, "tick") == grid(1, 3, 1) and len(bare) == 3
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0]["schedule"] == "probe" and events[0]["slot_ms"] == at(0.5) and events[0]["interval"] == 0.5
    assert all(r["start_lateness_ms"] == 0 for r in s.history(None, 1000) if r["status"] == "ok")
    assert s.state == "stopped"


def test_add_returns_the_name_and_keeps_plan_timeout_and_other_arguments(clock: FakeClock) -> None:
    def job(event: dict[str, Any], extra: int = 1) -> None: ...

    with Scheduler(clock=clock) as s:
        assert s.add(job, every="2s", timeout=5, grace="1s") == "job"
        assert s.add(job, plan="tz=UTC; otherwise every 3s", name="planned", overlap="skip") == "planned"
        rows = {r["name"]: r for r in s.status()}
    assert rows["job"]["interval_now_ms"] == 2000 and rows["job"]["state"] == "running"
    assert rows["planned"]["interval_now_ms"] == 3000 and rows["planned"]["plan"]
    assert rows["job"]["error"] is None and rows["planned"]["error"] is None


def test_an_exception_is_recorded_as_an_error_and_the_schedule_keeps_firing(clock: FakeClock) -> None:
    with Scheduler(clock=clock) as s:

        @s.every("1s")
        def boom(event: dict[str, Any]) -> None:
            raise RuntimeError(f"bad slot {event['seq']}\nsecond line")

        @s.every("1s")
        def fine() -> bool:
            return True

        s.start()
        sleep(clock, 4.5)
        status = {r["name"]: r for r in s.status()}
    records = [r for r in s.history("boom", 100) if r["status"] != "invalid"]
    assert [r["status"] for r in records] == ["error"] * 4
    assert records[0]["error"] == "RuntimeError: bad slot 1 second line"  # one line
    assert status["boom"]["fires"] == 4 and status["boom"]["errors"] == 4
    assert status["fine"]["fires"] == 4 and status["fine"]["errors"] == 0


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), BaseException("odd")],
                         ids=lambda e: type(e).__name__)
def test_a_function_raising_any_base_exception_is_an_error_and_the_schedule_keeps_firing(
        clock: FakeClock, exc: BaseException) -> None:
    # sys.exit() in a job once ended its worker thread: no record, and with overlap=skip every later fire
    # was skipped as "still running"
    with Scheduler(clock=clock) as s:

        @s.every("1s", overlap="skip")
        def leaves() -> None:
            raise exc

        @s.every("1s")
        def fine() -> None:
            pass

        s.start()
        sleep(clock, 4.5)
    records = s.history("leaves", 100)
    assert [r["status"] for r in records] == ["error"] * 4
    assert records[0]["error"].startswith(type(exc).__name__)
    assert [r["status"] for r in s.history("fine", 100)] == ["ok"] * 4


def test_set_pause_resume_and_remove_reach_the_running_controller_at_once(clock: FakeClock) -> None:
    calls: list[int] = []
    with Scheduler(clock=clock) as s:

        @s.every("500ms")
        def probe(event: dict[str, Any]) -> None:
            calls.append(event["slot_ms"])

        s.start()
        sleep(clock, 2.05)
        s.set("probe", every="1s")
        sleep(clock, 3.0)  # t = 5.05
        s.pause("probe")
        sleep(clock, 2.0)  # t = 7.05
        s.resume("probe")
        sleep(clock, 2.0)  # t = 9.05
        s.remove("probe")
        sleep(clock, 2.0)
        assert s.status() == []
    fired = sorted(calls)
    assert fired[:4] == grid(0.5, 2, 0.5)
    after_set = [t for t in fired if at(2.05) < t <= at(5.05)]
    assert after_set == grid(3, 5, 1)  # the old 2.5 s slot is gone: applied at once (the refresh is 1 s)
    assert not [t for t in fired if at(5.05) < t <= at(7.05)]  # paused before its next slot
    resumed = [t for t in fired if at(7.05) < t <= at(9.05)]
    assert resumed and resumed[0] == at(8)
    assert not [t for t in fired if t > at(9.05)]  # removed before its next slot


def test_a_removed_name_may_be_added_again(clock: FakeClock) -> None:
    with Scheduler(clock=clock) as s:
        s.add(lambda: None, every="1s", name="job")
        s.remove("job")
        s.add(lambda: None, every="2s", name="job")
        assert [r["interval_now_ms"] for r in s.status()] == [2000]


def test_a_coroutine_runs_on_the_event_loop_not_in_a_worker(clock: FakeClock) -> None:
    ran = threading.Event()
    where: list[tuple[str, bool]] = []
    with Scheduler(clock=clock) as s:

        @s.every("1s")
        async def fetch(event: dict[str, Any]) -> dict[str, int]:
            await asyncio.sleep(0)
            where.append((threading.current_thread().name, asyncio.get_running_loop().is_running()))
            ran.set()
            return {"vehicles": 3}

        s.start()
        sleep(clock, 1.01)  # the first slot is handed over to the loop
        # real time: the loop's thread is not the clock's; virtual time stands still while this thread is busy
        assert ran.wait(2.0)
        deadline = time.monotonic() + 2.0
        while not s.history("fetch", 1) and time.monotonic() < deadline:
            time.sleep(0.005)  # the record is written once the coroutine has returned
    assert where[0] == ("subminute-asyncio", True)  # the dispatcher's event-loop thread, not a worker
    record = s.history("fetch", 1)[0]
    assert record["status"] == "ok" and record["detail"] == {"returned": "{'vehicles': 3}"}


def test_bounded_records_keep_the_last_ones_and_count_them_all(clock: FakeClock) -> None:
    with Scheduler(clock=clock, record_limit=5) as s:
        s.add(lambda: None, every="100ms", name="fast")
        s.start()
        sleep(clock, 2.05)
        status = s.status()[0]
        kept = s.history("fast", 1000)
    assert status["fires"] == 20 and status["last_fire_ms"] == at(2.0)
    assert [r["slot_ms"] for r in kept] == grid(1.6, 2.0, 0.1)


# -- lifecycle -------------------------------------------------------------------------------------------
def test_run_blocks_until_stop_from_another_thread(clock: FakeClock) -> None:
    s = Scheduler(clock=clock)
    s.add(lambda: None, every="500ms", name="job")

    def stopper() -> None:
        sleep(clock, 2.2)
        s.stop()

    other = clock.thread(stopper, "stopper")
    other.start()
    s.run()
    assert clock.t() == pytest.approx(2.2, abs=0.3) and s.state == "stopped"
    assert slots(s, "job") == grid(0.5, 2, 0.5)


def test_a_job_may_stop_the_scheduler_it_runs_in(clock: FakeClock) -> None:
    s = Scheduler(clock=clock)

    @s.every("1s")
    def third(event: dict[str, Any]) -> None:
        if event["seq"] == 3:
            s.stop()

    s.run()
    assert clock.t() < 4 and slots(s, "third") == grid(1, 3, 1)


def test_a_job_stopping_a_started_scheduler_returns_at_once_and_its_record_is_kept(clock: FakeClock,
                                                                                    tmp_path: Path) -> None:
    # it waited for its own fire to end (half a second), and the engine closed the file's records meanwhile
    s = Scheduler(tmp_path / "jobs.db", clock=clock)
    took: list[float] = []

    @s.every("1s")
    def third(event: dict[str, Any]) -> None:
        if event["seq"] == 3:
            began = clock.monotonic()
            s.stop()
            took.append(clock.monotonic() - began)

    s.start()
    sleep(clock, 5)
    assert took == [0.0] and s.state == "stopped"
    assert slots(s, "third") == grid(1, 3, 1)


def test_stop_returns_within_a_second_while_a_fire_hangs(clock: FakeClock) -> None:
    with Scheduler(clock=clock) as s:

        @s.every("1s", timeout=30)
        def hang() -> None:
            clock.wait(clock.event(), 20)

        s.start()
        sleep(clock, 1.5)
        began = clock.monotonic()
        s.stop()
        assert clock.monotonic() - began <= 1.0
        assert s.state == "stopped"
        record = s.history("hang")[0]  # recorded at the stop (before, none: it ran on alone)
        assert record["status"] == "timeout" and record["error"].startswith("still running when subminute stopped")


def test_start_twice_is_refused_and_a_stopped_scheduler_starts_again(clock: FakeClock) -> None:
    with Scheduler(clock=clock) as s:
        s.add(lambda: None, every="1s", name="job")
        s.start()
        with pytest.raises(SchedulerStateError, match="runs already"):
            s.start()
        sleep(clock, 2.5)
        s.stop()
        sleep(clock, 1.0)
        s.start()
        sleep(clock, 2.0)
    # a restart within one lease period continues from the released hand-off (docs/guarantees.md, 2): the
    # slot at 3 s, passed during the pause and less than `grace` late, is caught up; the numbering goes on
    assert slots(s, "job") == grid(1, 5, 1)
    assert [r["seq"] for r in s.history("job", 100)] == [1, 2, 3, 4, 5]


def test_a_restarted_program_keeps_its_schedules_and_their_numbering(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with Scheduler(db, clock=clock) as first:
        first.add(lambda: None, every="1s", name="probe")
        first.add(lambda: None, every="1s", name="other")
        first.start()
        sleep(clock, 2.5)
    ids = {r["name"]: r["id"] for r in first.status()}
    with Scheduler(db, clock=clock) as again:  # a new process: the same names are the same schedules
        again.add(lambda: None, every="2s", name="other")
        again.add(lambda: None, every="1s", name="probe")
        assert {r["name"]: r["id"] for r in again.status()} == ids
        again.start()
        sleep(clock, 2.6)
        seqs = [r["seq"] for r in again.history("probe", 100) if r["status"] == "ok"]
    assert seqs == [1, 2, 3, 4, 5]  # 1-2 fired by the first process, 3-5 by the second
    assert [r["interval_now_ms"] for r in again.status() if r["name"] == "other"] == [2000]


def test_a_row_whose_function_this_process_lacks_is_refused_naming_its_program(clock: FakeClock) -> None:
    with Scheduler(clock=clock) as s:
        s.add(lambda: None, every="1s", name="mine")
        s._store.put({"id": 7, "name": "theirs", "waitseconds": 1,
                      "target": {"type": "callable", "name": "theirs", "program": "other_app.py"}})
        s.start()
        sleep(clock, 1.5)
        status = {r["name"]: r for r in s.status()}
    assert status["mine"]["fires"] == 1
    assert status["theirs"]["state"] == "invalid" and "other_app.py" in status["theirs"]["error"]
    invalid = [r for r in s.history("theirs", 10) if r["status"] == "invalid"]
    assert invalid and "only that program's process can call it" in invalid[0]["error"]


# -- bad arguments: one line naming the argument ------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"every": "0s"}, "schedule 'job': every: '0s' is not allowed; use a number of seconds from 0.1 to 86400"),
    ({"every": "often"}, "every: 'often' is not allowed"),
    ({}, "every: None is not allowed; give every="),
    ({"every": "1s", "plan": "tz=UTC; otherwise every 5s"}, "plan: 'tz=UTC; otherwise every 5s' is not allowed"),
    ({"plan": "every now and then"}, "plan"),
    ({"every": "1s", "overlap": "maybe"}, "overlap: 'maybe' is not allowed; use allow or skip"),
    ({"every": "1s", "timeout": -1}, "timeout: -1 is not allowed"),
    ({"every": "1s", "grace": "forever"}, "grace: 'forever' is not allowed"),
    ({"every": "1s", "name": "42"}, "name: '42' is not allowed"),
])
def test_bad_arguments_are_refused_on_one_line_naming_them(kwargs: dict[str, Any], expected: str) -> None:
    s = Scheduler()
    with pytest.raises(ConfigError) as caught:
        s.add(lambda: None, **{"name": "job", **kwargs})
    assert expected in one_line(caught)
    assert "waitseconds" not in str(caught.value)
    assert s.status() == []  # nothing was added


def test_bad_functions_names_and_references_are_refused_on_one_line() -> None:
    s = Scheduler()

    def job(event: dict[str, Any]) -> None: ...

    def two(a: int, b: int) -> None: ...

    s.add(job, every="1s")
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: s.add(42, every="1s"), ConfigError, "function: 42 is not allowed"),  # type: ignore[arg-type]
        (lambda: s.add(two, every="1s"), ConfigError, "function: "),
        (lambda: s.add(job, every="2s"), ConfigError, "name: 'job' is not allowed; this Scheduler has a function"),
        (lambda: s.every(job), ConfigError, 'every: '),  # @s.every without parentheses
        (lambda: s.set("nope", every="1s"), NotFoundError, "no schedule 'nope'; the schedules are: job (1)"),
        (lambda: s.pause("nope"), NotFoundError, "no schedule 'nope'"),
        (lambda: s.resume(9), NotFoundError, "no schedule 9"),
        (lambda: s.set("job"), ConfigError, "set: 'job' is not allowed; say what to change"),
        (lambda: s.set("job", every="10ms"), ConfigError, "schedule 'job': every: '10ms' is not allowed"),
        (lambda: s.history("job", limit=0), ConfigError, "limit: 0 is not allowed"),
        (lambda: Scheduler(lease_ttl="1ms"), ConfigError, "lease_ttl: '1ms' is not allowed"),
        (lambda: Scheduler(record_limit=0), ConfigError, "record_limit: 0 is not allowed"),
    ]
    for call, kind, expected in cases:
        with pytest.raises(kind) as caught:
            call()
        assert expected in one_line(caught), expected
    assert [r["interval_now_ms"] for r in s.status()] == [1000]  # the failed set changed nothing


@pytest.mark.parametrize("db", [5, b"jobs.db", "", "  ", "jobs\0.db"], ids=repr)
def test_a_bad_file_argument_is_refused_on_one_line_naming_it(db: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a path taken as given would be created here
    with pytest.raises(ConfigError) as caught:
        Scheduler(db)
    assert one_line(caught).startswith("db: ") and "use the path of a SQLite file" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        LocalRuntime(db)
    assert one_line(caught).startswith("db_path: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), 1e300, -1, 0, "10", True], ids=repr)
def test_a_bad_budget_is_refused_on_one_line_naming_it(budget: Any, tmp_path: Path) -> None:
    # nan, inf and 1e300 ran for ever, 0 and -1 returned at once, True meant 1 s, "10" failed inside run()
    with pytest.raises(ConfigError) as caught:
        LocalRuntime(tmp_path / "jobs.db", budget_s=budget)
    assert one_line(caught).startswith(f"budget_s: {budget!r} is not allowed; use a number of seconds greater than 0")
