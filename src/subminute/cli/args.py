"""The one way the CLI reads its numeric flags and its control file's path: each value is checked with its
range, and a bad one is a :class:`ConfigError` naming the flag, the value and what is allowed (one line,
exit code 2). Flags are declared as text in argparse and read here, so that no ``int()``/``float()`` of a
flag can overflow, run for ever or raise a traceback.

* ids: :func:`schedule_id` (:func:`subminute.control.rows.parse_id`: 1 to 2^31 - 1);
* counts: :func:`count` (``--limit``, ``--last``: whole numbers 1 to 1,000,000);
* durations: :func:`seconds_flag` (:func:`subminute.timing.durations.parse_seconds`: ``2m``, ``500ms``,
  ``1.5``), with each flag's range;
* ports and sizes: :func:`count` with their range.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..control.rows import parse_id
from ..errors import ConfigError, NotFoundError
from ..storage.sqlite import default_db_path
from ..timing.durations import parse_seconds

__all__ = ["MAX_COUNT", "count", "db_path", "digits", "existing_db_path", "schedule_id", "seconds_flag"]

MAX_COUNT = 1_000_000
_MAX_DIGITS = 16  # a count is read only when it has at most this many digits (no huge int() at all)


def digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only (``str.isdigit`` also takes ``'\u00b2'``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def count(value: str | int | None, flag: str, low: int = 1, high: int = MAX_COUNT, what: str = "a whole number"
          ) -> int | None:
    """A whole number in ``[low, high]`` (``None`` stays ``None``)."""
    if value is None:
        return None
    text = str(value).strip()
    number = int(text) if digits(text) and len(text) <= _MAX_DIGITS else None
    if number is None or not low <= number <= high:
        raise ConfigError(flag, value, f"use {what} from {low} to {high}")
    return number


def seconds_flag(value: str | None, flag: str, low_s: float, high_s: float) -> float | None:
    """A duration flag (``2m``, ``500ms``, ``1.5``) in seconds within ``[low_s, high_s]``."""
    if value is None:
        return None
    return parse_seconds(value, flag, low_s, high_s)


def schedule_id(value: str | int, flag: str = "schedule") -> int:
    """A schedule id (1 to 2^31 - 1)."""
    return parse_id(value.strip() if isinstance(value, str) else value, flag)


def db_path(args: argparse.Namespace) -> Path:
    """``--db``, else ``$SUBMINUTE_DB``, else the default; an empty ``--db`` is refused (it would silently
    mean the default file)."""
    given = getattr(args, "db", None)
    if given is None:
        return default_db_path()
    if not given.strip():
        raise ConfigError("--db", given, "give the path of the control file, or leave --db out for the default "
                                         f"({default_db_path()})")
    return Path(given)


def existing_db_path(args: argparse.Namespace) -> Path:
    """The control file for a command that only reads it: it must exist (reading never creates one)."""
    path = db_path(args)
    if not path.is_file():
        raise NotFoundError(f"no control file at {path} yet; make one with 'subminute add --every 2s --http URL' "
                            "(or name another file with --db or $SUBMINUTE_DB)")
    return path
