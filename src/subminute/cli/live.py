"""What ``run`` shows while it runs: a live table on a terminal, a log line every 10 s otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from ..controller import Controller
from .output import fmt_clock, fmt_ms, format_table

__all__ = ["LiveView", "summary_table"]

log = logging.getLogger("subminute")


def _table(controller: Controller, now_ms: int) -> str:
    rows = []
    for r in sorted(controller.status_rows(), key=lambda r: r["id"]):
        interval = r["timetable"].short(now_ms)
        rows.append([r["id"], r["name"], interval, fmt_clock(r["next_slot_ms"]), r["fired"], r["missed"],
                     r["skipped"], fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), fmt_ms(r["max_ms"])])
    return format_table(["ID", "NAME", "INTERVAL", "NEXT SLOT (UTC)", "FIRED", "MISSED", "SKIPPED", "P50 MS",
                         "P99 MS", "MAX MS"], rows)


def summary_table(controller: Controller) -> str:
    """The closing lateness summary (percentiles over each schedule's last 1,000 fires)."""
    rows = [[r["id"], r["name"], r["fired"], r["missed"], r["skipped"], fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]),
             fmt_ms(r["max_ms"])] for r in sorted(controller.status_rows(), key=lambda r: r["id"])]
    return format_table(["ID", "NAME", "FIRED", "MISSED", "SKIPPED", "LATENESS P50 MS", "P99 MS", "MAX MS"], rows)


class LiveView:
    """Redraws a status table every ``every_s`` on a tty; logs a one-line summary every 10 s otherwise."""

    def __init__(self, controller: Controller, *, out: TextIO | None = None, tty: bool | None = None,
                 every_s: float = 0.5, title: str = "subminute", footer: str = "") -> None:
        self.controller = controller
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.every_s = every_s if self.tty else 10.0
        self.title = title
        self.footer = footer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="subminute-live", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> LiveView:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.render()

    def render(self) -> None:
        c = self.controller
        stats = c.stats
        elapsed = time.monotonic() - self._started
        head = (f"{self.title} - {c.state} - {elapsed:5.1f}s - fired {stats['fired']}, missed {stats['missed']}, "
                f"skipped {stats['skipped']}" + (f", lease token {c.lease.token}" if c.lease else ""))
        if not self.tty:
            p99 = max((r["p99_ms"] for r in c.status_rows() if r["fired"]), default=None)
            log.info("%s; worst lateness p99 %s ms", head, fmt_ms(p99))
            return
        body = _table(c, int(time.time() * 1000))
        invalid = "".join(f"\n! {err}" for err in c.invalid.values())
        self.out.write("\x1b[H\x1b[J" + head + "\n\n" + body + invalid + ("\n\n" + self.footer if self.footer else "")
                       + "\n")
        self.out.flush()
