"""The measuring harness of subminute's AWS home (issue 10): moto, a stand-in endpoint, the chain of executions.

Three processes, on purpose (the controller must not share a GIL with the emulators, and a CPU quota must
throttle the controller alone):

* **moto** (``python bench/aws_harness.py moto``): a moto 5.2.5 server on a free 127.0.0.1 port, Lambda's
  Docker runtime replaced by a no-op (nothing here runs functions in containers).
* **the stand-in endpoint** (``python bench/aws_harness.py stand-in``): a small asyncio HTTP proxy in front of
  moto that every measured client talks to (``endpoint_url``). It waits ``latency_ms`` before answering each
  call (the "stand-in endpoints that inject 0 or 20 ms into every DynamoDB and Lambda call"), counts every
  call by caller, service and operation, with DynamoDB request units computed the way DynamoDB bills them
  (see :func:`item_size`; before/after images of written items are read from moto on a side channel),
  and answers an asynchronous ``Invoke`` of a known function itself (202) after the latency, recording its
  payload: moto's own Invoke is a slow Python path (it would cap 1,000 invokes a second, which AWS does not).
  Everything else is forwarded to moto.
* **the chain** (``python bench/aws_harness.py chain CONFIG RESULT``), the controller under test, optionally
  inside a cgroup CPU quota (:class:`CpuQuota`). It plays the state machine: it interprets the real ASL
  definition of :mod:`subminute.aws.statemachine` (Choice, Pass, Task, Wait, Succeed; the path taken is
  the transitions billed), performs its ``dynamodb:getItem`` through the stand-in, runs each ``RunController``
  task as ``subminute.aws.handlers.run_controller(event, context, store=DynamoStore(...),
  dispatcher=LambdaDispatcher(...), clock=SystemClock())`` (or ``controller_handler`` itself with
  ``entry="handler"``) with a Lambda context whose remaining time is real, and passes the ``Restart``
  state's ``Input`` to the next execution after ``gap_s`` (the restart time), with each execution cut at
  ``budget_s``. A botocore ``before-send`` hook records, for every ``Invoke``, the instant the request left
  the client; minus the ``slot_ms`` of its payload that is the Invoke start lateness.

Why not run the real state machine on moto: moto executes Lambda tasks inside its own process (the
controller would then share moto's GIL, skip the stand-in's latency and need the ``startExecution`` patches
of tests/integration/aws/conftest.py). tests/integration/aws/test_aws_cycle.py already runs the real one;
here the definition is interpreted instead, state by state, which also yields the transitions per
execution along the path actually taken.

Used by bench/aws_cost.py and bench/aws_restart.py; the other modes of this file are their subprocesses.
``python bench/aws_harness.py cpu-quota --memory 128 -- CMD ...`` runs any command under Lambda's CPU share.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
MONTH_S = 30 * 86_400  # a 30-day month, as in docs/aws.md
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one vCPU at 1,769 MB, proportionally less below
HERE = Path(__file__).resolve()
CALLER_HEADER = "X-Harness-Caller"
# Lambda's own log lines per invocation (Text format): START, END and REPORT, about 250 bytes together
LAMBDA_PLATFORM_LOG_BYTES = 250
# the controller's client settings, as subminute.aws.handlers.controller_handler builds them today
HANDLER_CLIENT_CONFIG = {"connect_timeout": 2, "read_timeout": 5,
                         "retries": {"max_attempts": 3, "mode": "standard"}, "max_pool_connections": 16}
# the handler's optional environment: cleared in the chain's process unless given explicitly
HANDLER_ENV = ("SAFETY_MARGIN_S", "MAX_BUDGET_S", "REFRESH_S", "LEASE_TTL_S", "POLLER_FUNCTION", "URL")

__all__ = ["CpuQuota", "CgroupError", "ChainRun", "Harness", "Stack", "item_size", "lambda_cpu_share",
           "print_table", "summarize"]


# -- small statistics and printing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p99: float
    max: float
    min: float

    def cells(self, digits: int = 1) -> list[str]:
        return [str(self.count)] + [_num(v, digits) for v in (self.p50, self.p99, self.max)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when there are none)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def summarize(values: Iterable[float]) -> Summary:
    ordered = sorted(values)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    return Summary(len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1], ordered[0])


def _num(value: float, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: Any = None) -> None:
    """A plain aligned table (first column left, the others right)."""
    out = out or sys.stdout
    text = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    print(line(text[0]), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in text[1:]:
        print(line(row), file=out)


# -- DynamoDB billing: item sizes and request units ------------------------------------------------------------
def _number_size(text: str) -> int:
    """A number's size: about one byte per two significant digits, plus one (leading/trailing zeros trimmed)."""
    mantissa = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return (len(mantissa) + 1) // 2 + 1


def attr_size(value: Mapping[str, Any]) -> int:
    """The billed size of one DynamoDB attribute value (wire JSON form), as the DynamoDB guide states it."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(base64.b64decode(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(n) for n in v)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in v)
    if kind == "L":  # 3 bytes of overhead, one byte per element
        return 3 + sum(1 + attr_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attr_size(x) for k, x in v.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Attribute names (UTF-8 bytes) plus values: what DynamoDB rounds up to 4 KB (reads) or 1 KB (writes)."""
    return sum(len(k.encode()) + attr_size(v) for k, v in (item or {}).items())


def read_units(size: int, consistent: bool, factor: float = 1.0) -> float:
    """Read request units of ``size`` bytes read at once: 4 KB units, at least one, half if eventually
    consistent; ``factor`` 2 for transactions."""
    return factor * (1.0 if consistent else 0.5) * max(1, math.ceil(size / 4096))


def write_units(size: int, factor: float = 1.0) -> float:
    """Write request units: 1 KB units of the larger of the item before and after, at least one."""
    return factor * max(1, math.ceil(size / 1024))


