"""Targets: what a fire does (HTTP, TCP, command, Python callable, no-op)."""

from .base import Result, Target, build_target, register_target, target_types

__all__ = ["Result", "Target", "build_target", "register_target", "target_types"]
