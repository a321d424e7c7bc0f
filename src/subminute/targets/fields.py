"""Checking the fields that target specs share (numbers of seconds, whole numbers). Standard library only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["int_field", "seconds_field"]


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
