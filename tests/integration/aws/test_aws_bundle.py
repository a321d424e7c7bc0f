"""The inline code itself, run for real: the one bundle of the template (minified by the generator) runs the
controller against the moto server and the worker's HTTP poller against a local server, in a fresh
interpreter that has no subminute but the bundle's. A minification that changed the meaning of the code
fails here."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from subminute.aws.bundle import build_bundle

pytestmark = pytest.mark.aws

ISOLATE = (
    "import sys\n"
    "sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]\n"
    "sys.path = ['.'] + [p for p in sys.path if 'subminute' not in p and not p.endswith('/src')]\n"
    "import index, json\n"
    "class Context:\n"
    "    aws_request_id = 'bundle-test'\n"
    "    def __init__(self, seconds):\n"
    "        import time\n"
    "        self.end = time.monotonic() + seconds\n"
    "    def get_remaining_time_in_millis(self):\n"
    "        import time\n"
    "        return int((self.end - time.monotonic()) * 1000)\n"
)


def _run(tmp_path: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "index.py").write_text(build_bundle(), encoding="utf-8")
    return subprocess.run([sys.executable, "-c", ISOLATE + script], cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=60, env=env)


def test_the_bundled_controller_fires_through_the_worker(system: Any, moto: Any, tmp_path: Path) -> None:
    env = {**os.environ, "TABLE_NAME": system.table, "WORKER_FUNCTION": system.worker, "MAX_BUDGET_S": "2.5",
           "SAFETY_MARGIN_S": "0.5", "REFRESH_S": "0.25", "LEASE_TTL_S": "2"}
    result = _run(tmp_path, "out = index.controller_handler({}, Context(5))\nprint(json.dumps(out))\n", env)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["running"] is True and out["standby"] is False and out["handoff"]["token"] >= 1
    slots = sorted(e["slot_ms"] for e in moto.events("index.worker_handler") if e.get("schedule_id") == 1)
    assert len(slots) >= 3 and len(set(slots)) == len(slots)
    assert all(b - a == 500 for a, b in zip(slots, slots[1:]))  # row 1 fires every 0.5 s, on its grid


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        _Recorder.seen.append(dict(self.headers))
        body = b"ok"
        status = 200 if self.headers.get("Authorization") == "Bearer s3cr3t-token" else 401
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/feed"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_bundled_worker_polls_a_batch_with_the_local_http_target(server: str, tmp_path: Path) -> None:
    """One meaning per row: auth from the environment, expect and retries, as the local runtime does them."""
    target = {"type": "http", "url": server, "auth": {"type": "bearer", "env": "FEED_TOKEN"}, "expect": [200],
              "retries": 1}
    events = [{"schedule_id": i, "schedule": f"s{i}", "slot": "x", "slot_ms": 1, "seq": 1, "interval": 1.0,
               "target": target} for i in (1, 2, 3)]
    env = {**os.environ, "FEED_TOKEN": "s3cr3t-token"}
    env.pop("URL", None)
    result = _run(tmp_path, f"print(json.dumps(index.worker_handler({{'events': {events!r}}}, None)))\n", env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    polls = [line for line in lines if line.get("msg") == "poll"]
    assert sorted(p["schedule_id"] for p in polls) == [1, 2, 3] and {p["status"] for p in polls} == {"ok"}
    assert lines[-1] == {"msg": "batch", "fires": 3, "errors": 0}
    assert len(_Recorder.seen) == 3 and "s3cr3t-token" not in result.stdout  # sent, never logged
