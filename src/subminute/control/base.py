"""The control-store interface: where control rows, the controller's lease and its hand-off live.
Standard library only: bundled into the inline Lambda code."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError
from .rows import Schedule, plain, schedule_from_row

__all__ = ["ControlStore", "Lease", "Snapshot", "missing"]


@dataclass(frozen=True)
class Snapshot:
    """Everything a controller needs from the store at one moment."""

    version: Any
    schedules: tuple[Schedule, ...] = ()

    def by_id(self) -> dict[int, Schedule]:
        return {s.id: s for s in self.schedules}


@dataclass(frozen=True)
class Lease:
    """The right to fire, held by one controller. ``token`` grows with every new holder (fencing)."""

    owner: str
    token: int
    expires_at: float  # wall-clock epoch seconds


def missing(schedule_id: int) -> NotFoundError:
    return NotFoundError(f"schedule {schedule_id} does not exist; see 'subminute status' for the ids")


class ControlStore(ABC):
    """Where control rows, the controller's lease and its hand-off live.

    ``load`` may be slow (a network call); the controller calls it from a watcher thread, never on the
    path from a wake-up to a fire. ``version`` is a cheap change token: when it is unchanged since the
    last ``load``, the rows are unchanged too. Backends raise :class:`StoreError` for transient faults.
    """

    # -- control rows --------------------------------------------------------------------------------
    @abstractmethod
    def rows(self) -> list[dict[str, Any]]:
        """Every control row, raw, ordered by id."""

    def version(self) -> Any:
        """A token that changes whenever a row changes; ``None`` if the backend cannot tell cheaply."""
        return None

    def load(self) -> Snapshot:
        version = self.version()
        return Snapshot(version, tuple(schedule_from_row(r) for r in self.rows()))

    @abstractmethod
    def put(self, row: Mapping[str, Any]) -> None:
        """Insert or replace a whole row (checked with :func:`normalize_row` first)."""

    @abstractmethod
    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        """Change some fields of an existing row, atomically (see :func:`apply_changes`); raise
        :class:`NotFoundError` if there is none. Two concurrent updates of one row lose neither."""

    @abstractmethod
    def delete(self, schedule_id: int) -> None:
        """Remove a row; raise :class:`NotFoundError` if there is none."""

    def get(self, schedule_id: int) -> dict[str, Any]:
        for row in self.rows():
            if plain(row.get("id")) == schedule_id:
                return row
        raise missing(schedule_id)

    # -- lease and hand-off ----------------------------------------------------------------------------
    @abstractmethod
    def acquire_lease(self, owner: str, ttl_s: float, now: float, token: int | None = None) -> Lease | None:
        """Take the lease if it is free, expired, already ours, or handed to us (``token`` equals the
        current token, from a hand-off). Return the lease held, or ``None`` if someone else holds it."""

    @abstractmethod
    def renew_lease(self, lease: Lease, ttl_s: float, now: float) -> Lease | None:
        """Extend our lease; ``None`` if it was taken over (its token changed)."""

    @abstractmethod
    def release_lease(self, lease: Lease, now: float) -> None:
        """Give the lease up so that a successor may take it at once."""

    @abstractmethod
    def read_lease(self) -> Lease | None:
        """The current lease, whoever holds it."""

    @abstractmethod
    def save_handoff(self, handoff: Mapping[str, Any]) -> None:
        """Keep the last hand-off (next slot of each schedule), for a successor and for status."""

    @abstractmethod
    def load_handoff(self) -> dict[str, Any] | None:
        """The last saved hand-off, if any."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""
