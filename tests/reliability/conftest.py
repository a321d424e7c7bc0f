"""Fixtures of the reliability suite (helpers live in reliability_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_helpers import Run, runs_fixture


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Start `subminute run` processes; any still alive at the end are killed (by their own pid)."""
    yield from runs_fixture(tmp_path)
