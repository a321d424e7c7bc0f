"""The command target: run a program per fire, with the event on stdin and in the environment.

Spec::

    {"type": "command", "argv": ["/usr/local/bin/poll-feed", "--stop", "42"], "timeout": 10}
    {"type": "command", "argv": "curl -fsS https://example.com | wc -c", "shell": true}

- ``argv``: the program and its arguments, run directly (no shell). With ``"shell": true`` it may be one
  text, run by ``/bin/sh -c``; only then do pipes, globs and ``$VARS`` work.
- The event is written to stdin as one JSON object (``"stdin": "none"`` closes stdin instead), and is
  in the environment as ``SUBMINUTE_SCHEDULE_ID``, ``SUBMINUTE_SCHEDULE``, ``SUBMINUTE_SLOT``,
  ``SUBMINUTE_SLOT_MS``, ``SUBMINUTE_SEQ``, ``SUBMINUTE_INTERVAL``, ``SUBMINUTE_CONTROLLER`` and
  ``SUBMINUTE_EVENT`` (the JSON). ``env`` adds variables; ``cwd`` sets the working directory.
- ``expect_exit``: exit codes that count as success (default ``[0]``).
- ``max_output``: bytes of stdout/stderr read per fire (default 1 MiB; the rest is drained and counted);
  the record keeps the last ``record_output`` characters of each (default 500). ``keep`` keeps stdout.
- ``timeout``: the whole run; then the process group is killed (TERM, then KILL after 1 s) and the fire
  is a ``timeout``.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..results.keep import keeper_from_spec
from ..results.records import digest
from ..secrets import redact
from .base import Result, TargetEnv
from .fields import int_field, only_fields, seconds_field

__all__ = ["CommandTarget", "event_environment"]


def event_environment(event: Mapping[str, Any]) -> dict[str, str]:
    """The ``SUBMINUTE_*`` variables a command sees."""
    names = {"schedule_id": "SCHEDULE_ID", "schedule": "SCHEDULE", "slot": "SLOT", "slot_ms": "SLOT_MS",
             "seq": "SEQ", "interval": "INTERVAL", "controller": "CONTROLLER"}
    env = {f"SUBMINUTE_{var}": str(event[key]) for key, var in names.items() if key in event}
    env["SUBMINUTE_EVENT"] = json.dumps(dict(event), separators=(",", ":"), default=str)
    return env


def _argv(argv: Any, shell: bool) -> list[str]:
    """The argv to run: a non-empty program and its arguments (one text with ``shell``, run by /bin/sh)."""
    if argv is None or (isinstance(argv, (str, list)) and not argv) or (isinstance(argv, str) and not argv.strip()):
        raise ConfigError("target.argv", argv, 'name the program to run, e.g. ["/usr/local/bin/check", "--fast"]; '
                                               "an empty command would run nothing")
    if shell and isinstance(argv, str):
        items = [argv]
    elif isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        items = argv
    else:
        raise ConfigError("target.argv", argv, 'use a list such as ["/usr/bin/prog", "--flag"] '
                                               '(a single text only with "shell": true)')
    if not items[0].strip():
        raise ConfigError("target.argv", argv, "name the program: the first item is empty")
    if any("\0" in a for a in items):
        raise ConfigError("target.argv", argv, "remove the NUL character: no program or argument can hold one")
    if not shell:
        return list(items)
    return ["/bin/sh", "-c", items[0] if isinstance(argv, str) else shlex.join(items)]


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


class CommandTarget:
    kind = "command"

    fields = ("type", "argv", "shell", "env", "cwd", "stdin", "expect_exit", "max_output", "record_output",
              "timeout", "keep")

    def __init__(self, spec: Mapping[str, Any], env: TargetEnv | None = None) -> None:
        only_fields(spec, self.fields)
        self.shell = spec.get("shell", False)
        if not isinstance(self.shell, bool):
            raise ConfigError("target.shell", self.shell, "use true or false")
        self.argv = _argv(spec.get("argv"), self.shell)
        variables = spec.get("env") or {}
        if not isinstance(variables, Mapping) or not all(
                isinstance(k, str) and k and "=" not in k and "\0" not in k and isinstance(v, str) and "\0" not in v
                for k, v in variables.items()):
            raise ConfigError("target.env", variables, "use an object of variable names to text values")
        self.env = dict(variables)
        cwd = spec.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(os.path.expanduser(cwd))):
            raise ConfigError("target.cwd", cwd, "name an existing directory")
        self.cwd = os.path.expanduser(cwd) if cwd else None
        stdin = spec.get("stdin", "event")
        if stdin not in ("event", "none"):
            raise ConfigError("target.stdin", stdin, "use event (the event as JSON) or none")
        self.stdin_event = stdin == "event"
        expect = spec.get("expect_exit", [0])
        expect = [expect] if isinstance(expect, int) else expect
        if not isinstance(expect, list) or not expect or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in expect):
            raise ConfigError("target.expect_exit", spec.get("expect_exit"), "use a list of exit codes 0..255")
        self.expect_exit = set(expect)
        self.max_output = int_field(spec, "max_output", 0, 1 << 30, 1 << 20, "a number of bytes")
        self.record_output = int_field(spec, "record_output", 0, 100_000, 500, "a number of characters")
        self.timeout_s = seconds_field(spec, "timeout", 0.01, 3600)
        self.keeper = keeper_from_spec(spec.get("keep"), env.bodies if env else None)
        self.label = self.argv[2] if self.shell else self.argv[0]
        self._live: set[subprocess.Popen[bytes]] = set()  # the commands of fires under way
        self._lock = threading.Lock()

    def close(self) -> None:
        """End the commands of fires still under way (the dispatcher closes): each group gets TERM, then
        KILL a second later, as at a timeout."""
        with self._lock:
            live = list(self._live)
        for proc in live:
            _kill_group(proc)

    def run(self, event: Mapping[str, Any], timeout_s: float) -> Result:
        timeout = float(self.timeout_s or timeout_s)
        deadline = time.monotonic() + timeout
        env = {**os.environ, **self.env, **event_environment(event)}
        try:
            proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE if self.stdin_event else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self.cwd, start_new_session=True,
                close_fds=True)
        except OSError as exc:
            return Result.failure(f"cannot run {self.label}: {exc.strerror or exc}")
        with self._lock:
            self._live.add(proc)
        try:
            outputs, sizes, timed_out = self._communicate(proc, event, deadline)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            with self._lock:
                self._live.discard(proc)
        out, err = outputs
        detail: dict[str, Any] = {"exit": proc.returncode, "stdout_bytes": sizes[0], "stderr_bytes": sizes[1]}
        # secrets are hidden before the tails are cut, so that no part of one survives the cut
        out_text = redact(out.decode("utf-8", errors="replace")) if out and self.record_output else ""
        err_text = redact(err.decode("utf-8", errors="replace")) if err else ""
        if self.record_output:
            if out_text:
                detail["stdout"] = _tail(out_text, self.record_output)
            if err_text:
                detail["stderr"] = _tail(err_text, self.record_output)
        body_digest = digest(out)
        detail["digest"] = body_digest
        if timed_out:
            return Result.failure(f"{self.label} still running after {timeout:g}s; killed", status="timeout",
                                  bytes=sizes[0], detail=detail)
        if self.keeper is not None:
            detail.update(self.keeper.offer(event, out, body_digest))
        code = proc.returncode
        if code not in self.expect_exit:
            why = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            tail = _tail(err_text, 300).strip()
            return Result.failure(f"{self.label}: {why}" + (f": {tail}" if tail else ""), bytes=sizes[0],
                                  detail=detail)
        return Result(bytes=sizes[0], detail=detail)

    def _communicate(self, proc: subprocess.Popen[bytes], event: Mapping[str, Any],
                     deadline: float) -> tuple[tuple[bytes, bytes], tuple[int, int], bool]:
        """Write the event, read both pipes up to ``max_output`` each (draining the rest) until they
        close and the process exits, or the deadline passes. Returns (outputs, sizes, timed_out)."""
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdin is not None:
            payload = json.dumps(dict(event), separators=(",", ":"), default=str).encode() + b"\n"
            try:
                proc.stdin.write(payload)  # an event is far smaller than a pipe buffer: this cannot block
                proc.stdin.close()
            except OSError:
                pass
        fds = (proc.stdout.fileno(), proc.stderr.fileno())
        kept = {fd: bytearray() for fd in fds}
        sizes = dict.fromkeys(fds, 0)
        timed_out = False
        with selectors.DefaultSelector() as sel:
            for fd in fds:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map() and not timed_out:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(left):
                    fd = int(key.fd)
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(fd)
                        continue
                    sizes[fd] += len(chunk)
                    room = self.max_output - len(kept[fd])
                    if room > 0:
                        kept[fd] += chunk[:room]
        if not timed_out:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.001))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _kill_group(proc)
        proc.stdout.close()
        proc.stderr.close()
        return (bytes(kept[fds[0]]), bytes(kept[fds[1]])), (sizes[fds[0]], sizes[fds[1]]), timed_out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the command's process group, then KILL what is left of it a second later."""
    for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
