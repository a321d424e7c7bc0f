"""A python target whose function runs in a child Python process (``"isolation": "process"``), so that a
call that hangs can be killed, and a function that leaks or crashes the interpreter harms only its child.

Each fire takes an idle child of the target (or starts one: one child per concurrent fire, so fires of a
schedule that overlap each get their own), writes the event to it as one JSON line, and waits for the
answer until the fire's timeout (counted from the start of the fire). At the timeout the child's process
group is killed (the function's own subprocesses with it) and the fire is a ``timeout`` at once: the call
really ended, so it stops counting against its schedule. A child that dies is an ``error`` naming its exit
code or signal. The next fire starts a fresh child. Children left idle are kept (up to ``MAX_IDLE``) for
the next fires; they end with the target (:meth:`ProcessPythonTarget.close`, or when it is collected), or
by themselves when the controller process dies.

Why a plain subprocess rather than ``multiprocessing`` (spawn): the child is then a small, standard-
library-only program (:mod:`.pychild`) that starts in about 30 ms and 13 MB on a quiet machine, instead
of re-importing the controller's main module and ``subminute`` (about 250 ms and 22 MB more, measured);
it runs in a process group of its own, so a kill reaches whatever the function started; the protocol is
JSON lines on two pipes, with no pickling and no helper threads or semaphores in the controller. The
cost: a process per concurrent fire, and about 0.1 ms per call for the round trip (p50).

The record's start instant is when the event was written to the child (``Result.started_ms``; the
dispatcher records it as the fire's start).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..secrets import redact
from .base import Result
from .fields import error_line, only_fields
from .simple import PYTHON_FIELDS, find_module, outcome

__all__ = ["MAX_IDLE", "ProcessPythonTarget"]

MAX_IDLE = 4  # idle children kept per target for the next fires
MAX_ANSWER = 2 << 20  # bytes of one answer line read from a child (it bounds its own to 1 MiB)
_CHILD = Path(__file__).with_name("pychild.py")
_STATUSES = ("ok", "error", "timeout")


class _Timeout(Exception):
    pass


class _Gone(Exception):
    """The child ended (or broke the protocol); the message says how."""


def _command() -> list[str]:
    # -P: no script directory on sys.path (this package's http.py must not shadow the standard library)
    if _CHILD.is_file():
        return [sys.executable, "-P", str(_CHILD)]
    return [sys.executable, "-m", "subminute.targets.pychild"]  # pragma: no cover - a zipped install


class _Child:
    """One child process and its two pipes; used by one fire at a time."""

    def __init__(self, ref: str) -> None:
        self.proc = subprocess.Popen(_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)
        self.buffer = bytearray()
        self.ready = False
        self.killed = False
        self.send({"ref": ref, "path": sys.path, "parent": os.getpid()})

    def send(self, message: Mapping[str, Any]) -> None:
        """One line to the child (an event is far smaller than a pipe buffer: this does not block)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(dict(message), separators=(",", ":"), default=str).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            raise _Gone(self.ended()) from None

    def receive(self, deadline: float) -> dict[str, Any]:
        """The child's next answer, waiting until ``deadline`` (monotonic): :class:`_Timeout` then;
        :class:`_Gone` if the child ended first."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            if not self.poll.poll(max(1, int(left * 1000 + 0.999))):
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the pipe was closed under us (the target was closed)
                chunk = b""
            if not chunk:
                raise _Gone(self.ended())
            self.buffer += chunk
            if len(self.buffer) > MAX_ANSWER:
                self.kill()
                raise _Gone(f"answered more than {MAX_ANSWER} bytes on one line; its process was killed")
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self.kill()
            raise _Gone("broke the protocol (an answer that is no JSON object); its process was killed")
        return answer

    def ended(self) -> str:
        """How the child ended (waiting a little for its exit status)."""
        try:
            code = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.kill()
            return "closed its pipe; its process was killed"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"its process was killed by signal {-code} ({name})"
        return f"its process exited with code {code}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Kill the child's process group (the function's own subprocesses too, also those left by a child
        that died) and reap the child; once: the group's number is not ours to signal later."""
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:  # slow to die (a loaded machine): reaped when it does
            threading.Thread(target=self.proc.wait, name="subminute-reaper", daemon=True).start()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


