"""Structured logs: one JSON object per line, and a record sink that logs every fire.

``configure_logging(json_format=True)`` makes every ``subminute.*`` log line a JSON object::

    {"ts": "2026-11-23T10:00:05.123Z", "level": "WARNING", "logger": "subminute.controller",
     "msg": "control store unavailable (...); firing on the last known state"}

Fields passed with ``extra={...}`` are added to the object. Secret values read by targets (auth tokens
from environment variables or files) are replaced by ``***`` in every message, JSON or plain.
``LogSink`` wraps a record sink and logs each fire as ``{"event": "fire", ...}``: failures at WARNING,
successes at DEBUG (or INFO with ``every=True``). Standard library only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from ..results.records import FireRecord
from ..secrets import redact
from .text import clean

__all__ = ["JsonFormatter", "LogSink", "PlainFormatter", "RedactFilter", "SinkWrapper", "configure_logging"]

# the attributes every LogRecord has; anything else came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class RedactFilter(logging.Filter):
    """Replaces known secret values in the formatted message (for the plain text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name,
                               "msg": redact(record.getMessage())}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        text = json.dumps(out, separators=(",", ":"), default=str)
        return redact(text) if len(out) > 4 else text  # fields from extra= may carry a secret too


class PlainFormatter(logging.Formatter):
    """``subminute: LEVEL: message``, the message's control characters escaped: it may carry text from the
    table (a lease owner, a name) that must not drive the terminal. A traceback keeps its lines."""

    def __init__(self) -> None:
        super().__init__("subminute: %(levelname)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return clean(super().formatMessage(record))


def configure_logging(level: int | str = logging.INFO, *, json_format: bool = False,
                      stream: TextIO | None = None) -> logging.Handler:
    """Send ``subminute`` logs to ``stream`` (stderr) as JSON lines or plain text; return the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if json_format else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class SinkWrapper:
    """A record sink that looks at every record (``see``), then passes it on to ``inner``."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def see(self, record: FireRecord) -> None:
        raise NotImplementedError

    def write(self, record: FireRecord) -> None:
        try:
            self.see(record)
        finally:
            if self.inner is not None:
                self.inner.write(record)

    def pace(self, next_in_s: float | None) -> None:
        """The inner sink's pacing (see :class:`~subminute.results.batching.BatchWriter`), if it has one."""
        pace = getattr(self.inner, "pace", None)
        if pace is not None:
            pace(next_in_s)

    def flush(self, timeout_s: float = 5.0) -> bool:
        return bool(self.inner.flush(timeout_s)) if self.inner is not None else True

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


class LogSink(SinkWrapper):
    """Logs every fire record as a structured event, then passes it on."""

    def __init__(self, inner: Any = None, *, logger: logging.Logger | None = None, every: bool = False) -> None:
        super().__init__(inner)
        self.log = logger or logging.getLogger("subminute.fires")
        self.ok_level = logging.INFO if every else logging.DEBUG

    def see(self, record: FireRecord) -> None:
        level = self.ok_level if record.status == "ok" else logging.WARNING
        if self.log.isEnabledFor(level):
            fields = {k: v for k, v in record.as_dict().items() if v is not None and v != {}}
            text = f"fire {record.name} slot {record.slot_ms} {record.status}"
            if record.error:
                text += f": {record.error}"
            self.log.log(level, text, extra={"event": "fire", "fire": fields})
