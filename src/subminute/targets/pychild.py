"""The child process of a python target with ``"isolation": "process"``: calls one function, one event at a
time. Started by :mod:`subminute.targets.process`, one child per concurrent fire.

Protocol (one JSON object per line; stdin from the controller, stdout to it):

* first line in: ``{"ref": "package.module:function", "path": [sys.path of the controller], "parent": pid}``;
  the child imports the function and answers ``{"ready": pid}``, or ``{"failed": "why"}`` and exits;
* then each line in is an event; each answer is ``{"returned": repr}`` (``null`` for None or True, ``false``
  for False), ``{"result": {...}}`` for a ``subminute`` Result, or ``{"raised": "Name: message"}``.

The function gets /dev/null as stdin and the controller's stderr as stdout and stderr, so that what it
prints cannot break the protocol. The child exits when its stdin closes or its parent dies (checked twice
a second, even while the function hangs). Standard library only, and no ``subminute`` import: a child
starts in about 30 ms on a quiet machine (the ``subminute`` package would add about 250 ms), so it is run
by path (``python -P .../pychild.py``); ``python -m subminute.targets.pychild`` works too.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from typing import Any, BinaryIO

__all__ = ["main"]

MAX_REPR = 4000  # characters of a returned value's repr sent back (the record keeps 500)
MAX_LINE = 1 << 20  # a longer answer (a huge detail) is replaced by a short one


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{exc.__class__.__name__}: {exc}"[:20_000].split())


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{attr} is not callable")
    return obj


def _encode(value: Any) -> dict[str, Any]:
    base = sys.modules.get("subminute.targets.base")  # imported by the function's module if it returns one
    result_type = getattr(base, "Result", None)
    if result_type is not None and isinstance(value, result_type):
        return {"result": {"ok": value.ok, "status": value.status, "http_status": value.http_status,
                           "bytes": value.bytes, "error": value.error, "detail": value.detail}}
    if value is None or value is True:
        return {"returned": None}
    if value is False:
        return {"returned": False}
    return {"returned": repr(value)[:MAX_REPR]}


def _answer(out: BinaryIO, message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":"), default=repr)
    if len(line) > MAX_LINE and "result" in message:  # a huge detail: its start, as the record would keep it
        text = json.dumps(message["result"]["detail"], separators=(",", ":"), default=repr)
        message["result"]["detail"] = {"truncated": len(text), "start": text[:8000]}
        line = json.dumps(message, separators=(",", ":"), default=repr)
    if len(line) > MAX_LINE:
        line = json.dumps({"raised": f"the answer was too large ({len(line)} characters of JSON)"})
    out.write(line.encode("utf-8", "surrogateescape") + b"\n")
    out.flush()


def _watch(parent: int) -> None:
    """Exit when the controller is gone, even while the function hangs."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(70)


def main() -> None:
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    hello = json.loads(requests.readline() or b"{}")
    parent = int(hello.get("parent") or os.getppid())
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
    sys.path[:] = [p for p in hello.get("path", sys.path) if isinstance(p, str)]
    try:
        func = _resolve(str(hello.get("ref", "")))
    except BaseException as exc:  # noqa: BLE001 - whatever the import raised is the answer
        _answer(replies, {"failed": _one_line(exc)})
        return
    _answer(replies, {"ready": os.getpid()})
    for line in requests:
        event = json.loads(line)
        try:
            message = _encode(func(event))
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: the function's error, not the child's
            message = {"raised": _one_line(exc)}
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        _answer(replies, message)


if __name__ == "__main__":
    main()
