"""Keeping bodies: one suite run against both stores (SQLite file, JSON Lines directory)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from subminute.dispatch.base import make_event
from subminute.results import bodies as results
from subminute.results.bodies import BodyItem, Keeper, digest


@pytest.fixture(params=["sqlite", "jsonl"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / ("b.db" if request.param == "sqlite" else "bodies")
    return {"fmt": request.param, "path": path}


def item(seq: int, body: bytes, sid: int = 1, retain: int = 1000) -> BodyItem:
    return BodyItem(sid, "s", 1_800_000_000_000 + seq * 100, seq, digest(body), len(body), body, "text/plain",
                    float(seq), retain)


def store_for(where: dict[str, Any]) -> Any:
    return results.SqliteBodies(where["path"]) if where["fmt"] == "sqlite" else results.JsonlBodies(where["path"])


def test_store_round_trip_and_retention(where: dict[str, Any]) -> None:
    store = store_for(where)
    store.add([item(i, f"body {i}".encode(), retain=5) for i in range(1, 13)])
    store.add([item(1, b"\xff\xfe binary", sid=2)])
    kept = store.read(1)
    assert [k.seq for k in kept][-5:] == [8, 9, 10, 11, 12]
    assert 5 <= len(kept) <= 7  # jsonl compacts once a quarter over the limit
    assert kept[-1].body == b"body 12" and store.last_digest(1) == digest(b"body 12")
    assert store.read(2)[0].body == b"\xff\xfe binary"
    assert [k.seq for k in store.read(1, limit=2)] == [11, 12]
    assert store.last_digest(3) is None
    store.add([item(i, b"x", retain=5) for i in range(13, 40)])
    assert len(store.read(1)) <= 7
    store.close()
    assert [r["body"] for r in results.read_bodies(where["path"], 1, limit=1)] == ["x"]
    assert results.read_bodies(where["path"], 2)[0]["encoding"] == "base64"


def test_keeper_modes_and_restart(where: dict[str, Any]) -> None:
    keep = Keeper("change", fmt=where["fmt"], path=where["path"], max_bytes=4)
    ev = [make_event(1, "s", 1_800_000_000_000 + i * 100, i, 100) for i in range(6)]
    flags = [keep.offer(ev[i], body) for i, body in enumerate([b"aaaaaa", b"aaaaaa", b"bb", b"aaaaaa"])]
    assert [f["changed"] for f in flags] == [True, False, True, True]
    assert results.flush_all()
    kept = results.read_bodies(where["path"], 1)
    assert [k["body"] for k in kept] == ["aaaa", "bb", "aaaa"]  # cut to max_bytes
    assert kept[0]["size"] == 6 and kept[0]["truncated"] is True and kept[1]["truncated"] is False
    again = Keeper("change", fmt=where["fmt"], path=where["path"])  # a restarted controller
    assert again.offer(ev[4], b"aaaaaa") == {"changed": False, "kept": False}
    every = Keeper("all", fmt=where["fmt"], path=where["path"])
    assert every.offer(ev[5], b"aaaaaa") == {"changed": False, "kept": True}
    assert results.flush_all()
    assert len(results.read_bodies(where["path"], 1)) == 4


def test_keeper_default_path_is_the_configured_database(tmp_path: Path) -> None:
    db = tmp_path / "control.db"
    results.set_default_path(db)
    try:
        keep = results.keeper_from_spec("all")
        assert keep is not None
        keep.offer(make_event(9, "x", 1_800_000_000_000, 1, 100), b"hi")
        assert results.flush_all()
    finally:
        results.set_default_path(None)
    assert [r["body"] for r in results.read_bodies(db, 9)] == ["hi"]


def test_export_formats(tmp_path: Path) -> None:
    store = results.SqliteBodies(tmp_path / "b.db")
    store.add([item(1, b'{"a": 1}'), item(2, b'{"a": 2}')])
    store.close()
    for fmt in ("jsonl", "json", "csv"):
        out = io.StringIO()
        assert results.export_bodies(tmp_path / "b.db", out, fmt, decode="json") == 2
        text = out.getvalue()
        if fmt == "jsonl":
            assert [json.loads(x)["summary"] for x in text.splitlines()] == [{"a": 1}, {"a": 2}]
        elif fmt == "json":
            assert json.loads(text)[1]["seq"] == 2
        else:
            assert text.splitlines()[0].startswith("schedule_id,name,slot_ms,slot,seq,digest")
            assert '"{""a"":1}"' in text  # the decoded summary, as JSON in one cell
    with pytest.raises(results.ConfigError, match="format"):
        results.export_bodies(tmp_path / "b.db", io.StringIO(), "xml")
    with pytest.raises(results.ConfigError, match="bodies"):
        results.export_bodies(tmp_path / "missing.db", io.StringIO())
