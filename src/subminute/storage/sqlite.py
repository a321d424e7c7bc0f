"""The one owner of the SQLite file: where it is, how it is opened (0600, WAL)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import StoreError

__all__ = ["connect", "default_db_path"]


def default_db_path() -> Path:
    """``$SUBMINUTE_DB``, else ``$XDG_DATA_HOME/subminute/subminute.db`` (``~/.local/share/...``)."""
    if os.environ.get("SUBMINUTE_DB"):
        return Path(os.environ["SUBMINUTE_DB"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "subminute" / "subminute.db"


def connect(path: str | os.PathLike[str], *, timeout_s: float = 5.0) -> sqlite3.Connection:
    """Open (creating with mode 0600 if needed) a SQLite file in WAL mode."""
    path = Path(path)
    if str(path) != ":memory:" and not path.exists():
        # Create it user-only, and only when it is missing: closing any descriptor of a file drops all
        # of this process's POSIX locks on it, so opening and closing an existing file that another
        # connection here uses would let a third process delete the WAL under us (commits then lost).
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass  # created meanwhile by another process
    try:
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the SQLite file {path}: {exc}; check the path and its permissions") from exc
    return conn
