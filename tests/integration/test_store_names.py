"""Names are unique on every write, in every control-store backend (tests/store_backends.py): ``put`` and
``update`` refuse a name another row has, inside the write's own transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store_backends import BACKENDS, Backend
from subminute.control.base import ControlStore
from subminute.errors import ConfigError


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlStore]:
    backend: Backend = request.param(request, tmp_path)
    yield backend.open()
    backend.close_all()


def names(store: ControlStore) -> dict[int, str | None]:
    return {int(r["id"]): r.get("name") for r in store.rows()}


def test_put_refuses_a_name_another_row_has(store: ControlStore) -> None:
    store.put({"id": 1, "name": "buses"})
    with pytest.raises(ConfigError, match=r"schedule 2: name: 'buses' is not allowed; schedule 1 has that name"):
        store.put({"id": 2, "name": "buses"})
    store.put({"id": 1, "name": "buses", "waitseconds": 2})  # the same row again: its own name
    assert names(store) == {1: "buses"}


def test_update_refuses_a_name_another_row_has(store: ControlStore) -> None:
    store.put({"id": 1, "name": "buses"})
    store.put({"id": 2, "name": "trams"})
    with pytest.raises(ConfigError, match="schedule 1 has that name"):
        store.update(2, {"name": "buses"})
    assert names(store) == {1: "buses", 2: "trams"}


def test_default_names_count_too(store: ControlStore) -> None:
    store.put_raw({"id": 1, "waitseconds": 5})  # type: ignore[attr-defined] - no name: "default"
    with pytest.raises(ConfigError, match="schedule 1 has that name"):
        store.put({"id": 2, "name": "default"})
    store.put({"id": 3})
    with pytest.raises(ConfigError, match="schedule 3 has that name"):
        store.put({"id": 4, "name": "schedule-3"})


def test_a_hand_written_duplicate_may_still_be_changed_but_not_renamed_onto_another(store: ControlStore) -> None:
    store.put({"id": 1, "name": "buses"})
    store.put_raw({"id": 2, "name": "buses", "waitseconds": 5})  # type: ignore[attr-defined]
    store.update(2, {"running": False})  # makes no new duplicate: allowed, so that it can be stopped
    store.update(2, {"name": "trams"})  # and renamed to fix it
    assert names(store) == {1: "buses", 2: "trams"}
