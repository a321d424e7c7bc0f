"""One test suite for the ControlStore interface, run against every backend in tests/store_backends.py.

Rows, the change token (``version``), the lease with its fencing token, and the hand-off. A backend
passes when it behaves exactly like the others: the controller relies on nothing more.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store_backends import BACKENDS, Backend
from subminute.control.base import ControlStore, Lease
from subminute.control.handoff import Handoff, Position
from subminute.control.rows import normalize_row, parse_row
from subminute.control.sqlite import SqliteStore
from subminute.errors import ConfigError, NotFoundError, StoreError
from subminute.timing.plan import Plan
from subminute.timing.slots import Every

NOW = 1_800_000_000.0
TTL = 5.0
PLAN = "tz=Europe/Paris; mon-fri 06:00-20:00 every 2s; otherwise every 30s"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend = request.param(request, tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def store(backend: Backend) -> ControlStore:
    return backend.open()


def ids(store: ControlStore) -> list[int]:
    return [int(r["id"]) for r in store.rows()]


def version_or_skip(store: ControlStore) -> Any:
    version = store.version()
    if version is None:
        pytest.skip("this backend cannot tell its version cheaply")
    return version


# -- rows ------------------------------------------------------------------------------------------


def test_a_new_store_is_empty(store: ControlStore) -> None:
    assert store.rows() == []
    assert store.load().schedules == ()
    assert store.read_lease() is None
    assert store.load_handoff() is None
    with pytest.raises(NotFoundError, match="schedule 1 does not exist"):
        store.get(1)


def test_put_get_and_rows_in_id_order(store: ControlStore) -> None:
    for sid in (3, 1, 2):
        store.put({"id": sid, "waitseconds": sid})
    assert ids(store) == [1, 2, 3]
    assert parse_row(store.get(2)).timetable == Every(2000)
    assert [s.id for s in store.load().schedules] == [1, 2, 3]


def test_every_field_survives_the_store(store: ControlStore) -> None:
    row = {
        "id": 2,
        "name": "buses",
        "running": False,
        "waitseconds": 0.5,
        "plan": PLAN,
        "target": {"type": "http", "url": "http://127.0.0.1:8080/predictions", "expect": [200]},
        "overlap": "skip",
        "timeout": 2.5,
        "offset": 0.25,
        "grace": 0,
    }
    store.put(row)
    stored = store.get(2)
    assert parse_row(stored) == parse_row(row)
    assert normalize_row(stored) == normalize_row(row)
    schedule = store.load().by_id()[2]
    assert isinstance(schedule.timetable, Plan) and schedule.timetable.offset_ms == 250
    assert schedule.target == {"type": "http", "url": "http://127.0.0.1:8080/predictions", "expect": [200]}
    assert (schedule.name, schedule.running, schedule.overlap, schedule.grace_ms) == (
        "buses",
        False,
        "skip",
        0,
    )


def test_the_aws_samples_row(store: ControlStore) -> None:
    store.put(json.loads('{"id":1,"running":true,"waitseconds":5}'))
    (schedule,) = store.load().schedules
    assert (schedule.id, schedule.name, schedule.running, schedule.timetable) == (
        1,
        "default",
        True,
        Every(5000),
    )


def test_put_replaces_the_whole_row(store: ControlStore) -> None:
    store.put({"id": 4, "name": "a", "target": {"type": "noop"}, "overlap": "skip"})
    store.put({"id": 4, "waitseconds": 2})
    schedule = parse_row(store.get(4))
    assert (schedule.name, schedule.target, schedule.overlap) == ("schedule-4", None, "allow")


def test_update_changes_only_the_given_fields(store: ControlStore) -> None:
    store.put({"id": 5, "name": "x", "waitseconds": 5, "plan": PLAN, "overlap": "skip"})
    store.update(5, {"running": False})
    store.update(5, {"plan": None, "waitseconds": "250ms"})  # None clears a field
    schedule = parse_row(store.get(5))
    assert (schedule.name, schedule.running, schedule.overlap) == ("x", False, "skip")
    assert schedule.timetable == Every(250)


def test_update_cannot_change_the_id(store: ControlStore) -> None:
    store.put({"id": 5})
    with pytest.raises(ConfigError, match=r"^schedule 5: id: 6 is not allowed"):
        store.update(5, {"id": 6})
    assert ids(store) == [5]
    store.update(5, {"id": 5, "name": "same id is fine"})
    assert store.get(5)["name"] == "same id is fine"


def test_missing_rows(store: ControlStore) -> None:
    store.put({"id": 1})
    with pytest.raises(NotFoundError, match="schedule 9 does not exist"):
        store.update(9, {"running": False})
    with pytest.raises(NotFoundError, match="schedule 9 does not exist"):
        store.delete(9)
    assert ids(store) == [1]


def test_delete(store: ControlStore) -> None:
    store.put({"id": 1})
    store.put({"id": 2})
    store.delete(1)
    assert ids(store) == [2]
    with pytest.raises(NotFoundError):
        store.get(1)


def test_a_bad_row_is_refused_and_changes_nothing(store: ControlStore) -> None:
    store.put({"id": 1, "waitseconds": 5})
    before, rows = store.version(), store.rows()
    with pytest.raises(ConfigError, match=r"^schedule 2: waitseconds: 0 is not allowed"):
        store.put({"id": 2, "waitseconds": 0})
    with pytest.raises(ConfigError, match=r"^schedule 1: overlap: 'never' is not allowed"):
        store.update(1, {"overlap": "never"})
    assert store.rows() == rows
    assert store.version() == before


def test_a_bad_row_written_by_hand_disables_only_its_own_schedule(store: ControlStore) -> None:
    put_raw = getattr(store, "put_raw", None)
    if put_raw is None:
        pytest.skip("this backend has no way to write an unchecked row")
    store.put({"id": 1, "waitseconds": 1})
    put_raw({"id": 2, "running": True, "waitseconds": -3})
    good, bad = store.load().schedules
    assert good.running and good.error is None
    assert not bad.running and bad.error is not None and "waitseconds: -3" in bad.error

    store.update(2, {"running": False})  # a stop is accepted even on a refused row, the rest kept as it was
    assert not store.get(2)["running"] and store.get(2)["waitseconds"] == -3
    with pytest.raises(ConfigError, match="waitseconds: -3"):
        store.update(2, {"running": True})  # ... anything else is checked


def test_a_change_through_one_handle_is_seen_through_another(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.put({"id": 1, "waitseconds": 5})
    seen = b.version()
    b.update(1, {"waitseconds": 2})
    assert parse_row(a.get(1)).timetable == Every(2000)
    assert a.version() == b.version()
    assert seen is None or a.version() != seen


# -- version ---------------------------------------------------------------------------------------


def test_version_changes_on_every_change(store: ControlStore) -> None:
    seen = [version_or_skip(store)]

    def changed() -> None:
        version = store.version()
        assert version not in seen
        seen.append(version)

    store.put({"id": 1})
    changed()
    store.put({"id": 2})
    changed()
    store.put({"id": 1})  # the same row again is still a write
    changed()
    store.update(1, {"waitseconds": 2})
    changed()
    store.delete(2)
    changed()
    assert store.load().version == seen[-1]


def test_version_stays_when_nothing_changes(store: ControlStore) -> None:
    store.put({"id": 1})
    before = version_or_skip(store)
    store.rows()
    store.get(1)
    store.load()
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    store.renew_lease(lease, TTL, NOW + 1)
    store.read_lease()
    store.release_lease(lease, NOW + 2)
    store.save_handoff(Handoff())
    store.load_handoff()
    for bad in (
        lambda: store.put({"id": 3, "plan": "nonsense"}),
        lambda: store.update(7, {}),
        lambda: store.delete(7),
        lambda: store.get(7),
    ):
        with pytest.raises((ConfigError, NotFoundError)):
            bad()
    assert store.version() == before


def test_the_snapshot_carries_the_version_of_its_rows(store: ControlStore) -> None:
    store.put({"id": 1})
    snapshot = store.load()
    assert snapshot.version == store.version()
    assert [s.id for s in snapshot.schedules] == [1]


# -- lease -----------------------------------------------------------------------------------------


def test_lease_acquire_and_read(store: ControlStore) -> None:
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    assert lease.owner == "a" and lease.token >= 1 and lease.expires_at == pytest.approx(NOW + TTL)
    assert store.read_lease() == lease


def test_lease_is_refused_to_others_while_it_runs(store: ControlStore) -> None:
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    assert store.acquire_lease("b", TTL, NOW + TTL - 0.01) is None
    assert store.read_lease() == lease


def test_lease_is_ours_again_if_we_ask_again(store: ControlStore) -> None:
    first = store.acquire_lease("a", TTL, NOW)
    again = store.acquire_lease("a", TTL, NOW + 1)
    assert first is not None and again is not None
    assert again.owner == "a" and again.token >= first.token
    assert again.expires_at == pytest.approx(NOW + 1 + TTL)


def test_lease_renew_extends_it(store: ControlStore) -> None:
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    renewed = store.renew_lease(lease, TTL, NOW + 3)
    assert renewed is not None
    assert (renewed.owner, renewed.token) == ("a", lease.token)
    assert renewed.expires_at == pytest.approx(NOW + 3 + TTL)
    assert store.acquire_lease("b", TTL, NOW + TTL + 1) is None  # the renewal keeps b out
    assert store.read_lease() == renewed


def test_a_renewal_or_release_matches_the_holders_name_as_well_as_its_token(store: ControlStore) -> None:
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    impostor = Lease("b", lease.token, lease.expires_at)  # its token repeated (a token edited by hand)
    assert store.renew_lease(impostor, TTL, NOW + 1) is None
    store.release_lease(impostor, NOW + 1)
    assert store.read_lease() == lease


def test_lease_takeover_after_expiry(store: ControlStore) -> None:
    old = store.acquire_lease("a", TTL, NOW)
    assert old is not None
    new = store.acquire_lease("b", TTL, NOW + TTL)  # expired exactly now
    assert new is not None
    assert new.owner == "b" and new.token > old.token
    # the old holder finds out: it cannot renew, and its release does not free b's lease
    assert store.renew_lease(old, TTL, NOW + TTL + 1) is None
    store.release_lease(old, NOW + TTL + 1)
    assert store.read_lease() == new
    assert store.acquire_lease("a", TTL, NOW + TTL + 2) is None


def test_lease_release_lets_a_successor_in_at_once(store: ControlStore) -> None:
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    store.release_lease(lease, NOW + 1)
    successor = store.acquire_lease("b", TTL, NOW + 1)
    assert successor is not None and successor.token > lease.token


def test_lease_handoff_token_lets_the_successor_in_before_expiry(store: ControlStore) -> None:
    lease = store.acquire_lease("a", TTL, NOW)
    assert lease is not None
    assert store.acquire_lease("c", TTL, NOW + 1, token=lease.token + 1) is None  # a wrong token
    assert store.acquire_lease("c", TTL, NOW + 1, token=lease.token - 1) is None
    successor = store.acquire_lease("b", TTL, NOW + 1, token=lease.token)
    assert successor is not None
    assert successor.owner == "b" and successor.token > lease.token  # fencing: the token grows
    assert store.renew_lease(lease, TTL, NOW + 2) is None  # the predecessor is fenced off
    # the hand-off token is spent: nobody else gets in with it
    assert store.acquire_lease("c", TTL, NOW + 2, token=lease.token) is None
    assert store.read_lease() == successor


def test_tokens_only_grow(store: ControlStore) -> None:
    tokens = []
    now = NOW
    for owner in "abcab":
        lease = store.acquire_lease(owner, TTL, now)
        assert lease is not None
        tokens.append(lease.token)
        now += TTL
    assert tokens == sorted(set(tokens))


def test_only_one_of_two_racing_controllers_gets_the_lease(backend: Backend) -> None:
    handles = [backend.open(), backend.open()]
    for round_ in range(5):
        now = NOW + round_ * 2 * TTL
        barrier = threading.Barrier(2)
        got: list[Lease | None] = [None, None]

        def race(i: int, now: float = now, barrier: threading.Barrier = barrier, got: list = got) -> None:
            barrier.wait()
            got[i] = handles[i].acquire_lease(f"owner-{i}", TTL, now)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        winners = [lease for lease in got if lease is not None]
        assert len(winners) == 1
        assert handles[0].read_lease() == winners[0]


# -- hand-off --------------------------------------------------------------------------------------


HANDOFF = Handoff.from_raw({
    "version": 1,
    "owner": "host:1",
    "token": 3,
    "at_ms": 1_800_000_000_123,
    "schedules": {"1": {"next": 1_800_000_005_000, "seq": 41}, "2": {"next": 1_800_000_002_000, "seq": 7}},
    "stats": {"fired": 48, "missed": 0},
})
assert HANDOFF is not None


def test_handoff_save_and_load(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.save_handoff(HANDOFF)
    assert b.load_handoff() == HANDOFF
    later = HANDOFF.but(token=4, positions={1: Position(1_800_000_010_000, 42)})
    b.save_handoff(later)
    assert a.load_handoff() == later  # the last one wins


def test_a_saved_handoff_reads_back_whole_and_a_damaged_one_is_none(store: ControlStore) -> None:
    store.save_handoff(HANDOFF)
    loaded = store.load_handoff()
    assert loaded == HANDOFF and loaded is not None and loaded.to_json() == HANDOFF.to_json()
    assert Handoff.from_raw(HANDOFF.to_json()) == HANDOFF == Handoff.from_raw(HANDOFF.to_dict())


# -- many writers ----------------------------------------------------------------------------------


def test_concurrent_writers_lose_nothing(backend: Backend) -> None:
    """Two handles (two connections to one SQLite file) write at the same time: every row arrives, and
    read-modify-write updates of one row from both sides lose neither side's change."""
    a, b = backend.open(), backend.open()
    a.put({"id": 1, "name": "start", "waitseconds": 1})
    errors: list[BaseException] = []

    def writer(store: ControlStore, first_id: int, field: str) -> None:
        try:
            for i in range(40):
                store.put({"id": first_id + i, "waitseconds": 1 + i % 5})
                store.update(1, {field: f"n{i}" if field == "name" else 1 + i})
        except BaseException as exc:  # reported below, with the thread's own traceback lost
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(a, 100, "name")),
        threading.Thread(target=writer, args=(b, 200, "waitseconds")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert ids(a) == [1, *range(100, 140), *range(200, 240)]
    final = parse_row(b.get(1))
    assert final.name == "n39"
    assert final.timetable == Every(40_000)


# -- SQLite file -----------------------------------------------------------------------------------


def file_backend(backend: Backend) -> Path:
    if backend.path is None:
        pytest.skip(f"the {backend.name} backend keeps no file")
    return backend.path


def test_the_file_is_readable_by_its_owner_only(backend: Backend) -> None:
    store = backend.open()
    path = file_backend(backend)
    store.put({"id": 1})
    store.acquire_lease("a", TTL, NOW)
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    assert path in files and len(files) >= 2  # WAL mode: the -wal (and -shm) files exist while open
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_a_writer_in_another_process(backend: Backend) -> None:
    """The CLI writes from its own process while the controller's handle reads and writes."""
    store = backend.open()
    path = file_backend(backend)
    store.put({"id": 1})
    before = store.version()
    code = (
        "import sys; from subminute.control.sqlite import SqliteStore\n"
        "s = SqliteStore(sys.argv[1])\n"
        "for i in range(30): s.put({'id': 1000 + i, 'waitseconds': 2})\n"
        "s.update(1, {'running': False}); s.close()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], env={**os.environ})
    for i in range(30):
        store.put({"id": 2000 + i})
        store.load()
    assert child.wait(30) == 0
    assert len(store.rows()) == 61
    assert store.load().by_id()[1].running is False
    assert store.version() != before


def test_a_file_that_is_no_database_gives_a_store_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(StoreError) as caught:
        SqliteStore(junk)
    assert str(junk) in str(caught.value) and "\n" not in str(caught.value)


def test_a_renewal_saves_the_handoff_in_the_same_write(backend: Backend) -> None:
    """The controller's periodic hand-off rides on its lease renewals: one write, not two; and a holder
    that lost the lease saves nothing."""
    a, b = backend.open(), backend.open()
    lease = a.acquire_lease("a", TTL, NOW)
    assert lease is not None
    assert a.renew_lease(lease, TTL, NOW + 1, HANDOFF.but(token=lease.token)) is not None
    assert b.load_handoff() == HANDOFF.but(token=lease.token)
    taken = b.acquire_lease("b", TTL, NOW + TTL + 1)
    assert taken is not None
    assert a.renew_lease(lease, TTL, NOW + TTL + 2, HANDOFF.but(token=lease.token, at_ms=1)) is None
    assert b.load_handoff() == HANDOFF.but(token=lease.token)  # unchanged: fenced off with the renewal


def test_records_newer_than_the_hand_off_give_the_positions_a_holder_never_saved(tmp_path: Path) -> None:
    from subminute.results.records import FireRecord
    from subminute.results.sinks import SqliteSink

    path = tmp_path / "early.db"
    store = SqliteStore(path)
    store.put({"id": 1, "waitseconds": 0.2})
    store.put({"id": 2, "waitseconds": 1})
    saved = Handoff(token=3, at_ms=1_800_000_000_000, positions={1: Position(1_800_000_000_200, 10)}, released=True)
    store.save_handoff(saved)
    assert store.load_handoff() == saved  # no records yet
    sink = SqliteSink(path)
    for seq, slot in ((11, 200), (12, 400), (13, 600)):  # a holder of token 4 that died before it saved
        sink.write(FireRecord(1, "a", 1_800_000_000_000 + slot, seq, "ok", token=4, ended_ms=1_800_000_000_000 + slot + 3))
    sink.write(FireRecord(2, "b", 1_800_000_001_000, 1, "ok", token=4))
    sink.write(FireRecord(2, "b", 1_800_000_002_000, 7, "ok", token="x"))  # type: ignore[arg-type] - a token by hand
    sink.close()
    assert store.load_handoff() == saved  # the newest record's token is no token: nothing is made of them
    sink = SqliteSink(path)
    sink.write(FireRecord(2, "b", 1_800_000_002_000, 2, "ok", token=4))
    sink.close()
    made = store.load_handoff()
    assert made is not None and made.token == 4 and not made.released
    assert made.positions == {1: Position(1_800_000_000_800, 13), 2: Position(1_800_000_003_000, 2)}  # next slots
    assert made.at_ms == 1_800_000_002_000
    store.save_handoff(Handoff(token=4, positions={1: Position(1_800_000_001_000, 14)}))
    assert store.load_handoff() == Handoff(token=4, positions={1: Position(1_800_000_001_000, 14)})  # saved wins
    store.close()
