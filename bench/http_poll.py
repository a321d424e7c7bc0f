"""How many polls per second can subminute keep on time? HTTP and TCP targets against local servers.

A server process on 127.0.0.1 (asyncio; an HTTP/1.1 keep-alive endpoint and a TCP line echo) takes the
polls, so it runs on the other core. This process runs the real local runtime (``subminute run``: SQLite
control file and fire records, local dispatcher, the target) with schedules spread over the 100 ms grid, at a rising rate, and prints for each rate: achieved polls
per second, start lateness p50/p99 (the fire's start, noted by its worker just before the request is
written, minus the slot), target latency p50/p99 and, second, the hand-over's lateness p99. The highest
rate with start p99 under 10 ms, no errors and at least 98% of the asked rate is the result.

    python bench/http_poll.py                    # HTTP then TCP, 4 s per rate, about 1.5 minutes
    python bench/http_poll.py --kind tcp --seconds 3 --rates 500,1000,1500
    python bench/http_poll.py clients            # the target vs stdlib http.client, httpx, aiohttp
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from subminute.runtime.local import LocalRuntime
from subminute.targets.base import build_target
from subminute.timing.stats import summarize

BODY = json.dumps({"stop": 42, "arrivals": [{"route": "7", "in_s": 95}, {"route": "12", "in_s": 240}]}).encode()
INTERVAL_MS = 100
WARMUP_S = 1.0


# -- the server process ------------------------------------------------------------------------------------

class _Http(asyncio.Protocol):
    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:  # GET requests without bodies
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(self.RESPONSE)


class _Line(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\n", 1)
            self.transport.write(b"pong\n")


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    http = await loop.create_server(_Http, "127.0.0.1", 0, backlog=4096)
    tcp = await loop.create_server(_Line, "127.0.0.1", 0, backlog=4096)
    ports = {"http": http.sockets[0].getsockname()[1], "tcp": tcp.sockets[0].getsockname()[1]}
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


class Server:
    """The server subprocess; ``ports`` maps http/tcp to the ports it listens on."""

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ports: dict[str, int] = json.loads(self.proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- polling at a rate -------------------------------------------------------------------------------------

def target_spec(kind: str, ports: dict[str, int]) -> dict[str, Any]:
    if kind == "http":
        return {"type": "http", "url": f"http://127.0.0.1:{ports['http']}/predictions?stop=42", "timeout": 2}
    return {"type": "tcp", "host": "127.0.0.1", "port": ports["tcp"], "send": "ping\n", "until": "\n",
            "timeout": 2}


def poll_at(rate: int, seconds: float, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``rate`` polls per second for ``seconds`` (after a warm-up second) in the real local runtime
    (SQLite control file and fire records, as ``subminute run``); return the figures."""
    schedules = max(1, round(rate * INTERVAL_MS / 1000))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        runtime = LocalRuntime(db, budget_s=WARMUP_S + seconds + 0.5)
        for i in range(schedules):
            runtime.store.put({"id": i + 1, "waitseconds": INTERVAL_MS / 1000, "target": spec, "timeout": 2,
                               "offset": (i * INTERVAL_MS // schedules) / 1000})
        cpu0 = time.process_time()
        start_ms = time.time() * 1000
        runtime.run()
        cpu = time.process_time() - cpu0
        conn = sqlite3.connect(db)
        records = conn.execute("SELECT slot_ms, status, lateness_ms, latency_ms, error, start_lateness_ms FROM fires").fetchall()
        conn.close()
    lo, hi = start_ms + WARMUP_S * 1000 + 500, start_ms + (WARMUP_S + seconds) * 1000 + 500
    window = [r for r in records if lo <= r[0] < hi]
    fired = [r for r in window if r[1] in ("ok", "error", "timeout")]
    ok = [r for r in fired if r[1] == "ok"]
    errors = [r for r in window if r[1] != "ok"]
    dispatch = summarize(r[2] for r in fired if r[2] is not None)
    start = summarize(r[5] for r in fired if r[5] is not None)
    latency = summarize(r[3] for r in ok if r[3] is not None)
    return {"asked": schedules * 1000 // INTERVAL_MS, "achieved": len(ok) / ((hi - lo) / 1000),
            "start_p50": start.p50, "start_p99": start.p99, "dispatch_p99": dispatch.p99, "latency_p50": latency.p50,
            "latency_p99": latency.p99, "errors": len(errors), "first_error": errors[0][4] if errors else None,
            "cpu_per_poll_us": cpu * 1e6 / max(len(records), 1)}


def _passes(row: dict[str, Any]) -> bool:
    return row["start_p99"] < 10 and not row["errors"] and row["achieved"] >= 0.98 * row["asked"]


def sweep(kind: str, rates: list[int], seconds: float, ports: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    failures = 0
    for rate in rates:
        print(f"  {kind} at {rate}/s ...", file=sys.stderr, flush=True)
        row = poll_at(rate, seconds, target_spec(kind, ports))
        row["kind"] = kind
        row["ok"] = _passes(row)
        if row["first_error"]:
            print(f"    {row['errors']} not ok, e.g. {row['first_error']}", file=sys.stderr, flush=True)
        out.append(row)
        failures = 0 if row["ok"] else failures + 1
        if failures >= 2:  # two failing rates in a row: higher ones will not pass either
            break
    return out


def markdown(headers: list[str], lines: list[list[str]]) -> None:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths)) + " |")


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ["target", "asked/s", "achieved/s", "start p50 ms", "start p99 ms", "target p50 ms",
               "target p99 ms", "errors", "hand-over p99 ms", "cpu us/poll", "start p99 < 10 ms"]
    markdown(headers, [[r["kind"], str(r["asked"]), f"{r['achieved']:.0f}", f"{r['start_p50']:.2f}",
                        f"{r['start_p99']:.2f}", f"{r['latency_p50']:.2f}", f"{r['latency_p99']:.2f}",
                        str(r["errors"]), f"{r['dispatch_p99']:.2f}", f"{r['cpu_per_poll_us']:.0f}",
                        "yes" if r["ok"] else "no"] for r in rows])


# -- HTTP clients compared -----------------------------------------------------------------------------------

def _threaded(requests: int, threads: int, one: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of ``requests`` calls of ``one`` spread over ``threads`` threads."""
    per = requests // threads

    def work() -> None:
        for _ in range(per):
            one()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def compare_clients(url: str, requests: int, threads: int) -> list[list[str]]:
    rows = []
    event = {"schedule_id": 1, "schedule": "bench", "slot_ms": 0, "seq": 0, "interval": 0}
    target = build_target({"type": "http", "url": url})

    def stdlib() -> None:
        result = target.run(event, 5)
        assert result.ok, result.error

    rows.append(["subminute HttpTarget (its own HTTP/1.1, pooled)",
                 *_figures(requests, *_threaded(requests, threads, stdlib))])
    parts = urlsplit(url)
    local = threading.local()

    def client() -> None:  # the standard library client, one kept-alive connection a thread (what the target used)
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    rows.append(["stdlib http.client (a connection a thread)", *_figures(requests, *_threaded(requests, threads, client))])
    try:
        import httpx
    except ImportError:
        rows.append(["httpx", "not installed", "", ""])
    else:
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=threads)) as client:
            def hx() -> None:
                client.get(url).raise_for_status()

            rows.append([f"httpx {httpx.__version__} (Client, threads)",
                         *_figures(requests, *_threaded(requests, threads, hx))])
    try:
        import aiohttp
    except ImportError:
        rows.append(["aiohttp", "not installed", "", ""])
    else:
        async def run_aiohttp() -> tuple[float, float]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=threads)) as session:
                async def one() -> None:
                    async with session.get(url) as response:
                        await response.read()
                        response.raise_for_status()

                async def worker(n: int) -> None:
                    for _ in range(n):
                        await one()

                wall0, cpu0 = time.perf_counter(), time.process_time()
                await asyncio.gather(*(worker(requests // threads) for _ in range(threads)))
                return time.perf_counter() - wall0, time.process_time() - cpu0

        rows.append([f"aiohttp {aiohttp.__version__} (asyncio, one loop)",
                     *_figures(requests, *asyncio.run(run_aiohttp()))])
    return rows


def _figures(requests: int, wall: float, cpu: float) -> list[str]:
    return [f"{requests / wall:.0f}", f"{cpu * 1e6 / requests:.0f}", f"{wall * 1e6 / requests:.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="poll", choices=["poll", "clients", "serve"])
    parser.add_argument("--kind", default="both", choices=["http", "tcp", "both"])
    parser.add_argument("--rates", default="250,500,1000,1500,2000,2500,3000",
                        help="comma list of polls per second to try, rising")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per rate (default 4)")
    parser.add_argument("--requests", type=int, default=6000, help="clients mode: requests per client")
    parser.add_argument("--threads", type=int, default=8, help="clients mode: concurrent requests")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        asyncio.run(_serve())
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores", file=sys.stderr)
    with Server() as server:
        if args.mode == "clients":
            url = f"http://127.0.0.1:{server.ports['http']}/predictions?stop=42"
            rows = compare_clients(url, args.requests, args.threads)
            markdown(["client", "requests/s", "client CPU us/request", "wall us/request"], rows)
            return 0
        rates = [int(r) for r in args.rates.split(",")]
        kinds = ["http", "tcp"] if args.kind == "both" else [args.kind]
        results = []
        for kind in kinds:
            results.extend(sweep(kind, rates, args.seconds, server.ports))
    print_table(results)
    for kind in kinds:
        passing = [r["asked"] for r in results if r["kind"] == kind and r["ok"]]
        best = max(passing) if passing else 0
        print(f"{kind}: highest rate with start p99 < 10 ms: {best} polls/s "
              f"({'meets' if best >= 1000 else 'misses'} the 1,000/s target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
