"""The one owner of the SQLite file: schema version, migrations from 0.1.0, a newer file refused, the
transaction helper's errors, private directories. Real SQLite files in tmp_path."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from subminute.control.sqlite import SqliteStore
from subminute.errors import StoreError
from subminute.results.bodies import read_bodies
from subminute.results.export import fire_rows
from subminute.results.records import FireRecord
from subminute.results.sinks import FireLog, SqliteSink
from subminute.storage.files import private_dirs
from subminute.storage.schema import MIGRATIONS, SCHEMA_VERSION
from subminute.storage.sqlite import Database, StoreBusyError, StoreValueError

# The schema of subminute 0.1.0, copied from `git show 94d4803:src/subminute/control/sqlite.py`,
# `...:src/subminute/targets/sinks.py` and `...:src/subminute/targets/results.py`. Kept here, not imported:
# it is what files made by 0.1.0 hold, whatever the code becomes.
SCHEMA_0_1_0 = """
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY,
    name TEXT,
    running,
    waitseconds,
    plan TEXT,
    target TEXT,
    overlap TEXT,
    timeout,
    offset,
    grace,
    updated_at REAL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE TABLE IF NOT EXISTS control_version (k INTEGER PRIMARY KEY CHECK (k = 1), v INTEGER NOT NULL);
INSERT OR IGNORE INTO control_version (k, v) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS schedules_ins AFTER INSERT ON schedules
    BEGIN UPDATE control_version SET v = v + 1 WHERE k = 1; END;
CREATE TRIGGER IF NOT EXISTS schedules_upd AFTER UPDATE ON schedules
    BEGIN UPDATE control_version SET v = v + 1 WHERE k = 1; END;
CREATE TRIGGER IF NOT EXISTS schedules_del AFTER DELETE ON schedules
    BEGIN UPDATE control_version SET v = v + 1 WHERE k = 1; END;
