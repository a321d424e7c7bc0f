"""Directories and files that subminute creates: readable by their owner only, whatever the umask.

Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dirs", "write_private"]


def private_dirs(path: str | os.PathLike[str]) -> Path:
    """Make the directory ``path`` and every missing parent, each mode 0700 whatever the umask (a
    directory that already exists is left as it is). Return the path."""
    path = Path(path)
    missing: list[Path] = []
    level = path
    while not level.is_dir():
        missing.append(level)
        if level.parent == level:
            break
        level = level.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            if not level.is_dir():
                raise
            continue  # made meanwhile by someone else: theirs, left as it is
        os.chmod(level, 0o700)  # mkdir's mode is masked by the umask (0o200 would give 0500)
    return path


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path``, creating the file with mode 0600 (an existing file keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
