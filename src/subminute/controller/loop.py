"""The firing loop: the one thread that decides which slot fires when.

It owns the schedules' tracks (next slot, slot number, statistics) and a heap of next slots. It sleeps on
the monotonic clock until a few milliseconds before the earliest slot, hands the dispatcher every fire due
at that slot in one :class:`~subminute.dispatch.base.Batch` (the dispatcher's threads sleep to the slot
and start them), and only then computes each next slot from the previous one (no drift). Nothing else
happens on this thread: the store is the keeper's; records are written by the dispatcher's sink (the
quiet ones at the keeper's tick, which comes just after a slot: ``last_due`` and ``next_due`` tell it when).

Misfires (docs/guarantees.md states them with the tests that show them):

* steady state: when several slots of a schedule have passed (a suspended process, a forward clock step,
  an overloaded machine), only the most recent fires, if it is at most ``grace`` late; the others are
  counted as missed: no burst.
* start from a hand-off or a takeover: slots at most ``grace`` late are caught up, each fired once in
  order, so that a budget hand-off loses nothing; older ones are counted as missed.
* a backward step of the wall clock re-anchors each schedule to the new wall clock, so it never waits
  longer than one interval; the slot instants of the stepped-back stretch are fired again (new ``seq``).

``seq`` numbers the slots of a schedule (fired, skipped or missed), continued across stops, hand-offs and
takeovers (skipping the numbers a dead predecessor may have used). Standard library only.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..control.handoff import Handoff, Position
from ..control.rows import Schedule
from ..dispatch.base import Batch, Dispatcher, Fire, StartLog, fire_record
from ..results.records import FireRecord, bounded
from ..timing.clock import Clock, read_pair
from ..timing.slots import iso_utc
from ..timing.stats import RecentWindow
from .mailbox import Mailbox, Update
from .options import RENEW_FRACTION, STEP_S, ControllerOptions
from .starts import Start, place

__all__ = ["FiringLoop", "Track", "track_rows"]

log = logging.getLogger("subminute.controller")
MIN_LEAD_S = 0.002  # hand a batch over this long before its slot ...
LEAD_PER_FIRE_S = 0.00003  # ... plus this much per fire due at that slot (1,000 take ~10 ms to hand over)
MAX_LEAD_S = 0.05
_MAX_COUNTED = round((MAX_LEAD_S - MIN_LEAD_S) / LEAD_PER_FIRE_S)
ANSWER_BEFORE_S = 0.005  # publish positions no later than this before a hand-over ...
ANSWER_WITHIN_S = 1.0  # ... unless asked this long ago
MIN_SLEEP_S = 0.00005  # a shorter wait is no wait: the clocks cannot wake more precisely
STARTS_S = 0.002  # after its slot, a batch's fires take about this long to start ...
START_COST_S = 0.00001  # ... plus this much per fire
_INF = float("inf")


@dataclass
class Track:
    """What the loop knows of one running schedule."""

    schedule: Schedule
    next_slot: int
    seq: int = 0
    last_slot: int | None = None
    fired: int = 0
    missed: int = 0
    skipped: int = 0
    lateness: RecentWindow = field(default_factory=lambda: RecentWindow(1000))  # start lateness, ms
    catch_up: bool = False  # fire each late slot within grace (after a start), not only the latest


class FiringLoop:
    def __init__(self, dispatcher: Dispatcher, clock: Clock, options: ControllerOptions, mailbox: Mailbox, *,
                 record: Callable[[FireRecord], None], may_fire: Callable[[float, float, int], bool],
                 token: Callable[[], int | None], asked: Callable[[], int]) -> None:
        self.dispatcher, self.clock, self.options, self.mailbox = dispatcher, clock, options, mailbox
        self._record = record
        self._may_fire = may_fire
        self._token = token
        self._asked = asked
        self.tracks: dict[int, Track] = {}
        self.seqs: dict[int, int] = {}  # the slot numbers of schedules that do not run now
        self.stats = {"fired": 0, "missed": 0, "skipped": 0, "clock_steps": 0}
        self.tenure, self.loaded = 0, False  # the tenure whose start was applied; rows were applied
        self.next_due = _INF  # the next slot on the monotonic clock (the keeper keeps quiet around it)
        self.last_due = -_INF  # the slot handed over last, on the monotonic clock (the keeper ticks in step)
        self.busy_until = -_INF  # when the fires of the last slot handed over should all have started
        self.published: Handoff | None = None  # positions, published when the keeper asks
        self._answered = 0
        self._ask_seen = (0, 0.0)  # the last ask seen, and when
        self._last_handed = 0  # the latest slot handed over: a hand-off is never dated before it
        self._heap: list[tuple[int, int]] = []
        self._starts = StartLog()
        self._start: Start | None = None
        self._stopping, self._offset, self._end = False, 0.0, _INF
        self._lead = Lead()

    def stop(self) -> None:
        self._stopping = True
        self.mailbox.nudge()

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, end_mono: float) -> str:
        """Fire until stopped (``"stopped"``), the budget ends (``"budget"``) or, with ``stop_when_idle``,
        nothing runs (``"idle"``)."""
        clock, heap, opts, mailbox = self.clock, self._heap, self.options, self.mailbox
        self._end = end = end_mono
        self._offset = -_INF  # the first pass takes the clocks' offset as it is
        while not self._stopping:
            if not mailbox.empty():
                for update in mailbox.take():
                    self._apply(update)
            if opts.stop_when_idle and self.loaded and not self.tracks and mailbox.empty():
                return "idle"
            mono, wall = read_pair(clock)  # one instant: slots become monotonic deadlines through it
            if not self._may_fire(mono, wall, self.tenure):
                self.next_due = _INF
                if mono >= end:
                    return "budget"
                self._answer(mono)
                self._sleep(min(end - mono, opts.refresh_s))
                continue
            offset = wall - mono
            if offset < self._offset - STEP_S:
                step, self._offset = self._offset - offset, offset
                self._clock_went_back(int(wall * 1000), step)
                continue
            self._offset = offset
            while heap and self._stale(heap[0]):
                heapq.heappop(heap)
            if not heap:
                self.next_due = _INF
                if mono >= end:
                    return "budget"
                self._answer(mono)
                self._sleep(min(opts.refresh_s, end - mono))
                continue
            due = mono + (heap[0][0] - wall * 1000) / 1000
            if due >= end - 0.0005:  # the next slot belongs to the successor (a slot at the end included)
                self.next_due = _INF
                if opts.end_after_last_fire or mono >= end:
                    self._sleep_until_handed(wall)  # end right after the last fire, not before it
                    return "budget"
                self._sleep(end - mono)
                continue
            self.next_due = due
            lead = self._lead.of(heap)
            if mono < due - lead - MIN_SLEEP_S:
                self._answer(mono, room=mono < due - lead - ANSWER_BEFORE_S)
                self._sleep(due - lead - clock.monotonic())
                continue
            self.last_due = due
            self._hand_over(wall * 1000, mono, lead)
        return "stopped"

    def _answer(self, mono: float, room: bool = True) -> None:
        """Publish the positions if the keeper asked for them (it saves them with its next renewal), where
        the loop would sleep anyway, so that the ask wakes no thread: not in the last milliseconds before a
        hand-over (``room``) unless the ask has waited ``ANSWER_WITHIN_S`` (slots milliseconds apart)."""
        asked = self._asked()
        if self._answered == asked:
            return
        if self._ask_seen[0] != asked:
            self._ask_seen = (asked, mono)
        if room or mono - self._ask_seen[1] >= ANSWER_WITHIN_S:
            self._answered = asked
            self.published = self.handoff()

    def _sleep_until_handed(self, wall: float) -> None:
        wait = self._last_handed / 1000 - wall
        if wait > 0:
            self.clock.wait(self.clock.event(), wait)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.wait(self.mailbox.wake, seconds)
        self.mailbox.wake.clear()

    def _stale(self, entry: tuple[int, int]) -> bool:
        track = self.tracks.get(entry[1])
        return track is None or track.next_slot != entry[0]

    def _hand_over(self, now: float, mono: float, lead: float) -> None:
        """Hand over every fire due by ``now + lead`` (and any that is late), grouped by slot; then compute
        the next slots, and only then do the bookkeeping."""
        heap, tracks = self._heap, self.tracks
        now_ms = int(now)
        horizon = max(now_ms + int(lead * 1000) + 1, heap[0][0])  # at least the slot that woke us
        token, owner = self._token(), self.options.owner
        by_slot: dict[int, list[Fire]] = {}
        moved: list[tuple[int, int]] = []
        while heap and heap[0][0] <= horizon:
            slot, sid = heapq.heappop(heap)
            track = tracks.get(sid)
            if track is None or track.next_slot != slot:
                continue
            schedule = track.schedule
            timetable = schedule.timetable
            if track.catch_up:  # after a start: each late slot within grace fires once, in order
                while True:
                    if now_ms - slot > schedule.grace_ms:
                        count, last = timetable.count_and_last(slot - 1, now_ms - schedule.grace_ms - 1)
                        count, last = (count, last) if last is not None else (1, slot)
                        track.seq += count
                        self._count_missed(track, slot, count, now_ms)
                    else:
                        last = slot
                        track.seq += 1
                        self._fire(track, last, now, token, owner, by_slot)
                    nxt = timetable.next_slot(last)
                    if nxt > now_ms:
                        track.catch_up = False
                        break
                    slot = nxt
            else:
                if slot > now_ms:
                    count, latest = 1, slot  # due within the lead: not late
                else:
                    count, found = timetable.count_and_last(slot - 1, now_ms)
                    count, latest = (count, found) if found is not None else (1, slot)
                last = latest
                track.seq += count
                if now_ms - last <= schedule.grace_ms:
                    self._fire(track, last, now, token, owner, by_slot)
                    count -= 1
                if count:
                    self._count_missed(track, slot, count, now_ms)
                nxt = timetable.next_slot(last)
            track.next_slot = nxt
            moved.append((nxt, sid))
        count = sum(len(fires) for fires in by_slot.values())
        self.busy_until = mono + lead + STARTS_S + START_COST_S * count  # the keeper keeps quiet till then
        late = [fire for slot in sorted(by_slot) if slot <= now_ms for fire in by_slot[slot]]
        if late:  # one batch, due now: fires of the same schedule start in slot order
            self._submit(Batch(late[0].slot_ms, mono, late, self._starts))
        for slot in sorted(by_slot):
            if slot > now_ms:
                self._submit(Batch(slot, mono + (slot - now) / 1000, by_slot[slot], self._starts))
        if by_slot:
            self._last_handed = max(self._last_handed, max(by_slot))
        for entry in moved:
            heapq.heappush(heap, entry)
        self._note_starts()

    def _fire(self, track: Track, slot: int, now: float, token: int | None, owner: str,
              by_slot: dict[int, list[Fire]]) -> None:
        schedule = track.schedule
        track.last_slot = slot
        track.fired += 1
        fires = by_slot.get(slot)
        if fires is None:
            fires = by_slot[slot] = []
            text = iso_utc(slot)
        else:
            text = fires[0].slot_text
        fires.append(Fire(schedule, slot, track.seq, schedule.timetable.interval_at(slot), now, token, owner, text))

    def _submit(self, batch: Batch) -> None:
        self.stats["fired"] += len(batch.fires)
        try:
            self.dispatcher.submit(batch)
        except Exception as exc:  # a dispatcher bug must not stop the schedules
            log.exception("the dispatcher failed to take %d fire(s)", len(batch.fires))
            for fire in batch.fires:
                self._record(fire_record(fire, "error", error=bounded(f"dispatch failed: {exc!r}")))

    def _note_starts(self) -> None:
        """Start lateness (and skips at the start) noted by the dispatcher, into each track's statistics."""
        tracks = self.tracks
        for sid, lateness in self._starts.drain():
            track = tracks.get(sid)
            if track is None:
                continue
            if lateness is None:
                track.skipped += 1
                track.fired -= 1
                self.stats["skipped"] += 1
                self.stats["fired"] -= 1
            else:
                track.lateness.add(lateness)

    def _count_missed(self, track: Track, first_slot: int, missed: int, now_ms: int, why: str | None = None,
                      **detail: Any) -> None:
        track.missed += missed
        self.stats["missed"] += missed
        schedule = track.schedule
        self._record(FireRecord(
            schedule.id, schedule.name, first_slot, track.seq, "missed",
            error=why or (f"{missed} slot(s) from {first_slot} passed without a fire (more than "
                          f"{schedule.grace_ms} ms late)"),
            detail={"missed": missed, "first_slot_ms": first_slot, "noticed_ms": now_ms, **detail},
            token=self._token(),
        ))

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

    # -- applying control state ------------------------------------------------------------------------------
    def _apply(self, update: Update) -> None:
        carry: dict[int, Position] = {}
        if update.start is not None:  # a new tenure of the lease
            start = update.start
            if start.reset:
                self.tracks.clear()
                self._heap.clear()
            self._start = start
            self.tenure = start.tenure
            carry = dict(start.carry)
        if update.schedules is None:
            return
        self.loaded = True
        now_ms = int(self.clock.time() * 1000)
        tracks, schedules = self.tracks, update.schedules
        for sid, schedule in schedules.items():
            track = tracks.get(sid)
            if track is not None and track.schedule is schedule:
                continue
            if track is None:
                position = carry.get(sid)
                seq = position.seq if position is not None else self.seqs.get(sid, 0)
                placed = place(schedule.timetable, position, seq, self._start, now_ms)
                track = tracks[sid] = Track(schedule, placed.next_ms, placed.seq, catch_up=True)
                self.seqs.pop(sid, None)
                if placed.lost is not None:
                    lost = placed.lost
                    self._count_missed(
                        track, lost.first_ms, lost.count, now_ms,
                        why=f"{lost.count} slot(s) from {lost.first_ms} were lost with the previous controller "
                            f"(up to {lost.maybe} of them may have been fired by it before it died)",
                        possibly_fired=lost.maybe, fence_ms=lost.fence_ms)
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
            heapq.heappush(self._heap, (track.next_slot, sid))
        for sid in [s for s in tracks if s not in schedules]:
            track = tracks.pop(sid)
            if sid in update.present:
                self.seqs[sid] = track.seq  # stopped: its numbering goes on when it starts again
        for sid in [s for s in self.seqs if s not in update.present]:
            del self.seqs[sid]  # removed from the table

    # -- views -----------------------------------------------------------------------------------------------
    def handoff(self) -> Handoff:
        """Where each schedule is (on this thread, or once the loop has ended)."""
        positions = {sid: Position(None, seq) for sid, seq in self.seqs.items()}
        positions.update((sid, Position(t.next_slot, t.seq)) for sid, t in self.tracks.items())
        # every slot up to at_ms was handled (fired, handed over or counted): the earlier of now and the
        # slot before the next one of any schedule
        at_ms = min([round(self.clock.time() * 1000)] + [t.next_slot - 1 for t in self.tracks.values()])
        return Handoff(owner=self.options.owner, token=self._token(), at_ms=at_ms,
                       positions=positions, stats=dict(self.stats),
                       save_every_ms=round(self.options.lease_ttl_s * RENEW_FRACTION * 1000))


