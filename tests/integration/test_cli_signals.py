"""Ctrl-C and SIGTERM end `subminute run` whenever they land.

A Python signal handler runs in the main thread between two of its bytecodes. While the controller's loop
ran in the main thread, a SIGTERM that landed while the loop held the lock of its wake-up event (clearing
it after each sleep) made the handler wait for that lock forever: the process hung (seen once in CI). The
loop now runs in a thread of its own (`in_own_thread`, within `signals_stop`, as `run` and `demo` do)
and the main thread only waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from subminute.cli.run_cmd import in_own_thread, signals_stop
from subminute.control.sqlite import SqliteStore

# The hazard in miniature: run() clears an event without pause (holding its lock most of the time), and
# stop() sets it. In the main thread this hangs on most signals; the commands' way must end every time.
_MINIATURE = textwrap.dedent("""
    import os, signal, sys, threading, time
    HELPER

    for round in range(int(sys.argv[1])):
        wake, stopped = threading.Event(), []

        def run():
            while not stopped:
                wake.clear()
            return round

        def stop():
            stopped.append(True)
            wake.set()

        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert run_until_signalled(run, stop) == round
    print("ended", flush=True)
""")
_OWN_THREAD = """from subminute.cli.run_cmd import in_own_thread, signals_stop

def run_until_signalled(run, stop):  # as `subminute run` does
    with signals_stop(stop):
        return in_own_thread(run)
"""
_MAIN_THREAD = """def run_until_signalled(run, stop):  # as `subminute run` did
    signal.signal(signal.SIGTERM, lambda *_: stop())
    return run()
"""


def test_a_signal_never_waits_for_a_lock_the_interrupted_loop_holds(tmp_path: Path) -> None:
    script = tmp_path / "miniature.py"
    script.write_text(_MINIATURE.replace("HELPER", _OWN_THREAD))
    done = subprocess.run([sys.executable, str(script), "20"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ended\n", done.stderr[-2000:]


def test_run_in_the_main_thread_would_hang_on_that_signal(tmp_path: Path) -> None:
    """The miniature is a real test of the hazard: run() in the main thread, as before, hangs."""
    script = tmp_path / "main_thread.py"
    script.write_text(_MINIATURE.replace("HELPER", _MAIN_THREAD))
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, str(script), "20"], capture_output=True, timeout=5)  # 20 rounds take ~1 s


def test_sigterm_ends_a_busy_run_at_any_instant(tmp_path: Path) -> None:
    """20 schedules every 100 ms, 5 ms apart, keep the loop waking and clearing its event; SIGTERM at 5
    instants, each run ends cleanly within 10 s and prints its summary."""
    db = tmp_path / "busy.db"
    store = SqliteStore(db)
    for sid in range(1, 21):
        store.put({"id": sid, "waitseconds": 0.1, "offset": sid * 0.005, "target": {"type": "noop"}})
    store.close()
    for i in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "subminute", "--db", str(db), "run", "--no-live"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONFAULTHANDLER="1"))
        time.sleep(1.0 + i * 0.037)
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler shows where each thread stood
            out, _ = proc.communicate(timeout=10)
            pytest.fail(f"run {i} still running 10 s after SIGTERM:\n{out[-5000:]}")
        assert proc.returncode == 0, out[-2000:]
        assert "holding the lease" in out and "START P99 MS" in out and "Traceback" not in out, out[-2000:]


@pytest.mark.parametrize(("signals", "gap_s"), [((signal.SIGTERM, signal.SIGTERM), 0.003),
                                                 ((signal.SIGINT, signal.SIGINT), 0.004),
                                                 ((signal.SIGINT, signal.SIGINT, signal.SIGINT), 0.002)],
                         ids=["TERM,TERM", "INT,INT", "INT,INT,INT"])
def test_a_second_signal_while_run_ends_still_ends_it_cleanly(tmp_path: Path, signals: tuple[int, ...],
                                                              gap_s: float) -> None:
    # the handlers were put back as soon as the controller's thread ended: a second signal a few
    # milliseconds after the first killed the process before its summary. The summary is printed now; a
    # signal that lands once it is printed, as the process exits, may still end it by its default action
    db = tmp_path / "twice.db"
    store = SqliteStore(db)
    store.put({"id": 1, "waitseconds": 0.1, "target": {"type": "noop"}})
    store.close()
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "subminute", "--db", str(db), "run", "--no-live"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(gap_s)
        out, _ = proc.communicate(timeout=15)
        # a signal that lands after the summary, as Python exits, takes its default action (for Ctrl-C: a
        # KeyboardInterrupt in threading's shutdown), as docs/guarantees.md says; none before it
        assert "START P99 MS" in out and "Traceback" not in out.split("START P99 MS")[0], (proc.returncode,
                                                                                           out[-2000:])
        assert proc.returncode in (0, -signals[-1], 128 + signals[-1]), (proc.returncode, out[-2000:])


def test_what_run_returns_or_raises_reaches_the_caller_and_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def fails() -> None:
        raise ValueError("the store went away")

    with signals_stop(lambda: None):
        assert in_own_thread(lambda: 42) == 42
    with pytest.raises(ValueError, match="the store went away"), signals_stop(lambda: None):
        in_own_thread(fails)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
