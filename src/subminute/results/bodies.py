"""Keeping what targets received: response bodies, TCP replies and command output.

A target whose spec has ``"keep"`` offers every body it receives to a :class:`Keeper`, which stores it
on every fire (``"all"``) or only when its digest differs from the last one kept for that schedule
(``"change"``), and keeps at most ``retain`` bodies per schedule (the oldest go first). Spec::

    "keep": "change"
    "keep": {"mode": "all", "retain": 500, "format": "sqlite", "path": "/var/lib/subminute/bodies.db",
             "max_bytes": 1048576}
    "keep": {"mode": "change", "format": "jsonl", "path": "/var/lib/subminute/bodies"}

``format`` is ``sqlite`` (the default: a ``bodies`` table in the same file as the fire records, unless
``path`` names another) or ``jsonl`` (a directory holding one ``bodies-<schedule id>.jsonl`` file per
schedule; each line a JSON object, the body as text when it is UTF-8, else base64).

Writes never block the fire: bodies are queued and a writer thread per destination commits them in
batches. The record of the fire says ``"changed"`` and ``"kept"`` in its detail. Standard library only.
"""

from __future__ import annotations

import atexit
import base64
import csv
import hashlib
import io
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..errors import ConfigError, StoreError
from .batching import BatchWriter

__all__ = [
    "EXPORT_FORMATS",
    "BodyItem",
    "JsonlBodies",
    "Keeper",
    "SqliteBodies",
    "digest",
    "export_bodies",
    "export_fires",
    "fire_rows",
    "flush_all",
    "keeper_from_spec",
    "open_bodies",
    "read_bodies",
    "set_default_path",
]

log = logging.getLogger("subminute.results")

KEEP_MODES = ("all", "change")
KEEP_FORMATS = ("sqlite", "jsonl")
DEFAULT_RETAIN = 1000
DEFAULT_MAX_BYTES = 1 << 20
EXPORT_FORMATS = ("jsonl", "json", "csv")

_BODIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL, name TEXT, slot_ms INTEGER NOT NULL, seq INTEGER,
    digest TEXT NOT NULL, size INTEGER NOT NULL, truncated INTEGER NOT NULL DEFAULT 0,
    content_type TEXT, kept_ms REAL NOT NULL, body BLOB
);
CREATE INDEX IF NOT EXISTS bodies_by_schedule ON bodies (schedule_id, id);
"""

_default_path: Path | None = None


def set_default_path(path: str | os.PathLike[str] | None) -> None:
    """Where ``format: sqlite`` keeps bodies when the spec names no path: the CLI sets it to the
    control database it opened. Unset, it is ``$SUBMINUTE_DB`` or the default database file."""
    global _default_path
    _default_path = Path(path) if path is not None else None


def _sqlite_default() -> Path:
    if _default_path is not None:
        return _default_path
    from ..storage.sqlite import default_db_path

    return default_db_path()


def digest(data: bytes) -> str:
    """The short digest recorded for every body (16 hex digits of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class BodyItem:
    schedule_id: int
    name: str
    slot_ms: int
    seq: int
    digest: str
    size: int  # the body's full size; ``body`` may be cut to max_bytes
    body: bytes
    content_type: str | None = None
    kept_ms: float = 0.0
    retain: int = DEFAULT_RETAIN

    @property
    def truncated(self) -> bool:
        return len(self.body) < self.size

    def as_dict(self, *, with_body: bool = True) -> dict[str, Any]:
        from ..timing.slots import iso_utc

        out: dict[str, Any] = {
            "schedule_id": self.schedule_id, "name": self.name, "slot_ms": self.slot_ms,
            "slot": iso_utc(self.slot_ms), "seq": self.seq, "digest": self.digest, "size": self.size,
            "truncated": self.truncated, "content_type": self.content_type, "kept_ms": self.kept_ms,
        }
        if with_body:
            try:
                out["body"], out["encoding"] = self.body.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                out["body"], out["encoding"] = base64.b64encode(self.body).decode("ascii"), "base64"
        return out


class BodyStore(Protocol):
    def add(self, items: list[BodyItem]) -> None: ...

    def last_digest(self, schedule_id: int) -> str | None: ...

    def read(self, schedule_id: int | None = None, limit: int | None = None,
             since_ms: int | None = None) -> list[BodyItem]: ...

    def close(self) -> None: ...


class SqliteBodies:
    """Bodies in a ``bodies`` table of a SQLite file (0600, WAL; shared with the fire records)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from ..storage.sqlite import connect

        self.path = Path(path)
        self._conn = connect(self.path)
        self._lock = threading.Lock()
        try:
            self._conn.executescript(_BODIES_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot set up the bodies table in {self.path}: {exc}") from exc

    def add(self, items: list[BodyItem]) -> None:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO bodies (schedule_id, name, slot_ms, seq, digest, size, truncated, content_type,"
                    " kept_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(i.schedule_id, i.name, i.slot_ms, i.seq, i.digest, i.size, int(i.truncated),
                      i.content_type, i.kept_ms, i.body) for i in items])
                retain: dict[int, int] = {}
                for item in items:
                    retain[item.schedule_id] = item.retain
                for sid, keep in retain.items():
                    conn.execute(
                        "DELETE FROM bodies WHERE schedule_id = ? AND id <= (SELECT id FROM bodies WHERE"
                        " schedule_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)", (sid, sid, keep))
                conn.execute("COMMIT")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def last_digest(self, schedule_id: int) -> str | None:
        with self._lock:
            found = self._conn.execute("SELECT digest FROM bodies WHERE schedule_id = ? ORDER BY id DESC LIMIT 1",
                                       (schedule_id,)).fetchone()
        return found[0] if found else None

    def read(self, schedule_id: int | None = None, limit: int | None = None,
             since_ms: int | None = None) -> list[BodyItem]:
        where, args = _where(schedule_id, since_ms)
        sql = ("SELECT schedule_id, name, slot_ms, seq, digest, size, content_type, kept_ms, body FROM bodies"
               f"{where} ORDER BY id DESC")
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [BodyItem(r[0], r[1] or "", r[2], r[3] or 0, r[4], r[5], bytes(r[8] or b""), r[6], r[7])
                for r in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _where(schedule_id: int | None, since_ms: int | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if schedule_id is not None:
        clauses.append("schedule_id = ?")
        args.append(schedule_id)
    if since_ms is not None:
        clauses.append("slot_ms >= ?")
        args.append(since_ms)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _item_from_json(data: Mapping[str, Any]) -> BodyItem:
    text = data.get("body") or ""
    body = base64.b64decode(text) if data.get("encoding") == "base64" else str(text).encode("utf-8")
    return BodyItem(int(data["schedule_id"]), str(data.get("name") or ""), int(data["slot_ms"]),
                    int(data.get("seq") or 0), str(data["digest"]), int(data.get("size", len(body))), body,
                    data.get("content_type"), float(data.get("kept_ms") or 0))


class JsonlBodies:
    """Bodies in JSON Lines files, one per schedule (``bodies-<id>.jsonl``) in a directory (0700).

    Retention: when a file holds more than ``retain`` plus a quarter, it is rewritten with the newest
    ``retain`` lines (to a temporary file, then renamed, so a reader never sees half a file)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lines: dict[int, int] = {}
        self._lock = threading.Lock()

    def _file(self, schedule_id: int) -> Path:
        return self.path / f"bodies-{schedule_id}.jsonl"

    def _count(self, schedule_id: int) -> int:
        if schedule_id not in self._lines:
            try:
                with open(self._file(schedule_id), "rb") as fh:
                    self._lines[schedule_id] = sum(1 for _ in fh)
            except FileNotFoundError:
                self._lines[schedule_id] = 0
        return self._lines[schedule_id]

    def add(self, items: list[BodyItem]) -> None:
        by_schedule: dict[int, list[BodyItem]] = {}
        for item in items:
            by_schedule.setdefault(item.schedule_id, []).append(item)
        with self._lock:
            for sid, group in by_schedule.items():
                count = self._count(sid)
                path = self._file(sid)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as fh:
                    for item in group:
                        fh.write(json.dumps(item.as_dict(), separators=(",", ":")) + "\n")
                count += len(group)
                retain = group[-1].retain
                if count > retain + max(retain // 4, 1):
                    count = self._compact(path, retain)
                self._lines[sid] = count

    def _compact(self, path: Path, retain: int) -> int:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()[-retain:]
        tmp = path.with_suffix(".jsonl.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
        return len(lines)

    def _iter_file(self, path: Path) -> Iterator[BodyItem]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        yield _item_from_json(json.loads(line))
                    except (ValueError, KeyError):  # a torn last line after a crash
                        continue

    def last_digest(self, schedule_id: int) -> str | None:
        path = self._file(schedule_id)
        if not path.exists():
            return None
        last = None
        for item in self._iter_file(path):
            last = item.digest
        return last

    def read(self, schedule_id: int | None = None, limit: int | None = None,
             since_ms: int | None = None) -> list[BodyItem]:
        files = [self._file(schedule_id)] if schedule_id is not None else sorted(self.path.glob("bodies-*.jsonl"))
        items = [i for f in files if f.exists() for i in self._iter_file(f)
                 if since_ms is None or i.slot_ms >= since_ms]
        items.sort(key=lambda i: (i.kept_ms, i.slot_ms))
        return items[-limit:] if limit else items

    def close(self) -> None:
        pass


def open_bodies(path: str | os.PathLike[str]) -> BodyStore:
    """The bodies at ``path``: a directory is JSON Lines, a file is SQLite."""
    p = Path(path)
    return JsonlBodies(p) if p.is_dir() else SqliteBodies(p)


def read_bodies(path: str | os.PathLike[str], schedule_id: int | None = None, limit: int | None = 50,
                since_ms: int | None = None, decode: str | None = None) -> list[dict[str, Any]]:
    """Kept bodies as dicts (oldest first), for ``subminute history --bodies`` and ``export``.
    ``decode="gtfs-rt"`` adds a readable ``summary`` of each GTFS-realtime body."""
    store = open_bodies(path)
    try:
        items = store.read(schedule_id, limit, since_ms)
    finally:
        store.close()
    out = []
    for item in items:
        data = item.as_dict()
        if decode:
            data["summary"] = _decode(decode, item.body)
        out.append(data)
    return out


def _decode(kind: str, body: bytes) -> Any:
    if kind in ("gtfs-rt", "gtfs"):
        from .gtfs import summarize_feed

        try:
            return summarize_feed(body)
        except ConfigError as exc:
            return {"error": str(exc)}
    if kind == "json":
        try:
            return json.loads(body)
        except ValueError as exc:
            return {"error": f"not JSON: {exc}"}
    raise ConfigError("decode", kind, "use gtfs-rt or json")


class _Writer(BatchWriter[BodyItem]):
    """One queue and writer thread per destination, shared by every keeper writing there."""

    def __init__(self, store: BodyStore) -> None:
        self.store = store
        super().__init__("kept bodies", getattr(store, "path", store), max_batch=500)

    def _write_batch(self, items: list[BodyItem]) -> None:
        self.store.add(items)

    def _close_resources(self) -> None:
        self.store.close()


_writers: dict[tuple[str, str], _Writer] = {}
_writers_lock = threading.Lock()


def _writer(fmt: str, path: Path) -> _Writer:
    key = (fmt, str(path.resolve()))
    with _writers_lock:
        writer = _writers.get(key)
        if writer is None:
            store: BodyStore = SqliteBodies(path) if fmt == "sqlite" else JsonlBodies(path)
            writer = _writers[key] = _Writer(store)
        return writer


def flush_all(timeout_s: float = 5.0) -> bool:
    """Wait until every queued body is written (tests, shutdown)."""
    with _writers_lock:
        writers = list(_writers.values())
    return all(w.flush(timeout_s) for w in writers)


@atexit.register
def _close_all() -> None:
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.close()


class Keeper:
    """Decides, per schedule, whether a body is kept, and queues it for its store."""

    def __init__(self, mode: str = "change", *, retain: int = DEFAULT_RETAIN, fmt: str = "sqlite",
                 path: str | os.PathLike[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.mode = mode
        self.retain = retain
        self.fmt = fmt
        self.path = Path(path) if path is not None else None
        self.max_bytes = max_bytes
        self._last: dict[int, str | None] = {}
        self._lock = threading.Lock()
        self._writer_obj: _Writer | None = None

    @property
    def writer(self) -> _Writer:
        if self._writer_obj is None:
            path = self.path
            if path is None:
                if self.fmt == "jsonl":
                    raise ConfigError("target.keep.path", None, "name a directory for the jsonl format")
                path = _sqlite_default()
            self._writer_obj = _writer(self.fmt, path)
        return self._writer_obj

    def offer(self, event: Mapping[str, Any], data: bytes, body_digest: str | None = None,
              content_type: str | None = None) -> dict[str, Any]:
        """Keep ``data`` if the mode says so; return what to add to the fire record's detail."""
        body_digest = body_digest or digest(data)
        sid = int(event.get("schedule_id", 0))
        with self._lock:
            if sid not in self._last:  # after a restart, compare with what was kept last time
                try:
                    self._last[sid] = self.writer.store.last_digest(sid)
                except (sqlite3.Error, OSError):
                    self._last[sid] = None
            changed = self._last[sid] != body_digest
            self._last[sid] = body_digest
        keep = changed or self.mode == "all"
        if keep:
            self.writer.put(BodyItem(
                sid, str(event.get("schedule", "")), int(event.get("slot_ms", 0)), int(event.get("seq", 0)),
                body_digest, len(data), data[: self.max_bytes], content_type, round(time.time() * 1000, 3),
                self.retain))
        return {"changed": changed, "kept": keep}


def keeper_from_spec(value: Any, field: str = "target.keep") -> Keeper | None:
    """Build a keeper from a target spec's ``keep`` value (``None``/``"none"``: keep nothing)."""
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
                  max_bytes=max_bytes)


# -- export -------------------------------------------------------------------------------------------------

def fire_rows(db: str | os.PathLike[str], schedule_id: int | None, since_ms: int | None,
               limit: int | None) -> list[dict[str, Any]]:
    from ..storage.sqlite import connect
    from .sinks import RECORD_COLUMNS

    if not Path(db).exists():
        raise ConfigError("db", str(db), "name an existing subminute database file")
    conn = connect(db)
    try:
        if not conn.execute("SELECT name FROM sqlite_master WHERE name = 'fires'").fetchone():
            return []
        where, args = _where(schedule_id, since_ms)
        sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM fires{where} ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        rows = [dict(zip(RECORD_COLUMNS, r)) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows[::-1]


def _write(rows: list[dict[str, Any]], out: TextIO, fmt: str) -> None:
    if fmt == "jsonl":
        out.writelines(json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows)
    elif fmt == "json":
        json.dump(rows, out, indent=1, default=str)
        out.write("\n")
    elif fmt == "csv":
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v
                             for k, v in row.items()})
    else:
        raise ConfigError("format", fmt, "use one of " + ", ".join(EXPORT_FORMATS))


def export_fires(db: str | os.PathLike[str], out: TextIO, fmt: str = "jsonl", *, schedule_id: int | None = None,
                 since_ms: int | None = None, limit: int | None = None) -> int:
    """Write fire records (oldest first) to ``out``; return how many."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError("format", fmt, "use one of " + ", ".join(EXPORT_FORMATS))
    rows = fire_rows(db, schedule_id, since_ms, limit)
    _write(rows, out, fmt)
    return len(rows)


def export_bodies(source: str | os.PathLike[str], out: TextIO | None = None, fmt: str = "jsonl", *,
                  schedule_id: int | None = None, since_ms: int | None = None, limit: int | None = None,
                  decode: str | None = None, directory: str | os.PathLike[str] | None = None) -> int:
    """Write kept bodies to ``out`` (``jsonl``/``json``/``csv``), or each body as a file into
    ``directory`` named ``<schedule>-<slot>-<digest>.<ext>``. Return how many."""
    if not Path(source).exists():
        raise ConfigError("bodies", str(source), "name the database file or jsonl directory holding kept bodies")
    if fmt not in EXPORT_FORMATS:
        raise ConfigError("format", fmt, "use one of " + ", ".join(EXPORT_FORMATS))
    rows = read_bodies(source, schedule_id, limit, since_ms, decode)
    if directory is not None:
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        for row in rows:
            stamp = row["slot"].replace(":", "").replace("-", "")
            ext = _extension(row.get("content_type"), row["encoding"])
            data = (base64.b64decode(row["body"]) if row["encoding"] == "base64" else row["body"].encode("utf-8"))
            (target / f"{row['schedule_id']}-{stamp}-{row['digest']}.{ext}").write_bytes(data)
        return len(rows)
    _write(rows, out or io.StringIO(), fmt)
    return len(rows)


def _extension(content_type: str | None, encoding: str) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    for needle, ext in (("json", "json"), ("html", "html"), ("xml", "xml"), ("csv", "csv"), ("protobuf", "pb"),
                        ("text/", "txt")):
        if needle in kind:
            return ext
    return "txt" if encoding == "utf-8" else "bin"

