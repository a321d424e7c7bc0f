"""The embedded default control store: one SQLite file.

Tables: ``schedules`` (the control rows), ``control_version`` (a counter bumped by triggers on every
change to ``schedules``, so a controller can poll for changes with one tiny read), ``lease`` and
``handoff``; the schema and its migrations belong to :mod:`subminute.storage.schema`, connections and
transactions to :class:`subminute.storage.sqlite.Database`. The fire records of
:mod:`subminute.results.sinks` live in the same file by default. The file is created readable by its
owner only, in WAL mode, so readers never block the writer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..storage.sqlite import Connection, Database, default_db_path, fetch_all
from .base import MAX_TOKEN, ControlStore, Lease, check_unique_name, missing, parse_lease
from .handoff import Handoff, Position
from .rows import MAX_ID, ROW_FIELDS, apply_changes, normalize_row, plain, schedule_from_row

__all__ = ["SqliteStore"]

ACQUIRE_BUSY_MS = 250  # how long taking the lease waits for another writer (renewals wait the full timeout)


_COLUMNS = ", ".join(f'"{c}"' for c in ROW_FIELDS)
_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _read_row(conn: Connection, schedule_id: int) -> dict[str, Any] | None:
    found = fetch_all(conn, f"SELECT {_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,))
    return {k: v for k, v in zip(ROW_FIELDS, found[0]) if v is not None} if found else None


def _read_rows(conn: Connection) -> list[dict[str, Any]]:
    found = fetch_all(conn, f"SELECT {_COLUMNS} FROM schedules ORDER BY id")
    return [{k: v for k, v in zip(ROW_FIELDS, r) if v is not None} for r in found]


def _other_names(conn: Connection, schedule_id: int) -> list[dict[str, Any]]:
    found = fetch_all(conn, "SELECT id, name FROM schedules WHERE id != ?", (schedule_id,))
    return [{"id": i, "name": n} for i, n in found]


def _read_lease(conn: Connection) -> Lease | None:
    """The lease row, parsed. A missing row where a hand-off was saved (a controller held the lease) was
    deleted by hand while its holder may still be firing: it reads as a damaged lease, which a controller
    takes over only after seeing it for a whole lease period (by then any holder's renewals have failed),
    and from above every token seen, as a row with an unreadable token."""
    found = fetch_all(conn, "SELECT owner, token, expires_at FROM lease WHERE name = 'controller'")
    if found:
        return parse_lease(*found[0])
    if fetch_all(conn, "SELECT 1 FROM handoff WHERE name = 'controller'"):
        return Lease("", 0, 0.0, damaged="the lease row is missing (deleted by hand?)")
    return None


def _highest_token(conn: Connection) -> int:
    """The highest fencing token this file shows anywhere (its fire records, its hand-off): where a new
    holder's token starts when the lease row's own token is unreadable."""
    found = conn.execute("SELECT MAX(token) FROM fires WHERE typeof(token) = 'integer'").fetchone()
    highest = found[0] if found and isinstance(found[0], int) else 0
    found = fetch_all(conn, "SELECT data FROM handoff WHERE name = 'controller'")
    saved = found[0] if found else None
    try:
        token = json.loads(saved[0]).get("token") if saved else None
    except (TypeError, ValueError, AttributeError):
        token = None
    if isinstance(token, int) and not isinstance(token, bool):
        highest = max(highest, token)
    return highest


RECENT_RECORDS = 200_000  # how far back (in records) positions are looked for in the fire records


def _from_records(conn: Connection, stored: Handoff | None) -> Handoff | None:
    """A hand-off made from the fire records of the newest token, if it is later than ``stored``'s."""
    newest = conn.execute("SELECT id, token FROM fires ORDER BY id DESC LIMIT 1").fetchone()
    if newest is None or not isinstance(newest[1], int) or isinstance(newest[1], bool) or not 1 <= newest[1] <= MAX_TOKEN:
        return None
    last_id, token = newest
    if stored is not None and stored.token is not None and stored.token >= token:
        return None
    schedules = {row["id"]: schedule_from_row(row) for row in _read_rows(conn)}
    positions: dict[int, Position] = {}
    at_ms = 0
    for sid, slot, seq, when in conn.execute(
            "SELECT schedule_id, MAX(slot_ms), MAX(seq), MAX(COALESCE(ended_ms, started_ms, dispatched_ms, slot_ms)) "
            "FROM fires WHERE id > ? AND token = ? AND status IN ('ok', 'error', 'timeout', 'skipped', 'missed') "
            "AND typeof(schedule_id) = 'integer' AND typeof(slot_ms) = 'integer' AND typeof(seq) = 'integer' "
            "GROUP BY schedule_id", (last_id - RECENT_RECORDS, token)):
        schedule = schedules.get(sid)  # its next slot on its timing (gone or refused: just after the last)
        positions[sid] = Position(schedule.timetable.next_slot(slot) if schedule and not schedule.error else slot + 1,
                                  seq)
        at_ms = max(at_ms, int(when) if isinstance(when, (int, float)) else slot)
    if not positions:
        return None
    return Handoff(token=token, at_ms=at_ms, positions=positions)


def _write_row(conn: Connection, row: Mapping[str, Any]) -> None:
    values = [row.get(k) for k in ROW_FIELDS]
    values = [int(v) if isinstance(v, bool) else v for v in values]
    values = [json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v for v in values]
    marks = ", ".join("?" for _ in ROW_FIELDS)
    conn.execute(f"INSERT OR REPLACE INTO schedules ({_COLUMNS}, updated_at) VALUES ({marks}, {_NOW})",
                 values)


class SqliteStore(ControlStore):
    """Control rows, lease and hand-off in one SQLite file. Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout_s: float = 5.0,
                 read_only: bool | None = None) -> None:
        """``read_only``: open the file for reading only (see :class:`Database`); writes then fail."""
        self.path = Path(path) if path is not None else default_db_path()
        self._db = Database(self.path, timeout_s=timeout_s, read_only=read_only)
        self._tx = self._db.transaction

    # -- control rows --------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return _read_rows(conn)

    def version(self) -> Any:
        return self._db.read_one("SELECT v FROM control_version WHERE k = 1")

    def put(self, row: Mapping[str, Any]) -> None:
        clean = normalize_row(row)
        with self._tx(immediate=True) as conn:  # the name is checked and the row written in one transaction
            check_unique_name(clean, _other_names(conn, clean["id"]))
            _write_row(conn, clean)

    def add(self, row: Mapping[str, Any], choose_id: Callable[[list[dict[str, Any]], int], int]) -> int:
        """Write ``row`` under the id ``choose_id(rows, next_id)`` picks from the rows as they are in the same
        write transaction (so that two programs adding at once cannot both take the next free id, the second
        replacing the first's row); return that id. ``choose_id`` may refuse by raising. ``next_id`` is above
        every id the file shows, its fire records' included: the id of a removed schedule that left records
        is not given again (they would count as the new schedule's)."""
        with self._tx(immediate=True) as conn:
            rows = _read_rows(conn)
            found = conn.execute(f"SELECT MAX(schedule_id) FROM fires WHERE typeof(schedule_id) = 'integer' "
                                 f"AND schedule_id BETWEEN 1 AND {MAX_ID - 1}").fetchone()
            used = [int(plain(r["id"])) for r in rows if isinstance(plain(r.get("id")), int)]
            sid = choose_id(rows, max([*used, found[0] if found and found[0] else 0, 0]) + 1)
            clean = normalize_row({**row, "id": sid})
            check_unique_name(clean, _other_names(conn, sid))
            _write_row(conn, clean)
        return sid

    def put_raw(self, row: Mapping[str, Any]) -> None:
        """Store a row unchecked, as a hand edit of the table would (for tests of bad rows)."""
        with self._tx(immediate=True) as conn:
            _write_row(conn, row)

    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        with self._tx(immediate=True) as conn:  # read, change and write in one transaction
            row = _read_row(conn, schedule_id)
            if row is None:
                raise missing(schedule_id)
            clean = apply_changes(row, changes, schedule_id)
            if "name" in changes:  # a row that already shares its name (written by hand) may still change
                check_unique_name(clean, _other_names(conn, schedule_id))
            _write_row(conn, clean)

    def delete(self, schedule_id: int) -> None:
        with self._tx(immediate=True) as conn:
            gone = conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount
        if not gone:
            raise missing(schedule_id)

    def get(self, schedule_id: int) -> dict[str, Any]:
        with self._tx() as conn:
            row = _read_row(conn, schedule_id)
        if row is None:
            raise missing(schedule_id)
        return row

    # -- lease and hand-off ----------------------------------------------------------------------------
    def acquire_lease(self, owner: str, ttl_s: float, now: float, token: int | None = None) -> Lease | None:
        # A taker does not wait on a locked file: if it cannot write now, the holder cannot renew
        # either, and a taker still waiting when the lock goes would win the race against the holder's
        # renewal. Failing fast (a store fault) restarts the standby's watch of the lease instead.
        with self._tx(immediate=True, busy_ms=ACQUIRE_BUSY_MS) as conn:
            cur = _read_lease(conn)  # a damaged row reads as expired
            if cur is not None and not (cur.expires_at <= now or cur.owner == owner or cur.token == token):
                return None
            last = cur.token if cur is not None else 0
            if cur is not None and cur.damaged and not cur.token:
                last = _highest_token(conn)  # its token is unreadable: continue above every token seen
            new = Lease(owner, min(last + 1, MAX_TOKEN), now + ttl_s)  # a token written by hand may be huge
            conn.execute(
                "INSERT OR REPLACE INTO lease (name, owner, token, expires_at) VALUES ('controller', ?, ?, ?)",
                (new.owner, new.token, new.expires_at),
            )
            return new

    def renew_lease(self, lease: Lease, ttl_s: float, now: float, handoff: Handoff | None = None) -> Lease | None:
        with self._tx(immediate=True) as conn:
            done = conn.execute(  # its own row: the token and the owner (a token edited by hand may repeat)
                "UPDATE lease SET expires_at = ? WHERE name = 'controller' AND token = ? AND owner = ?",
                (now + ttl_s, lease.token, lease.owner),
            ).rowcount
            if done and handoff is not None:
                conn.execute("INSERT OR REPLACE INTO handoff (name, data, saved_at) VALUES ('controller', ?, "
                             "(julianday('now') - 2440587.5) * 86400.0)", (handoff.to_json(),))
        return Lease(lease.owner, lease.token, now + ttl_s) if done else None

    def release_lease(self, lease: Lease, now: float) -> None:
        with self._tx(immediate=True) as conn:
            conn.execute("UPDATE lease SET expires_at = ? WHERE name = 'controller' AND token = ? AND owner = ?",
                         (now, lease.token, lease.owner))

    def read_lease(self) -> Lease | None:
        """The lease; a row that does not parse comes back expired, saying why (see :func:`parse_lease`)."""
        with self._tx() as conn:
            return _read_lease(conn)

    def save_handoff(self, handoff: Handoff) -> None:
        """Saved only while the hand-off's lease token is still the lease's (fencing: a holder that has
        not yet noticed it lost the lease cannot overwrite its successor's hand-off)."""
        token = handoff.token
        with self._tx(immediate=True) as conn:
            if token is not None:
                found = fetch_all(conn, "SELECT token FROM lease WHERE name = 'controller'")
                if found and found[0][0] != token:
                    return
            conn.execute(
                "INSERT OR REPLACE INTO handoff (name, data, saved_at) VALUES ('controller', ?, (julianday('now') - 2440587.5) * 86400.0)",
                (handoff.to_json(),),
            )

    def load_handoff(self) -> Handoff | None:
        """The saved hand-off (one edited by hand into nonsense: none); or, when the newest fire records
        carry a later token than it, positions made from those records: a holder that died before it
        first saved its positions (its first renewal) left them there, and its successor continues the
        numbering and counts the gap from them instead of going back to an older hand-off."""
        with self._tx() as conn:
            found = fetch_all(conn, "SELECT data FROM handoff WHERE name = 'controller'")
            stored = Handoff.from_raw(found[0][0]) if found else None
            return _from_records(conn, stored) or stored

    def close(self) -> None:
        self._db.close()
