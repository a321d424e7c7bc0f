"""Where fire records go: a SQLite table (the default, in the control store's file) or memory.

Writers never block the caller: records are queued and a writer thread commits them in batches, each batch
in one transaction, so a kill -9 loses at most the records not yet committed and corrupts nothing. When
the file is busy or locked the writer retries with backoff and keeps the records meanwhile. Error and
detail texts are stored without any secret subminute knows (:func:`subminute.secrets.redact`). The table
itself belongs to :mod:`subminute.storage.schema`.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from ..errors import ConfigError, StoreError
from ..secrets import redact
from ..storage.sqlite import Connection, Database, StoreBusyError, StoreValueError, fetch_all
from ..timing.stats import Summary, summarize
from .batching import BatchWriter
from .records import FireRecord

__all__ = ["RecordSink", "MemorySink", "BoundedSink", "SqliteSink", "FireLog", "RECORD_COLUMNS", "missed_slots",
           "read_records"]

log = logging.getLogger("subminute.sinks")
PACED_BUSY_MS = 20  # how long the keeper's tick waits for another writer's lock to write records

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


FIRED = ("ok", "error", "timeout")  # the statuses of fires that ran


class BoundedSink:
    """Keeps the last ``limit`` records of each schedule in memory, and counts over all of them: for a
    program that runs for months without a file (the in-memory :class:`~subminute.runtime.scheduler.Scheduler`).
    Its :meth:`schedule_stats` and :meth:`history` answer as :class:`FireLog`'s do. Thread-safe; a write is
    a deque append and a few counts under a lock. Records are kept as tuples of their plain fields, which
    the garbage collector stops tracking: many kept records then add nothing to its full passes, which
    stop every thread (kept as FireRecord objects, 60,000 of them made the Scheduler's start lateness p99
    42.6 ms in bench/timing.py case 5; as tuples, 12.2 ms)."""

    def __init__(self, limit: int = 1000) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1_000_000:
            raise ConfigError("record_limit", limit, "use a whole number of records per schedule from 1 to 1000000")
        self.limit = limit
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._recent: dict[int, deque[tuple[int, FireRecord]]] = {}
        self._counts: dict[int, dict[str, int]] = {}
        self._missed: dict[int, int] = {}
        self._last_slot: dict[int, int] = {}

    def write(self, record: FireRecord) -> None:
        sid, status = record.schedule_id, record.status
        with self._lock:
            recent = self._recent.get(sid)
            if recent is None:
                recent = self._recent[sid] = deque(maxlen=self.limit)
                self._counts[sid] = {}
                self._missed[sid] = 0
            recent.append((next(self._order), *_fields(record)))  # a tuple of plain values: untracked
            counts = self._counts[sid]
            counts[status] = counts.get(status, 0) + 1
            if status == "missed":
                self._missed[sid] += missed_slots(record.detail)
            elif status in FIRED and record.slot_ms > self._last_slot.get(sid, -1):
                self._last_slot[sid] = record.slot_ms

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True

    def close(self) -> None:
        pass

    def records(self, schedule_id: int | None = None) -> list[FireRecord]:
        """The records kept (of one schedule, or of all), oldest first."""
        with self._lock:
            kept = [list(self._recent.get(schedule_id, ()))] if schedule_id is not None else \
                [list(d) for d in self._recent.values()]
        return [_record(item) for item in sorted((i for part in kept for i in part), key=lambda i: i[0])]

    def fired(self, schedule_id: int | None = None) -> list[FireRecord]:
        """Kept records of fires that ran (not skipped, missed or invalid)."""
        return [r for r in self.records(schedule_id) if r.status in FIRED]

    def history(self, schedule_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` kept records as :meth:`FireLog.history` gives them, oldest first."""
        return [r.as_dict() for r in self.records(schedule_id)[-limit:]] if limit > 0 else []

    def schedule_stats(self, recent: int = 1000) -> dict[int, dict[str, Any]]:
        """Per schedule, what :meth:`FireLog.schedule_stats` gives: counts of every record written, the
        slots missed, the last fire, and the lateness of the last ``recent`` records kept."""
        with self._lock:
            kept = {sid: [_record(item) for item in d] for sid, d in self._recent.items()}
            counts = {sid: dict(c) for sid, c in self._counts.items()}
            missed, last = dict(self._missed), dict(self._last_slot)
        out: dict[int, dict[str, Any]] = {}
        for sid, records in kept.items():
            tail = records[-recent:]
            out[sid] = {
                "counts": counts[sid], "missed_slots": missed[sid], "last_slot_ms": last.get(sid),
                "lateness": summarize([r.lateness_ms for r in tail if r.lateness_ms is not None]),
                "start_lateness": summarize([r.start_lateness_ms for r in tail if r.start_lateness_ms is not None]),
            }
        return out


def _fields(record: FireRecord) -> tuple[Any, ...]:
    """FireRecord's fields in order (:func:`_record` makes it again), its detail flattened to a tuple of
    keys and values: the collector keeps tracking a tuple that holds a dict, and stops tracking one of plain
    values (and tuples of them) a pass or two after it was made."""
    r = record
    detail = tuple(itertools.chain.from_iterable(r.detail.items())) if r.detail else ()
    return (r.schedule_id, r.name, r.slot_ms, r.seq, r.status, r.dispatched_ms, r.lateness_ms, r.started_ms,
            r.ended_ms, r.latency_ms, r.http_status, r.bytes, r.error, detail, r.token, r.start_lateness_ms)


def _record(kept: tuple[Any, ...]) -> FireRecord:
    """The record of a kept tuple (its first item is the order of writing)."""
    record = FireRecord(*kept[1:])
    flat = kept[14]
    record.detail = dict(zip(flat[::2], flat[1::2]))
    return record


