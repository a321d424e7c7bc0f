"""Shared test helper: the child processes of a process, read from /proc (Linux)."""

from __future__ import annotations

import os


def child_processes(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` and their states (``Z``: a zombie nobody reaped)."""
    found = {}
    parent = str(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == parent:
                found[int(entry)] = fields[0]
    return found


def gone(pid: int) -> bool:
    """The process has ended: no longer there, or a zombie waiting to be reaped (killed all the same)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
