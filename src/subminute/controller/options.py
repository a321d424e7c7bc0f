"""The controller's options and the constants of its lease and store handling. Standard library only."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["MAX_BACKOFF_S", "RENEW_FRACTION", "SLOW_CALL_S", "STEP_S", "VALID_FRACTION", "ControllerOptions",
           "default_owner"]

VALID_FRACTION = 0.8  # fire until this fraction of the lease period after a renewal
RENEW_FRACTION = 0.25  # renew this often (a fraction of the lease period)
STEP_S = 0.1  # a change of the wall-minus-monotonic offset larger than this is a clock step
MAX_BACKOFF_S = 1.0  # the keeper retries a failing store at most this far apart
SLOW_CALL_S = 0.5  # a store call blocked this long means the store was in trouble
MIN_LEASE_TTL_S = 1.0


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ControllerOptions:
    owner: str = field(default_factory=default_owner)
    budget_s: float | None = None  # run at most this long (monotonic), then hand off
    stop_when_idle: bool = False  # end when no schedule is running (the Lambda controller does)
    end_after_last_fire: bool = False  # at the budget's end, return right after the last fire before it
    refresh_s: float = 1.0  # how often the keeper checks the store for changes (as on AWS)
    lease_ttl_s: float = 5.0  # a dead holder's lease is taken over about this long after its last renewal
    store_outage_grace_s: float = 30.0  # keep firing on the last known state while the store fails

    def __post_init__(self) -> None:
        checks = (("lease_ttl_s", self.lease_ttl_s, MIN_LEASE_TTL_S, 3600.0),
                  ("refresh_s", self.refresh_s, 0.01, 60.0),
                  ("store_outage_grace_s", self.store_outage_grace_s, 0.0, 3600.0))
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(name, value, f"use a number of seconds from {low:g} to {high:g}")
        if self.budget_s is not None and not 0 < self.budget_s <= 10 * 365 * 86400:
            raise ConfigError("budget_s", self.budget_s, "use a number of seconds greater than 0")
        # the keeper must look at the lease several times per lease period
        self.refresh_s = min(self.refresh_s, self.lease_ttl_s * RENEW_FRACTION)
