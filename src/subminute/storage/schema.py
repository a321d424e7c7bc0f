"""The schema of the subminute SQLite file, its version and its migrations: every table in one place.

The version is the file's ``PRAGMA user_version``. A file made by subminute 0.1.0 has version 0 and holds
the 0.1.0 tables its users opened (all of them, or only some: a file named by ``keep.path`` holds just
``bodies``). Opening a file runs, in one ``BEGIN IMMEDIATE`` transaction, every migration above its
version, in order, and stamps the new version (:meth:`subminute.storage.sqlite.Database.__init__`); a
file at the current version is only read. A file of a
newer version (made by a newer subminute) is refused: its tables may mean something this one does not
know.

=======  ==================================================================================================
version  change
=======  ==================================================================================================
0        no version: a file made by subminute 0.1.0 (or a new, empty file)
1        the tables of 0.1.0, created where missing: ``schedules`` (+ ``control_version`` and the triggers
         that bump it), ``lease``, ``handoff``, ``fires``, ``bodies``
2        ``fires.start_lateness_ms``: when the target started, minus the slot (ms)
=======  ==================================================================================================

The tables, at version 2:

* ``schedules``: the control rows; ``control_version``: one counter, bumped by triggers on every change
  to ``schedules`` (a controller polls it with one tiny read).
* ``lease``: the controller lease (owner, fencing token, expiry); ``handoff``: the last hand-off.
* ``fires``: one record per slot (fired, skipped, missed or invalid).
* ``bodies``: kept response bodies (``format: sqlite``).

Standard library only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "check_version", "migrate", "schema_version"]

_NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # Unix time, in seconds, in SQL

# The tables of subminute 0.1.0, exactly as 0.1.0 created them (a 0.1.0 file holds these shapes).
_TABLES_0_1 = (
    f"""CREATE TABLE IF NOT EXISTS schedules (
        id INTEGER PRIMARY KEY, name TEXT, running, waitseconds, plan TEXT, target TEXT, overlap TEXT,
        timeout, offset, grace, updated_at REAL DEFAULT {_NOW})""",
    "CREATE TABLE IF NOT EXISTS control_version (k INTEGER PRIMARY KEY CHECK (k = 1), v INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO control_version (k, v) VALUES (1, 0)",
    """CREATE TRIGGER IF NOT EXISTS schedules_ins AFTER INSERT ON schedules
        BEGIN UPDATE control_version SET v = v + 1 WHERE k = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS schedules_upd AFTER UPDATE ON schedules
        BEGIN UPDATE control_version SET v = v + 1 WHERE k = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS schedules_del AFTER DELETE ON schedules
        BEGIN UPDATE control_version SET v = v + 1 WHERE k = 1; END""",
    """CREATE TABLE IF NOT EXISTS lease (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, token INTEGER NOT NULL, expires_at REAL NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS handoff (name TEXT PRIMARY KEY, data TEXT NOT NULL, saved_at REAL)",
    """CREATE TABLE IF NOT EXISTS fires (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id INTEGER NOT NULL, name TEXT, slot_ms INTEGER NOT NULL, seq INTEGER, status TEXT NOT NULL,
        dispatched_ms REAL, lateness_ms REAL, started_ms REAL, ended_ms REAL, latency_ms REAL,
        http_status INTEGER, bytes INTEGER, error TEXT, detail TEXT, token INTEGER)""",
    "CREATE INDEX IF NOT EXISTS fires_by_schedule ON fires (schedule_id, id)",
    """CREATE TABLE IF NOT EXISTS bodies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id INTEGER NOT NULL, name TEXT, slot_ms INTEGER NOT NULL, seq INTEGER,
        digest TEXT NOT NULL, size INTEGER NOT NULL, truncated INTEGER NOT NULL DEFAULT 0,
        content_type TEXT, kept_ms REAL NOT NULL, body BLOB)""",
    "CREATE INDEX IF NOT EXISTS bodies_by_schedule ON bodies (schedule_id, id)",
)


def _to_1_tables_of_0_1(conn: sqlite3.Connection) -> None:
    for statement in _TABLES_0_1:
        conn.execute(statement)


def _to_2_start_lateness(conn: sqlite3.Connection) -> None:
    _add_column(conn, "fires", "start_lateness_ms", "REAL")


def _add_column(conn: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    if column not in [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


#: (version it brings the file to, what it does, the step), in order
MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite3.Connection], None]], ...] = (
    (1, "the tables of 0.1.0, created where missing", _to_1_tables_of_0_1),
    (2, "fires.start_lateness_ms", _to_2_start_lateness),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(version: int, path: Path) -> None:
    """Refuse a file made by a newer subminute."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the SQLite file {path} has schema version {version}, made by a newer subminute (this one knows "
            f"versions up to {SCHEMA_VERSION}); upgrade subminute (pip install -U subminute) to use it, or name "
            "another file with --db or $SUBMINUTE_DB")


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Run, inside the caller's write transaction (``BEGIN IMMEDIATE``), every migration above the file's
    version, and stamp :data:`SCHEMA_VERSION`. The version is read here, inside the transaction: another
    connection may have migrated the file meanwhile. Return the version the file had."""
    found = schema_version(conn)
    check_version(found, path)
    for version, _what, step in MIGRATIONS:
        if version > found:
            step(conn)
    if found != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    return found
