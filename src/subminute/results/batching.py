"""One background writer thread that commits queued items in batches, shared by the fire-record sink and
the kept-body store.

``put`` never blocks the caller. The thread gathers what is queued (at most one batch per
``batch_interval_s``: items that come sooner wait for the rest of it), hands the batch to
``_write_batch``, and on a transient error (file busy or locked: a
:class:`~subminute.errors.StoreError`, or an ``OSError``) keeps the batch and retries with backoff,
logging once per incident rather than once per try.

A *pacer* may take the thread's place for a trickle of items: a thread that wakes anyway (the controller's
keeper, once a second, just after a slot's fires have started) calls :meth:`pace` with the time until it
calls again; an item put at most ``HOLD_S`` before that call waits for it instead of waking this thread,
and the pacer writes it on its own thread. At a fire a second that saves a thread's wake-up a second
(idle CPU, issue 8) and keeps the bound of a record's wait; anything else (a busier stream, an item put
earlier, a late pacer, :meth:`flush`, :meth:`close`) goes to the thread as before.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Generic, TypeVar

from ..errors import StoreError

__all__ = ["BatchWriter"]

T = TypeVar("T")
log = logging.getLogger("subminute.sinks")
HOLD_S = 0.03  # an item waits for the pacer if the pacer is due this soon ...
PACED_MAX = 16  # ... and fewer than this many wait (a busier stream is the thread's, in 50 ms batches)


class BatchWriter(Generic[T]):
    #: errors after which the same batch is tried again (others drop it, logged)
    retry_errors: tuple[type[BaseException], ...] = (StoreError, OSError)

    def __init__(self, what: str, where: object, *, batch_interval_s: float = 0.05, max_batch: int = 2000,
                 give_up_after_s: float = 10.0) -> None:
        self.what = what
        self.where = where
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._batch_interval_s = batch_interval_s
        self._max_batch = max_batch
        self._give_up_after_s = give_up_after_s
        self._queued = 0
        self._written = 0
        self._done = threading.Condition()
        self._closed = False
        self._last_commit = -float("inf")
        self._paced: list[T] = []  # items waiting for the pacer
        self._pace_due = -float("inf")  # when the pacer said it calls pace() again (monotonic)
        self._writing = threading.Lock()  # one batch at a time, from the thread or the pacer
        self._thread = threading.Thread(target=self._loop, name=f"subminute-{what.replace(' ', '-')}",
                                         daemon=True)
        self._thread.start()

    # -- for subclasses ------------------------------------------------------------------------------------
    def _write_batch(self, items: list[T]) -> None:
        """Commit ``items``. Raise one of ``retry_errors`` to have the (remaining) items tried again; an
        implementation that commits part of them removes those from the list and calls
        :meth:`_mark_written`."""
        raise NotImplementedError

    def _write_now(self, items: list[T]) -> None:
        """Commit ``items`` for the pacer, all or none, without waiting long for a lock (the pacer has its
        own work: the controller's keeper renews the lease); raise to leave them to the thread."""
        self._write_batch(items)

    def _close_resources(self) -> None:
        """Release what the writer holds, after the thread has ended."""

    def _mark_written(self, count: int) -> None:
        with self._done:
            self._written += count
            self._done.notify_all()

    # -- public --------------------------------------------------------------------------------------------
    def put(self, item: T) -> None:
        with self._done:  # callers write concurrently: a lost count would make flush() return early
            self._queued += 1
            held = self._paced
            if 0.0 <= self._pace_due - time.monotonic() <= HOLD_S and len(held) < PACED_MAX and not self._closed:
                held.append(item)
                return
            if held:  # items that waited go first (the usual case, none, makes and hands over nothing)
                self._paced = []
        if held:
            self._hand_over(held)
        self._queue.put(item)

    def pace(self, next_in_s: float | None) -> None:
        """Write the items waiting for the pacer, on the caller's thread; it calls again in ``next_in_s``
        seconds (``None``: it does not call again). Items it cannot write go to the thread, which retries
        them with backoff. See the module's text."""
        items = self._take_paced(time.monotonic() + next_in_s if next_in_s is not None else -float("inf"))
        if not items:
            return
        if not self._writing.acquire(blocking=False):  # the thread is writing (or waiting for a lock)
            self._hand_over(items)
            return
        try:
            self._write_now(items)
        except Exception:  # noqa: BLE001 - the thread retries, logs or drops them as it does its own
            self._hand_over(items)
            return
        finally:
            self._writing.release()
        self._mark_written(len(items))

    def _hand_over(self, items: list[T]) -> None:
        for item in items:
            self._queue.put(item)

    def _take_paced(self, due: float) -> list[T]:
        """The items waiting for the pacer, taken; it comes next at ``due`` (-inf: not again)."""
        with self._done:
            self._pace_due = due
            items, self._paced = self._paced, []
        return items

    def _unpace(self) -> None:
        """Hand what waits for the pacer to the thread (a flush or close wants it written now)."""
        self._hand_over(self._take_paced(-float("inf")))

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued item is committed (or dropped); return whether it happened in time."""
        deadline = time.monotonic() + timeout_s
        self._unpace()
        with self._done:
            while self._written < self._queued:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._done.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unpace()
        self._queue.put(None)
        self._thread.join(timeout=self._give_up_after_s + 5)
        self._close_resources()

    # -- the thread --------------------------------------------------------------------------------------------
    def _gather(self, pending: list[T]) -> bool:
        """Add what is queued to ``pending``; return True once the closing sentinel was seen.

        Commits are ``batch_interval_s`` apart at the most often: an item that comes sooner after the last
        commit waits for the rest of that interval, so that a steady trickle (a fire every millisecond) is
        committed in batches, waking this thread once a batch and not once an item; an item after a
        quiet spell (a fire a second) is committed at once."""
        try:
            item = self._queue.get(timeout=self._batch_interval_s if pending else None)
        except queue.Empty:
            return False
        linger = self._last_commit + self._batch_interval_s - time.monotonic()
        if item is not None and linger > 0:
            time.sleep(linger)  # (close() puts the sentinel and waits: it ends the batch after this)
        try:
            while item is not None:
                pending.append(item)
                if len(pending) >= self._max_batch:
                    return False
                item = self._queue.get_nowait()
            return True
        except queue.Empty:
            return False

    def _loop(self) -> None:
        pending: list[T] = []
        backoff = 0.05
        failing_since: float | None = None
        stop = False
        while not stop or pending:
            if not stop:
                stop = self._gather(pending)
            if not pending:
                continue
            try:
                with self._writing:
                    self._write_batch(pending)
            except self.retry_errors as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning("cannot write %s to %s (%s); keeping them and retrying", self.what, self.where, exc)
                if stop and now - failing_since > self._give_up_after_s:
                    log.error("giving up on %d %s after %.0f s of errors", len(pending), self.what,
                              self._give_up_after_s)
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # a batch that can never be stored must not stop the writer
                log.exception("dropping %d %s that cannot be stored", len(pending), self.what)
            if failing_since is not None:
                log.warning("%s are written again to %s", self.what, self.where)
                failing_since = None
            backoff = 0.05
            self._last_commit = time.monotonic()
            self._mark_written(len(pending))
            pending = []
