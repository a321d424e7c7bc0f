"""The collector's full passes, kept short while a controller runs. Standard library only.

A full collection stops every thread (those starting fires too) for as long as it walks the heap: at
1,000 schedules it was the tail of the start lateness (bench/timing.py case 5, p99 13.3 -> 11.9 ms with
the freeze; bench/aws_restart.py --schedules 1000, p99 45.4 -> 5.8 ms). Objects moved to the permanent
generation (``gc.freeze``) are not walked, so a run freezes the heap it starts with and thaws it when it
ends (``gc.unfreeze``: nothing stays uncollectable after)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap for the time of the block and thaw it after; nothing if the program turned the
    collector off. No collection first: in a program with a large heap that would stop it for hundreds
    of milliseconds at start (garbage that exists now is collected after the thaw instead)."""
    if not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
