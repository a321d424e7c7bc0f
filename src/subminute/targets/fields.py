"""What the targets share: checking their spec fields (which fields, numbers of seconds, whole numbers)
and cleaning the texts they record (one line, no secret). Standard library only."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..secrets import redact, redact_body

__all__ = ["error_line", "hide", "int_field", "one_line", "only_fields", "seconds_field"]


def only_fields(spec: Mapping[str, Any], allowed: Iterable[str], prefix: str = "target") -> None:
    """Refuse a field that is not in ``allowed`` (a typo must not silently change what a fire does)."""
    allowed = tuple(allowed)
    for key in spec:
        if key not in allowed:
            raise ConfigError(f"{prefix}.{key}", spec[key], "use only " + ", ".join(allowed))


def one_line(text: str) -> str:
    """``text`` on one line: every run of whitespace (line breaks included) becomes one space."""
    return " ".join(text.split())


def error_line(exc: BaseException | str) -> str:
    """The text of an exception (``Name: message``) for a record: on one line, without secrets; a huge
    message is cut first (records keep 1,000 characters of an error)."""
    text = exc if isinstance(exc, str) else f"{exc.__class__.__name__}: {exc}"
    return one_line(redact(text[:20_000]))


def hide(text: str, own: Iterable[str] = ()) -> str:
    """``text`` without any secret subminute has read (:func:`subminute.secrets.redact`) nor any of ``own``,
    as is and URL-encoded (the secrets a target sends). Hide before cutting a text to size, so that no
    part of a secret survives the cut."""
    clean = redact_body(text.encode("utf-8", "surrogateescape"), own)
    return clean.decode("utf-8", "surrogateescape")


def seconds_field(spec: Mapping[str, Any], key: str, low: float, high: float,
                  default: float | None = None, prefix: str = "target") -> float | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{prefix}.{key}", value, f"use a number of seconds from {low:g} to {high:g}")
    return float(value)


def int_field(spec: Mapping[str, Any], key: str, low: int, high: int, default: int,
              what: str = "a whole number", prefix: str = "target") -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{prefix}.{key}", value, f"use {what} from {low} to {high}")
    return value