# -- the stand-in endpoint (its own process) -----------------------------------------------------------------
_LAMBDA_OPS = [
    ("POST", re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$"), "Invoke"),
    ("POST", re.compile(r"^/2014-11-13/functions/([^/]+)/invoke-async/?$"), "InvokeAsync"),
    ("GET", re.compile(r"^/2015-03-31/functions/([^/]+)/configuration$"), "GetFunctionConfiguration"),
    ("GET", re.compile(r"^/2015-03-31/functions/([^/]+)/?$"), "GetFunction"),
    ("GET", re.compile(r"^/2015-03-31/functions/?$"), "ListFunctions"),
    ("POST", re.compile(r"^/2015-03-31/functions/?$"), "CreateFunction"),
]
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect", "proxy-connection"}
_SCAN_KEEP = ("TableName", "IndexName", "Limit", "ExclusiveStartKey", "Segment", "TotalSegments", "ConsistentRead")


def _service(headers: Mapping[str, str]) -> str:
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", headers.get("authorization", ""))
    return match.group(1) if match else "unknown"


def _function_name(quoted: str) -> str:
    name = urllib.parse.unquote(quoted)
    if ":function:" in name:
        name = name.split(":function:", 1)[1]
    return name.split(":")[0]


def _operation(service: str, method: str, path: str, headers: Mapping[str, str]) -> tuple[str, str | None]:
    target = headers.get("x-amz-target", "")
    if target:
        return target.rsplit(".", 1)[-1], None
    if service == "lambda":
        for verb, pattern, op in _LAMBDA_OPS:
            match = pattern.match(path)
            if verb == method and match:
                return op, _function_name(match.group(1)) if match.groups() else None
    return f"{method} {re.sub(r'/[^/]*[0-9:][^/]*', '/{}', path)}", None


class StandIn:
    """The stand-in endpoint: latency, counting, request units, a fast async Invoke; moto behind it."""

    def __init__(self, upstream: str, latency_ms: float) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.latency_s = latency_ms / 1000
        self.functions: set[str] = set()
        self.lock = threading.Lock()
        self.calls: dict[str, dict[str, Any]] = {}
        self.invokes: list[tuple[float, str, str, str]] = []  # received ms, function, caller, payload
        self.key_names: dict[str, list[str]] = {}
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(32, thread_name_prefix="forward")
        self.started = time.time()

    # -- counting ------------------------------------------------------------------------------------------
    def count(self, caller: str, service: str, op: str, *, status: int, req_bytes: int, resp_bytes: int,
              rru: float = 0.0, wru: float = 0.0, srru: float = 0.0, unknown_units: bool = False) -> None:
        key = f"{caller}|{service}|{op}"
        with self.lock:
            entry = self.calls.setdefault(key, {"caller": caller, "service": service, "op": op, "count": 0,
                                                "errors": 0, "rru": 0.0, "wru": 0.0, "srru": 0.0,
                                                "req_bytes": 0, "resp_bytes": 0, "units_unknown": 0})
            entry["count"] += 1
            entry["errors"] += status >= 400
            entry["rru"] += rru
            entry["wru"] += wru
            entry["srru"] += srru
            entry["req_bytes"] += req_bytes
            entry["resp_bytes"] += resp_bytes
            entry["units_unknown"] += unknown_units

    # -- HTTP ----------------------------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                received = time.time() * 1000
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                raw: list[tuple[str, str]] = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    raw.append((name.strip(), value.strip()))
                headers = {k.lower(): v for k, v in raw}
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                else:
                    length = int(headers.get("content-length") or 0)
                    body = await reader.readexactly(length) if length else b""
                status, out_headers, out_body = await self.respond(method, target, raw, headers, body, received)
                reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
                head_out = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in out_headers]
                head_out += [f"Content-Length: {len(out_body)}", "Connection: keep-alive", "", ""]
                writer.write("\r\n".join(head_out).encode("latin-1") + out_body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except Exception as exc:  # noqa: BLE001 - one broken connection must not stop the endpoint
            print(f"stand-in: {exc!r}", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def respond(self, method: str, target: str, raw: list[tuple[str, str]], headers: dict[str, str],
                      body: bytes, received: float) -> tuple[int, list[tuple[str, str]], bytes]:
        path = target.split("?", 1)[0]
        if path.startswith("/__harness/"):
            return self.control(method, path, body)
        service = _service(headers)
        op, function = _operation(service, method, path, headers)
        caller = headers.get(CALLER_HEADER.lower(), "other")
        if (op == "Invoke" and function in self.functions
                and headers.get("x-amz-invocation-type", "RequestResponse") == "Event"):
            with self.lock:
                self.invokes.append((received, function, caller, body.decode("utf-8", "replace")))
            self.count(caller, service, op, status=202, req_bytes=len(body), resp_bytes=0)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return 202, [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4())),
                         ("X-Amz-Executed-Version", "$LATEST")], b""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        loop = asyncio.get_running_loop()
        status, out_headers, out_body = await loop.run_in_executor(
            self.pool, self.forward, method, target, raw, headers, body, service, op, caller)
        return status, out_headers, out_body

    def control(self, method: str, path: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        kind = [("Content-Type", "application/json")]
        if path == "/__harness/stats":
            with self.lock:
                data = {"calls": list(self.calls.values()), "invokes": list(self.invokes),
                        "latency_ms": self.latency_s * 1000, "since": self.started}
            return 200, kind, json.dumps(data).encode()
        if path == "/__harness/reset" and method == "POST":
            with self.lock:
                self.calls.clear()
                self.invokes.clear()
                self.started = time.time()
            return 200, kind, b"{}"
        if path == "/__harness/config" and method == "POST":
            config = json.loads(body or b"{}")
            if "latency_ms" in config:
                self.latency_s = float(config["latency_ms"]) / 1000
            if "functions" in config:
                self.functions = set(config["functions"])
            return 200, kind, b"{}"
        return 404, kind, b'{"message": "no such harness call"}'

    # -- forwarding to moto (worker threads) -------------------------------------------------------------------
    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return conn

    def _send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
              ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
                out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
                return response.status, out, data
            except (http.client.HTTPException, ConnectionError, OSError):
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _ddb(self, op: str, payload: Mapping[str, Any], auth: list[tuple[str, str]]) -> dict[str, Any]:
        """A side-channel DynamoDB call to moto: not delayed, not counted."""
        headers = auth + [("X-Amz-Target", f"DynamoDB_20120810.{op}"),
                          ("Content-Type", "application/x-amz-json-1.0"), ("Host", f"{self.host}:{self.port}")]
        status, _, data = self._send("POST", "/", headers, json.dumps(payload).encode())
        if status != 200:
            raise RuntimeError(f"side channel {op}: {status} {data[:200]!r}")
        return json.loads(data or b"{}")

    def _keys(self, table: str, auth: list[tuple[str, str]]) -> list[str]:
        if table not in self.key_names:
            schema = self._ddb("DescribeTable", {"TableName": table}, auth)["Table"]["KeySchema"]
            self.key_names[table] = [k["AttributeName"] for k in schema]
        return self.key_names[table]

    def _size(self, table: str, key: Mapping[str, Any], auth: list[tuple[str, str]]) -> int:
        item = self._ddb("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}, auth).get("Item")
        return item_size(item)

    def _write_targets(self, op: str, req: Mapping[str, Any], auth: list[tuple[str, str]]
                       ) -> list[tuple[str, dict[str, Any], bool, float]]:
        """(table, key, deletes, factor) of every item a write touches."""
        def key_of(table: str, item: Mapping[str, Any]) -> dict[str, Any]:
            return {k: item[k] for k in self._keys(table, auth) if k in item}

        if op == "PutItem":
            return [(req["TableName"], key_of(req["TableName"], req["Item"]), False, 1.0)]
        if op in ("UpdateItem", "DeleteItem"):
            return [(req["TableName"], dict(req["Key"]), op == "DeleteItem", 1.0)]
        targets: list[tuple[str, dict[str, Any], bool, float]] = []
        if op == "BatchWriteItem":
            for table, requests in req.get("RequestItems", {}).items():
                for entry in requests:
                    if "PutRequest" in entry:
                        targets.append((table, key_of(table, entry["PutRequest"]["Item"]), False, 1.0))
                    elif "DeleteRequest" in entry:
                        targets.append((table, dict(entry["DeleteRequest"]["Key"]), True, 1.0))
        elif op == "TransactWriteItems":
            for entry in req.get("TransactItems", []):
                (kind, spec), = entry.items()
                key = key_of(spec["TableName"], spec["Item"]) if kind == "Put" else dict(spec["Key"])
                targets.append((spec["TableName"], key, kind == "Delete", 2.0))
        return targets

    def _read_units(self, op: str, req: Mapping[str, Any], resp: Mapping[str, Any],
                    auth: list[tuple[str, str]]) -> float:
        projected = any(k in req for k in ("ProjectionExpression", "AttributesToGet"))
        if op == "GetItem":
            item = resp.get("Item")
            size = self._size(req["TableName"], req["Key"], auth) if projected and item else item_size(item)
            return read_units(size, bool(req.get("ConsistentRead")))
        if op == "BatchGetItem":  # each item is rounded up alone, as a GetItem
            units = 0.0
            for table, spec in req.get("RequestItems", {}).items():
                consistent = bool(spec.get("ConsistentRead"))
                unprocessed = len(resp.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
                found = resp.get("Responses", {}).get(table, [])
                keys = self._keys(table, auth)
                for item in found:
                    size = self._size(table, {k: item[k] for k in keys}, auth) if spec.get(
                        "ProjectionExpression") or spec.get("AttributesToGet") else item_size(item)
                    units += read_units(size, consistent)
                units += read_units(0, consistent) * max(0, len(spec.get("Keys", [])) - unprocessed - len(found))
            return units
        if op in ("Scan", "Query"):  # billed on the total size of the items evaluated, before any filter
            consistent = bool(req.get("ConsistentRead"))
            if projected or any(k in req for k in ("FilterExpression", "ScanFilter", "QueryFilter", "Select")):
                plain = {k: req[k] for k in _SCAN_KEEP if k in req}
                if op == "Query":
                    condition = req.get("KeyConditionExpression", "")
                    plain["KeyConditionExpression"] = condition
                    names = {k: v for k, v in req.get("ExpressionAttributeNames", {}).items() if k in condition}
                    values = {k: v for k, v in req.get("ExpressionAttributeValues", {}).items() if k in condition}
                    if names:
                        plain["ExpressionAttributeNames"] = names
                    if values:
                        plain["ExpressionAttributeValues"] = values
                items = self._ddb(op, plain, auth).get("Items", [])
            else:
                items = resp.get("Items", [])
            return read_units(sum(item_size(i) for i in items), consistent)
        if op == "TransactGetItems":
            units = 0.0
            for entry, got in zip(req.get("TransactItems", []), resp.get("Responses", [])):
                spec = entry["Get"]
                size = self._size(spec["TableName"], spec["Key"], auth) if "ProjectionExpression" in spec \
                    else item_size(got.get("Item"))
                units += read_units(size, True, 2.0)
            return units
        return 0.0

    def forward(self, method: str, target: str, raw: list[tuple[str, str]], headers: dict[str, str], body: bytes,
                service: str, op: str, caller: str) -> tuple[int, list[tuple[str, str]], bytes]:
        send = [(k, v) for k, v in raw if k.lower() not in _HOP and k.lower() != CALLER_HEADER.lower()]
        auth = [(k, v) for k, v in raw if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token")]
        rru = wru = srru = 0.0
        unknown = False
        targets: list[tuple[str, dict[str, Any], bool, float]] = []
        before: list[int] = []
        req: dict[str, Any] = {}
        if service == "dynamodb":
            try:
                req = json.loads(body or b"{}")
                targets = self._write_targets(op, req, auth)
                before = [self._size(t, k, auth) for t, k, _, _ in targets]
            except Exception:  # noqa: BLE001 - units unknown, the call still goes through
                unknown, targets = True, []
        status, out_headers, data = self._send(method, target, send, body)
        if service == "dynamodb" and not unknown:
            try:
                if targets and (status == 200 or b"ConditionalCheckFailed" in data):
                    after = [0 if deletes else self._size(t, k, auth) for t, k, deletes, _ in targets]
                    wru = sum(write_units(max(b, a), f) for (_, _, _, f), b, a in zip(targets, before, after))
                elif status == 200 and headers.get("x-amz-target", "").startswith("DynamoDBStreams"):
                    srru = 1.0 if op == "GetRecords" else 0.0
                elif status == 200:
                    rru = self._read_units(op, req, json.loads(data or b"{}"), auth)
            except Exception:  # noqa: BLE001
                unknown = True
        self.count(caller, service, op, status=status, req_bytes=len(body), resp_bytes=len(data),
                   rru=rru, wru=wru, srru=srru, unknown_units=unknown)
        return status, out_headers, data


def serve_stand_in(upstream: str, latency_ms: float, port: int = 0) -> None:
    """Run the stand-in endpoint until stdin closes; print {"port": N} once listening."""
    stand_in = StandIn(upstream, latency_ms)

    async def main() -> None:
        server = await asyncio.start_server(stand_in.handle, "127.0.0.1", port, limit=1 << 24, backlog=1024)
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # the parent closes our stdin (or dies): end
        sys.stdout.flush()
        os._exit(0)  # open keep-alive connections need no goodbye

    asyncio.run(main())


def serve_moto() -> None:
    """Run a moto server on a free port until stdin closes; print {"port": N} once listening."""
    import logging

    from moto.awslambda.models import LambdaFunction
    from moto.server import ThreadedMotoServer

    # no Docker here: a function invoked through moto (never the worker: the stand-in answers those) is a no-op
    LambdaFunction._invoke_lambda = lambda self, event=None: ("{}", False, "")  # type: ignore[method-assign]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(json.dumps({"port": server.get_host_and_port()[1]}), flush=True)
    sys.stdin.read()
    server.stop()


# -- the CPU quota (cgroup v1 cpu controller) ------------------------------------------------------------------
class CgroupError(RuntimeError):
    """A CPU quota could not be set up; the message says which step failed."""


def lambda_cpu_share(memory_mb: float) -> float:
    """The CPUs Lambda gives a function of ``memory_mb``: one at 1,769 MB, proportionally less below."""
    return memory_mb / LAMBDA_MB_PER_VCPU


class CpuQuota:
    """A child cgroup of /sys/fs/cgroup/cpu with ``cpu.cfs_quota_us = period * memory / 1769``.

    ``preexec`` (for :class:`subprocess.Popen`) moves the new process in before it runs anything; every
    thread it starts stays in. On exit the group's processes go back to the parent group and it is removed.
    """

    ROOT = Path("/sys/fs/cgroup/cpu")

    def __init__(self, memory_mb: float, period_us: int = 100_000) -> None:
        self.memory_mb = memory_mb
        self.cpus = lambda_cpu_share(memory_mb)
        self.period_us = int(period_us)
        self.quota_us = max(1000, round(self.period_us * self.cpus))  # the kernel's minimum quota is 1 ms
        self.path = self.ROOT / f"subminute-bench-{os.getpid()}-{int(memory_mb)}mb-{uuid.uuid4().hex[:6]}"

    def describe(self) -> str:
        return (f"{self.memory_mb:g} MB -> {self.cpus:.3f} CPU: cpu.cfs_quota_us {self.quota_us} "
                f"per cpu.cfs_period_us {self.period_us} ({self.path})")

    def __enter__(self) -> CpuQuota:
        if not (self.ROOT / "cpu.cfs_quota_us").exists():
            raise CgroupError(f"no cgroup v1 cpu controller at {self.ROOT} (cpu.cfs_quota_us missing)")
        steps = [("mkdir", lambda: self.path.mkdir()),
                 ("cpu.cfs_period_us", lambda: (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))),
                 ("cpu.cfs_quota_us", lambda: (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us)))]
        for what, step in steps:
            try:
                step()
            except OSError as exc:
                self._remove()
                raise CgroupError(f"cgroup {what} at {self.path} failed: {exc}") from exc
        return self

    def preexec(self) -> None:
        """In the child between fork and exec: join the group (exec'd code then runs throttled)."""
        with open(self.path / "cgroup.procs", "w") as procs:
            procs.write(str(os.getpid()))

    def stat(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in (line.split() for line in
                                           (self.path / "cpu.stat").read_text().splitlines() if line.strip())}
        except OSError:
            return {}

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.ROOT / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def __exit__(self, *exc: object) -> None:
        self._remove()


def run_under_quota(argv: Sequence[str], memory_mb: float, period_us: int = 100_000) -> int:
    """Run a command under Lambda's CPU share at ``memory_mb``; print the group's cpu.stat at the end."""
    with CpuQuota(memory_mb, period_us) as quota:
        print(f"cpu quota: {quota.describe()}", file=sys.stderr)
        started = time.monotonic()
        rc = subprocess.call(list(argv), preexec_fn=quota.preexec)  # noqa: PLW1509 - no threads here
        stat = quota.stat()
    print(f"cpu quota: exit {rc} after {time.monotonic() - started:.1f} s; cpu.stat {stat}", file=sys.stderr)
    return rc


# -- the state machine, interpreted ---------------------------------------------------------------------------
class AslError(Exception):
    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error, self.cause = error, cause


class _Missing(Exception):
    pass


def _get(data: Any, path: str, context: Mapping[str, Any]) -> Any:
    if path.startswith("$$"):
        data, path = context, "$" + path[2:]
    if path == "$":
        return data
    if not path.startswith("$.") or "[" in path:
        raise NotImplementedError(f"JSONPath {path!r}: the harness reads only $.a.b paths")
    for part in path[2:].split("."):
        if not isinstance(data, Mapping) or part not in data:
            raise _Missing(path)
        data = data[part]
    return data


def _put(data: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return value
    out = json.loads(json.dumps(data)) if isinstance(data, Mapping) else {}
    parts = path[2:].split(".")
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _intrinsic(text: str, data: Any, context: Mapping[str, Any]) -> Any:
    match = re.fullmatch(r"States\.(\w+)\((.*)\)", text.strip())
    if not match:
        raise NotImplementedError(f"intrinsic {text!r}")
    name, arg = match.group(1), match.group(2).strip()
    if name == "StringToJson":
        return json.loads(_get(data, arg, context))
    if name == "JsonToString":
        return json.dumps(_get(data, arg, context), separators=(",", ":"))
    raise NotImplementedError(f"intrinsic States.{name}")


def _resolve(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _intrinsic(value, data, context) if value.startswith("States.") \
                    else _get(data, value, context)
            else:
                out[key] = _resolve(value, data, context)
        return out
    if isinstance(template, list):
        return [_resolve(v, data, context) for v in template]
    return template


def _rule(rule: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> bool:
    if "And" in rule:
        return all(_rule(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(_rule(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not _rule(rule["Not"], data, context)
    try:
        value, present = _get(data, rule["Variable"], context), True
    except _Missing:
        value, present = None, False
    if "IsPresent" in rule:
        return present == bool(rule["IsPresent"])
    if not present:
        raise AslError("States.Runtime", f"Invalid path {rule['Variable']}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for op, expected in rule.items():
        if op in ("Variable", "Next"):
            continue
        if op.endswith("Path"):
            op, expected = op[:-4], _get(data, expected, context)
        if op == "IsNull":
            return (value is None) == expected
        if op == "IsBoolean":
            return isinstance(value, bool) == expected
        if op == "IsNumeric":
            return number == expected
        if op == "IsString":
            return isinstance(value, str) == expected
        if op == "BooleanEquals":
            return isinstance(value, bool) and value == expected
        if op == "StringEquals":
            return isinstance(value, str) and value == expected
        if op.startswith("Numeric"):
            if not number:
                return False
            compare = {"NumericEquals": value == expected, "NumericLessThan": value < expected,
                       "NumericGreaterThan": value > expected, "NumericLessThanEquals": value <= expected,
                       "NumericGreaterThanEquals": value >= expected}
            if op in compare:
                return compare[op]
        raise NotImplementedError(f"Choice rule {op}")
    raise NotImplementedError(f"Choice rule {rule}")


def walk(definition: Mapping[str, Any], data: Any, call: Callable[[str, str, Any], Any],
         context: dict[str, Any], sleep: Callable[[float], None] = time.sleep) -> tuple[list[str], Any]:
    """Run one execution of an ASL definition; ``call(state, resource, parameters)`` performs tasks.
    Returns the states entered, in order (each one a billed transition), and the final output."""
    states = definition["States"]
    name = definition["StartAt"]
    path: list[str] = []
    while True:
        state = states[name]
        path.append(name)
        context["State"] = {"Name": name, "EnteredTime": _iso(time.time())}
        kind = state["Type"]
        if kind == "Choice":
            chosen = next((c["Next"] for c in state.get("Choices", []) if _rule(c, data, context)),
                          state.get("Default"))
            if chosen is None:
                raise AslError("States.NoChoiceMatched", name)
            name = chosen
            continue
        if kind in ("Succeed", "Fail"):
            return path, data
        effective = _get(data, state.get("InputPath", "$"), context) if state.get("InputPath", "$") else {}
        if kind == "Pass":
            result = _resolve(state["Parameters"], effective, context) if "Parameters" in state \
                else state.get("Result", effective)
        elif kind == "Wait":
            seconds = state.get("Seconds")
            if seconds is None:
                raise NotImplementedError(f"Wait state {name} without Seconds")
            sleep(float(seconds))
            result = effective
        elif kind == "Task":
            params = _resolve(state.get("Parameters", {}), effective, context)
            try:
                result = call(name, state["Resource"], params)
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - the state's Catch decides
                error = exc.error if isinstance(exc, AslError) else type(exc).__name__
                catcher = next((c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]
                                or error in c["ErrorEquals"] or "States.TaskFailed" in c["ErrorEquals"]), None)
                if catcher is None:
                    raise
                data = _put(data, catcher.get("ResultPath", "$"), {"Error": error, "Cause": str(exc)[:500]})
                name = catcher["Next"]
                continue
            if "ResultSelector" in state:
                result = _resolve(state["ResultSelector"], result, context)
        else:
            raise NotImplementedError(f"state type {kind}")
        data = _put(data, state["ResultPath"] if "ResultPath" in state else "$", result)
        if state.get("OutputPath", "$") != "$":
            data = _get(data, state["OutputPath"], context)
        if state.get("End"):
            return path, data
        name = state["Next"]


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


# -- the chain of executions (the controller's process) ---------------------------------------------------------
class LambdaContext:
    """Like tests/aws_context.py: the remaining time follows the real monotonic clock."""

    def __init__(self, timeout_s: float, request_id: str, function_name: str, memory_mb: int) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.aws_request_id = request_id
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class _CountingStream(io.TextIOBase):
    """What the controller prints (CloudWatch Logs bills ingested bytes)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.bytes += len(text.encode())
            self.lines += text.count("\n")
        return len(text)

    def writable(self) -> bool:
        return True


def run_chain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Run the chain of executions described by ``cfg`` in this process (see :meth:`Harness.run_chain`)."""
    import logging

    import boto3
    from botocore.config import Config

    from subminute.aws import handlers
    from subminute.aws.statemachine import definition as asl_definition

    endpoint, table = cfg["endpoint"], cfg["table"]
    sent: list[tuple[float, Any]] = []

    def record_invoke(request: Any, **_: Any) -> None:
        sent.append((time.time() * 1000, request.body))

    def tag(caller: str) -> Callable[..., None]:
        def add(request: Any, **_: Any) -> None:
            request.headers[CALLER_HEADER] = caller
        return add

    def client(service: str, caller: str) -> Any:
        made = boto3.client(service, endpoint_url=endpoint, region_name=REGION, config=Config(**HANDLER_CLIENT_CONFIG))
        made.meta.events.register("before-send", tag(caller))
        if service == "lambda":
            made.meta.events.register("before-send.lambda.Invoke", record_invoke)
        return made

    if cfg.get("entry") == "handler":  # controller_handler builds its clients from boto3's default session
        boto3.setup_default_session(region_name=REGION)
        events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
        events.register("before-send", tag("controller"))
        events.register("before-send.lambda.Invoke", record_invoke)

    machine = asl_definition(table, cfg["controller_arn"])
    sm_ddb = client("dynamodb", "statemachine")
    out = _CountingStream()
    log_bytes = _CountingStream()
    handler = logging.StreamHandler(log_bytes)
    handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t" + "0" * 36 + "\t%(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("subminute").setLevel(logging.INFO)  # as in Lambda (handlers.py does it there)

    executions: list[dict[str, Any]] = []
    errors: list[str] = []
    run_end = time.monotonic() + float(cfg["run_s"])
    budget = cfg.get("budget_s")
    gap = float(cfg.get("gap_s", 0.3))
    max_exec = cfg.get("max_executions")
    min_exec_s = float(cfg.get("min_execution_s", 1.0))
    last_end: float | None = None
    next_input: Any = cfg.get("input", {})
    last_results: dict[str, Any] = {}
    cpu0, wall0 = time.process_time(), time.time()

    def invoke_controller(payload: Any, record: dict[str, Any]) -> dict[str, Any]:
        nonlocal last_end
        if last_end is not None:
            delay = last_end + gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            record["gap_s"] = round(time.monotonic() - last_end, 4)
        cap = min(float(budget) if budget else math.inf, run_end - time.monotonic())
        context = LambdaContext(float(cfg["timeout_s"]), record["request_id"], cfg["controller"], int(cfg["memory_mb"]))
        record["started"] = time.time()
        started = time.monotonic()
        try:
            if cfg.get("entry") == "handler":
                if math.isfinite(cap):
                    os.environ["MAX_BUDGET_S"] = f"{max(cap, 0.001):.3f}"
                else:
                    os.environ.pop("MAX_BUDGET_S", None)
            with contextlib.redirect_stdout(out):
                if cfg.get("entry") == "handler":
                    result = handlers.controller_handler(payload, context)
                else:
                    from subminute.aws.dynamodb import DynamoStore
                    from subminute.aws.lambda_dispatch import LambdaDispatcher
                    from subminute.timing.clock import SystemClock

                    store = DynamoStore(client("dynamodb", "controller"), table)
                    dispatcher = LambdaDispatcher(client("lambda", "controller"), cfg["worker"],
                                                  poller_function=os.environ.get("POLLER_FUNCTION"))
                    result = handlers.run_controller(payload, context, store=store, dispatcher=dispatcher,
                                                     clock=SystemClock(), max_budget_s=cap)
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            errors.append(f"execution {record['index']}: {record['error']}")
            raise
        finally:
            last_end = time.monotonic()
            record["ended"] = time.time()
            record["duration_s"] = round(last_end - started, 4)
            record["cap_s"] = round(cap, 3)
        record.update(running=result.get("running"), standby=result.get("standby"),
                      stats=(result.get("handoff") or {}).get("stats"))
        return json.loads(json.dumps(result, default=str))  # through Step Functions: JSON

    index = 0
    while next_input is not None:
        if max_exec is not None and index >= int(max_exec):
            break
        if run_end - time.monotonic() < min_exec_s:
            break
        exec_arn = f"{cfg['state_machine_arn'].replace(':stateMachine:', ':execution:')}:bench-{index:04d}"
        record: dict[str, Any] = {"index": index, "request_id": f"bench-{index:04d}-{uuid.uuid4().hex[:8]}"}
        record["owner"] = f"lambda:{record['request_id']}"
        context_obj: dict[str, Any] = {"StateMachine": {"Id": cfg["state_machine_arn"], "Name": "bench"},
                                       "Execution": {"Id": exec_arn, "Input": next_input, "StartTime": _iso(time.time())}}
        restart: dict[str, Any] = {}

        def call(state: str, resource: str, params: Any, record: dict[str, Any] = record,
                 restart: dict[str, Any] = restart, exec_arn: str = exec_arn) -> Any:
            kind = resource.split(":::", 1)[-1]
            if kind.startswith("aws-sdk:"):
                kind = kind[len("aws-sdk:"):]
            service, _, action = kind.partition(":")
            if service == "lambda" and action == "invoke":
                if params.get("FunctionName") != cfg["controller_arn"]:
                    raise NotImplementedError(f"{state}: invoke of {params.get('FunctionName')}")
                payload = invoke_controller(params.get("Payload", {}), record)
                last_results["lambda:invoke"] = payload
                return {"ExecutedVersion": "$LATEST", "Payload": payload, "StatusCode": 200}
            if service == "states" and action.startswith("startExecution"):
                restart["input"] = params.get("Input", {})
                return {"ExecutionArn": f"{exec_arn}-next", "StartDate": _iso(time.time())}
            if service == "dynamodb":
                snake = re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()
                response = getattr(sm_ddb, snake)(**params)
                response.pop("ResponseMetadata", None)
                last_results[f"dynamodb:{action}"] = response
                return response
            raise NotImplementedError(f"{state}: resource {resource}")

        try:
            path, _ = walk(machine, next_input, call, context_obj)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - an execution failed as a whole (no Catch matched)
            path = []
            errors.append(f"execution {index}: {type(exc).__name__}: {exc}")
            restart = {}
        record["path"] = path
        record["transitions"] = len(path)
        executions.append(record)
        next_input = restart.get("input")
        index += 1

    steady_path: list[str] = []
    if next_input is not None:  # the path of the next restart, with the last results (nothing is called)
        def dry(state: str, resource: str, params: Any) -> Any:
            kind = resource.split(":::", 1)[-1].replace("aws-sdk:", "")
            if kind.startswith("lambda:invoke"):
                return {"Payload": last_results.get("lambda:invoke", {}), "StatusCode": 200}
            if kind.startswith("states:startExecution"):
                return {}
            if kind.startswith("dynamodb:"):
                return last_results.get("dynamodb:" + kind.split(":", 1)[1], {})
            raise NotImplementedError(resource)

        with contextlib.suppress(Exception):
            steady_path, _ = walk(machine, next_input, dry, {"StateMachine": {"Id": cfg["state_machine_arn"]},
                                                              "Execution": {"Id": "dry"}}, sleep=lambda s: None)
    invokes = []
    for sent_ms, body in sent:
        try:
            payload = json.loads(body)  # one fire, or a slot's fires to the stack's worker: {"events": [...]}
            for event in payload["events"] if "events" in payload else [payload]:
                invokes.append([round(sent_ms, 3), event.get("schedule_id"), event.get("slot_ms"),
                                event.get("seq"), event.get("controller")])
        except (TypeError, ValueError, AttributeError):
            invokes.append([round(sent_ms, 3), None, None, None, None])
    import resource as _resource

    usage = _resource.getrusage(_resource.RUSAGE_SELF)
    return {"executions": executions, "steady_path": steady_path, "invokes": invokes, "errors": errors,
            "log": {"stdout_bytes": out.bytes, "logging_bytes": log_bytes.bytes,
                    "lines": out.lines + log_bytes.lines},
            "cpu_s": round(time.process_time() - cpu0, 3), "rusage_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "wall_s": round(time.time() - wall0, 3), "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}


# -- the parent side: processes, stack, chain, results ---------------------------------------------------------
@dataclass
class Stack:
    """The template's resources made in moto (table, worker and controller functions) and their settings."""

    name: str
    table: str
    worker: str
    controller: str
    controller_arn: str
    state_machine_arn: str
    controller_memory_mb: int
    controller_timeout_s: int
    worker_memory_mb: int
    controller_env: dict[str, str]
    rows: int


@dataclass
class ChainRun:
    """One chain's results: the chain process's report, the stand-in's counts, the CPU quota's stat."""

    result: dict[str, Any]
    stats: dict[str, Any]
    stack: Stack
    config: dict[str, Any]
    quota: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def executions(self) -> list[dict[str, Any]]:
        return list(self.result["executions"])

    def controller_seconds(self) -> float:
        return sum(e.get("duration_s", 0.0) for e in self.executions)

    def calls(self) -> list[dict[str, Any]]:
        return sorted(self.stats["calls"], key=lambda c: (c["caller"], c["service"], c["op"]))

    def total_calls(self) -> int:
        return sum(c["count"] for c in self.stats["calls"])

    def invokes(self) -> list[dict[str, Any]]:
        """Each worker Invoke (first attempt per slot): send instant, slot, lateness, controller."""
        seen: set[tuple[Any, Any]] = set()
        out = []
        for sent_ms, sid, slot_ms, seq, owner in sorted(self.result["invokes"], key=lambda r: r[0]):
            if slot_ms is None or (sid, slot_ms) in seen:
                continue
            seen.add((sid, slot_ms))
            out.append({"sent_ms": sent_ms, "schedule_id": sid, "slot_ms": slot_ms, "seq": seq,
                        "controller": owner, "lateness_ms": sent_ms - slot_ms})
        return out

    def received_lateness(self) -> list[float]:
        """The same at the stand-in (request received minus slot): a cross-check of the client-side instants."""
        out = []
        for received, _, _, body in self.stats["invokes"]:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                payload = json.loads(body)
                out.extend(received - event["slot_ms"] for event in payload.get("events", [payload]))
        return out

    def duplicates(self) -> int:
        slots = [(r[1], r[2]) for r in self.result["invokes"] if r[2] is not None]
        return len(slots) - len(set(slots))


class Harness:
    """moto + the stand-in endpoint, as subprocesses; stacks in moto; chains of executions.

    >>> with Harness(latency_ms=20) as h:
    ...     stack = h.create_stack(rows=1, waitseconds=1)
    ...     run = h.run_chain(stack, run_s=30, budget_s=10)
    """

    def __init__(self, latency_ms: float = 0.0, src: str | None = None) -> None:
        self.latency_ms = latency_ms
        self.src = use_src(src)
        self.procs: list[subprocess.Popen[str]] = []
        self.moto_endpoint = ""
        self.endpoint = ""

    # -- processes -------------------------------------------------------------------------------------------
    @staticmethod
    def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_ENDPOINT_URL")}
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "PYTHONUNBUFFERED": "1"})
        env.update(extra or {})
        return env

    def _child_pythonpath(self) -> dict[str, str]:
        if not self.src:
            return {}
        return {"PYTHONPATH": os.pathsep.join([self.src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}

    def _spawn(self, *args: str) -> int:
        proc = subprocess.Popen([sys.executable, str(HERE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=self.child_env())
        self.procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"{args[0]} did not start (exit {proc.poll()})")
        return int(json.loads(line)["port"])

    def __enter__(self) -> Harness:
        try:
            moto_port = self._spawn("moto")
            self.moto_endpoint = f"http://127.0.0.1:{moto_port}"
            port = self._spawn("stand-in", "--upstream", self.moto_endpoint, "--latency-ms", str(self.latency_ms))
            self.endpoint = f"http://127.0.0.1:{port}"
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                if proc.stdin:
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- control ---------------------------------------------------------------------------------------------
    def _post(self, url: str, payload: Any = None) -> Any:
        request = urllib.request.Request(url, method="POST", data=json.dumps(payload or {}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def stand_in_config(self, **config: Any) -> None:
        self._post(f"{self.endpoint}/__harness/config", config)

    def set_latency(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self.stand_in_config(latency_ms=latency_ms)

    def reset_counts(self) -> None:
        self._post(f"{self.endpoint}/__harness/reset")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint}/__harness/stats", timeout=60) as response:
            return dict(json.loads(response.read()))

    def reset_moto(self) -> None:
        self._post(f"{self.moto_endpoint}/moto-api/reset")

    def client(self, service: str) -> Any:
        """A client straight to moto: setup, never counted nor delayed."""
        import boto3

        return boto3.client(service, endpoint_url=self.moto_endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    # -- the stack ---------------------------------------------------------------------------------------------
    def create_stack(self, rows: int | Sequence[Mapping[str, Any]] = 1, *, waitseconds: float = 1.0,
                     name: str = "SubMinuteLambdaExecutor", spare_running: bool = False) -> Stack:
        """The template's table (seeded as its custom resource does) and functions (its settings, stub code),
        in a fresh moto.

        ``rows`` is a number (row 1 at ``waitseconds`` as the stack seeds it, plus rows 2..N shaped like real
        schedules by :func:`spare_row`, not running unless ``spare_running``) or the rows themselves."""
        from subminute.aws.seed import seed_row

        self.reset_moto()
        resources = template_resources()
        ddb, lam, iam = self.client("dynamodb"), self.client("lambda"), self.client("iam")
        table = f"{name}-ControlTable"
        props = resources["ControlTable"]["Properties"]
        ddb.create_table(TableName=table, AttributeDefinitions=props["AttributeDefinitions"],
                         KeySchema=props["KeySchema"], BillingMode=props["BillingMode"])
        if isinstance(rows, int):
            seed_row(ddb, table, "true", waitseconds)
            items = [spare_row(i, waitseconds, spare_running) for i in range(2, rows + 1)]
            count = rows
        else:
            items = [dict(r) for r in rows]
            count = len(items)
        _put_rows(ddb, table, items)
        role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        names = {"WorkerFunction": f"{name}-WorkerFunction", "ControllerFunction": f"{name}-ControllerFunction"}
        refs = {"ControlTable": table, **names}
        arns = {}
        for logical, function in names.items():
            fprops = resources[logical]["Properties"]
            env = {k: refs.get(v["Ref"], "") if isinstance(v, Mapping) else str(v)
                   for k, v in fprops.get("Environment", {}).get("Variables", {}).items()}
            buffer = io.BytesIO()
            import zipfile

            with zipfile.ZipFile(buffer, "w") as archive:
                code = fprops["Code"]["ZipFile"]  # (the code is left out: see template_resources)
                archive.writestr("index.py", code if isinstance(code, str) else "def handler(event, context):\n    return None\n")
            arns[logical] = lam.create_function(
                FunctionName=function, Runtime=fprops["Runtime"], Role=role, Handler=fprops["Handler"],
                Code={"ZipFile": buffer.getvalue()}, Timeout=fprops["Timeout"], MemorySize=fprops["MemorySize"],
                Architectures=fprops.get("Architectures", ["x86_64"]), Environment={"Variables": env})["FunctionArn"]
        controller = resources["ControllerFunction"]["Properties"]
        controller_env = {k: refs.get(v["Ref"], "") if isinstance(v, Mapping) else str(v)
                          for k, v in controller.get("Environment", {}).get("Variables", {}).items()}
        self.stand_in_config(functions=[names["WorkerFunction"]])
        return Stack(name=name, table=table, worker=names["WorkerFunction"],
                     controller=names["ControllerFunction"], controller_arn=arns["ControllerFunction"],
                     state_machine_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
                     controller_memory_mb=int(controller["MemorySize"]), controller_timeout_s=int(controller["Timeout"]),
                     worker_memory_mb=int(resources["WorkerFunction"]["Properties"]["MemorySize"]),
                     controller_env=controller_env, rows=count)

    # -- the chain ---------------------------------------------------------------------------------------------
    def run_chain(self, stack: Stack, *, run_s: float, budget_s: float | None = None, gap_s: float = 0.3,
                  max_executions: int | None = None, entry: str = "run_controller",
                  env: Mapping[str, str] | None = None, cpu_memory_mb: float | None = None,
                  period_us: int = 100_000, timeout_s: float | None = None, echo: bool = False) -> ChainRun:
        """Run executions one after the other for ``run_s`` (or ``max_executions``) in a child process,
        under Lambda's CPU share at ``cpu_memory_mb`` if given; counts start from zero here."""
        config = {"endpoint": self.endpoint, "table": stack.table, "worker": stack.worker,
                  "controller": stack.controller, "controller_arn": stack.controller_arn,
                  "state_machine_arn": stack.state_machine_arn, "memory_mb": stack.controller_memory_mb,
                  "timeout_s": timeout_s or stack.controller_timeout_s, "budget_s": budget_s, "gap_s": gap_s,
                  "run_s": run_s, "max_executions": max_executions, "entry": entry}
        child_env = {k: v for k, v in self.child_env().items() if k not in HANDLER_ENV}
        child_env.update(stack.controller_env)
        child_env.update({"AWS_LAMBDA_FUNCTION_NAME": stack.controller, "AWS_ENDPOINT_URL": self.endpoint})
        child_env.update(self._child_pythonpath())
        child_env.update(env or {})
        with tempfile.TemporaryDirectory(prefix="aws-bench-") as tmp:
            cfg_path, out_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
            cfg_path.write_text(json.dumps(config))
            argv = [sys.executable, str(HERE), "chain", str(cfg_path), str(out_path)]
            self.reset_counts()
            started = time.monotonic()
            quota_info: dict[str, Any] = {}
            stderr = None if echo else subprocess.PIPE
            if cpu_memory_mb:
                with CpuQuota(cpu_memory_mb, period_us) as quota:
                    proc = subprocess.run(argv, env=child_env, preexec_fn=quota.preexec, stderr=stderr,  # noqa: PLW1509
                                          text=True, check=False)
                    quota_info = {"memory_mb": cpu_memory_mb, "cpus": quota.cpus, "quota_us": quota.quota_us,
                                  "period_us": quota.period_us, "stat": quota.stat()}
            else:
                proc = subprocess.run(argv, env=child_env, stderr=stderr, text=True, check=False)
            wall = time.monotonic() - started
            time.sleep(max(0.1, 2 * self.latency_ms / 1000))  # the last invokes' answers are on their way
            if proc.returncode != 0 or not out_path.exists():
                tail = (proc.stderr or "")[-3000:]
                raise RuntimeError(f"the chain failed (exit {proc.returncode}):\n{tail}")
            result = json.loads(out_path.read_text())
        return ChainRun(result=result, stats=self.stats(), stack=stack, config=config, quota=quota_info, wall_s=wall)


def template_resources() -> dict[str, Any]:
    """The template's resources, with the Lambda code left out: nothing here runs the functions' code (the
    chain imports subminute itself), so the bundler is not called (faster, and it works while a refactor
    leaves the bundle unbuildable)."""
    from unittest import mock

    from subminute.aws import template

    stub = "def handler(event, context):\n    return None\n"
    with mock.patch.object(template, "build_bundle", lambda *a, **k: stub):
        return dict(template.build_template()["Resources"])


def spare_row(i: int, waitseconds: float = 1.0, running: bool = False) -> dict[str, Any]:
    """A control row like a user's (a name and an http target: about 120 bytes as DynamoDB sizes it)."""
    return {"id": i, "running": running, "waitseconds": waitseconds, "name": f"feed-{i:04d}",
            "target": {"type": "http", "url": f"https://example.com/feeds/{i:04d}/vehicle-positions.pb"}}


def use_src(src: str | None) -> str | None:
    """Import subminute from ``src`` (a checkout's src/ directory, e.g. a snapshot of HEAD made with
    ``git archive HEAD src | tar -x -C /tmp/head``) in this process and in the chain's; ``None``: as installed."""
    if not src:
        return None
    path = str(Path(src).resolve())
    if not (Path(path) / "subminute" / "__init__.py").exists():
        raise SystemExit(f"--src {src}: no subminute package there")
    if "subminute" in sys.modules and not str(Path(sys.modules["subminute"].__file__ or "")).startswith(path):
        raise RuntimeError("use_src() must come before subminute is imported")
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def subminute_origin() -> str:
    """Where subminute is imported from, and the repository's commit and whether the tree is modified."""
    import subminute

    origin = str(Path(subminute.__file__ or "?").resolve().parent)
    try:
        repo = HERE.parent.parent
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        state = f"repository HEAD {head}" + (", src/ modified in the work tree" if dirty else ", src/ clean")
    except (OSError, subprocess.SubprocessError):
        state = "no git"
    return f"{origin} ({state})"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _put_rows(ddb: Any, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    def attr(value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            return {"BOOL": value}
        if isinstance(value, (int, float)):
            return {"N": repr(value) if isinstance(value, float) else str(value)}
        if isinstance(value, str):
            return {"S": value}
        if value is None:
            return {"NULL": True}
        if isinstance(value, Mapping):
            return {"M": {k: attr(v) for k, v in value.items()}}
        return {"L": [attr(v) for v in value]}

    for start in range(0, len(rows), 25):
        batch = [{"PutRequest": {"Item": {k: attr(v) for k, v in row.items()}}} for row in rows[start:start + 25]]
        ddb.batch_write_item(RequestItems={table: batch})


def worker_log_bytes(events: Sequence[Mapping[str, Any]]) -> float:
    """Mean bytes the stack's worker prints per invoke (run in process on real payloads, stdout captured)."""
    from subminute.aws.worker import worker_handler

    if not events:
        return math.nan
    sink = io.StringIO()
    saved = os.environ.pop("URL", None)
    try:
        with contextlib.redirect_stdout(sink):
            for event in events:
                worker_handler(dict(event), None)
    finally:
        if saved is not None:
            os.environ["URL"] = saved
    return len(sink.getvalue().encode()) / len(events)


@contextlib.contextmanager
def timed(label: str, out: Any = None) -> Iterator[None]:
    started = time.monotonic()
    print(f"... {label}", file=out or sys.stderr, flush=True)
    yield
    print(f"... {label}: {time.monotonic() - started:.1f} s", file=out or sys.stderr, flush=True)


def check_stand_in(harness: Harness, function: str, rate: float = 1500.0, seconds: float = 5.0,
                   connections: int = 64) -> dict[str, Any]:
    """Can the stand-in take ``rate`` async invokes a second? A raw asyncio client (no boto3) sends
    Invoke requests on a fixed timetable; returns the receipt delay (received minus planned send) and the
    answer time (which should be the injected latency)."""
    host, port = "127.0.0.1", int(harness.endpoint.rsplit(":", 1)[1])
    auth = f"AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/lambda/aws4_request, SignedHeaders=host, Signature=0"
    harness.stand_in_config(functions=[function])
    harness.reset_counts()
    answers: list[float] = []

    async def client(index: int, start: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        n = index
        while True:
            planned = start + n / rate
            if planned > start + seconds:
                break
            delay = planned - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            body = json.dumps({"schedule_id": 1, "slot_ms": planned * 1000, "seq": n}).encode()
            sent = time.time()
            writer.write((f"POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nHost: {host}\r\n"
                          f"Authorization: {auth}\r\nX-Amz-Invocation-Type: Event\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            answers.append((time.time() - sent) * 1000)
            n += connections
        writer.close()

    async def run() -> None:
        start = time.time() + 0.2
        await asyncio.gather(*(client(i, start) for i in range(connections)))

    asyncio.run(run())
    time.sleep(0.2)
    stats = harness.stats()
    received = [r[0] - json.loads(r[3])["slot_ms"] for r in stats["invokes"]]
    return {"planned": int(rate * seconds) + 1, "received": len(received), "receipt_delay": summarize(received),
            "answer_ms": summarize(answers)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("moto", help="a moto server on a free port (prints {\"port\": N}; ends when stdin closes)")
    stand_in = sub.add_parser("stand-in", help="the stand-in endpoint in front of moto")
    stand_in.add_argument("--upstream", required=True)
    stand_in.add_argument("--latency-ms", type=float, default=0.0)
    stand_in.add_argument("--port", type=int, default=0)
    chain = sub.add_parser("chain", help="run a chain of controller executions (CONFIG and RESULT are JSON files)")
    chain.add_argument("config")
    chain.add_argument("result")
    check = sub.add_parser("stand-in-check", help="can the stand-in take --rate invokes/s? (raw asyncio client)")
    check.add_argument("--rate", type=float, default=1500.0)
    check.add_argument("--seconds", type=float, default=5.0)
    check.add_argument("--latency-ms", type=float, default=20.0)
    quota = sub.add_parser("cpu-quota", help="run a command under Lambda's CPU share at --memory MB")
    quota.add_argument("--memory", type=float, required=True)
    quota.add_argument("--period-us", type=int, default=100_000)
    quota.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.mode == "moto":
        serve_moto()
    elif args.mode == "stand-in":
        serve_stand_in(args.upstream, args.latency_ms, args.port)
    elif args.mode == "chain":
        result = run_chain(json.loads(Path(args.config).read_text()))
        Path(args.result).write_text(json.dumps(result))
    elif args.mode == "stand-in-check":
        with Harness(latency_ms=args.latency_ms) as harness:
            out = check_stand_in(harness, "worker", args.rate, args.seconds)
        print(f"planned {out['planned']} invokes at {args.rate:g}/s with {args.latency_ms:g} ms latency: received "
              f"{out['received']}; receipt delay (received - planned send) p50 {out['receipt_delay'].p50:.2f} ms, "
              f"p99 {out['receipt_delay'].p99:.2f} ms, max {out['receipt_delay'].max:.2f} ms; answer time p50 "
              f"{out['answer_ms'].p50:.1f} ms, p99 {out['answer_ms'].p99:.1f} ms")
    elif args.mode == "cpu-quota":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("give a command after --")
        try:
            return run_under_quota(command, args.memory, args.period_us)
        except CgroupError as exc:
            print(f"cpu quota: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
