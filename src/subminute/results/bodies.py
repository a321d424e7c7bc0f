"""Kept bodies and their two stores: a ``bodies`` table in a SQLite file, or JSON Lines files.

``format: sqlite`` (the default) keeps bodies in the ``bodies`` table of the control database, unless
``keep.path`` names another file; ``format: jsonl`` keeps them in a directory holding one
``bodies-<schedule id>.jsonl`` file per schedule, each line a JSON object with the body as text when it
is UTF-8, else base64. What is kept, and when, is :mod:`.keep`'s business; who writes is :mod:`.writers`'s;
export is :mod:`.export`'s. Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..storage.files import private_dirs
from ..storage.sqlite import Database
from .records import digest

__all__ = ["BodyItem", "BodyStore", "DEFAULT_RETAIN", "JsonlBodies", "SqliteBodies", "digest", "open_bodies",
           "read_bodies"]

DEFAULT_RETAIN = 1000


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
    path: Path

    def add(self, items: list[BodyItem]) -> None: ...

    def last_digest(self, schedule_id: int) -> str | None: ...

    def read(self, schedule_id: int | None = None, limit: int | None = None,
             since_ms: int | None = None) -> list[BodyItem]: ...

    def close(self) -> None: ...


def where_clause(schedule_id: int | None, since_ms: int | None) -> tuple[str, list[Any]]:
    """`` WHERE schedule_id = ? AND slot_ms >= ?`` (the parts that apply) and its arguments."""
    clauses, args = [], []
    if schedule_id is not None:
        clauses.append("schedule_id = ?")
        args.append(schedule_id)
    if since_ms is not None:
        clauses.append("slot_ms >= ?")
        args.append(since_ms)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


_INSERT = ("INSERT INTO bodies (schedule_id, name, slot_ms, seq, digest, size, truncated, content_type, kept_ms,"
           " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_TRIM = ("DELETE FROM bodies WHERE schedule_id = ? AND id <= (SELECT id FROM bodies WHERE schedule_id = ?"
         " ORDER BY id DESC LIMIT 1 OFFSET ?)")


class SqliteBodies:
    """Bodies in the ``bodies`` table of a SQLite file (0600, WAL; shared with the fire records)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db = Database(self.path)

    def add(self, items: list[BodyItem]) -> None:
        retain: dict[int, int] = {}
        for item in items:
            retain[item.schedule_id] = item.retain
        with self._db.transaction(immediate=True) as conn:
            conn.executemany(_INSERT, [(i.schedule_id, i.name, i.slot_ms, i.seq, i.digest, i.size, int(i.truncated),
                                        i.content_type, i.kept_ms, i.body) for i in items])
            for sid, keep in retain.items():
                conn.execute(_TRIM, (sid, sid, keep))

    def last_digest(self, schedule_id: int) -> str | None:
        with self._db.transaction() as conn:
            found = conn.execute("SELECT digest FROM bodies WHERE schedule_id = ? ORDER BY id DESC LIMIT 1",
                                 (schedule_id,)).fetchone()
        return str(found[0]) if found else None

    def read(self, schedule_id: int | None = None, limit: int | None = None,
             since_ms: int | None = None) -> list[BodyItem]:
        where, args = where_clause(schedule_id, since_ms)
        sql = ("SELECT schedule_id, name, slot_ms, seq, digest, size, content_type, kept_ms, body FROM bodies"
               f"{where} ORDER BY id DESC")
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        with self._db.transaction() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [BodyItem(r[0], r[1] or "", r[2], r[3] or 0, r[4], r[5], bytes(r[8] or b""), r[6], r[7])
                for r in reversed(rows)]

    def close(self) -> None:
        self._db.close()


def _item_from_json(data: Mapping[str, Any]) -> BodyItem:
    text = data.get("body") or ""
    body = base64.b64decode(text) if data.get("encoding") == "base64" else str(text).encode("utf-8")
    return BodyItem(int(data["schedule_id"]), str(data.get("name") or ""), int(data["slot_ms"]),
                    int(data.get("seq") or 0), str(data["digest"]), int(data.get("size", len(body))), body,
                    data.get("content_type"), float(data.get("kept_ms") or 0))


class JsonlBodies:
    """Bodies in JSON Lines files, one per schedule (``bodies-<id>.jsonl``, 0600) in a directory (0700,
    and so is each missing parent).

    Retention: when a file holds more than ``retain`` plus a quarter, it is rewritten with the newest
    ``retain`` lines (to a temporary file, then renamed, so a reader never sees half a file)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = private_dirs(directory)
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
