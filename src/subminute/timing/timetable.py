"""The timetable protocol: what every kind of schedule timing (a fixed cadence, an interval plan) answers, so
that callers never ask which kind they hold. Standard library only."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Timetable"]


class Timetable(Protocol):
    """When a schedule fires. Slots are wall-clock instants in epoch milliseconds."""

    @property
    def kind(self) -> str:
        """``"every"`` or ``"plan"``: for display and stored forms only, never to pick behaviour."""

    @property
    def offset_ms(self) -> int:
        """The shift of every grid."""

    @property
    def base_ms(self) -> int:
        """The interval outside any window: a row's ``waitseconds``."""

    def next_slot(self, after_ms: int) -> int:
        """The first slot strictly after ``after_ms``."""

    def count_and_last(self, after_ms: int, upto_ms: int) -> tuple[int, int | None]:
        """How many slots lie in ``(after_ms, upto_ms]``, and the last of them."""

    def interval_at(self, t_ms: int) -> int:
        """The interval in force at ``t_ms``."""

    def describe(self) -> str:
        """The whole timing as text that parses back: ``every 2s`` or the plan's text form."""

    def short(self, t_ms: int) -> str:
        """The interval at ``t_ms`` for a table cell: ``2s``, or ``2s (plan)``."""

    def key(self) -> tuple[Any, ...]:
        """What decides the slots: when it changes, the next slot is computed afresh."""

    def row_fields(self) -> dict[str, Any]:
        """The control-row fields that store this timing (``waitseconds``, ``plan``)."""
