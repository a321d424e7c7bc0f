"""subminute: fire jobs every second or faster, on time, locally on SQLite or on AWS Lambda.

The public surface is small; everything else lives in modules whose names say what they are.
"""

from .control.base import ControlStore
from .control.memory import MemoryStore
from .control.rows import Schedule
from .control.sqlite import SqliteStore
from .controller import Controller, ControllerOptions
from .dispatch.base import make_event
from .errors import ConfigError, LeaseLostError, NotFoundError, StoreError, SubminuteError
from .results.records import FireRecord
from .runtime.local import LocalRuntime
from .runtime.scheduler import Scheduler
from .targets.base import Result, register_target
from .timing.clock import SystemClock
from .timing.fake import FakeClock
from .timing.plan import Plan, parse_plan
from .timing.slots import Every

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "ControlStore", "Controller", "ControllerOptions", "Every", "FakeClock", "FireRecord",
    "LeaseLostError", "LocalRuntime", "MemoryStore", "NotFoundError", "Plan", "Result", "Schedule", "Scheduler",
    "SqliteStore", "StoreError", "SubminuteError", "SystemClock", "__version__", "make_event", "parse_plan",
    "register_target",
]
