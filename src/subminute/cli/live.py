"""What ``run`` shows while it runs: a live table on a terminal, a log line every 10 s otherwise.

Lateness here is start lateness (the instant the target started minus its slot, what the user feels), as
the controller's ``status_rows`` reports it. Every text shown has its control characters escaped
(:func:`.output.clean`): names, errors and paths may come from rows written by hand.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from ..controller import Controller
from .output import clean, fmt_clock, fmt_ms, format_table

__all__ = ["LiveView", "summary_table"]

log = logging.getLogger("subminute")


def _table(controller: Controller, now_ms: int) -> str:
    rows = []
    for r in sorted(controller.status_rows(), key=lambda r: r["id"]):
        interval = r["timetable"].short(now_ms)
        rows.append([r["id"], r["name"], interval, fmt_clock(r["next_slot_ms"]), r["fired"], r["missed"],
                     r["skipped"], fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), fmt_ms(r["max_ms"])])
    return format_table(["ID", "NAME", "INTERVAL", "NEXT SLOT (UTC)", "FIRED", "MISSED", "SKIPPED", "START P50 MS",
                         "START P99 MS", "START MAX MS"], rows)


def summary_table(controller: Controller) -> str:
    """The closing start-lateness summary (percentiles over each schedule's last 1,000 fires)."""
    rows = [[r["id"], r["name"], r["fired"], r["missed"], r["skipped"], fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]),
             fmt_ms(r["max_ms"])] for r in sorted(controller.status_rows(), key=lambda r: r["id"])]
    return format_table(["ID", "NAME", "FIRED", "MISSED", "SKIPPED", "START P50 MS", "START P99 MS", "START MAX MS"],
                        rows)


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
            log.info("%s; worst start lateness p99 %s ms", clean(head), fmt_ms(p99))
            return
        body = _table(c, int(time.time() * 1000))
        invalid = "".join(f"\n! {clean(err)}" for err in c.invalid.values())
        footer = "\n\n" + "\n".join(clean(line) for line in self.footer.splitlines()) if self.footer else ""
        self.out.write("\x1b[H\x1b[J" + clean(head) + "\n\n" + body + invalid + footer + "\n")
        self.out.flush()
