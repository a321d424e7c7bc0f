"""The controller: the one loop that fires schedules, locally and in the AWS controller Lambda.

It sleeps on the monotonic clock to the earliest slot of all schedules, hands every due fire to the
dispatcher without blocking, computes each next slot from the previous one (no drift) and goes back to
sleep. Reading the control store, keeping the lease and saving the hand-off happen in a watcher thread,
off the path from wake-up to fire; a changed snapshot wakes the loop so that new timing applies at once.
The two threads share only plain attributes: the watcher never touches the loop's schedules or heap.

Misfires (docs/guarantees.md states them with the tests that show them):

* steady state: when the loop finds that several slots of a schedule have passed (a suspended process,
  a forward clock step, an overloaded machine), it fires only the most recent of them, if it is at most
  ``grace`` late, and counts the others as missed: no burst.
* start from a hand-off or a takeover: slots at most ``grace`` late are caught up, each fired once in
  order, so that a budget hand-off loses nothing; older ones are counted as missed.
* a backward step of the wall clock re-anchors each schedule to the new wall clock, so it never waits
  longer than one interval; the slot instants of the stepped-back stretch are fired again (new ``seq``).

``seq`` numbers the slots of a schedule (fired, skipped or missed), continued across hand-offs; after a
takeover it skips the numbers the dead predecessor may have used.

Lease: the controller fires only while it holds the store's lease (a fencing token), and only until
``0.8 * lease_ttl_s`` after its last renewal, by both its monotonic clock and the lease's own expiry
instant. A standby takes an expired lease over only after seeing it unchanged, through uninterrupted
successful reads, for ``lease_ttl_s`` of its own monotonic time (a clock step or a store outage cannot
make it take over a live holder), and never fires a slot at or before the old lease's expiry: the dead
holder fired no slot after it. A lease released by a clean stop is taken at once.

Store faults: while the store fails (errors or a call hanging), the holder keeps firing on the last
known state for ``store_outage_grace_s``, retries with backoff, logs once per incident, and recovers by
itself; a lease found taken over stops it at once.

``run`` ends when stopped, when its time budget runs out, or (``stop_when_idle``) when no schedule runs,
and returns a hand-off from which a successor continues. Standard library only: this module is bundled
into Lambda code.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .control.base import ControlStore, Lease, Schedule, Snapshot, plain
from .dispatch.base import Dispatcher, Fire, fire_record
from .errors import ConfigError
from .results.records import FireRecord, bounded
from .timing.clock import Clock
from .timing.stats import RecentWindow

__all__ = ["HANDOFF_VERSION", "Controller", "ControllerOptions", "Track"]

log = logging.getLogger("subminute.controller")
HANDOFF_VERSION = 1
VALID_FRACTION = 0.8  # fire until this fraction of the lease period after a renewal
RENEW_FRACTION = 0.25  # renew this often (a fraction of the lease period)
STEP_S = 0.1  # a change of the wall-minus-monotonic offset larger than this is a clock step
MAX_BACKOFF_S = 1.0  # the watcher retries a failing store at most this far apart
SLOW_CALL_S = 0.5  # a store call blocked this long means the store was in trouble
_INF = float("inf")


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ControllerOptions:
    owner: str = field(default_factory=default_owner)
    budget_s: float | None = None  # run at most this long (monotonic), then hand off
    stop_when_idle: bool = False  # end when no schedule is running (the Lambda controller does)
    refresh_s: float = 0.25  # how often the watcher checks the store for changes
    lease_ttl_s: float = 5.0  # a dead holder's lease is taken over about this long after its last renewal
    use_lease: bool = True
    store_outage_grace_s: float = 30.0  # keep firing on the last known state while the store fails
    handoff_every_s: float = 1.0  # how often the hand-off is saved in the store while running
    threaded: bool = True  # False: the loop does the watcher's work itself (deterministic fake-clock tests)


@dataclass
class Track:
    """What the controller knows of one running schedule."""

    schedule: Schedule
    next_slot: int
    seq: int = 0
    last_slot: int | None = None
    fired: int = 0
    missed: int = 0
    skipped: int = 0
    lateness: RecentWindow = field(default_factory=lambda: RecentWindow(1000))
    catch_up: bool = False  # fire each late slot within grace (after a start), not only the latest


@dataclass
class _Start:
    """How the schedules start in a new tenure of the lease (made by the watcher, applied by the loop)."""

    tenure: int
    reset: bool = True  # forget the schedules of an earlier tenure
    carry: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # id -> (next slot, seq)
    carry_at_ms: int | None = None  # when the carried hand-off was made: its maker fired nothing after
    fence_ms: int | None = None  # fire no slot at or before this (a dead predecessor's lease expiry)
    count_missed: bool = False  # slots from the carried next slot to the fence are reported missed
    alive_until_ms: int | None = None  # the predecessor may have fired slots up to about this instant


class Controller:
    def __init__(
        self,
        store: ControlStore,
        dispatcher: Dispatcher,
        clock: Clock,
        options: ControllerOptions | None = None,
        *,
        sink: Any = None,
        handoff: Mapping[str, Any] | None = None,
        on_record: Callable[[FireRecord], None] | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        self.options = options or ControllerOptions()
        self.sink = sink
        self.on_record = on_record
        self.tracks: dict[int, Track] = {}
        self.invalid: dict[int, str] = {}  # schedule id -> error of a disabled row
        self.lease: Lease | None = None
        self.state = "starting"  # starting | standby | firing | stopped
        self.stats = {"fired": 0, "missed": 0, "skipped": 0, "takeovers": 0, "store_errors": 0,
                      "clock_steps": 0}
        self._given = _clean_handoff(handoff)
        self._heap: list[tuple[int, int]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._end = _INF
        self._submit_many: Callable[[list[Fire]], None] | None = getattr(dispatcher, "submit_many", None)
        # loop-owned
        self._carry: dict[int, tuple[int | None, int]] = {}
        self._carry_at_ms: int | None = None
        self._start: _Start | None = None
        self._fence_ms: int | None = None
        self._applied_tenure = 0
        self._loaded = False
        self._offset = 0.0  # wall minus monotonic, as last seen by the loop
        # shared: written by the watcher (under _plock for _pending), read by the loop
        self._plock = threading.Lock()
        self._pending: tuple[Snapshot, _Start | None] | None = None
        self._tenure = 0
        self._valid_mono = -_INF
        self._valid_wall = -_INF
        self._outage_since: float | None = None  # monotonic start of a store incident
        self._call_since: float | None = None  # monotonic start of the store call under way
        # watcher-owned
        self._version: Any = object()
        self._unsent: _Start | None = None
        self._renew_at = -_INF
        self._last_token: int | None = None
        self._seen: tuple[str, int, float] | None = None
        self._seen_since = 0.0
        self._faults = 0
        self._trouble_at = -_INF  # monotonic end of the last failed or blocked store call
        self._last_handoff_save = -_INF
        self._next_watch = -_INF
        self._watch_offset: float | None = None
        self._watcher: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current step; safe from any thread or a signal handler."""
        self._stop.set()
        self._wake.set()

    def run(self) -> dict[str, Any]:
        """Fire until stopped, the budget ends or (``stop_when_idle``) nothing runs; return the hand-off."""
        opts, clock = self.options, self.clock
        start = clock.monotonic()
        self._end = start + opts.budget_s if opts.budget_s is not None else _INF
        self._offset = clock.time() - start
        if not opts.use_lease:
            carry = self._given["carry"] if self._given else {}
            self._unsent = _Start(tenure=0, reset=False, carry=carry)
        try:
            self._watch_once()
            if opts.threaded:
                self._watcher = threading.Thread(target=self._watch_loop, name="subminute-watcher", daemon=True)
                self._watcher.start()
            self._loop()
        finally:
            self._stop.set()
            self._wake.set()
            if self._watcher is not None:
                self._watcher.join(timeout=10)
            self.state = "stopped"
        handoff = self.handoff()
        handoff["final"] = True
        self._finish(handoff)
        return handoff

    def handoff(self) -> dict[str, Any]:
        """Where each schedule is: its next slot and slot number. Safe to call from another thread."""
        tracks = list(self.tracks.items())
        lease = self.lease
        return {
            "version": HANDOFF_VERSION,
            "owner": self.options.owner,
            "token": lease.token if lease is not None else None,
            "at_ms": int(self.clock.time() * 1000),
            "schedules": {str(sid): {"next": t.next_slot, "seq": t.seq} for sid, t in tracks},
            "stats": dict(self.stats),
            "role": "holder" if lease is not None or not self.options.use_lease else "standby",
            "final": False,
            "released": False,
            "save_every_ms": round(self.options.handoff_every_s * 1000),
        }

    def status_rows(self) -> list[dict[str, Any]]:
        """A consistent-enough view for a live display (read from another thread)."""
        rows = []
        for sid, track in list(self.tracks.items()):
            s = track.lateness.summary()
            rows.append({
                "id": sid, "name": track.schedule.name, "timetable": track.schedule.timetable,
                "next_slot_ms": track.next_slot, "last_slot_ms": track.last_slot, "fired": track.fired,
                "missed": track.missed, "skipped": track.skipped, "p50_ms": s.p50, "p99_ms": s.p99,
                "max_ms": s.max,
            })
        return rows

    # -- the loop ------------------------------------------------------------------------------------------
    def _handoff_to_successor(self) -> bool:
        return self.options.budget_s is not None and self.clock.monotonic() >= self._end - 0.001

    def _loop(self) -> None:
        clock, heap, opts = self.clock, self._heap, self.options
        threaded, use_lease, idle_ends = opts.threaded, opts.use_lease, opts.stop_when_idle
        while not self._stop.is_set():
            if self._pending is not None:
                with self._plock:
                    pending, self._pending = self._pending, None
                if pending is not None:
                    self._apply(*pending)
            mono = clock.monotonic()
            if not threaded and mono >= self._next_watch:
                self._watch_once()
                continue
            if idle_ends and self._loaded and not self.tracks and self._pending is None:
                return
            now = clock.time()
            if use_lease and not self._may_fire(mono, now):
                if mono >= self._end:
                    return
                nap = min(self._end - mono, opts.refresh_s)
                self._sleep(nap if threaded else min(nap, max(self._next_watch - mono, 0)))
                continue
            while heap and self._stale(heap[0]):
                heapq.heappop(heap)
            now_ms = now * 1000
            wait_s = (heap[0][0] - now_ms) / 1000 if heap else opts.refresh_s
            if wait_s > 0:
                offset = now - mono
                if offset < self._offset - STEP_S:
                    step, self._offset = self._offset - offset, offset
                    self._clock_went_back(int(now_ms), step)
                    continue
                self._offset = offset
            if mono + max(wait_s, 0) >= self._end:  # the next slot belongs to the successor
                if self._end - mono > 0:
                    self._sleep(self._end - mono)
                    continue
                return
            if wait_s > 0:
                if not threaded:
                    wait_s = min(wait_s, max(self._next_watch - mono, 0))
                self._sleep(wait_s)
                continue
            self._fire_due(int(now_ms))

    def _may_fire(self, mono: float, wall: float) -> bool:
        if self.lease is None or self._applied_tenure != self._tenure:
            return False
        if mono < self._valid_mono and wall < self._valid_wall:
            return True
        # the store is failing (or a call hangs): keep firing on what we know, for a bounded time
        since = self._outage_since
        if since is None:
            since = self._call_since
            if since is not None and mono - since < 1.0:
                since = None
        return since is not None and mono - since < self.options.store_outage_grace_s

    def _clock_went_back(self, now_ms: int, step_s: float) -> None:
        """A schedule whose next slot is now more than two intervals away continues on its grid from the
        new wall clock, so it waits at most one interval; the slot instants of the stepped-back stretch
        then come again (documented). A step shorter than an interval repeats no slot."""
        log.warning("the wall clock went back by %.1f s; schedules continue from the new time", step_s)
        self.stats["clock_steps"] += 1
        for sid, track in self.tracks.items():
            timetable = track.schedule.timetable
            slot = timetable.next_slot(now_ms)
            if track.next_slot - slot > timetable.interval_at(slot):
                track.next_slot = slot
                track.last_slot = None
                heapq.heappush(self._heap, (slot, sid))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.wait(self._wake, seconds)
        self._wake.clear()

    def _stale(self, entry: tuple[int, int]) -> bool:
        track = self.tracks.get(entry[1])
        return track is None or track.next_slot != entry[0]

    def _fire_due(self, now_ms: int) -> None:
        heap, tracks = self._heap, self.tracks
        lease = self.lease
        token, owner = (lease.token if lease is not None else None), self.options.owner
        batch: list[Fire] = []
        while heap and heap[0][0] <= now_ms:
            slot, sid = heapq.heappop(heap)
            track = tracks.get(sid)
            if track is None or track.next_slot != slot:
                continue
            schedule = track.schedule
            timetable = schedule.timetable
            if track.catch_up:  # one slot at a time; the heap brings the next one back at once
                if now_ms - slot > schedule.grace_ms:
                    count, last = timetable.count_and_last(slot - 1, now_ms - schedule.grace_ms - 1)
                    count, last = (count, last) if last is not None else (1, slot)
                    track.seq += count
                    self._count_missed(track, slot, count, now_ms)
                else:
                    last = slot
                    track.seq += 1
                    self._fire(track, slot, token, owner, batch)
                nxt = timetable.next_slot(last)
                if nxt > now_ms:
                    track.catch_up = False
            else:
                count, last = timetable.count_and_last(slot - 1, now_ms)
                if last is None:  # cannot happen: slot itself is due
                    last, count = slot, 1
                track.seq += count
                if now_ms - last <= schedule.grace_ms:
                    self._fire(track, last, token, owner, batch)
                    count -= 1
                if count:
                    self._count_missed(track, slot, count, now_ms)
                nxt = timetable.next_slot(last)
            track.next_slot = nxt
            heapq.heappush(heap, (nxt, sid))
        if batch:
            self._hand_over(batch)

    def _fire(self, track: Track, slot: int, token: int | None, owner: str, batch: list[Fire]) -> None:
        schedule = track.schedule
        track.last_slot = slot
        fire = Fire(schedule, slot, track.seq, schedule.timetable.interval_at(slot), 0.0, token, owner)
        if schedule.overlap == "skip" and self.dispatcher.in_flight(schedule.id):
            fire.dispatched_ms = self.clock.time() * 1000
            track.skipped += 1
            self.stats["skipped"] += 1
            self._record(fire_record(fire, "skipped", error="the previous fire is still running"))
        else:
            batch.append(fire)
            track.fired += 1

    def _hand_over(self, batch: list[Fire]) -> None:
        """Give the due fires to the dispatcher in one call, stamped with the hand-over time: that is
        the lateness recorded. One call (rather than one per fire) lets worker threads start only once
        the whole batch is out, so they do not compete with the controller for the GIL meanwhile."""
        stamp = self.clock.time() * 1000
        tracks = self.tracks
        for fire in batch:
            fire.dispatched_ms = stamp
            tracks[fire.schedule.id].lateness.add(stamp - fire.slot_ms)
        self.stats["fired"] += len(batch)
        try:
            if self._submit_many is not None:
                self._submit_many(batch)
            else:
                for fire in batch:
                    self.dispatcher.submit(fire)
        except Exception as exc:  # a dispatcher bug must not stop the schedule
            log.exception("the dispatcher failed to take %d fire(s)", len(batch))
            for fire in batch:
                self._record(fire_record(fire, "error", error=bounded(f"dispatch failed: {exc!r}")))

    def _count_missed(self, track: Track, first_slot: int, missed: int, now_ms: int,
                      why: str | None = None, **detail: Any) -> None:
        track.missed += missed
        self.stats["missed"] += missed
        schedule = track.schedule
        self._record(FireRecord(
            schedule.id, schedule.name, first_slot, track.seq, "missed",
            error=why or (f"{missed} slot(s) from {first_slot} passed without a fire (more than "
                          f"{schedule.grace_ms} ms late)"),
            detail={"missed": missed, "first_slot_ms": first_slot, "noticed_ms": now_ms, **detail},
            token=self.lease.token if self.lease else None,
        ))

    def _record(self, record: FireRecord) -> None:
        try:
            if self.sink is not None:
                self.sink.write(record)
            if self.on_record is not None:
                self.on_record(record)
        except Exception:
            log.exception("could not record a %s record of schedule %s", record.status, record.schedule_id)

    # -- applying control state -------------------------------------------------------------------------------
    def _apply(self, snapshot: Snapshot, start: _Start | None) -> None:
        if start is not None:  # a new tenure of the lease
            if start.reset:
                self.tracks.clear()
                self._heap.clear()
            self._start = start
            self._carry = start.carry
            self._carry_at_ms = start.carry_at_ms
            self._fence_ms = start.fence_ms
            self._applied_tenure = start.tenure
        self._loaded = True
        now_ms = int(self.clock.time() * 1000)
        seen = set()
        for schedule in snapshot.schedules:
            seen.add(schedule.id)
            error = schedule.error
            if error is None and schedule.running:
                try:
                    self.dispatcher.prepare(schedule)
                except ConfigError as exc:
                    error = str(exc.located(f"schedule {schedule.id}"))
                except Exception as exc:  # noqa: BLE001 - a target that cannot be built disables its schedule
                    error = f"schedule {schedule.id}: target: {bounded(repr(exc), 300)}"
            if error is not None:
                if self.invalid.get(schedule.id) != error:
                    log.error("%s; this schedule is disabled until its row is fixed", error)
                    self._record(FireRecord(schedule.id, schedule.name, now_ms, 0, "invalid", error=error))
                self.invalid[schedule.id] = error
                self.tracks.pop(schedule.id, None)
                continue
            self.invalid.pop(schedule.id, None)
            if not schedule.running:
                self.tracks.pop(schedule.id, None)
                continue
            track = self.tracks.get(schedule.id)
            if track is None:
                track = self._new_track(schedule, now_ms)
                self.tracks[schedule.id] = track
            elif track.schedule.timing_key() != schedule.timing_key():
                # new timing from now on: no burst, no gap; a slot already due is not dropped
                track.schedule = schedule
                after = min(now_ms, track.next_slot - 1)
                if track.last_slot is not None:
                    after = max(after, track.last_slot)
                track.next_slot = schedule.timetable.next_slot(after)
            else:
                track.schedule = schedule
                continue
            heapq.heappush(self._heap, (track.next_slot, schedule.id))
        for sid in [s for s in self.tracks if s not in seen]:
            del self.tracks[sid]
        for sid in [s for s in self.invalid if s not in seen]:
            del self.invalid[sid]
        self._carry = {}  # carried slots apply to the first snapshot of a tenure only

    def _new_track(self, schedule: Schedule, now_ms: int) -> Track:
        """Where a schedule starts: its carried next slot (late slots are then caught up or counted
        missed), never at or before the fence of a dead predecessor's lease, else the next slot."""
        timetable = schedule.timetable
        fence = self._fence_ms
        slot, seq = self._carry.get(schedule.id, (None, 0))
        track = Track(schedule, 0, seq, catch_up=True)
        if slot is not None and fence is not None and slot <= fence:
            count, _ = timetable.count_and_last(slot - 1, fence)
            start = self._start
            if count and start is not None and start.count_missed:
                upto = min(fence, start.alive_until_ms) if start.alive_until_ms is not None else fence
                maybe, _ = timetable.count_and_last(slot - 1, upto)
                track.seq += count
                self._count_missed(
                    track, slot, count, now_ms,
                    why=f"{count} slot(s) from {slot} were lost with the previous controller (up to "
                        f"{maybe} of them may have been fired by it before it died)",
                    possibly_fired=maybe, fence_ms=fence)
            else:
                track.seq += count
            slot = None
        if slot is None:
            slot = timetable.next_slot(fence if fence is not None else now_ms)
        else:
            # the carried slot was computed on the predecessor's timing, which may have changed since:
            # take the first slot of the current timing from when the predecessor stopped firing (its
            # hand-off), never at or before a fence; with unchanged timing that is the carried slot
            after = min(slot, self._carry_at_ms or slot) - 1
            slot = timetable.next_slot(max(after, fence) if fence is not None else after)
        track.next_slot = slot
        return track

    # -- the watcher: store reads, lease, hand-off ----------------------------------------------------------
    def _watch_loop(self) -> None:
        clock = self.clock
        while not self._stop.is_set():
            delay = self._next_watch - clock.monotonic()
            if delay > 0 and clock.wait(self._stop, delay):
                return
            if self._stop.is_set():
                return
            self._watch_once()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._call_since = since = self.clock.monotonic()
        try:
            return fn(*args)
        finally:
            self._call_since = None
            end = self.clock.monotonic()
            if end - since >= SLOW_CALL_S:  # blocked: the store was locked or unreachable meanwhile
                self._trouble_at = end

    def _watch_once(self) -> None:
        opts, clock = self.options, self.clock
        mono, wall = clock.monotonic(), clock.time()
        offset = wall - mono
        previous = self._watch_offset
        stepped = previous is not None and abs(offset - previous) > STEP_S
        self._watch_offset = offset
        if stepped:
            self._wake.set()  # the loop sleeps on the monotonic clock: let it look at the wall clock again
            if previous is not None and offset > previous:  # a backward step is counted by the loop
                self.stats["clock_steps"] += 1
        try:
            if opts.use_lease:
                start = self._keep_lease(mono, wall, renew_now=stepped)
                if start is not None:
                    self._unsent = start
                if self.lease is None:
                    self._tick_ok(mono)
                    return
            version = self._call(self.store.version)
            if self._unsent is not None or version is None or version != self._version:
                snapshot = self._call(self.store.load)
                self._version = snapshot.version
                with self._plock:
                    queued = self._pending
                    start = self._unsent or (queued[1] if queued is not None else None)
                    self._pending = (snapshot, start)
                self._unsent = None
                self._wake.set()
            if (self.lease is not None and self._applied_tenure == self._tenure
                    and mono - self._last_handoff_save >= opts.handoff_every_s):
                self._last_handoff_save = mono
                self._call(self.store.save_handoff, self.handoff())
        except Exception as exc:  # noqa: BLE001 - StoreError, or anything a backend lets through
            self._fault(exc, mono)
            return
        self._tick_ok(mono)

    def _tick_ok(self, mono: float) -> None:
        self._next_watch = mono + self.options.refresh_s
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
        self._next_watch = mono + max(backoff, self.options.refresh_s)

    def _hold(self, lease: Lease, mono: float) -> None:
        ttl = self.options.lease_ttl_s
        self.lease = lease
        self._last_token = lease.token
        self._valid_wall = lease.expires_at - (1 - VALID_FRACTION) * ttl
        self._valid_mono = mono + VALID_FRACTION * ttl
        self._renew_at = mono + RENEW_FRACTION * ttl
        self.state = "firing"

    def _keep_lease(self, mono: float, wall: float, renew_now: bool = False) -> _Start | None:
        """Renew the lease we hold, or see whether we may take it; return how to start if we took it."""
        opts, store = self.options, self.store
        ttl = opts.lease_ttl_s
        lease = self.lease
        if lease is not None:
            if mono < self._renew_at and not renew_now:
                return None
            renewed = self._call(store.renew_lease, lease, ttl, wall)
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
        stored: dict[str, Any] | None = None
        handed = False
        if current is None:
            eligible = True
        elif (given is not None and given["final"] and given["token"] == current.token) \
                or current.token == self._last_token:
            # handed over by a predecessor that stopped firing (its final hand-off), or our own
            eligible = handed = True
        elif current.expires_at > wall:
            eligible = False
        else:
            stored = _clean_handoff(self._call(store.load_handoff))
            released = stored is not None and stored["released"] and stored["token"] == current.token
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
        if current is not None and current.token == self._last_token:
            # our own lease, lapsed and taken again: the schedules go on as they were
            start = _Start(self._tenure + 1, reset=False)
        else:
            if stored is None and current is not None and not handed:
                stored = _clean_handoff(self._call(store.load_handoff))
            start = self._start_from(current, given if handed or current is None else stored, wall)
        self._given = None  # a hand-off given to us is for our first tenure only
        with self._plock:
            self._pending = None
        self._tenure = start.tenure  # before holding: the loop fires nothing until it applies the start
        self._hold(new, mono)
        self._version = object()  # load the rows afresh now that they are ours to fire
        log.info("holding the lease (token %d)", new.token)
        return start

    def _start_from(self, previous: Lease | None, handoff: dict[str, Any] | None, wall: float) -> _Start:
        """Classify a new tenure: fresh store, hand-off, clean restart after a release, or takeover."""
        tenure = self._tenure + 1
        now_ms = int(wall * 1000)
        ttl_ms = round(self.options.lease_ttl_s * 1000)
        if previous is None:  # a new store: start from a given hand-off, if any
            return _Start(tenure, carry=handoff["carry"] if handoff else {},
                          carry_at_ms=handoff["at_ms"] if handoff else None)
        same = handoff is not None and handoff["token"] == previous.token and handoff["final"]
        if same and handoff is not None:
            if handoff["released"] and now_ms - handoff["at_ms"] > ttl_ms:
                # a controller stopped a while ago: a fresh start, numbering continued
                return _Start(tenure, carry=_numbers_only(handoff))
            return _Start(tenure, carry=handoff["carry"], carry_at_ms=handoff["at_ms"])  # continue exactly
        # a takeover: the predecessor fired no slot at or after its lease's expiry ...
        self.stats["takeovers"] += 1
        fence = int(previous.expires_at * 1000)
        alive: int | None = None
        if self.clock.monotonic() - self._trouble_at < self.options.lease_ttl_s + MAX_BACKOFF_S:
            # ... unless the store was in trouble (in WAL mode a locked file still lets us read the
            # lease go stale): the predecessor may be firing on its outage grace until its next renewal
            # attempt, at most a backoff and a tick after the store came back, which is now
            holder_stops_s = MAX_BACKOFF_S + 2 * self.options.refresh_s
            fence = alive = max(fence, int((self.clock.time() + holder_stops_s) * 1000))
        log.warning("taking over the lease from %s (token %d, expired %.1f s ago)", previous.owner,
                    previous.token, wall - previous.expires_at)
        if handoff is not None and handoff["token"] == previous.token:
            if alive is None:
                alive = handoff["at_ms"] + handoff["save_every_ms"] + round(self.options.refresh_s * 1000)
            return _Start(tenure, carry=handoff["carry"], carry_at_ms=handoff["at_ms"], fence_ms=fence,
                          count_missed=True, alive_until_ms=alive)
        # no hand-off of the predecessor: start at the fence; slots after it are caught up or missed
        return _Start(tenure, carry=_numbers_only(handoff), fence_ms=fence)

    def _lose(self, current: Lease | None) -> None:
        log.error("lost the lease (token %s) to %s; standing by",
                  self.lease.token if self.lease else "?", current.owner if current else "nobody")
        self.lease = None
        self._valid_mono = self._valid_wall = -_INF
        self._tenure += 1  # the loop fires nothing more until a new tenure is applied
        self._unsent = None
        with self._plock:
            self._pending = None
        self._seen = None
        self.state = "standby"

    def _finish(self, handoff: dict[str, Any]) -> None:
        """Save the final hand-off; release the lease, or keep it for a budgeted successor."""
        lease, opts = self.lease, self.options
        if not opts.use_lease or lease is None or self._applied_tenure != self._tenure:
            return
        successor = self._handoff_to_successor()
        try:
            # renew once at a budget's end, so that the successor has a whole lease period to arrive
            if successor and self.store.renew_lease(lease, opts.lease_ttl_s, self.clock.time()) is None:
                handoff["token"] = None
                return
            handoff["released"] = not successor
            self.store.save_handoff(handoff)
            if not successor:
                self.store.release_lease(lease, self.clock.time())
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            log.warning("could not save the final hand-off (%s); a standby takes over when the lease "
                        "expires", bounded(str(exc) or repr(exc), 300))