CREATE TABLE IF NOT EXISTS lease (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, token INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS handoff (name TEXT PRIMARY KEY, data TEXT NOT NULL, saved_at REAL);

CREATE TABLE IF NOT EXISTS fires (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL, name TEXT, slot_ms INTEGER NOT NULL, seq INTEGER, status TEXT NOT NULL,
    dispatched_ms REAL, lateness_ms REAL, started_ms REAL, ended_ms REAL, latency_ms REAL,
    http_status INTEGER, bytes INTEGER, error TEXT, detail TEXT, token INTEGER
);
CREATE INDEX IF NOT EXISTS fires_by_schedule ON fires (schedule_id, id);

CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL, name TEXT, slot_ms INTEGER NOT NULL, seq INTEGER,
    digest TEXT NOT NULL, size INTEGER NOT NULL, truncated INTEGER NOT NULL DEFAULT 0,
    content_type TEXT, kept_ms REAL NOT NULL, body BLOB
);
CREATE INDEX IF NOT EXISTS bodies_by_schedule ON bodies (schedule_id, id);
"""

SLOT = 1_800_000_000_000


def make_0_1_0_file(path: Path) -> None:
    """A control file as subminute 0.1.0 left it: WAL, user_version 0, a row, a lease, a hand-off, fire
    records and a kept body."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA_0_1_0)
    conn.execute("INSERT INTO schedules (id, name, running, waitseconds, target) VALUES (1, 'feed', 1, 2, ?)",
                 (json.dumps({"type": "http", "url": "http://127.0.0.1:9/x"}),))
    conn.execute("INSERT INTO lease (name, owner, token, expires_at) VALUES ('controller', 'old:1', 7, 123.5)")
    conn.execute("INSERT INTO handoff (name, data, saved_at) VALUES ('controller', ?, 100.0)",
                 (json.dumps({"token": 7, "schedules": {"1": {"next_slot_ms": SLOT, "seq": 41}}}),))
    for seq in (40, 41):
        conn.execute("INSERT INTO fires (schedule_id, name, slot_ms, seq, status, dispatched_ms, lateness_ms,"
                     " http_status, detail, token) VALUES (1, 'feed', ?, ?, 'ok', ?, 0.5, 200, ?, 7)",
                     (SLOT - (42 - seq) * 2000, seq, SLOT - (42 - seq) * 2000 + 0.5, '{"digest":"abc"}'))
    conn.execute("INSERT INTO bodies (schedule_id, name, slot_ms, seq, digest, size, truncated, content_type,"
                 " kept_ms, body) VALUES (1, 'feed', ?, 41, 'd1', 5, 0, 'text/plain', 1.0, ?)",
                 (SLOT - 2000, b"hello"))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_the_versions_are_numbered_in_order() -> None:
    assert [m[0] for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION == 2


def test_a_new_file_gets_the_current_schema_and_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    Database(db).close()
    assert user_version(db) == SCHEMA_VERSION
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = [r[1] for r in conn.execute("PRAGMA table_info(fires)")]
    conn.close()
    assert {"schedules", "control_version", "lease", "handoff", "fires", "bodies"} <= tables
    assert columns[-1] == "start_lateness_ms"


def test_a_0_1_0_file_opens_migrates_and_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    make_0_1_0_file(db)

    store = SqliteStore(db)  # today's code
    assert user_version(db) == SCHEMA_VERSION
    assert store.get(1)["name"] == "feed" and json.loads(store.get(1)["target"])["url"] == "http://127.0.0.1:9/x"
    lease = store.read_lease()
    assert lease is not None and (lease.owner, lease.token, lease.expires_at) == ("old:1", 7, 123.5)
    handoff = store.load_handoff()
    assert handoff is not None and handoff.positions[1].seq == 41
    version = store.version()
    store.update(1, {"waitseconds": 3})  # the triggers still count changes
    assert store.version() == version + 1 and store.get(1)["waitseconds"] == 3
    assert store.acquire_lease("new:2", 5, 200.0) is not None  # expired: taken, the token grows
    assert store.read_lease().token == 8  # type: ignore[union-attr]

    old = FireLog(db).history(1)
    assert [r["seq"] for r in old] == [40, 41] and old[0]["detail"] == {"digest": "abc"}
    assert old[0]["start_lateness_ms"] is None
    sink = SqliteSink(db)
    sink.write(FireRecord(1, "feed", SLOT, 42, "ok", dispatched_ms=SLOT + 0.4, lateness_ms=0.4,
                          started_ms=SLOT + 1.25, start_lateness_ms=1.25, token=8))
    assert sink.flush(5)
    sink.close()
    rows = fire_rows(db, 1, None, None)
    assert [r["seq"] for r in rows] == [40, 41, 42]
    assert rows[-1]["start_lateness_ms"] == 1.25 and rows[0]["start_lateness_ms"] is None
    assert [b["body"] for b in read_bodies(db, 1)] == ["hello"]
    store.close()


def test_the_migration_runs_once_and_only_where_needed(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    make_0_1_0_file(db)
    opened = [Database(db) for _ in range(3)]  # the first migrates; the others only read the version
    for database in opened:
        database.close()
    conn = sqlite3.connect(db)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(fires)")]
    conn.close()
    assert columns.count("start_lateness_ms") == 1


def test_a_part_of_a_0_1_0_file_gets_the_missing_tables(tmp_path: Path) -> None:
    """0.1.0 made tables as their users opened the file: a keep.path file has only ``bodies``."""
    db = tmp_path / "bodies.db"
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA_0_1_0[SCHEMA_0_1_0.index("CREATE TABLE IF NOT EXISTS bodies"):])
    conn.execute("INSERT INTO bodies (schedule_id, slot_ms, digest, size, kept_ms, body) VALUES (3, 1, 'd', 2, 1, X'6869')")
    conn.commit()
    conn.close()
    assert [b["body"] for b in read_bodies(db, 3)] == ["hi"]
    assert user_version(db) == SCHEMA_VERSION
    assert FireLog(db).history() == []


def test_several_openers_at_once_migrate_once(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    make_0_1_0_file(db)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            Database(db).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and user_version(db) == SCHEMA_VERSION


def test_a_file_of_a_newer_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    Database(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 3, made by a newer subminute .* upgrade subminute"):
        SqliteStore(db)
    with pytest.raises(StoreError, match="upgrade subminute"):
        SqliteSink(db)
    assert user_version(db) == SCHEMA_VERSION + 1  # left as it was


def test_transaction_errors_name_the_file_and_roll_back(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    database = Database(db)
    with pytest.raises(StoreValueError, match=f"SQLite file {db}.*UNIQUE"):
        with database.transaction(immediate=True) as conn:
            conn.execute("INSERT INTO lease VALUES ('x', 'a', 1, 1.0)")
            conn.execute("INSERT INTO lease VALUES ('x', 'b', 2, 2.0)")
    with database.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM lease").fetchone()[0] == 0  # rolled back whole
    with pytest.raises(KeyError):
        with database.transaction(immediate=True) as conn:
            conn.execute("INSERT INTO lease VALUES ('y', 'a', 1, 1.0)")
            raise KeyError("not a store error: passed on as it is")
    with database.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM lease").fetchone()[0] == 0

    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusyError, match="locked.*write lock"):
            with database.transaction(immediate=True, busy_ms=50):
                pass
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    with database.transaction(immediate=True) as conn:  # the full busy timeout is back, and the lock free
        conn.execute("INSERT INTO lease VALUES ('z', 'a', 1, 1.0)")
    database.close()


def test_private_dirs_are_0700_at_every_new_level_whatever_the_umask(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    old = os.umask(0)
    try:
        made = private_dirs(shared / "a" / "b" / "c")
        Database(shared / "d" / "e" / "f.db").close()
    finally:
        os.umask(old)
    for path in (shared / "a", shared / "a" / "b", made, shared / "d", shared / "d" / "e"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # an existing directory is left as it is
    assert stat.S_IMODE((shared / "d" / "e" / "f.db").stat().st_mode) == 0o600
