"""A Lambda context for tests: its remaining time follows a clock (fake or real), like the real one."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from subminute.timing.clock import Clock

_ids = itertools.count(1)


@dataclass
class LambdaContext:
    clock: Clock
    timeout_s: float = 900.0
    function_name: str = "subminute-test"
    aws_request_id: str = field(default_factory=lambda: f"req-{next(_ids):04d}")

    def __post_init__(self) -> None:
        self.deadline = self.clock.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock.monotonic()) * 1000))
