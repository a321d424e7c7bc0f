"""The controller: the one engine that fires schedules, locally and in the AWS controller Lambda.

It is two parts with one owner each, which talk through one mailbox:

* the **firing loop** (:mod:`.loop`, the caller's thread): the schedules' tracks and next slots; it hands
  each slot's fires to the dispatcher just before the slot and never waits for the store;
* the **lease keeper** (:mod:`.keeper`, its own thread): the store, the lease, the rows, the periodic
  hand-off; it posts what changed to the loop's :class:`~.mailbox.Mailbox`. It ticks just after a slot
  where the slots allow, and at each tick the record sink writes the records that waited for it (a fire
  a second then wakes no writer thread: :meth:`~subminute.results.batching.BatchWriter.pace`).

How schedules start from a hand-off or a takeover is :mod:`.starts` (pure functions). ``run`` ends when
stopped, when its time budget runs out, or (``stop_when_idle``) when no schedule runs, and returns a
:class:`~subminute.control.handoff.Handoff` from which a successor continues. Standard library only: this
package is bundled into Lambda code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..control.base import ControlStore, Lease
from ..control.handoff import Handoff
from ..dispatch.base import Dispatcher
from ..results.records import FireRecord
from ..timing.clock import Clock
from .keeper import LeaseKeeper
from .loop import FiringLoop, Track, track_rows
from .mailbox import Mailbox
from .options import ControllerOptions, default_owner

__all__ = ["Controller", "ControllerOptions", "Track", "default_owner"]

_INF = float("inf")


class Controller:
    def __init__(self, store: ControlStore, dispatcher: Dispatcher, clock: Clock,
                 options: ControllerOptions | None = None, *, sink: Any = None,
                 handoff: Handoff | Mapping[str, Any] | None = None,
                 on_record: Callable[[FireRecord], None] | None = None) -> None:
        self.clock = clock
        self.options = opts = options or ControllerOptions()
        self.sink = sink
        self.on_record = on_record
        self.mailbox = Mailbox(clock)
        given = handoff if isinstance(handoff, Handoff) or handoff is None else Handoff.from_raw(handoff)
        self.loop = FiringLoop(dispatcher, clock, opts, self.mailbox, record=self._record,
                               may_fire=lambda mono, wall, tenure: self.keeper.may_fire(mono, wall, tenure),
                               token=self._token, asked=lambda: self.keeper.asked)
        self.keeper = LeaseKeeper(store, dispatcher, clock, opts, self.mailbox, handoff=given, record=self._record,
                                  positions=lambda: self.loop.published, next_due=lambda: self.loop.next_due,
                                  busy_until=lambda: self.loop.busy_until,
                                  step=lambda: self.loop.next_due - self.loop.last_due, pace=self._pace)

    # -- what the keeper and the loop share ----------------------------------------------------------------
    def _token(self) -> int | None:
        lease = self.keeper.lease
        return lease.token if lease is not None else None

    def _record(self, record: FireRecord) -> None:
        try:
            if self.sink is not None:
                self.sink.write(record)
            if self.on_record is not None:
                self.on_record(record)
        except Exception:  # noqa: BLE001 - a broken sink must not stop the schedules
            logging.getLogger("subminute.controller").exception(
                "could not record a %s record of schedule %s", record.status, record.schedule_id)

    def _pace(self, next_in_s: float | None) -> None:
        """The keeper's tick: the sink writes the records that waited for it (a sink with a writer thread
        of its own: :meth:`~subminute.results.batching.BatchWriter.pace`) and learns when the next comes."""
        pace = getattr(self.sink, "pace", None)
        if pace is None:
            return
        try:
            pace(next_in_s)
        except Exception:  # noqa: BLE001 - a broken sink must not stop the lease's renewals
            logging.getLogger("subminute.controller").exception("could not write the fire records")

    # -- public ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the controller to end after the current step; safe from any thread or a signal handler."""
        self.loop.stop()

    def refresh(self) -> None:
        """Read the control rows now, not at the next refresh: for a change made in this process."""
        self.keeper.poke()

    def run(self) -> Handoff:
        """Fire until stopped, the budget ends or (``stop_when_idle``) nothing runs; return the hand-off."""
        clock, opts = self.clock, self.options
        end = clock.monotonic() + opts.budget_s if opts.budget_s is not None else _INF
        thread = None
        try:
            self.keeper.tick()  # take the lease and read the rows before the first slot
            thread = clock.thread(self.keeper.run, "subminute-keeper")
            thread.start()
            reason = self.loop.run(end)
        finally:
            self.keeper.halt()
            if thread is not None:
                clock.join(thread, 10)
            self._pace(None)  # no more ticks: the sink's thread writes what comes now
            self.keeper.state = "stopped"
        handoff = self.loop.handoff().but(final=True, stats=self.stats)
        return self.keeper.finish(handoff, successor=reason == "budget", applied_tenure=self.loop.tenure)

    def handoff(self) -> Handoff:
        """Where each schedule is now (the loop's last published positions, or its state once ended)."""
        return self.loop.published or self.loop.handoff()

    def status_rows(self) -> list[dict[str, Any]]:
        return track_rows(self.loop.tracks)

    @property
    def tracks(self) -> Mapping[int, Track]:
        return self.loop.tracks

    @property
    def stats(self) -> dict[str, int]:
        stats = dict(self.loop.stats)
        for key, value in self.keeper.stats.items():
            stats[key] = stats.get(key, 0) + value
        return stats

    @property
    def state(self) -> str:
        return self.keeper.state

    @property
    def lease(self) -> Lease | None:
        return self.keeper.lease

    @property
    def invalid(self) -> Mapping[int, str]:
        return self.keeper.invalid
