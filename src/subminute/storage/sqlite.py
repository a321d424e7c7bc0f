"""The one owner of the SQLite file: where it is, how it is opened (0600, WAL), its schema (brought up to
date on open, see :mod:`.schema`), and the one way to use it: :meth:`Database.transaction`.

Everything in subminute that reads or writes the file (the control rows, lease and hand-off, the fire
records, kept bodies, export) holds a :class:`Database` and works inside its transactions; no other
module imports ``sqlite3``. A transaction's SQLite errors come out as :class:`~subminute.errors.StoreError`
naming the file and what to do: :class:`StoreBusyError` when trying again may work (busy, locked, I/O),
:class:`StoreValueError` when a value cannot be stored (trying again will not help).

A read-only :class:`Database` (``read_only=True``, or any opened inside :func:`read_only_opens`) creates
nothing: not the file, not its directory, not its ``-wal``/``-shm``; it never migrates the schema (a file
older than this subminute's schema is refused with what to run), and it works on a file this user cannot
write. When no ``-wal`` file exists, no connection has the file open and everything is in the main file:
it is read as immutable (nothing to create, no lock to take). Otherwise it is opened ``mode=ro`` and reads
the live WAL through the existing ``-shm``.

Standard library only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import StoreError
from .files import private_dirs
from .schema import SCHEMA_VERSION, check_version, migrate, schema_version

__all__ = ["Connection", "Database", "StoreBusyError", "StoreValueError", "default_db_path", "fetch_all",
           "read_only_opens", "store_error"]

#: the connection type, for annotations (its users never import sqlite3)
Connection = sqlite3.Connection


class StoreBusyError(StoreError):
    """The file is busy, locked or failing now (``sqlite3.OperationalError``): trying again may work."""


class StoreValueError(StoreError):
    """A value that cannot be stored (it cannot be bound, or breaks a constraint): trying again will not help."""


def default_db_path() -> Path:
    """``$SUBMINUTE_DB``, else ``$XDG_DATA_HOME/subminute/subminute.db`` (``~/.local/share/...``)."""
    if os.environ.get("SUBMINUTE_DB"):
        return Path(os.environ["SUBMINUTE_DB"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "subminute" / "subminute.db"


_READ_ONLY: ContextVar[bool] = ContextVar("subminute_read_only_opens", default=False)


@contextmanager
def read_only_opens() -> Iterator[None]:
    """Every :class:`Database` opened inside this block (in this thread or task) is read-only: what a
    read-only command (``status``, ``history``, ``export``, ``report``) wraps itself in, so that nothing
    it calls can create or change the file."""
    reset = _READ_ONLY.set(True)
    try:
        yield
    finally:
        _READ_ONLY.reset(reset)


def _advice(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return ("another connection holds the file's write lock; it is tried again, and if this lasts, find the "
                "process that keeps it (fuser)")
    if "readonly" in text or "read-only" in text:
        return "make the file, its -wal and -shm files and their directory writable by this user"
    if "full" in text:
        return "free some disk space"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return "the file is damaged or not a subminute database; restore a copy or name another file with --db"
    return "check the file, its directory and their permissions"


def store_error(path: Path | str, exc: sqlite3.Error, doing: str = "") -> StoreError:
    """The :class:`StoreError` for a SQLite error on the file ``path``."""
    kind: type[StoreError] = StoreError
    if isinstance(exc, sqlite3.OperationalError):
        kind = StoreBusyError
    elif isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.IntegrityError,
                          sqlite3.DataError)):
        kind = StoreValueError
    what = f" ({doing})" if doing else ""
    return kind(f"SQLite file {path}{what}: {exc}; {_advice(exc)}")


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    """Open (creating with mode 0600 if needed, its missing directories 0700) the SQLite file in WAL
    mode: an autocommit connection usable from any thread."""
    if str(path) != ":memory:" and not path.exists():
        # Create it user-only, and only when it is missing: closing any descriptor of a file drops all
        # of this process's POSIX locks on it, so opening and closing an existing file that another
        # connection here uses would let a third process delete the WAL under us (commits then lost).
        try:
            private_dirs(path.parent)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError as exc:
            if exc.filename != str(path):  # a file where a directory of the path should be
                raise StoreError(f"cannot create the SQLite file {path}: {exc.filename} is a file, not a "
                                 "directory; check the path") from None
            # else: created meanwhile by another process
        except OSError as exc:
            raise StoreError(f"cannot create the SQLite file {path}: {exc.strerror or exc}; check the path and "
                             "its permissions") from None
    try:
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the SQLite file {path}: {exc}; check the path and its permissions") from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(path, exc, "opening it") from exc
    return conn


def _connect_read_only(path: Path, timeout_s: float) -> sqlite3.Connection:
    """Open an existing file for reading only, creating nothing (see the module's doc)."""
    if not path.is_file():
        raise StoreError(f"cannot open the SQLite file {path}: there is no such file; check the path")
    live = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-journal"))
    uri = f"file:{quote(str(path.resolve()))}?" + ("mode=ro" if live else "immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise store_error(path, exc, "opening it to read") from exc
    return conn


def _text_or_bytes(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every row of a query, read in a transaction of :meth:`Database.transaction`. A TEXT value that is no
    valid UTF-8 (written by hand, or by another program) comes back as its bytes, which the caller refuses as
    a bad value of its field, instead of failing the whole read: one bad row must not hide the others."""
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    conn.text_factory = _text_or_bytes  # only now: a Python text factory slows every read down
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = str


class Database:
    """One connection to the SQLite file, its schema up to date, shared safely between threads (one
    transaction at a time). Other connections (other objects, other processes) use the same file meanwhile."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 5.0,
                 read_only: bool | None = None) -> None:
        """``read_only``: open for reading only, creating nothing (default: inside :func:`read_only_opens`)."""
        self.path = Path(path)
        self.read_only = _READ_ONLY.get() if read_only is None else read_only
        self._conn = (_connect_read_only if self.read_only else _connect)(self.path, timeout_s)
        self._busy_ms = round(timeout_s * 1000)
        self._lock = threading.Lock()
        try:
            self._upgrade()
        except BaseException:
            self._conn.close()
            raise

    def _upgrade(self) -> None:
        """Bring the schema to the current version: a read when it is there already (the usual case, so
        opening never waits on another writer's lock), else the migrations in one write transaction."""
        try:
            found = schema_version(self._conn)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, "reading its schema version") from exc
        check_version(found, self.path)
        if found != SCHEMA_VERSION and self.read_only:
            raise StoreError(
                f"the SQLite file {self.path} has schema version {found}, older than this subminute's "
                f"({SCHEMA_VERSION}), and this command only reads it; run a writing command on it once (add, set, "
                "start, stop, remove or run: each brings the file up to date first), then try again")
        if found != SCHEMA_VERSION:
            with self.transaction(immediate=True) as conn:
                migrate(conn, self.path)

    @contextmanager
    def transaction(self, *, immediate: bool = False, busy_ms: int | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN`` (``BEGIN IMMEDIATE`` to take the write lock at once), then ``COMMIT`` when the block
        ends, ``ROLLBACK`` when it raises. SQLite errors become :class:`StoreError`. ``busy_ms`` waits that
        long for another writer's lock instead of the connection's busy timeout (a lease taker must not
        queue behind the holder's renewal)."""
        with self._lock:
            conn = self._conn
            try:
                if busy_ms is not None:
                    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
                try:
                    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                finally:
                    if busy_ms is not None:
                        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise store_error(self.path, exc) from exc
            except BaseException:
                self._rollback()
                raise

    def read_one(self, sql: str) -> Any:
        """The first column of the first row of one query, outside an explicit transaction (one statement
        reads one snapshot by itself): for the keeper's look at the control version every second, where
        ``BEGIN`` and ``COMMIT`` around it were two of its three statements."""
        with self._lock:
            try:
                row = self._conn.execute(sql).fetchone()
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from exc
        return None if row is None else row[0]

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is gone; SQLite rolls back by itself

    def close(self) -> None:
        with self._lock:
            self._conn.close()
