"""The lease keeper: the controller's one thread that talks to the store.

It owns the lease (take, renew, lose), reads the control rows when they change, builds each changed
schedule's target (so that a bad one disables only its schedule), saves the hand-off now and then, and
tells the firing loop through its :class:`~.mailbox.Mailbox`. The loop asks it one question on its own
thread, :meth:`LeaseKeeper.may_fire`, which reads values only the keeper writes.

It keeps off the firing path: a store call never starts in the last milliseconds before a slot the loop
announced (``quiet``), and the loop never waits for the store.

Lease (docs/guarantees.md): the controller fires only while it holds the lease, and only until
``0.8 × lease_ttl_s`` after its last renewal, by both its monotonic clock and the lease's own expiry. A
standby takes an expired lease over only after seeing it unchanged, through uninterrupted successful
reads, for a whole lease period of its own monotonic time. While the store fails, the holder keeps
firing on the last known state for ``store_outage_grace_s``, retries with backoff and logs once per
incident. Standard library only: bundled into Lambda code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..control.base import ControlStore, Lease, Snapshot
from ..control.handoff import Handoff
from ..control.rows import Schedule
from ..dispatch.base import Dispatcher
from ..results.records import FireRecord, bounded
from ..timing.clock import Clock, read_pair
from .mailbox import Mailbox, Update
from .options import MAX_BACKOFF_S, RENEW_FRACTION, SLOW_CALL_S, STEP_S, VALID_FRACTION, ControllerOptions
from .rows import check_rows
from .starts import Start, start_from

__all__ = ["LeaseKeeper"]

log = logging.getLogger("subminute.controller")
QUIET_BEFORE_S = 0.004  # no store call this close before a slot
QUIET_AFTER_S = 0.004  # nor this soon after it (the fires are starting)
MAX_DEFER_S = 0.05  # a store call waits at most this long for a quiet moment
HUNG_CALL_S = 1.0  # a store call under way this long counts as an outage (may_fire's grace)
PHASE_S = 0.01  # a tick near a slot comes this long after it (the fires have started; see tick_after)
RELOAD_S = 60.0  # the rows are read whole this often whatever the version says (rewound or unbumped by hand)
_INF = float("inf")


def tick_after(mono: float, refresh_s: float, due: float, step: float) -> float:
    """When to tick next: ``refresh_s`` after ``mono`` or, where the slots allow, ``PHASE_S`` after a slot
    in the second half of that wait (the next slot is ``due``, the slots ``step`` apart), so that the
    tick comes as the slot's fires have started: their records then wait for it instead of waking the
    sink's thread. Ticks are at most ``refresh_s`` apart (the bounds on edits and takeovers) and, once in
    step with the slots, at least ``refresh_s / 2``; to get in step with slots ``refresh_s / 2`` or more
    apart, one tick may come sooner."""
    nominal = mono + refresh_s
    if due == _INF:
        return nominal
    at, late = due + PHASE_S, nominal + 1e-6  # (a tick in step lands on nominal, give or take rounding)
    if 0 < step < _INF:
        at += (late - at) // step * step  # the last slot of the grid in this wait (or the one just passed)
    if mono + PHASE_S / 2 < at <= late and (at >= mono + refresh_s / 2 or step >= refresh_s / 2):
        return min(at, nominal)
    return nominal  # slots too close together to be in step with, or none in this wait


class LeaseKeeper:
    def __init__(self, store: ControlStore, dispatcher: Dispatcher, clock: Clock, options: ControllerOptions,
                 mailbox: Mailbox, *, handoff: Handoff | None, record: Callable[[FireRecord], None],
                 positions: Callable[[], Handoff | None], next_due: Callable[[], float],
                 busy_until: Callable[[], float], step: Callable[[], float],
                 pace: Callable[[float | None], None]) -> None:
        self.store, self.dispatcher, self.clock, self.options = store, dispatcher, clock, options
        self.mailbox = mailbox
        self._record = record
        self._positions = positions  # the loop's latest published positions (a hand-off without lease)
        self._next_due = next_due  # the loop's next slot on the monotonic clock (inf: none)
        self._busy_until = busy_until  # until when the last slot's fires are starting
        self._step = step  # how far apart the loop's last slot and its next one are
        self._pace = pace  # writes the fire records that waited for this tick; told when the next one comes
        self.wake = clock.event()  # set to end the wait for the next tick (halt, poke)
        self._halted = self._poked = False
        self.lease: Lease | None = None
        self.tenure = self._faults = 0
        self.state = "starting"  # starting | standby | firing | stopped
        self.invalid: dict[int, str] = {}  # schedule id -> error of a disabled row
        self.stats = {"takeovers": 0, "store_errors": 0, "clock_steps": 0}
        self.asked = 0  # bumped to ask the loop to publish its positions
        self._given = handoff
        self._known: dict[int, Schedule] = {}  # schedules as last posted (reused when unchanged)
        self._valid_mono = self._valid_wall = -_INF
        self._outage_since: float | None = None  # monotonic start of a store incident
        self._call_since: float | None = None  # monotonic start of the store call under way
        self._version: Any = object()
        self._unsent: Start | None = None
        self._last_token: int | None = None
        self._seen: tuple[str, int, float] | None = None
        self._seen_since = 0.0
        self._trouble_at = -_INF  # monotonic end of the last failed or blocked store call
        self._next_tick = self._renew_at = self._loaded_at = -_INF
        self._offset: float | None = None

    # -- asked by the loop, on its thread --------------------------------------------------------------------
    def may_fire(self, mono: float, wall: float, tenure: int) -> bool:
        if self.lease is None or tenure != self.tenure:
            return False
        if mono < self._valid_mono and wall < self._valid_wall:
            return True
        # the store is failing (or a call hangs): keep firing on what we know, for a bounded time
        since = self._outage_since
        if since is None:
            since = self._call_since
            if since is not None and mono - since < HUNG_CALL_S:
                since = None
        return since is not None and mono - since < self.options.store_outage_grace_s

    # -- the thread ------------------------------------------------------------------------------------------
    def run(self) -> None:
        clock = self.clock
        while not self._halted:
            delay = 0.0 if self._poked else self._next_tick - clock.monotonic()
            if delay > 0:
                clock.wait(self.wake, delay)
                self.wake.clear()
                continue
            self._quiet()
            if self._halted:
                return
            self.tick()
            self._pace(self._next_tick - clock.monotonic())  # records of the slot just started, if any

    def halt(self) -> None:
        """End :meth:`run` (from another thread)."""
        self._halted = True
        self.wake.set()

    def poke(self) -> None:
        """Look at the store now rather than at the next tick: the rows were changed in this process."""
        self._poked = True
        self.wake.set()

    def _quiet(self) -> None:
        """Wait (a little) while a slot is about to fire or its fires are starting."""
        clock = self.clock
        limit = clock.monotonic() + MAX_DEFER_S
        while True:
            now = clock.monotonic()
            due, busy = self._next_due(), self._busy_until()
            if due - QUIET_BEFORE_S <= now <= due + QUIET_AFTER_S:
                until = due + QUIET_AFTER_S
            elif now < busy:
                until = busy
            else:
                return
            if now >= limit or self._halted:
                return
            clock.wait(self.wake, min(until, limit) - now)
            self.wake.clear()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._call_since = since = self.clock.monotonic()
        try:
            return fn(*args)
        finally:
            self._call_since = None
            end = self.clock.monotonic()
            if end - since >= SLOW_CALL_S:  # blocked: the store was locked or unreachable meanwhile
                self._trouble_at = end

    def tick(self) -> None:
        """One look at the store: the lease, changed rows, the periodic hand-off."""
        self._poked = False
        clock = self.clock
        mono, wall = read_pair(clock)
        offset = wall - mono
        previous = self._offset
        stepped = previous is not None and abs(offset - previous) > STEP_S
        self._offset = offset
        if stepped:
            self.mailbox.nudge()  # the loop sleeps on the monotonic clock: let it look at the wall clock
            if previous is not None and offset > previous:  # a backward step is counted by the loop
                self.stats["clock_steps"] += 1
        try:
            start = self._keep_lease(mono, wall, renew_now=stepped)
            if start is not None:
                self._unsent = start
            if self.lease is None:
                self._ok(mono)
                return
            version = self._call(self.store.version)
            if self._unsent is not None or version is None or version != self._version \
                    or mono - self._loaded_at >= RELOAD_S:
                snapshot = self._call(self.store.load)
                self._version, self._loaded_at = snapshot.version, mono
                self._post(snapshot, self._unsent)
                self._unsent = None
        except Exception as exc:  # noqa: BLE001 - StoreError, or anything a backend lets through
            self._fault(exc, mono)
            return
        self._ok(mono)

    def _positions_to_save(self, lease: Lease, wall: float) -> Handoff | None:
        """The positions the loop published since the last ask (saved with this renewal), and a new ask
        for the next one (the loop publishes when it next has a moment: no thread is woken for it).
        Stamped with the time of saving: a successor after a crash assumes the dead holder may have fired
        until one renewal period (and a tick) after it."""
        published = self._positions()
        self.asked += 1
        return None if published is None else published.but(token=lease.token, at_ms=int(wall * 1000))

    # -- rows ------------------------------------------------------------------------------------------------
    def _post(self, snapshot: Snapshot, start: Start | None) -> None:
        """Check the rows, build changed targets, and post what runs to the loop."""
        checked = check_rows(snapshot, self._known, self.invalid, self.dispatcher.prepare, self._record,
                             int(self.clock.time() * 1000))
        self._known = checked.known
        self.mailbox.post(Update(self.tenure, start, checked.running, checked.present))

    # -- store health ----------------------------------------------------------------------------------------
    def _ok(self, mono: float) -> None:
        # a holder's renewal starts early enough that, if it hangs, the outage grace covers the lease's end
        latest = max(self._renew_at, self._valid_mono - HUNG_CALL_S - 2 * MAX_DEFER_S) if self.lease else _INF
        self._next_tick = min(tick_after(mono, self.options.refresh_s, self._next_due(), self._step()), latest)
        if self._outage_since is not None:
            log.warning("control store available again after %.1f s (%d failed attempts)",
                        mono - self._outage_since, self._faults)
            self._outage_since = None
        self._faults = 0

    def _fault(self, exc: BaseException, mono: float) -> None:
        self.stats["store_errors"] += 1
        self._faults += 1
        self._trouble_at = mono
        self._seen = None  # a standby's watch of the lease must be uninterrupted
        if self._outage_since is None:
            self._outage_since = mono
            if self.lease is not None:
                doing = f"firing on the last known state for up to {self.options.store_outage_grace_s:g} s"
            else:
                doing = "standing by"
            log.warning("control store unavailable (%s); %s; retrying", bounded(str(exc) or repr(exc), 300), doing)
        backoff = min(self.options.refresh_s * 2 ** min(self._faults - 1, 10), MAX_BACKOFF_S)
        self._next_tick = mono + max(backoff, self.options.refresh_s)

    # -- the lease -------------------------------------------------------------------------------------------
    def _hold(self, lease: Lease, mono: float) -> None:
        ttl = self.options.lease_ttl_s
        lapsed = self.lease is not None and mono >= self._valid_mono
        self.lease = lease
        self._last_token = lease.token
        self._valid_wall = lease.expires_at - (1 - VALID_FRACTION) * ttl
        self._valid_mono = mono + VALID_FRACTION * ttl
        self._renew_at = mono + RENEW_FRACTION * ttl
        self.state = "firing"
        if lapsed:
            self.mailbox.nudge()  # the loop waits for a valid lease again: it has one now

    def _keep_lease(self, mono: float, wall: float, renew_now: bool = False) -> Start | None:
        """Renew the lease we hold, or see whether we may take it; return how to start if we took it."""
        opts, store = self.options, self.store
        ttl = opts.lease_ttl_s
        lease = self.lease
        if lease is not None:
            if mono < self._renew_at and not renew_now:
                return None
            renewed = self._call(store.renew_lease, lease, ttl, wall, self._positions_to_save(lease, wall))
            if renewed is None:
                current = self._call(store.read_lease)
                if current is not None and current.token == lease.token:
                    # still ours, but this store would not extend a lapsed lease: take it again
                    renewed = self._call(store.acquire_lease, opts.owner, ttl, wall, lease.token)
                if renewed is None:
                    self._lose(current)
                    return None
            self._hold(renewed, mono)
            return None
        current = self._call(store.read_lease)
        key = (current.owner, current.token, current.expires_at) if current is not None else None
        if key != self._seen or key is None:
            self._seen, self._seen_since = key, mono
        given = self._given
        stored: Handoff | None = None
        handed = False
        if current is None:
            eligible = True
        elif (given is not None and given.final and given.token == current.token) \
                or current.token == self._last_token:
            # handed over by a predecessor that stopped firing (its final hand-off), or our own
            eligible = handed = True
        elif current.expires_at > wall:
            eligible = False
        else:
            stored = self._call(store.load_handoff)
            released = stored is not None and stored.released and stored.token == current.token
            eligible = released or mono - self._seen_since >= ttl
        if not eligible:
            if self.state != "standby":
                log.warning("another controller (%s, token %d) holds the lease; standing by",
                            current.owner if current else "?", current.token if current else 0)
                self.state = "standby"
            return None
        new = self._call(store.acquire_lease, opts.owner, ttl, wall, current.token if handed and current else None)
        if new is None:
            self.state = "standby"
            return None
        tenure = self.tenure + 1
        if current is not None and current.token == self._last_token:
            start = Start(tenure, reset=False)  # our own lease, lapsed and taken again: go on as we were
        else:
            if stored is None and current is not None and not handed:
                stored = self._call(store.load_handoff)
            start = self._classify(current, given if handed or current is None else stored, wall, tenure)
        self._given = None  # a hand-off given to us is for our first tenure only
        self.tenure = tenure  # before holding: the loop fires nothing until it applies the start
        self._hold(new, mono)
        self._version = object()  # load the rows afresh now that they are ours to fire
        self.asked += 1  # the loop publishes its positions now, so that the first renewal saves some
        log.info("holding the lease (token %d)", new.token)
        return start

    def _classify(self, previous: Lease | None, handoff: Handoff | None, wall: float, tenure: int) -> Start:
        opts, clock = self.options, self.clock
        troubled = None
        if clock.monotonic() - self._trouble_at < opts.lease_ttl_s + MAX_BACKOFF_S:
            # in WAL mode a locked file still lets us read the lease go stale: the predecessor may be
            # firing on its outage grace until its next renewal attempt, at most a backoff and two
            # ticks after the store came back, which is now
            troubled = round((clock.time() + MAX_BACKOFF_S + 2 * opts.refresh_s) * 1000)
        start = start_from(previous, handoff, tenure=tenure, now_ms=int(wall * 1000),
                           ttl_ms=round(opts.lease_ttl_s * 1000), holder_may_fire_until_ms=troubled,
                           refresh_ms=round(opts.refresh_s * 1000))
        if start.takeover and previous is not None:
            self.stats["takeovers"] += 1
            log.warning("taking over %s", f"a damaged lease ({previous.damaged})" if previous.damaged else  # expiry 0
                        f"the lease from {previous.owner} (token {previous.token}, expired "
                        f"{wall - previous.expires_at:.1f} s ago)")
        return start

    def _lose(self, current: Lease | None) -> None:
        log.error("lost the lease (token %s) to %s; standing by",
                  self.lease.token if self.lease else "?", current.owner if current else "nobody")
        self.lease = None
        self._valid_mono = self._valid_wall = -_INF
        self.tenure += 1  # the loop fires nothing more until a new tenure is applied
        self._unsent = None
        self._seen = None
        self.state = "standby"

    def finish(self, handoff: Handoff, *, successor: bool, applied_tenure: int) -> Handoff:
        """Save the final hand-off; release the lease, or keep it for a budgeted successor. Returns the
        hand-off as saved (without a token if the lease is no longer ours)."""
        lease, opts = self.lease, self.options
        if lease is None or applied_tenure != self.tenure:
            return handoff.but(token=None, role="standby")
        try:
            # renew once at a budget's end, so that the successor has a whole lease period to arrive
            if successor and self.store.renew_lease(lease, opts.lease_ttl_s, self.clock.time()) is None:
                return handoff.but(token=None, role="standby")
            handoff = handoff.but(token=lease.token, released=not successor)
            self.store.save_handoff(handoff)
            if not successor:
                self.store.release_lease(lease, self.clock.time())
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            log.warning("could not save the final hand-off (%s); a standby takes over when the lease "
                        "expires", bounded(str(exc) or repr(exc), 300))
        return handoff
