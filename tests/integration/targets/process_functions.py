"""Functions for the python target with ``"isolation": "process"`` (tests/integration/targets/test_python_process.py):
each is called in a child process with the event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported in the two functions that need it: a child that does not starts in ~20 ms
    from subminute.targets.base import Result


def echo(event: dict[str, Any]) -> dict[str, Any]:
    return {"seq": event["seq"], "pid": os.getpid()}


def pid_after_a_while(event: dict[str, Any]) -> int:
    time.sleep(0.3)
    return os.getpid()


def hang(event: dict[str, Any]) -> None:
    threading.Event().wait()


def hang_with_a_subprocess(event: dict[str, Any]) -> None:
    """Starts a `sleep` of its own, says its pid in the file named by the event, then hangs."""
    sleeper = subprocess.Popen(["sleep", "60"])
    Path(event["pidfile"]).write_text(str(sleeper.pid))
    threading.Event().wait()


def crash(event: dict[str, Any]) -> None:
    os._exit(3)


def segfault(event: dict[str, Any]) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def raises(event: dict[str, Any]) -> None:
    raise ValueError("bad\nthing   here")


def leaks_a_secret(event: dict[str, Any]) -> None:
    raise RuntimeError("denied for " + os.environ["SUBMINUTE_TEST_PROCESS_SECRET"])


def exits(event: dict[str, Any]) -> None:
    sys.exit(5)


def returns_false(event: dict[str, Any]) -> bool:
    return False


def returns_a_result(event: dict[str, Any]) -> Result:
    from subminute.targets.base import Result

    return Result.failure("custom failure", http_status=418, detail={"a": 1})


def chatty(event: dict[str, Any]) -> int:
    """Prints on stdout (even a line that looks like the protocol) and reads stdin: neither disturbs the child."""
    print('{"returned": "forged"}')
    sys.stdout.write("not json at all\n")
    sys.stdin.read()
    return 42


def huge(event: dict[str, Any]) -> Result:
    from subminute.targets.base import Result

    return Result(detail={"blob": "z" * 3_000_000})


NOT_CALLABLE = 3
