"""The one error tree of subminute.

Every error is a :class:`SubminuteError` and also subclasses the matching builtin, so callers may catch
either. The library raises; only the CLI turns errors into one-line messages and exit codes.
Standard library only: this module is bundled into the inline Lambda code.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SubminuteError",
    "ConfigError",
    "NotFoundError",
    "StoreError",
    "LeaseLostError",
]


class SubminuteError(Exception):
    """Base class of every error subminute raises on purpose."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(SubminuteError, ValueError):
    """Bad input: a config file, a CLI argument, a control-table value, an event or an env variable.

    The message names the field, the bad value and what is allowed, on one line::

        schedule 3: waitseconds: -1 is not allowed; use a number of seconds from 0.1 to 86400
    """

    def __init__(self, field: str, value: Any, allowed: str, *, where: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{field}: {_show(value)} is not allowed; {allowed}")

    def located(self, where: str) -> ConfigError:
        """The same error, prefixed with where it was found (``schedule 3``, ``subminute.toml``)."""
        inner = f"{where}: {self.where}" if self.where else where
        return ConfigError(self.field, self.value, self.allowed, where=inner)


class NotFoundError(SubminuteError, LookupError):
    """A schedule (or other named thing) that does not exist."""


class StoreError(SubminuteError, RuntimeError):
    """The control store could not be read or written (busy, throttled, unreachable)."""


class LeaseLostError(SubminuteError, RuntimeError):
    """Another controller holds the lease: this one must stand by instead of firing."""
