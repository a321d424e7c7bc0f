"""An in-process control store, for tests and for embedding subminute in a program."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import ControlStore, Lease, check_unique_name, missing
from .handoff import Handoff
from .rows import apply_changes, normalize_row, plain

__all__ = ["MemoryStore"]


@dataclass
class MemoryStore(ControlStore):
    """An in-process store for tests and embedding. Thread-safe."""

    initial: Iterable[Mapping[str, Any]] = ()
    _rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    _version: int = 0
    _lease: Lease | None = None
    _handoff: str | None = None
    _highest: int = 0  # the highest id added: not given again once removed

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        for row in self.initial:
            self.put(row)

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self._rows[k]) for k in sorted(self._rows)]

    def version(self) -> Any:
        return self._version

    def put(self, row: Mapping[str, Any]) -> None:
        clean = normalize_row(row)
        with self._lock:
            check_unique_name(clean, (r for sid, r in self._rows.items() if sid != clean["id"]))
            self._rows[clean["id"]] = clean
            self._highest = max(self._highest, clean["id"])
            self._version += 1

    def add(self, row: Mapping[str, Any], choose_id: Callable[[list[dict[str, Any]], int], int]) -> int:
        """Write ``row`` under the id ``choose_id(rows, next_id)`` picks, atomically (as
        :meth:`SqliteStore.add`); ``next_id`` is above every id this store has held."""
        with self._lock:
            used = [i for i in self._rows if isinstance(i, int)]
            sid = choose_id([dict(self._rows[k]) for k in sorted(self._rows)], max([*used, self._highest]) + 1)
            clean = normalize_row({**row, "id": sid})
            check_unique_name(clean, (r for i, r in self._rows.items() if i != sid))
            self._rows[sid] = clean
            self._highest = max(self._highest, sid)
            self._version += 1
        return sid

    def put_raw(self, row: Mapping[str, Any]) -> None:
        """Store a row unchecked, as a hand edit of the table would."""
        with self._lock:
            self._rows[plain(row["id"])] = dict(row)
            self._version += 1

    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        with self._lock:
            if schedule_id not in self._rows:
                raise missing(schedule_id)
            clean = apply_changes(self._rows[schedule_id], changes, schedule_id)
            if "name" in changes:  # a row that already shares its name (written by hand) may still change
                check_unique_name(clean, (r for sid, r in self._rows.items() if sid != schedule_id))
            self._rows[schedule_id] = clean
            self._version += 1

    def delete(self, schedule_id: int) -> None:
        with self._lock:
            if schedule_id not in self._rows:
                raise missing(schedule_id)
            del self._rows[schedule_id]
            self._version += 1

    def acquire_lease(self, owner: str, ttl_s: float, now: float, token: int | None = None) -> Lease | None:
        with self._lock:
            cur = self._lease
            if cur is None or cur.expires_at <= now or cur.owner == owner or cur.token == token:
                self._lease = Lease(owner, (cur.token if cur else 0) + 1, now + ttl_s)
                return self._lease
            return None

    def renew_lease(self, lease: Lease, ttl_s: float, now: float, handoff: Handoff | None = None) -> Lease | None:
        with self._lock:
            if self._lease is None or (self._lease.token, self._lease.owner) != (lease.token, lease.owner):
                return None
            self._lease = Lease(lease.owner, lease.token, now + ttl_s)
            if handoff is not None:
                self._handoff = handoff.to_json()
            return self._lease

    def release_lease(self, lease: Lease, now: float) -> None:
        with self._lock:
            if self._lease is not None and (self._lease.token, self._lease.owner) == (lease.token, lease.owner):
                self._lease = Lease(lease.owner, lease.token, now)

    def read_lease(self) -> Lease | None:
        return self._lease

    def save_handoff(self, handoff: Handoff) -> None:
        self._handoff = handoff.to_json()  # kept as the other stores keep it

    def load_handoff(self) -> Handoff | None:
        return Handoff.from_raw(self._handoff) if self._handoff is not None else None
