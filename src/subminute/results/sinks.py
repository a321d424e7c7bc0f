"""Where fire records go: a SQLite table (the default, in the control store's file) or memory.

Writers never block the caller: records are queued and a writer thread commits them in batches, each batch
in one transaction, so a kill -9 loses at most the records not yet committed and corrupts nothing. When
the file is busy or locked the writer retries with backoff and keeps the records meanwhile. Error and
detail texts are stored without any secret subminute knows (:func:`subminute.secrets.redact`). The table
itself belongs to :mod:`subminute.storage.schema`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from ..errors import StoreError
from ..secrets import redact
from ..storage.sqlite import Database, StoreBusyError, StoreValueError
from ..timing.stats import Summary, summarize
from .batching import BatchWriter
from .records import FireRecord

__all__ = ["RecordSink", "MemorySink", "SqliteSink", "FireLog", "RECORD_COLUMNS"]

log = logging.getLogger("subminute.sinks")

RECORD_COLUMNS = ("schedule_id", "name", "slot_ms", "seq", "status", "dispatched_ms", "lateness_ms",
                  "started_ms", "ended_ms", "latency_ms", "http_status", "bytes", "error", "detail", "token",
                  "start_lateness_ms")


class RecordSink(Protocol):
    def write(self, record: FireRecord) -> None:
        """Queue a record; never blocks for long."""

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued record is committed; return whether it happened in time."""

    def close(self) -> None: ...


class MemorySink:
    """Keeps records in a list; for tests and embedding."""

    def __init__(self) -> None:
        self.records: list[FireRecord] = []
        self._lock = threading.Lock()

    def write(self, record: FireRecord) -> None:
        with self._lock:
            self.records.append(record)

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True

    def close(self) -> None:
        pass

    def fired(self, schedule_id: int | None = None) -> list[FireRecord]:
        """Records of fires that ran (not skipped, missed or invalid)."""
        with self._lock:
            return [r for r in self.records if r.status in ("ok", "error", "timeout")
                    and (schedule_id is None or r.schedule_id == schedule_id)]


MAX_DETAIL_CHARS = 8000  # a record's detail is kept to this size (a target's output cannot bloat the file)


def _row(record: FireRecord) -> tuple[Any, ...]:
    """The record as a row of ``fires``; its error and detail texts without any known secret (redacted
    before the detail is cut, so that no part of a secret survives the cut)."""
    data = record.as_dict()
    if isinstance(data["error"], str):
        data["error"] = redact(data["error"])
    if data["detail"]:
        text = redact(json.dumps(data["detail"], separators=(",", ":"), default=repr))
        if len(text) > MAX_DETAIL_CHARS:
            text = json.dumps({"truncated": len(text), "start": text[: MAX_DETAIL_CHARS - 100]})
        data["detail"] = text
    else:
        data["detail"] = None
    return tuple(data[c] for c in RECORD_COLUMNS)


_INSERT = f"INSERT INTO fires ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})"


class SqliteSink(BatchWriter[FireRecord]):
    """Batched, transactional writes of fire records to a SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, batch_interval_s: float = 0.05,
                 max_batch: int = 2000) -> None:
        self.path = path
        self._db = Database(path)
        super().__init__("fire records", path, batch_interval_s=batch_interval_s, max_batch=max_batch)

    def write(self, record: FireRecord) -> None:
        self.put(record)

    def _write_batch(self, records: list[FireRecord]) -> None:
        try:
            self._commit(records)
        except (StoreValueError, TypeError, ValueError):
            self._commit_each(records)  # one bad record must not hold back the others

    def _commit(self, records: list[FireRecord]) -> None:
        rows = [_row(r) for r in records]
        with self._db.transaction(immediate=True) as conn:
            conn.executemany(_INSERT, rows)

    def _commit_each(self, records: list[FireRecord]) -> None:
        """Commit one by one, removing each record from ``records`` once committed or dropped, so that
        a retry after a busy error commits none twice."""
        while records:
            try:
                self._commit(records[:1])
            except StoreBusyError:
                raise
            except (StoreError, TypeError, ValueError) as exc:
                log.error("dropping a fire record of schedule %s that cannot be stored: %s",
                          records[0].schedule_id, exc)
            del records[0]
            self._mark_written(1)

    def _close_resources(self) -> None:
        self._db.close()


class FireLog:
    """Reads fire records back: history, per-schedule statistics."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = Database(path)

    def history(self, schedule_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, args = ("WHERE schedule_id = ?", [schedule_id]) if schedule_id is not None else ("", [])
        with self._db.transaction() as conn:
            found = conn.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM fires {where} ORDER BY id DESC LIMIT ?",
                                 [*args, limit]).fetchall()
        rows = [dict(zip(RECORD_COLUMNS, r)) for r in found]
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        return rows[::-1]

    def schedule_stats(self, recent: int = 1000) -> dict[int, dict[str, Any]]:
        """Per schedule: counts by status, last fire, and lateness over the last ``recent`` fires."""
        out: dict[int, dict[str, Any]] = {}
        with self._db.transaction() as conn:  # one snapshot of the table
            for sid, status, count in conn.execute(
                    "SELECT schedule_id, status, COUNT(*) FROM fires GROUP BY schedule_id, status"):
                entry = out.setdefault(sid, {"counts": {}, "last_slot_ms": None, "lateness": summarize(())})
                entry["counts"][status] = count
            for sid, entry in out.items():
                found = conn.execute(
                    "SELECT MAX(slot_ms) FROM fires WHERE schedule_id = ? AND status IN ('ok','error','timeout')",
                    (sid,)).fetchone()
                entry["last_slot_ms"] = found[0] if found else None
                values = [r[0] for r in conn.execute(
                    "SELECT lateness_ms FROM fires WHERE schedule_id = ? AND lateness_ms IS NOT NULL "
                    "ORDER BY id DESC LIMIT ?", (sid, recent))]
                entry["lateness"] = summarize(values)
        return out

    def lateness(self, schedule_id: int, limit: int | None = None) -> Summary:
        sql = "SELECT lateness_ms FROM fires WHERE schedule_id = ? AND lateness_ms IS NOT NULL ORDER BY id DESC"
        args: list[Any] = [schedule_id]
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        with self._db.transaction() as conn:
            values = [r[0] for r in conn.execute(sql, args)]
        return summarize(values)

    def count(self, schedule_id: int | None = None, statuses: Iterable[str] = ("ok", "error", "timeout")) -> int:
        statuses = list(statuses)
        marks = ", ".join("?" for _ in statuses)
        sql = f"SELECT COUNT(*) FROM fires WHERE status IN ({marks})"
        args: list[Any] = list(statuses)
        if schedule_id is not None:
            sql += " AND schedule_id = ?"
            args.append(schedule_id)
        with self._db.transaction() as conn:
            return int(conn.execute(sql, args).fetchone()[0])

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of any read-only query on the file (benchmarks, ad hoc analysis)."""
        with self._db.transaction() as conn:
            return [tuple(r) for r in conn.execute(sql, list(args)).fetchall()]

    def close(self) -> None:
        self._db.close()
