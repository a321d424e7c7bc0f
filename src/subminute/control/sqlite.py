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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..storage.sqlite import Connection, Database, default_db_path
from .base import ControlStore, Lease, missing
from .rows import ROW_FIELDS, apply_changes, normalize_row

__all__ = ["SqliteStore"]

ACQUIRE_BUSY_MS = 250  # how long taking the lease waits for another writer (renewals wait the full timeout)


_COLUMNS = ", ".join(f'"{c}"' for c in ROW_FIELDS)
_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _read_row(conn: Connection, schedule_id: int) -> dict[str, Any] | None:
    found = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
    return {k: v for k, v in zip(ROW_FIELDS, found) if v is not None} if found is not None else None


def _write_row(conn: Connection, row: Mapping[str, Any]) -> None:
    values = [row.get(k) for k in ROW_FIELDS]
    values = [int(v) if isinstance(v, bool) else v for v in values]
    values = [json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v for v in values]
    marks = ", ".join("?" for _ in ROW_FIELDS)
    conn.execute(f"INSERT OR REPLACE INTO schedules ({_COLUMNS}, updated_at) VALUES ({marks}, {_NOW})",
                 values)


class SqliteStore(ControlStore):
    """Control rows, lease and hand-off in one SQLite file. Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout_s: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self._db = Database(self.path, timeout_s=timeout_s)
        self._tx = self._db.transaction

    # -- control rows --------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            cursor = conn.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY id")
            found = cursor.fetchall()
        return [{k: v for k, v in zip(ROW_FIELDS, r) if v is not None} for r in found]

    def version(self) -> Any:
        with self._tx() as conn:
            return conn.execute("SELECT v FROM control_version WHERE k = 1").fetchone()[0]

    def put(self, row: Mapping[str, Any]) -> None:
        self.put_raw(normalize_row(row))

    def put_raw(self, row: Mapping[str, Any]) -> None:
        """Store a row unchecked, as a hand edit of the table would (for tests of bad rows)."""
        with self._tx(immediate=True) as conn:
            _write_row(conn, row)

    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        with self._tx(immediate=True) as conn:  # read, change and write in one transaction
            row = _read_row(conn, schedule_id)
            if row is None:
                raise missing(schedule_id)
            _write_row(conn, apply_changes(row, changes, schedule_id))

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
            cur = conn.execute("SELECT owner, token, expires_at FROM lease WHERE name = 'controller'").fetchone()
            if cur is not None and not (cur[2] <= now or cur[0] == owner or cur[1] == token):
                return None
            new = Lease(owner, (cur[1] if cur else 0) + 1, now + ttl_s)
            conn.execute(
                "INSERT OR REPLACE INTO lease (name, owner, token, expires_at) VALUES ('controller', ?, ?, ?)",
                (new.owner, new.token, new.expires_at),
            )
            return new

    def renew_lease(self, lease: Lease, ttl_s: float, now: float) -> Lease | None:
        with self._tx(immediate=True) as conn:
            done = conn.execute(
                "UPDATE lease SET expires_at = ? WHERE name = 'controller' AND token = ?",
                (now + ttl_s, lease.token),
            ).rowcount
        return Lease(lease.owner, lease.token, now + ttl_s) if done else None

    def release_lease(self, lease: Lease, now: float) -> None:
        with self._tx(immediate=True) as conn:
            conn.execute("UPDATE lease SET expires_at = ? WHERE name = 'controller' AND token = ?",
                         (now, lease.token))

    def read_lease(self) -> Lease | None:
        with self._tx() as conn:
            cur = conn.execute("SELECT owner, token, expires_at FROM lease WHERE name = 'controller'").fetchone()
        return Lease(*cur) if cur else None

    def save_handoff(self, handoff: Mapping[str, Any]) -> None:
        """Saved only while the hand-off's lease token is still the lease's (fencing: a holder that has
        not yet noticed it lost the lease cannot overwrite its successor's hand-off)."""
        token = handoff.get("token")
        with self._tx(immediate=True) as conn:
            if token is not None:
                cur = conn.execute("SELECT token FROM lease WHERE name = 'controller'").fetchone()
                if cur is not None and cur[0] != token:
                    return
            conn.execute(
                "INSERT OR REPLACE INTO handoff (name, data, saved_at) VALUES ('controller', ?, (julianday('now') - 2440587.5) * 86400.0)",
                (json.dumps(handoff, separators=(",", ":")),),
            )

    def load_handoff(self) -> dict[str, Any] | None:
        with self._tx() as conn:
            found = conn.execute("SELECT data FROM handoff WHERE name = 'controller'").fetchone()
        try:
            data = json.loads(found[0]) if found else None
        except (TypeError, ValueError):  # edited by hand: no hand-off rather than a stuck standby
            return None
        return data if isinstance(data, dict) else None

    def close(self) -> None:
        self._db.close()
