"""One background writer thread that commits queued items in batches, shared by the fire-record sink and
the kept-body store.

``put`` never blocks the caller. The thread gathers what is queued (at most one batch per
``batch_interval_s``: items that come sooner wait for the rest of it), hands the batch to
``_write_batch``, and on a transient error (file busy or locked: a
:class:`~subminute.errors.StoreError`, or an ``OSError``) keeps the batch and retries with backoff,
logging once per incident rather than once per try.
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
        self._thread = threading.Thread(target=self._loop, name=f"subminute-{what.replace(' ', '-')}",
                                         daemon=True)
        self._thread.start()

    # -- for subclasses ------------------------------------------------------------------------------------
    def _write_batch(self, items: list[T]) -> None:
        """Commit ``items``. Raise one of ``retry_errors`` to have the (remaining) items tried again; an
        implementation that commits part of them removes those from the list and calls
        :meth:`_mark_written`."""
        raise NotImplementedError

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
        self._queue.put(item)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued item is committed (or dropped); return whether it happened in time."""
        deadline = time.monotonic() + timeout_s
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
