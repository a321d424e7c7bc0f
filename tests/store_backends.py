"""The control-store backends that the shared suite (tests/integration/test_store_suite.py) runs against.

A backend factory takes the pytest request (to reach other fixtures, e.g. a moto server) and a fresh
``tmp_path``, and returns a :class:`Backend`: a way to open handles on one shared storage. Each handle is
what another process would have (its own connection); the memory backend has only one object to share.

To add a backend, write a factory and append it to ``BACKENDS``, with marks if it needs a server::

    def dynamodb(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        endpoint = request.getfixturevalue("moto_server")
        table = ...create the table...
        return Backend("dynamodb", lambda: DynamoStore(table, client=...))

    BACKENDS.append(pytest.param(dynamodb, id="dynamodb", marks=pytest.mark.aws))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from subminute.control.base import ControlStore
from subminute.control.memory import MemoryStore
from subminute.control.sqlite import SqliteStore

__all__ = ["BACKENDS", "Backend", "BackendFactory", "memory", "sqlite"]


@dataclass
class Backend:
    """One storage, and how to open handles on it."""

    name: str
    factory: Callable[[], ControlStore]
    path: Path | None = None  # the file, for a file-backed store (checked for mode 0600)
    separate_handles: bool = True  # False: open() returns the same object every time
    opened: list[ControlStore] = field(default_factory=list)

    def open(self) -> ControlStore:
        """A new handle on the same storage (for SQLite: a new connection to the same file)."""
        store = self.factory()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in reversed(self.opened):
            store.close()
        self.opened.clear()


BackendFactory = Callable[[Any, Path], Backend]


def memory(request: Any, tmp_path: Path) -> Backend:
    shared = MemoryStore()
    return Backend("memory", lambda: shared, separate_handles=False)


def sqlite(request: Any, tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "subminute.db"  # the parent does not exist yet: the store makes it
    return Backend("sqlite", lambda: SqliteStore(path), path=path)


BACKENDS: list[Any] = [
    pytest.param(memory, id="memory"),
    pytest.param(sqlite, id="sqlite"),
]
