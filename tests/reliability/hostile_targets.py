"""Python targets for tests/reliability/test_hostile.py: `subminute run` imports them from this directory
(on its PYTHONPATH), in a worker thread or, with ``"isolation": "process"``, in a child process."""

from __future__ import annotations

import threading
from typing import Any


def quick(event: dict[str, Any]) -> None:
    """A healthy target: returns at once."""


def hang(event: dict[str, Any]) -> None:
    """A target that never returns."""
    threading.Event().wait()
