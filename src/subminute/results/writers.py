"""Where kept bodies go, for one runtime: :class:`BodyWriters`.

A runtime (``subminute run``, a test, an embedding program) makes one :class:`BodyWriters` naming its
database file, hands it to the targets it builds (``TargetEnv(bodies=...)``), and closes it when it
stops. It holds one queue and writer thread per destination (a SQLite file or a JSON Lines directory),
shared by every keeper of that runtime writing there; nothing is global, so two runtimes in one process
keep their bodies apart. Threads start and files open only when the first body for a destination is
offered. Standard library only.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..errors import ConfigError, StoreError
from ..storage.sqlite import default_db_path
from .batching import BatchWriter
from .bodies import BodyItem, BodyStore, JsonlBodies, SqliteBodies

__all__ = ["BodyWriter", "BodyWriters"]


class BodyWriter(BatchWriter[BodyItem]):
    """One queue and writer thread for one destination."""

    def __init__(self, store: BodyStore) -> None:
        self.store = store
        super().__init__("kept bodies", store.path, max_batch=500)

    def _write_batch(self, items: list[BodyItem]) -> None:
        self.store.add(items)

    def _close_resources(self) -> None:
        self.store.close()


class BodyWriters:
    """The body writers of one runtime: ``default_path`` is where ``format: sqlite`` keeps bodies when
    the spec names no path (the runtime's database file; unset, ``$SUBMINUTE_DB`` or the default file,
    looked up when first needed)."""

    def __init__(self, default_path: str | os.PathLike[str] | None = None) -> None:
        self._default_path = Path(default_path) if default_path is not None else None
        self._writers: dict[tuple[str, str], BodyWriter] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def default_path(self) -> Path:
        return self._default_path if self._default_path is not None else default_db_path()

    def writer(self, fmt: str, path: str | os.PathLike[str] | None = None) -> BodyWriter:
        """The writer of a destination, made (store opened, thread started) on first use."""
        if path is None:
            if fmt == "jsonl":
                raise ConfigError("target.keep.path", None, "name a directory for the jsonl format")
            path = self.default_path
        place = Path(path)
        key = (fmt, str(place.resolve()))
        with self._lock:
            if self._closed:
                raise StoreError(f"kept bodies for {place}: this runtime's body writers are closed (it stopped)")
            writer = self._writers.get(key)
            if writer is None:
                store: BodyStore = SqliteBodies(place) if fmt == "sqlite" else JsonlBodies(place)
                writer = self._writers[key] = BodyWriter(store)
            return writer

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued body is written; return whether it happened in time."""
        with self._lock:
            writers = list(self._writers.values())
        return all(w.flush(timeout_s) for w in writers)

    def close(self) -> None:
        """Write what is queued, stop the threads and close the stores. Idempotent."""
        with self._lock:
            self._closed = True
            writers = list(self._writers.values())
            self._writers.clear()
        for writer in writers:
            writer.close()
