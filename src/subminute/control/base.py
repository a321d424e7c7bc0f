"""The control-store interface: where control rows, the controller's lease and its hand-off live.
Standard library only: bundled into the inline Lambda code."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, NotFoundError
from .handoff import Handoff
from .rows import Schedule, parse_row, plain, schedule_from_row

__all__ = ["ControlStore", "Lease", "Snapshot", "check_unique_name", "missing", "parse_lease"]


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
    damaged: str | None = None  # what is wrong with a stored lease that does not parse (edited by hand)


MAX_TOKEN = 2**53


def parse_lease(owner: Any, token: Any, expires_at: Any) -> Lease:
    """A lease as stored. One that does not parse (a row edited by hand) is no valid lease: it comes back
    expired (``expires_at`` 0, token 0 when the token is unreadable) with ``damaged`` saying what is
    wrong, so that a controller takes it over as it would take an expired one, and status can say so."""
    problems: list[ConfigError] = []
    token, expires_at = plain(token), plain(expires_at)
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= MAX_TOKEN:
        problems.append(ConfigError("lease.token", token, "it must be a whole number (the fencing token)"))
        token = 0
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at):
        problems.append(ConfigError("lease.expires_at", expires_at, "it must be a number of seconds since the epoch"))
        expires_at = 0.0
    if not isinstance(owner, str):
        problems.append(ConfigError("lease.owner", owner, "it must be a text naming the controller"))
        owner = "" if owner is None else str(owner)
    if problems:
        return Lease(owner, token, 0.0, damaged=str(problems[0]))
    return Lease(owner, token, float(expires_at))


def _name_of(row: Mapping[str, Any]) -> str | None:
    """The name a row goes by: its own, else the default name of its id (``default``, ``schedule-N``)."""
    name = plain(row.get("name"))
    if isinstance(name, str) and name:
        return name
    try:
        return parse_row({"id": row.get("id")}).name
    except ConfigError:
        return None


def check_unique_name(row: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> None:
    """Raise :class:`ConfigError` if another row (another id) goes by ``row``'s name. Every store calls it
    inside the transaction of ``put`` and ``update``, so that no two schedules share a name."""
    sid = plain(row.get("id"))
    name = _name_of(row)
    holders = sorted(int(plain(o["id"])) for o in others
                     if isinstance(plain(o.get("id")), int) and plain(o.get("id")) != sid and _name_of(o) == name)
    if holders:
        raise ConfigError("name", name, f"schedule {holders[0]} has that name; give each schedule its own",
                          where=f"schedule {sid}")


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
        """Insert or replace a whole row (checked with :func:`normalize_row` first); refuse a name another
        row goes by (:func:`check_unique_name`, in the write's own transaction where the backend has one)."""

    @abstractmethod
    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        """Change some fields of an existing row, atomically (see :func:`apply_changes`); raise
        :class:`NotFoundError` if there is none. Two concurrent updates of one row lose neither. A change of
        name to one another row goes by is refused (:func:`check_unique_name`)."""

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
    def renew_lease(self, lease: Lease, ttl_s: float, now: float, handoff: Handoff | None = None) -> Lease | None:
        """Extend our lease; ``None`` if it was taken over (its token changed). With ``handoff``, save it
        in the same write (the controller saves its periodic hand-off with each renewal: one write, not
        two)."""

    @abstractmethod
    def release_lease(self, lease: Lease, now: float) -> None:
        """Give the lease up so that a successor may take it at once."""

    @abstractmethod
    def read_lease(self) -> Lease | None:
        """The current lease, whoever holds it."""

    @abstractmethod
    def save_handoff(self, handoff: Handoff) -> None:
        """Keep the last hand-off (next slot of each schedule), for a successor and for status."""

    @abstractmethod
    def load_handoff(self) -> Handoff | None:
        """The last saved hand-off, if any (one that does not parse is none)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""
