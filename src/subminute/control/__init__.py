"""Control stores: where schedules, the controller's lease and its hand-off live."""

from .base import (
    OVERLAP_POLICIES,
    ROW_FIELDS,
    ControlStore,
    Lease,
    Schedule,
    Snapshot,
    normalize_row,
    parse_row,
    schedule_from_row,
)
from .memory import MemoryStore

__all__ = [
    "OVERLAP_POLICIES", "ROW_FIELDS", "ControlStore", "Lease", "Schedule", "Snapshot", "MemoryStore",
    "normalize_row", "parse_row", "schedule_from_row",
]
