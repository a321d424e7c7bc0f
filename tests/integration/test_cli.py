"""The CLI, called as main(argv) on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subminute.cli import main
from subminute.control.sqlite import SqliteStore


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "control.db")


def run(db: str, *argv: str) -> int:
    return main(["--db", db, *argv])


def test_add_status_set_stop_start_remove(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--name", "buses", "--every", "2s", "--http", "http://127.0.0.1:9/x") == 0
    assert "added schedule 1 (buses): every 2s, running" in capsys.readouterr().out
    assert run(db, "add", "--name", "night", "--plan", "tz=Europe/Paris; 06:00-20:00 every 2s; otherwise every 30s",
               "--call", "json:dumps", "--overlap", "skip") == 0
    capsys.readouterr()
    assert run(db, "set", "buses", "--every", "500ms") == 0
    assert run(db, "stop", "night") == 0
    capsys.readouterr()
    assert run(db, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    by_name = {s["name"]: s for s in status["schedules"]}
    assert by_name["buses"]["interval_now_ms"] == 500 and by_name["buses"]["running"] is True
    assert by_name["night"]["running"] is False and by_name["night"]["plan"].startswith("tz=Europe/Paris")
    assert status["controller"] is None
    assert run(db, "start", "2") == 0
    assert run(db, "remove", "buses") == 0
    assert [r["name"] for r in SqliteStore(db).rows()] == ["night"]


def test_status_table_shows_invalid_row_with_its_error(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteStore(db)
    store.put({"id": 1, "waitseconds": 5})
    store.put_raw({"id": 2, "name": "broken", "waitseconds": -1})
    assert run(db, "status") == 0
    out = capsys.readouterr().out
    assert "ID" in out and "INTERVAL" in out and "P99 MS" in out
    assert "INVALID" in out
    assert "schedule 2: waitseconds: -1 is not allowed" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["add", "--every", "0.01"], "waitseconds: '0.01' is not allowed; use a number of seconds from 0.1 to 86400"),
        (["add", "--every", "2s", "--plan", "x"], "not allowed with argument"),
        (["add", "--plan", "tz=Mars/Base; otherwise every 5s"], "plan.tz: 'Mars/Base' is not allowed"),
        (["add", "--http", "ftp://x"], "target.url: 'ftp://x' is not allowed; use an absolute http"),
        (["add", "--overlap", "queue"], "invalid choice: 'queue'"),
        (["add", "--timeout", "-3"], "timeout: '-3' is not allowed; use a number of seconds from 0.01 to 3600"),
        (["set", "nope", "--every", "1s"], "no schedule 'nope'"),
        (["run", "--budget", "zero"], "--budget: 'zero' is not allowed"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(db: str, argv: list[str], needle: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = run(db, *argv)
    except SystemExit as exc:  # argparse's own checks exit directly, with code 2 as well
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 or "usage" in err


def test_run_with_budget_fires_and_records_then_history(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--every", "200ms", "--target", '{"type": "noop"}') == 0
    assert run(db, "run", "--budget", "1.5", "--no-live", "--json") == 0
    out = capsys.readouterr().out
    handoff = json.loads(out[out.index("{"):])
    assert handoff["schedules"]["1"]["seq"] >= 5
    assert run(db, "history", "1", "--json", "--limit", "100") == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == handoff["schedules"]["1"]["seq"]
    assert all(r["status"] == "ok" and r["slot_ms"] % 200 == 0 for r in records)


def test_run_config_file_seeds_and_the_table_wins(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "s.toml"
    config.write_text('[[schedule]]\nid = 2\nname = "feed"\nevery = "1s"\ntarget = { type = "noop" }\n')
    assert run(db, "run", "--config", str(config), "--budget", "0.3", "--no-live") == 0
    assert "schedule 2: added from" in capsys.readouterr().err
    assert run(db, "set", "feed", "--every", "3s") == 0
    assert run(db, "run", "--config", str(config), "--budget", "0.3", "--no-live") == 0
    err = capsys.readouterr().err
    assert "the table differs from" in err and "waitseconds (table 3" in err and "the table wins" in err
    assert SqliteStore(db).get(2)["waitseconds"] == 3
    assert run(db, "run", "--config", str(config), "--file-wins", "--budget", "0.3", "--no-live") == 0
    assert "replaced from" in capsys.readouterr().err
    assert SqliteStore(db).get(2)["waitseconds"] == 1


def test_the_same_durations_written_differently_are_no_difference(db: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # add stores --timeout 4 as the text '4': every start reported "timeout (table '4', file 4)", and
    # --file-wins "replaced" identical values
    assert run(db, "add", "--id", "2", "--name", "feed", "--every", "2s", "--timeout", "4", "--grace", "1",
               "--offset", "500ms", "--target", '{"type": "noop"}') == 0
    config = tmp_path / "s.toml"
    config.write_text('[[schedule]]\nid = 2\nname = "feed"\nwaitseconds = 2.0\ntimeout = "4s"\ngrace = 1\n'
                      'offset = 0.5\ntarget = { type = "noop" }\n')
    capsys.readouterr()
    assert run(db, "run", "--config", str(config), "--file-wins", "--budget", "0.3", "--no-live") == 0
    err = capsys.readouterr().err
    assert "differs" not in err and "replaced" not in err, err
    config.write_text(config.read_text().replace('timeout = "4s"', 'timeout = "5s"'))
    assert run(db, "run", "--config", str(config), "--budget", "0.3", "--no-live") == 0
    assert "the table differs from" in capsys.readouterr().err.replace("\n", " ")


def test_demo_runs_briefly_and_prints_a_lateness_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seconds", "2.5", "--no-live"]) == 0
    out = capsys.readouterr().out
    assert "START P50 MS" in out and "predictions" in out and "vehicles" in out
    fires = int(out.split(" fires, ")[0].split()[-1])
    served = int(out.split(" fires, ")[1].split()[0])
    assert fires >= 3 and served >= 3


def test_demo_runs_on_a_bare_install_without_the_gtfs_extra(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "google.transit", None)  # as if gtfs-realtime-bindings were missing
    monkeypatch.setitem(sys.modules, "google.transit.gtfs_realtime_pb2", None)
    assert main(["demo", "--seconds", "2", "--no-live"]) == 0
    out, err = capsys.readouterr()
    assert "predictions" in out and "gtfs-vehicles" not in out
    assert "gtfs" in out + err and "Traceback" not in err


def test_run_with_json_logs_and_metrics_port(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteStore(db)
    store.put({"id": 1, "waitseconds": 0.2, "target": {"type": "noop"}})
    store.put_raw({"id": 2, "waitseconds": "nope"})
    assert main(["--log-json", "--db", db, "run", "--budget", "0.6", "--no-live", "--metrics-port", "0"]) == 0
    err = capsys.readouterr().err
    logged = [json.loads(line) for line in err.splitlines()]  # every line JSON (the metrics line was not)
    assert any(entry["msg"].startswith("metrics on http://127.0.0.1:") for entry in logged)
    assert any("waitseconds: 'nope' is not allowed" in entry.get("msg", "") for entry in logged)


def test_successive_budgeted_runs_continue_slot_for_slot(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "add", "--every", "200ms", "--target", '{"type": "noop"}') == 0
    for _ in range(3):
        assert run(db, "run", "--budget", "0.7", "--no-live") == 0
    capsys.readouterr()
    assert run(db, "history", "1", "--json", "--limit", "1000") == 0
    records = json.loads(capsys.readouterr().out)
    slots = [r["slot_ms"] for r in records if r["status"] == "ok"]
    assert len(slots) >= 8
    assert all(b - a == 200 for a, b in zip(slots, slots[1:]))  # no gap, no repeat across hand-offs
    assert not [r for r in records if r["status"] == "missed"]