def _numbers_only(handoff: dict[str, Any] | None) -> dict[int, tuple[int | None, int]]:
    """The slot numbers of a hand-off without its next slots: the schedules start afresh."""
    return {sid: (None, seq) for sid, (_, seq) in handoff["carry"].items()} if handoff else {}


def _clean_handoff(raw: Any) -> dict[str, Any] | None:
    """A hand-off from outside (a Step Functions event, the store) checked field by field; ``None`` if
    it is not one. Bad schedule entries are dropped (their schedules start afresh)."""
    if not isinstance(raw, Mapping):
        return None
    schedules = raw.get("schedules")
    token = plain(raw.get("token"))
    at_ms = plain(raw.get("at_ms"))
    every = plain(raw.get("save_every_ms", 1000))
    carry: dict[int, tuple[int | None, int]] = {}
    for key, entry in (schedules.items() if isinstance(schedules, Mapping) else ()):
        try:
            sid = int(key)
        except (TypeError, ValueError):
            continue
        if not isinstance(entry, Mapping):
            continue
        nxt, seq = plain(entry.get("next")), plain(entry.get("seq", 0))
        nxt = nxt if isinstance(nxt, int) and not isinstance(nxt, bool) and nxt > 0 else None
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0
        carry[sid] = (nxt, seq)
    return {
        "token": token if isinstance(token, int) and not isinstance(token, bool) else None,
        "at_ms": at_ms if isinstance(at_ms, (int, float)) and not isinstance(at_ms, bool) else 0,
        "final": raw.get("final") is True,
        "released": raw.get("released") is True,
        "save_every_ms": every if isinstance(every, int) and 0 <= every <= 3_600_000 else 1000,
        "carry": carry,
    }
