"""The controller: the one loop that fires schedules, locally and in the AWS controller Lambda.

It sleeps on the monotonic clock to the earliest slot of all schedules, dispatches every due fire without
blocking, computes each next slot from the previous one (no drift) and goes back to sleep. Reading the
control store, renewing the lease and saving the hand-off happen in a watcher thread, off the path from
wake-up to fire; a changed snapshot wakes the loop so that new timing applies at once.

Misfires: when the loop finds that slots have passed (a suspended process, a forward clock step, a
successor starting late), it fires only the most recent of them if it is at most ``grace`` late, and counts
the others as missed. A backward clock step re-anchors the schedule to the new wall clock, so it never
waits longer than one interval.

The controller fires only while it holds the store's lease (a fencing token). ``run`` ends when stopped,
when its time budget runs out, or (``stop_when_idle``) when no schedule runs, and returns a hand-off: the
next slot and sequence number of each schedule, plus the lease token, from which a successor continues
with no slot missed or fired twice. Standard library only: this module is bundled into Lambda code.
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

from .control.base import ControlStore, Lease, Schedule, Snapshot
from .dispatch.base import Dispatcher, Fire, fire_record
from .errors import ConfigError, StoreError
from .targets.base import FireRecord
from .timing.clock import Clock
from .timing.stats import RecentWindow

__all__ = ["Controller", "ControllerOptions", "Track", "HANDOFF_VERSION"]

log = logging.getLogger("subminute.controller")
HANDOFF_VERSION = 1


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ControllerOptions:
    owner: str = field(default_factory=default_owner)
    budget_s: float | None = None  # run at most this long (monotonic), then hand off
    stop_when_idle: bool = False  # end when no schedule is running (the Lambda controller does)
    refresh_s: float = 0.25  # how often the watcher checks the store for changes
    lease_ttl_s: float = 5.0  # a dead holder's lease is taken over this long after its last renewal
    use_lease: bool = True
    store_outage_grace_s: float = 30.0  # keep firing on the last known state while the store is down
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
        self.stats = {"fired": 0, "missed": 0, "skipped": 0, "takeovers": 0, "store_errors": 0}
        self._handoff = dict(handoff) if handoff else None
        self._heap: list[tuple[int, int]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: Snapshot | None = None
        self._version: Any = object()
        self._lease_valid_until = float("-inf")  # monotonic
        self._lease_renew_at = float("-inf")
        self._loaded = False
        self._store_down_since: float | None = None
        self._last_handoff_save = float("-inf")
        self._next_watch = float("-inf")
        self._watcher: threading.Thread | None = None
        self._fence_ms: int | None = None
        self._submit_many: Callable[[list[Fire]], None] | None = getattr(dispatcher, "submit_many", None)

    # -- public --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current step; safe from any thread or a signal handler."""
        self._stop.set()
        self._wake.set()

    def run(self) -> dict[str, Any]:
        """Fire until stopped, the budget ends or (``stop_when_idle``) nothing runs; return the hand-off."""
        opts = self.options
        start = self.clock.monotonic()
        self._end = start + opts.budget_s if opts.budget_s is not None else float("inf")
        try:
            self._watch_once(first=True)
            if opts.threaded:
                self._watcher = threading.Thread(target=self._watch_loop, name="subminute-watcher", daemon=True)
                self._watcher.start()
            self._loop()
        finally:
            self._stop.set()
            self._wake.set()
            if self._watcher is not None:
                self._watcher.join(timeout=5)
            self.state = "stopped"
        handoff = self.handoff()
        if self.lease is not None:
            self._store_call(self.store.save_handoff, handoff)
            # at the end of a budget the lease is kept: the successor takes it over with the hand-off's
            # token; otherwise it is released so that a standby may take over at once
            if not self._handoff_to_successor():
                self._store_call(self.store.release_lease, self.lease, self.clock.time())
        return handoff

    def handoff(self) -> dict[str, Any]:
        return {
            "version": HANDOFF_VERSION,
            "owner": self.options.owner,
            "token": self.lease.token if self.lease else None,
            "at_ms": int(self.clock.time() * 1000),
            "schedules": {str(sid): {"next": t.next_slot, "seq": t.seq} for sid, t in self.tracks.items()},
            "stats": dict(self.stats),
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
        while not self._stop.is_set():
            if self._pending is not None and (self.lease is not None or not opts.use_lease):
                self._apply(self._pending)
            mono = clock.monotonic()
            if not opts.threaded and mono >= self._next_watch:
                self._watch_once()
                continue
            if opts.stop_when_idle and self._loaded and not self.tracks and self._pending is None:
                return
            if not self._may_fire(mono):
                if mono >= self._end:
                    return
                self._sleep(min(self._end, mono + opts.refresh_s) - mono)
                continue
            while heap and self._stale(heap[0]):
                heapq.heappop(heap)
            now_ms = clock.time() * 1000
            wait_s = (heap[0][0] - now_ms) / 1000 if heap else opts.refresh_s
            if mono + max(wait_s, 0) >= self._end:  # the next slot belongs to the successor
                if self._end - mono > 0:
                    self._sleep(self._end - mono)
                    continue
                return
            if wait_s > 0 and heap and self._reanchor_after_backward_step(int(now_ms)):
                continue
            if wait_s > 0:
                if not opts.threaded:
                    wait_s = min(wait_s, max(self._next_watch - mono, 0))
                self._sleep(wait_s)
                continue
            self._fire_due(int(now_ms))

    def _reanchor_after_backward_step(self, now_ms: int) -> bool:
        """The wall clock went back if the earliest slot is further away than its own interval (plus
        some tolerance). Then every such schedule restarts from the new wall clock, so that a step back
        costs at most one interval; the slot instants of the step repeat (documented)."""
        head_slot, sid = self._heap[0]
        head = self.tracks[sid]
        if head_slot - now_ms <= head.schedule.timetable.interval_at(head_slot) + 500:
            return False
        log.warning("the wall clock went back by about %.1f s; schedules restart from the new time",
                    (head_slot - now_ms - head.schedule.timetable.interval_at(head_slot)) / 1000)
        for track in self.tracks.values():
            timetable = track.schedule.timetable
            if track.next_slot - now_ms > timetable.interval_at(track.next_slot) + 500:
                track.next_slot = timetable.next_slot(now_ms)
                track.last_slot = None
                heapq.heappush(self._heap, (track.next_slot, track.schedule.id))
        self.stats["clock_steps"] = self.stats.get("clock_steps", 0) + 1
        return True

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.wait(self._wake, seconds)
        self._wake.clear()

    def _stale(self, entry: tuple[int, int]) -> bool:
        track = self.tracks.get(entry[1])
        return track is None or track.next_slot != entry[0]

    def _may_fire(self, mono: float) -> bool:
        if not self.options.use_lease:
            return True
        return self.lease is not None and mono < self._lease_valid_until

    def _fire_due(self, now_ms: int) -> None:
        heap, clock, token, owner = self._heap, self.clock, self.lease.token if self.lease else None, self.options.owner
        batch: list[Fire] = []
        while heap and heap[0][0] <= now_ms:
            slot, sid = heapq.heappop(heap)
            track = self.tracks.get(sid)
            if track is None or track.next_slot != slot:
                continue
            schedule = track.schedule
            timetable = schedule.timetable
            count, last = timetable.count_and_last(slot - 1, now_ms)
            if last is None:  # cannot happen: slot itself is due
                last, count = slot, 1
            if now_ms - last <= schedule.grace_ms:
                track.seq += 1
                track.last_slot = last
                interval = timetable.interval_at(last)
                fire = Fire(schedule, last, track.seq, interval, clock.time() * 1000, token, owner)
                if schedule.overlap == "skip" and self.dispatcher.in_flight(sid):
                    track.skipped += 1
                    self.stats["skipped"] += 1
                    self._record(fire_record(fire, "skipped", error="the previous fire is still running"))
                else:
                    batch.append(fire)
                    track.fired += 1
                missed = count - 1
            else:
                missed = count
            if missed:
                self._count_missed(track, slot, missed, now_ms)
            track.next_slot = timetable.next_slot(last)
            heapq.heappush(heap, (track.next_slot, sid))
        if batch:
            self._hand_over(batch)

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
        if self._submit_many is not None:
            self._submit_many(batch)
        else:
            for fire in batch:
                self.dispatcher.submit(fire)

    def _count_missed(self, track: Track, first_slot: int, missed: int, now_ms: int) -> None:
        track.missed += missed
        self.stats["missed"] += missed
        schedule = track.schedule
        self._record(FireRecord(
            schedule.id, schedule.name, first_slot, track.seq, "missed",
            error=f"{missed} slot(s) from {first_slot} passed without a fire (more than "
                  f"{schedule.grace_ms} ms late)",
            detail={"missed": missed, "first_slot_ms": first_slot, "noticed_ms": now_ms},
            token=self.lease.token if self.lease else None,
        ))

    def _record(self, record: FireRecord) -> None:
        if self.sink is not None:
            self.sink.write(record)
        if self.on_record is not None:
            self.on_record(record)

    # -- applying control state -------------------------------------------------------------------------------
    def _apply(self, snapshot: Snapshot) -> None:
        self._pending = None
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
                track = Track(schedule, self._first_slot(schedule, now_ms))
                carried = (self._handoff or {}).get("schedules", {}).get(str(schedule.id))
                if carried:
                    track.seq = int(carried.get("seq", 0))
                self.tracks[schedule.id] = track
            elif track.schedule.timing_key() != schedule.timing_key():
                track.schedule = schedule
                track.next_slot = schedule.timetable.next_slot(max(track.last_slot or 0, now_ms))
            else:
                track.schedule = schedule
                continue
            heapq.heappush(self._heap, (track.next_slot, schedule.id))
        for sid in [s for s in self.tracks if s not in seen]:
            del self.tracks[sid]
        for sid in [s for s in self.invalid if s not in seen]:
            del self.invalid[sid]

    def _first_slot(self, schedule: Schedule, now_ms: int) -> int:
        """Where a schedule starts: the hand-off's next slot if there is one (late slots then go through
        the misfire rule), never before the fence of a dead predecessor's lease, else the next slot."""
        carried = (self._handoff or {}).get("schedules", {}).get(str(schedule.id))
        timetable = schedule.timetable
        if carried and isinstance(carried.get("next"), int):
            slot = carried["next"]
            if self._fence_ms is not None and slot <= self._fence_ms:
                count, _ = timetable.count_and_last(slot - 1, self._fence_ms)
                if count:
                    self._count_missed_new(schedule, slot, count, now_ms)
                slot = timetable.next_slot(self._fence_ms)
            return slot
        return timetable.next_slot(max(now_ms, self._fence_ms or 0))

    def _count_missed_new(self, schedule: Schedule, first_slot: int, missed: int, now_ms: int) -> None:
        self.stats["missed"] += missed
        self._record(FireRecord(
            schedule.id, schedule.name, first_slot, 0, "missed",
            error=f"{missed} slot(s) from {first_slot} were lost with the previous controller",
            detail={"missed": missed, "first_slot_ms": first_slot, "noticed_ms": now_ms},
        ))

    # -- the watcher: store reads, lease, hand-off ----------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            self.clock.wait(self._stop, self.options.refresh_s)
            if self._stop.is_set():
                return
            self._watch_once()

    def _store_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            result = fn(*args)
        except StoreError as exc:
            self.stats["store_errors"] += 1
            if self._store_down_since is None:
                self._store_down_since = self.clock.monotonic()
                log.warning("control store unavailable (%s); firing on the last known state", exc)
            raise
        if self._store_down_since is not None:
            log.warning("control store available again after %.1f s",
                        self.clock.monotonic() - self._store_down_since)
            self._store_down_since = None
        return result

    def _watch_once(self, first: bool = False) -> None:
        opts = self.options
        mono = self.clock.monotonic()
        self._next_watch = mono + opts.refresh_s
        try:
            if opts.use_lease:
                self._keep_lease(mono)
            version = self._store_call(self.store.version)
            if first or version is None or version != self._version:
                snapshot = self._store_call(self.store.load)
                self._version = snapshot.version
                self._pending = snapshot
                self._wake.set()
            if self.lease is not None and mono - self._last_handoff_save >= opts.handoff_every_s:
                self._last_handoff_save = mono
                self._store_call(self.store.save_handoff, self.handoff())
        except StoreError:
            if self.lease is not None and self._store_down_since is not None:
                # the store is down for everyone: keep firing on what we know, for a bounded time
                self._lease_valid_until = max(
                    self._lease_valid_until,
                    min(mono + opts.refresh_s * 2, self._store_down_since + opts.store_outage_grace_s))

    def _keep_lease(self, mono: float) -> None:
        opts, now = self.options, self.clock.time()
        if self.lease is None:
            token = (self._handoff or {}).get("token")
            previous = self._store_call(self.store.read_lease)
            lease = self._store_call(self.store.acquire_lease, opts.owner, opts.lease_ttl_s, now, token)
            if lease is None:
                if self.state != "standby":
                    log.warning("another controller (%s) holds the lease; standing by",
                                previous.owner if previous else "unknown")
                self.state = "standby"
                return
            handed = previous is not None and token is not None and previous.token == token
            if previous is not None and not handed and previous.owner != opts.owner:
                # a takeover: the predecessor may have fired up to its lease expiry, never after
                self._fence_ms = int(previous.expires_at * 1000)
                self.stats["takeovers"] += 1
                if self._handoff is None:
                    self._handoff = self._store_call(self.store.load_handoff)
                log.warning("took over the lease from %s (token %d)", previous.owner, lease.token)
            self.lease = lease
            self.state = "firing"
            self._version = object()  # load the rows afresh now that they are ours to fire
        elif mono >= self._lease_renew_at:
            renewed = self._store_call(self.store.renew_lease, self.lease, opts.lease_ttl_s, now)
            if renewed is None:
                log.error("lost the lease (token %d) to another controller; standing by", self.lease.token)
                self.lease = None
                self._lease_valid_until = float("-inf")
                self.state = "standby"
                self.tracks.clear()
                self._heap.clear()
                self._version = object()
                return
            self.lease = renewed
        else:
            return
        # safe to fire until shortly before the lease could be seen expired by another controller
        self._lease_valid_until = mono + opts.lease_ttl_s * 0.8
        self._lease_renew_at = mono + opts.lease_ttl_s / 4
