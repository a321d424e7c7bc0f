"""Dispatchers: how a fire is launched without blocking the controller."""

from .base import Dispatcher, Fire, fire_record

__all__ = ["Dispatcher", "Fire", "fire_record"]
