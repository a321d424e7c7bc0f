"""The jobs that bench/timing.py runs in every system, in one importable module.

The FIRST line of every job reads the wall clock: that instant is the job's start, the moment a user's
code begins. Each job appends ``(schedule id, slot in epoch ms or None, start in epoch ms)`` to
:data:`STARTS`; the runner of the system reads the list after the run (one system per process, so the list
holds that system's fires only).

* ``job`` / ``busy_job`` / ``http_job`` take ``(sid, slot_ms)``: the floor and asyncio pass the slot they
  slept to; APScheduler cannot tell its job the planned run time, so it passes ``None`` and the slot is
  inferred from the grid afterwards.
* ``event_job`` / ``event_busy_job`` are subminute python targets (``{"type": "python", "ref":
  "_probes:event_job"}``): called with subminute's event, whose ``slot_ms`` is the planned slot.

bench/timing.py puts the bench directory on ``sys.path``, so the runtime imports this module as ``_probes``.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["STARTS", "ERRORS", "configure", "job", "busy_job", "http_job", "event_job", "event_busy_job"]

STARTS: list[tuple[int, int | None, float]] = []
ERRORS: list[str] = []

_time = time.time
_sleep = time.sleep
_busy_s = 0.0
_port = 0
_paths: dict[int, str] = {}
_local = threading.local()


def configure(busy_s: float = 0.0, port: int = 0, paths: Mapping[int, str] | None = None) -> None:
    """Set what the jobs do: sleep ``busy_s`` after recording their start; poll ``paths[sid]`` on
    127.0.0.1:``port``."""
    global _busy_s, _port, _paths
    _busy_s, _port, _paths = busy_s, port, dict(paths or {})


def job(sid: int, slot_ms: int | None) -> None:
    t = _time()
    STARTS.append((sid, slot_ms, t * 1000.0))


def busy_job(sid: int, slot_ms: int | None) -> None:
    t = _time()
    STARTS.append((sid, slot_ms, t * 1000.0))
    _sleep(_busy_s)


def http_job(sid: int, slot_ms: int | None) -> None:
    """One GET with the standard library's http.client, on a kept-alive connection of this thread."""
    t = _time()
    STARTS.append((sid, slot_ms, t * 1000.0))
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = http.client.HTTPConnection("127.0.0.1", _port, timeout=5)
    try:
        conn.request("GET", _paths[sid])
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            ERRORS.append(f"HTTP {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        _local.conn = None
        ERRORS.append(f"{exc.__class__.__name__}: {exc}")


def event_job(event: Mapping[str, Any]) -> None:
    t = _time()
    STARTS.append((event["schedule_id"], event["slot_ms"], t * 1000.0))


def event_busy_job(event: Mapping[str, Any]) -> None:
    t = _time()
    STARTS.append((event["schedule_id"], event["slot_ms"], t * 1000.0))
    _sleep(_busy_s)
