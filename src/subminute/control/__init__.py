"""The control model and its stores: control rows, the hand-off, the lease, and the store backends."""

from .base import ControlStore, Lease, Snapshot
from .memory import MemoryStore
from .rows import OVERLAP_POLICIES, ROW_FIELDS, Schedule, normalize_row, parse_row, schedule_from_row

__all__ = [
    "OVERLAP_POLICIES", "ROW_FIELDS", "ControlStore", "Lease", "Schedule", "Snapshot", "MemoryStore",
    "normalize_row", "parse_row", "schedule_from_row",
]
