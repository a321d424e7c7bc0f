"""Keeping bodies: one suite run against both stores (SQLite file, JSON Lines directory)."""

from __future__ import annotations

import base64
import io
import json
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from subminute.dispatch.base import make_event
from subminute.errors import ConfigError, StoreError
from subminute.results import bodies as results
from subminute.results.bodies import BodyItem, digest
from subminute.results.export import export_bodies
from subminute.results.keep import Keeper, keeper_from_spec, redact_body
from subminute.results.records import FireRecord
from subminute.results.sinks import MAX_DETAIL_CHARS, FireLog, SqliteSink
from subminute.results.writers import BodyWriters
from subminute.secrets import register_secret


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
    writers = BodyWriters()
    keep = Keeper("change", fmt=where["fmt"], path=where["path"], max_bytes=4, bodies=writers)
    ev = [make_event(1, "s", 1_800_000_000_000 + i * 100, i, 100) for i in range(6)]
    flags = [keep.offer(ev[i], body) for i, body in enumerate([b"aaaaaa", b"aaaaaa", b"bb", b"aaaaaa"])]
    assert [f["changed"] for f in flags] == [True, False, True, True]
    assert writers.flush()
    kept = results.read_bodies(where["path"], 1)
    assert [k["body"] for k in kept] == ["aaaa", "bb", "aaaa"]  # cut to max_bytes
    assert kept[0]["size"] == 6 and kept[0]["truncated"] is True and kept[1]["truncated"] is False
    writers.close()
    again = Keeper("change", fmt=where["fmt"], path=where["path"])  # a restarted controller
    assert again.offer(ev[4], b"aaaaaa") == {"changed": False, "kept": False}
    every = Keeper("all", fmt=where["fmt"], path=where["path"])
    assert every.offer(ev[5], b"aaaaaa") == {"changed": False, "kept": True}
    assert every.flush()
    assert len(results.read_bodies(where["path"], 1)) == 4
    again.close()
    every.close()


def test_keeper_default_path_is_the_runtimes_database(tmp_path: Path) -> None:
    db = tmp_path / "control.db"
    writers = BodyWriters(db)
    keep = keeper_from_spec("all", writers)
    assert keep is not None
    keep.offer(make_event(9, "x", 1_800_000_000_000, 1, 100), b"hi")
    writers.close()  # writes what is queued
    assert [r["body"] for r in results.read_bodies(db, 9)] == ["hi"]


def test_a_keeper_built_to_check_a_spec_opens_nothing_until_it_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "default" / "subminute.db"
    monkeypatch.setenv("SUBMINUTE_DB", str(db))
    threads = threading.active_count()
    keep = keeper_from_spec({"mode": "all", "format": "jsonl", "path": str(tmp_path / "j")})
    plain = keeper_from_spec("change")
    assert keep is not None and plain is not None
    assert threading.active_count() == threads and not (tmp_path / "j").exists() and not db.exists()
    plain.offer(make_event(2, "x", 1_800_000_000_000, 1, 100), b"hi")  # its own writer: the default file
    assert plain.flush() and [r["body"] for r in results.read_bodies(db, 2)] == ["hi"]
    plain.close()
    keep.close()
    assert threading.active_count() == threads


def test_one_writer_per_destination_and_closed_writers_refuse(tmp_path: Path) -> None:
    writers = BodyWriters(tmp_path / "a.db")
    first = writers.writer("sqlite")
    assert writers.writer("sqlite", tmp_path / "a.db") is first
    assert writers.writer("jsonl", tmp_path / "j") is not first
    with pytest.raises(ConfigError, match="keep.path"):
        writers.writer("jsonl")
    writers.close()
    with pytest.raises(StoreError, match="closed"):
        writers.writer("sqlite")


def test_export_formats(tmp_path: Path) -> None:
    store = results.SqliteBodies(tmp_path / "b.db")
    store.add([item(1, b'{"a": 1}'), item(2, b'{"a": 2}')])
    store.close()
    for fmt in ("jsonl", "json", "csv"):
        out = io.StringIO()
        assert export_bodies(tmp_path / "b.db", out, fmt, decode="json") == 2
        text = out.getvalue()
        if fmt == "jsonl":
            assert [json.loads(x)["summary"] for x in text.splitlines()] == [{"a": 1}, {"a": 2}]
        elif fmt == "json":
            assert json.loads(text)[1]["seq"] == 2
        else:
            assert text.splitlines()[0].startswith("schedule_id,name,slot_ms,slot,seq,digest")
            assert '"{""a"":1}"' in text  # the decoded summary, as JSON in one cell
    with pytest.raises(ConfigError, match="format"):
        export_bodies(tmp_path / "b.db", io.StringIO(), "xml")
    with pytest.raises(ConfigError, match="bodies"):
        export_bodies(tmp_path / "missing.db", io.StringIO())


def test_bodies_are_kept_without_secrets_and_the_digest_is_of_what_was_kept(where: dict[str, Any]) -> None:
    known = "known-" + secrets.token_hex(8)  # read by some target: every kept body hides it
    register_secret(known)
    own = secrets.token_hex(8) + "/+ ="  # this target's own: hidden in its URL-encoded forms too
    writers = BodyWriters()
    keep = Keeper("all", fmt=where["fmt"], path=where["path"], bodies=writers, secrets=lambda: [own])
    body = f"a {known} b {quote(own, safe='')} c {quote_plus(own)} d {own} e".encode() + b"\xff\xfe"
    detail = keep.offer(make_event(1, "s", 1_800_000_000_000, 1, 100), body, digest(body))
    clean = b"a *** b *** c *** d *** e\xff\xfe"  # bytes that are not UTF-8 come back as they were
    assert detail == {"digest": digest(clean), "changed": True, "kept": True}
    plain = keep.offer(make_event(1, "s", 1_800_000_000_100, 2, 100), b"nothing secret", "given")
    assert plain == {"changed": True, "kept": True}  # unchanged by hiding: the target's digest stands
    writers.close()
    kept = results.read_bodies(where["path"], 1)
    assert kept[0]["digest"] == digest(clean) and kept[0]["size"] == len(clean)
    assert base64.b64decode(kept[0]["body"]) == clean  # not UTF-8: base64
    assert redact_body(b"x " + known.encode()) == b"x ***"
    assert redact_body(b"no secret here") == b"no secret here"


def test_the_sink_stores_error_and_detail_texts_without_secrets(tmp_path: Path) -> None:
    known = "sink-" + secrets.token_hex(8)
    register_secret(known)
    sink = SqliteSink(tmp_path / "f.db")
    # the detail is cut at MAX_DETAIL_CHARS - 100 of its JSON text: the secret straddles the cut
    straddle = "x" * (MAX_DETAIL_CHARS - 100 - len('{"stdout":"') - 10) + known
    sink.write(FireRecord(1, "s", 1, 1, "error", error=f"HTTP 500: {known}", detail={"stdout": straddle}))
    assert sink.flush(5)
    sink.close()
    assert known[:10].encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
    row = FireLog(tmp_path / "f.db").history(1)[0]
    assert row["error"] == "HTTP 500: ***"
