"""Targets (what a fire does), fire records and the sinks they are written to."""

from .base import FireRecord, Result, Target, build_target, make_event, register_target, target_types

__all__ = ["FireRecord", "Result", "Target", "build_target", "make_event", "register_target", "target_types"]