def track_rows(tracks: Mapping[int, Track]) -> list[dict[str, Any]]:
    """A consistent-enough view of the loop's tracks for a live display (read from another thread)."""
    rows = []
    for sid, track in list(tracks.items()):
        s = track.lateness.summary()
        rows.append({
            "id": sid, "name": track.schedule.name, "timetable": track.schedule.timetable,
            "next_slot_ms": track.next_slot, "last_slot_ms": track.last_slot, "fired": track.fired,
            "missed": track.missed, "skipped": track.skipped, "p50_ms": s.p50, "p99_ms": s.p99,
            "max_ms": s.max,
        })
    return rows


class Lead:
    """How long before the next slot its batch is handed over: counted once per slot (and again if
    schedules were added meanwhile), not at every pass of the loop: at 1,000 schedules on one instant
    the count takes ~0.4 ms, and one pass is the wake-up just before the hand-over."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key = (-1, -1)  # the (next slot, heap size) that value was counted for
        self.value = MIN_LEAD_S

    def of(self, heap: list[tuple[int, int]]) -> float:
        key = (heap[0][0], len(heap))
        if key != self.key:
            self.key = key
            self.value = min(MAX_LEAD_S, MIN_LEAD_S + LEAD_PER_FIRE_S * due_at(heap, key[0], _MAX_COUNTED))
        return self.value


def due_at(heap: list[tuple[int, int]], slot: int, most: int) -> int:
    """How many entries of ``heap`` (a heap of ``(slot, schedule id)``) are due at ``slot`` or before,
    counting at most ``most``: only those entries and their children are looked at, so the count costs
    what it counts. It sets the lead of a hand-over: 1,000 fires on one instant need ~30 ms to be handed
    over before it, one fire a millisecond needs 2 ms (a lead by the number of schedules kept ~30 workers
    asleep for fires that were that far apart, each woken twice)."""
    if not heap or heap[0][0] > slot:
        return 0
    found, size, look = 0, len(heap), [0]
    while look and found < most:
        at = look.pop()
        found += 1
        for child in (2 * at + 1, 2 * at + 2):
            if child < size and heap[child][0] <= slot:
                look.append(child)
    return found
