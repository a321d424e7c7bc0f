"""The keep policy: which bodies a target keeps, cleaned of secrets, and where they go.

A target whose spec has ``"keep"`` offers every body it receives to a :class:`Keeper`, which keeps it on
every fire (``"all"``) or only when its digest differs from the last one kept for that schedule
(``"change"``), and keeps at most ``retain`` bodies per schedule (the oldest go first). Spec::

    "keep": "change"
    "keep": {"mode": "all", "retain": 500, "format": "sqlite", "path": "/var/lib/subminute/bodies.db",
             "max_bytes": 1048576}
    "keep": {"mode": "change", "format": "jsonl", "path": "/var/lib/subminute/bodies"}

Stores: :mod:`.bodies`. Writes never block the fire: bodies are queued for the runtime's
:class:`~.writers.BodyWriters`, whose thread per destination commits them in batches. Before a body is
kept, every secret subminute knows (:func:`subminute.secrets.redact`) and the target's own secrets, in
their URL-encoded forms too, are replaced by ``***``; its digest is taken after that. The record of the
fire says ``"changed"`` and ``"kept"`` in its detail. Standard library only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StoreError
from ..secrets import redact_body
from .bodies import DEFAULT_RETAIN, BodyItem, digest
from .writers import BodyWriter, BodyWriters

__all__ = ["DEFAULT_MAX_BYTES", "KEEP_FORMATS", "KEEP_MODES", "Keeper", "keeper_from_spec", "redact_body"]

KEEP_MODES = ("all", "change")
KEEP_FORMATS = ("sqlite", "jsonl")
DEFAULT_MAX_BYTES = 1 << 20

#: what a target tells its keeper to hide besides the known secrets: the secret texts it sends
SecretTexts = Callable[[], Iterable[str]]


class Keeper:
    """Decides, per schedule, whether a body is kept, and queues it for its store.

    ``bodies`` is the runtime's :class:`BodyWriters`; without one, the keeper makes its own on the first
    body offered (until then it starts no thread and opens no file) and :meth:`close` closes it.
    ``secrets`` returns the secret texts the target sends (hidden from kept bodies with the known ones)."""

    def __init__(self, mode: str = "change", *, retain: int = DEFAULT_RETAIN, fmt: str = "sqlite",
                 path: str | os.PathLike[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 bodies: BodyWriters | None = None, secrets: SecretTexts | None = None) -> None:
        self.mode = mode
        self.retain = retain
        self.fmt = fmt
        self.path = Path(path) if path is not None else None
        self.max_bytes = max_bytes
        self._bodies = bodies
        self._own_bodies = bodies is None
        self._secrets = secrets
        self._last: dict[int, str | None] = {}
        self._lock = threading.Lock()
        self._writer_obj: BodyWriter | None = None

    @property
    def writer(self) -> BodyWriter:
        if self._writer_obj is None:
            if self._bodies is None:
                self._bodies = BodyWriters()
            self._writer_obj = self._bodies.writer(self.fmt, self.path)
        return self._writer_obj

    def offer(self, event: Mapping[str, Any], data: bytes, body_digest: str | None = None,
              content_type: str | None = None) -> dict[str, Any]:
        """Keep ``data`` if the mode says so; return what to add to the fire record's detail (with the
        ``digest`` of what was kept when hiding secrets changed the body)."""
        clean = redact_body(data, self._secrets() if self._secrets is not None else ())
        extra: dict[str, Any] = {}
        if clean is not data:
            body_digest = digest(clean)
            extra["digest"] = body_digest
        body_digest = body_digest or digest(clean)
        sid = int(event.get("schedule_id", 0))
        with self._lock:
            if sid not in self._last:  # after a restart, compare with what was kept last time
                try:
                    self._last[sid] = self.writer.store.last_digest(sid)
                except (StoreError, OSError):
                    self._last[sid] = None
            changed = self._last[sid] != body_digest
            self._last[sid] = body_digest
        keep = changed or self.mode == "all"
        if keep:
            self.writer.put(BodyItem(
                sid, str(event.get("schedule", "")), int(event.get("slot_ms", 0)), int(event.get("seq", 0)),
                body_digest, len(clean), clean[: self.max_bytes], content_type, round(time.time() * 1000, 3),
                self.retain))
        return {**extra, "changed": changed, "kept": keep}

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every body this keeper queued is written."""
        return self._writer_obj.flush(timeout_s) if self._writer_obj is not None else True

    def close(self) -> None:
        """Close the writers this keeper made for itself (a runtime's writers are the runtime's to close)."""
        if self._own_bodies and self._bodies is not None:
            self._bodies.close()


def keeper_from_spec(value: Any, bodies: BodyWriters | None = None, *, field: str = "target.keep",
                     secrets: SecretTexts | None = None) -> Keeper | None:
    """Build a keeper from a target spec's ``keep`` value (``None``/``"none"``: keep nothing), writing
    through ``bodies`` (the runtime's writers; see :class:`Keeper` for none)."""
    if value is None or value is False or value == "none":
        return None
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, Mapping):
        raise ConfigError(field, value, 'use "all", "change", or an object {"mode": ..., "retain": ...}')
    unknown = [k for k in value if k not in ("mode", "retain", "format", "path", "max_bytes")]
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", value[unknown[0]], "use mode, retain, format, path, max_bytes")
    mode = value.get("mode", "change")
    if mode not in KEEP_MODES:
        raise ConfigError(f"{field}.mode", mode, "use all (every fire) or change (only when the digest changes)")
    retain = value.get("retain", DEFAULT_RETAIN)
    if isinstance(retain, bool) or not isinstance(retain, int) or not 1 <= retain <= 10_000_000:
        raise ConfigError(f"{field}.retain", retain, "use a whole number of bodies from 1 to 10000000")
    fmt = value.get("format", "sqlite")
    if fmt not in KEEP_FORMATS:
        raise ConfigError(f"{field}.format", fmt, "use sqlite or jsonl")
    path = value.get("path")
    if path is not None and (not isinstance(path, str) or not path):
        raise ConfigError(f"{field}.path", path, "use a file path (sqlite) or a directory path (jsonl)")
    if fmt == "jsonl" and path is None:
        raise ConfigError(f"{field}.path", path, "name a directory for the jsonl format")
    max_bytes = value.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1 <= max_bytes <= 1 << 30:
        raise ConfigError(f"{field}.max_bytes", max_bytes, "use a number of bytes from 1 to 1073741824")
    return Keeper(mode, retain=retain, fmt=fmt, path=os.path.expanduser(path) if path else None,
                  max_bytes=max_bytes, bodies=bodies, secrets=secrets)