MAX_DETAIL_CHARS = 8000  # a record's detail is kept to this size (a target's output cannot bloat the file)


def _row(record: FireRecord) -> tuple[Any, ...]:
    """The record as a row of ``fires``; its error and detail texts without any known secret (redacted
    before the detail is cut, so that no part of a secret survives the cut)."""
    error = redact(record.error) if isinstance(record.error, str) else record.error
    detail = None
    if record.detail:
        detail = redact(json.dumps(record.detail, separators=(",", ":"), default=repr))
        if len(detail) > MAX_DETAIL_CHARS:
            detail = json.dumps({"truncated": len(detail), "start": detail[: MAX_DETAIL_CHARS - 100]})
    r = record  # the columns of RECORD_COLUMNS, in order (a test checks they match)
    return (r.schedule_id, r.name, r.slot_ms, r.seq, r.status, r.dispatched_ms, r.lateness_ms, r.started_ms,
            r.ended_ms, r.latency_ms, r.http_status, r.bytes, error, detail, r.token, r.start_lateness_ms)


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

    def _write_now(self, records: list[FireRecord]) -> None:
        self._commit(records, busy_ms=PACED_BUSY_MS)  # a file locked by another writer: the thread's

    def _commit(self, records: list[FireRecord], busy_ms: int | None = None) -> None:
        rows = [_row(r) for r in records]
        with self._db.transaction(immediate=True, busy_ms=busy_ms) as conn:
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


def missed_slots(detail: Any) -> int:
    """How many slots a ``missed`` record counts (its detail's ``missed``; 1 when it does not say)."""
    try:
        data = json.loads(detail) if isinstance(detail, str) else detail
    except ValueError:
        data = None
    count = data.get("missed") if isinstance(data, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 1


_NUMBERS = ("schedule_id", "slot_ms", "seq", "dispatched_ms", "lateness_ms", "started_ms", "ended_ms", "latency_ms",
            "http_status", "bytes", "token", "start_lateness_ms")
_TEXTS = ("name", "status", "error")
_LAST_INSTANT_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last instant a date shows


def read_records(conn: Connection, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Fire records (``sql`` selects :data:`RECORD_COLUMNS`) as dicts, each value of its column's kind.
    A row written by hand (text in a number column, an instant no date can show, a detail that is no JSON
    object, text that is no UTF-8) reads with that value as None, its text repaired, its detail as
    ``{"unreadable": ...}``: one bad row must not hide the others, nor stop status, history, export or
    report."""
    rows = []
    for values in fetch_all(conn, sql, tuple(args)):
        row = dict(zip(RECORD_COLUMNS, values))
        for key in _NUMBERS:
            value = row[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                row[key] = None
        if row["slot_ms"] is not None and not 0 <= row["slot_ms"] <= _LAST_INSTANT_MS:
            row["slot_ms"] = None
        for key in _TEXTS:
            value = row[key]
            if isinstance(value, bytes):
                row[key] = value.decode("utf-8", "replace")
            elif value is not None and not isinstance(value, str):
                row[key] = str(value)
        row["detail"] = _detail(row["detail"])
        rows.append(row)
    return rows


def _detail(stored: Any) -> dict[str, Any]:
    text = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else stored
    if not text:
        return {}
    try:
        found = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        found = None
    return found if isinstance(found, dict) else {"unreadable": str(text)[:200]}


class FireLog:
    """Reads fire records back: history, per-schedule statistics."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool | None = None) -> None:
        self._db = Database(path, read_only=read_only)

    def history(self, schedule_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, args = ("WHERE schedule_id = ?", [schedule_id]) if schedule_id is not None else ("", [])
        with self._db.transaction() as conn:
            rows = read_records(conn, f"SELECT {', '.join(RECORD_COLUMNS)} FROM fires {where} ORDER BY id DESC "
                                      "LIMIT ?", [*args, limit])
        return rows[::-1]

    def schedule_stats(self, recent: int = 1000) -> dict[int, dict[str, Any]]:
        """Per schedule: counts of records by status, ``missed_slots`` (the slots the ``missed`` records
        count: one record may stand for many), the last fire, and over the last ``recent`` fires the start
        lateness (``start_lateness``: the target's start minus the slot) and the hand-over lateness
        (``lateness``)."""
        out: dict[int, dict[str, Any]] = {}
        with self._db.transaction() as conn:  # one snapshot of the table
            for sid, status, count in conn.execute(
                    "SELECT schedule_id, status, COUNT(*) FROM fires GROUP BY schedule_id, status"):
                entry = out.setdefault(sid, {"counts": {}, "last_slot_ms": None, "lateness": summarize(()),
                                             "start_lateness": summarize(()), "missed_slots": 0})
                entry["counts"][status] = count
            for sid, detail in conn.execute("SELECT schedule_id, detail FROM fires WHERE status = 'missed'"):
                out[sid]["missed_slots"] += missed_slots(detail)
            for sid, entry in out.items():
                found = conn.execute(  # numbers only: a row written by hand may hold anything
                    "SELECT MAX(slot_ms) FROM fires WHERE schedule_id = ? AND status IN ('ok','error','timeout') "
                    f"AND typeof(slot_ms) = 'integer' AND slot_ms BETWEEN 0 AND {_LAST_INSTANT_MS}", (sid,)).fetchone()
                entry["last_slot_ms"] = found[0] if found else None
                for key, column in (("lateness", "lateness_ms"), ("start_lateness", "start_lateness_ms")):
                    values = [r[0] for r in conn.execute(
                        f"SELECT {column} FROM fires WHERE schedule_id = ? AND typeof({column}) IN ('integer', "
                        f"'real') AND abs({column}) < 1e15 ORDER BY id DESC LIMIT ?", (sid, recent))]
                    entry[key] = summarize(values)
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