class _Children:
    """The target's children: idle ones wait for the next fire; busy ones are known so that they can be
    ended with the target."""

    def __init__(self, ref: str, max_idle: int) -> None:
        self.ref = ref
        self.max_idle = max_idle
        self.idle: list[_Child] = []
        self.busy: set[_Child] = set()
        self.lock = threading.Lock()
        self.closed = False

    def take(self) -> _Child:
        with self.lock:
            child = self.idle.pop() if self.idle else None
        if child is None:
            child = _Child(self.ref)  # outside the lock: other fires of the target need not wait for it
        with self.lock:
            self.busy.add(child)
        return child

    def give(self, child: _Child, keep: bool) -> None:
        with self.lock:
            self.busy.discard(child)
            if keep and not self.closed and len(self.idle) < self.max_idle and child.alive():
                self.idle.append(child)
                return
        child.kill()  # a surplus, dead or failed child

    def close(self) -> None:
        with self.lock:
            self.closed = True
            children, self.idle = [*self.idle, *self.busy], []
            self.busy.clear()
        for child in children:
            child.kill()


class ProcessPythonTarget:
    """Calls ``package.module:function(event)`` in a child process, killed at the fire's timeout."""

    kind = "python-process"  # a blocking target for the dispatcher (a fire waits on a pipe)
    fields = PYTHON_FIELDS

    def __init__(self, spec: Mapping[str, Any], max_idle: int = MAX_IDLE) -> None:
        only_fields(spec, self.fields)
        self.ref = find_module(spec.get("ref"))  # the module is imported by the child, never here
        self.children = _Children(self.ref, max_idle)
        self._finalizer = weakref.finalize(self, _Children.close, self.children)

    def close(self) -> None:
        """Kill every child of this target (idle ones, and those of fires under way)."""
        self._finalizer()

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        deadline = time.monotonic() + timeout_s
        started_ms: float | None = None
        try:
            child = self.children.take()
        except (OSError, _Gone) as exc:  # no process to be had (too many open files, no memory)
            return Result.failure(f"{self.ref}: cannot start its process: {error_line(exc)}")
        try:
            if not child.ready:
                hello = child.receive(deadline)
                if "ready" not in hello:
                    self.children.give(child, keep=False)
                    return Result.failure(f"{self.ref} cannot be loaded in its process: "
                                          f"{error_line(str(hello.get('failed', hello)))}")
                child.ready = True
            started_ms = time.time() * 1000
            child.send(event)
            answer = child.receive(deadline)
        except _Timeout:
            self.children.give(child, keep=False)
            what = "still running" if started_ms is not None else "still loading"
            return Result.failure(f"{self.ref} {what} after the {timeout_s:g}s timeout; its process was killed",
                                  status="timeout", started_ms=started_ms)
        except _Gone as gone:
            self.children.give(child, keep=False)
            return Result.failure(f"{self.ref}: {gone}", started_ms=started_ms)
        self.children.give(child, keep=True)
        result = self._result(answer)
        result.started_ms = started_ms
        return result

    def _result(self, answer: dict[str, Any]) -> Result:
        if "raised" in answer:
            return Result.failure(error_line(str(answer["raised"])))
        if "result" in answer:
            return _result_from(answer["result"], self.ref)
        value = answer.get("returned")
        if value is None or value is False:
            return outcome(self.ref, value)
        return outcome(self.ref, _Repr(redact(str(value))))


class _Repr:
    """A returned value known by its repr (it came from the child as text)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _result_from(fields: Any, ref: str) -> Result:
    """A Result the function returned in the child, checked field by field."""
    if isinstance(fields, Mapping):
        ok, status, error = fields.get("ok"), fields.get("status"), fields.get("error")
        http_status, size, detail = fields.get("http_status"), fields.get("bytes"), fields.get("detail")
        if isinstance(ok, bool) and status in _STATUSES and (error is None or isinstance(error, str)) \
                and all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (http_status, size)) \
                and isinstance(detail, dict):
            return Result(ok=ok, status=status, http_status=http_status, bytes=size,
                          error=error_line(error) if error is not None else None, detail=detail)
    return Result.failure(f"{ref} returned a Result whose fields could not be read")
