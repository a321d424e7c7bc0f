"""What subminute's AWS home costs a month, measured: calls counted on the wire, priced, beside the original.

Runs the stack's controller (``subminute.aws.handlers.run_controller`` with the DynamoDB store and the
Lambda dispatcher, the state machine's definition interpreted around it: see bench/aws_harness.py) against
moto behind a stand-in endpoint that adds ``--latency-ms`` to every DynamoDB and Lambda call, with one
schedule at 1 s and the stack's default worker, for ``--minutes`` (10 by default). Every API call is
counted by caller (controller, state machine), service and operation, with its DynamoDB request units
(4 KB read units, half when eventually consistent; 1 KB write units of the larger of the item before and
after; a Scan bills the total size scanned), and turned into calls and dollars a month; the fixed part
(controller + Step Functions + DynamoDB) is printed beside the original sample's, derived from its code.
Then the controller's DynamoDB reads a month with 1, 10 and 100 rows in the table (rows 2..N exist but do
not run: nothing changes), and optionally start-lateness under Lambda's CPU share at several memory sizes.

    python bench/aws_cost.py                              # 10 minutes, the template's memory (128 MB)
    python bench/aws_cost.py --memory 128 --cpu-of-memory 128   # priced at 128 MB, run under its CPU share
    python bench/aws_cost.py --quick --compare-memory 128,256,512
    python bench/aws_cost.py --src /tmp/head/src          # measure another checkout's src/ (e.g. HEAD)

Prices (us-east-1 list prices; see PRICES_AS_OF): Lambda arm64 $0.0000133334 per GB-s (x86_64
$0.0000166667) and $0.20 per million requests; Step Functions Standard $0.025 per 1,000 state transitions
(each state entered along the path taken is one); DynamoDB on-demand $0.125 per million read and $0.625
per million write request units (provisioned: $0.00013 per RCU-hour, $0.00065 per WCU-hour); CloudWatch
Logs ingestion $0.50 per GB. A 30-day month (2,592,000 s), no free tier.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aws_harness import (  # noqa: E402 - the bench directory first
    MONTH_S,
    CgroupError,
    ChainRun,
    CpuQuota,
    Harness,
    item_size,
    lambda_cpu_share,
    loadavg,
    print_table,
    subminute_origin,
    summarize,
    worker_log_bytes,
)

PRICES_AS_OF = ("us-east-1 list prices in effect since 2024-11-01 (when DynamoDB on-demand was halved; the "
                "others are older), the figures of docs/aws.md; not re-checked against the live price pages "
                "(no internet from this machine)")
PRICES = {
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_gb_s_x86": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "sfn_transition": 0.025 / 1000,
    "ddb_rru": 0.125 / 1e6,
    "ddb_wru": 0.625 / 1e6,
    "ddb_streams_rru": 0.02 / 1e5,
    "ddb_rcu_hour": 0.00013,
    "ddb_wcu_hour": 0.00065,
    "logs_gb": 0.50,
}
LAMBDA_PLATFORM_LOG_BYTES = 250  # START, END and REPORT lines of one invocation (Text format)


# -- the original sample, derived from its code ----------------------------------------------------------------
ORIGINAL_SOURCE = ("aws-samples/sub-minute-lambda-executor @ a7ed7e5: lambda/SubMinuteLambdaExecutor.js (the "
                   "controller loop), src/main/java/com/amazonaws/subminutelambdaexecutor/"
                   "SubMinuteLambdaExecutorStack.java and SubMinuteLambdaExecutor.yaml (functions, table, state machine)")
ORIGINAL = {
    "memory_mb": 128,  # no MemorySize in the template: Lambda's default
    "architecture": "x86_64",  # no Architectures: Lambda's default; runtime nodejs12.x
    "timeout_s": 840,  # Duration.minutes(14)
    "execution_s": 840,  # loopCount = 60 * 14 one-second iterations, then the callback
    "reads_per_s": 1.0,  # one GetItem of id = 1 per iteration, whatever waitseconds is
    "read_rru": 0.5,  # ddb.getItem without ConsistentRead: eventually consistent, item < 4 KB
    "transitions": 6,  # CheckInput, GetRunningFlag, Parse, IsRunning, InvokeLambda, RestartStepFunction
    "sm_read_rru": 0.5,  # GetRunningFlag: ConsistentRead false
    "provisioned_rcu": 5,
    "provisioned_wcu": 5,  # its table is PROVISIONED 5/5 (CDK's default), not on-demand
    "worker_ms": 500,  # its demo worker waits 500 ms
}


def original_costs() -> dict[str, Any]:
    o = ORIGINAL
    executions = MONTH_S / o["execution_s"]
    gb_s = MONTH_S * o["memory_mb"] / 1024
    reads = MONTH_S * o["reads_per_s"]
    lines = {
        "controller duration": gb_s * PRICES["lambda_gb_s_x86"],
        "controller requests": executions * PRICES["lambda_request"],
        "Step Functions": executions * o["transitions"] * PRICES["sfn_transition"],
        "DynamoDB": (reads * o["read_rru"] + executions * o["sm_read_rru"]) * PRICES["ddb_rru"],
    }
    provisioned = 720 * (o["provisioned_rcu"] * PRICES["ddb_rcu_hour"] + o["provisioned_wcu"] * PRICES["ddb_wcu_hour"])
    return {"lines": lines, "fixed": sum(lines.values()), "executions": executions, "gb_s": gb_s,
            "reads": reads, "rru": reads * o["read_rru"] + executions * o["sm_read_rru"],
            "transitions": executions * o["transitions"],
            "fixed_arm64": sum(lines.values()) - lines["controller duration"] + gb_s * PRICES["lambda_gb_s_arm64"],
            "dynamodb_provisioned": provisioned,
            "worker_500ms": MONTH_S * o["worker_ms"] / 1000 * 128 / 1024 * PRICES["lambda_gb_s_x86"]}


# -- our measured run, priced ----------------------------------------------------------------------------------
HANDLER_MARGIN_S = 10.0  # SAFETY_MARGIN_S's default in subminute.aws.handlers (the chain's environment clears it)


def cadence(run: ChainRun) -> dict[str, float]:
    """Executions a month and the controller's billed seconds, from the stack's cadence: each execution runs
    its budget (``--budget``, else the Lambda's timeout less the 10 s margin) plus its measured overrun
    (closing), then the restart gap (measured, else ``--gap``)."""
    execs = run.executions
    budget = run.config.get("budget_s") or (run.config["timeout_s"] - HANDLER_MARGIN_S)
    overruns = [e["duration_s"] - e["cap_s"] for e in execs if "cap_s" in e and "duration_s" in e]
    overrun = max(0.0, sum(overruns) / len(overruns)) if overruns else 0.0
    gaps = [e["gap_s"] for e in execs if e.get("gap_s") is not None]
    gap = sum(gaps) / len(gaps) if gaps else float(run.config.get("gap_s", 0.3))
    duration = budget + overrun
    executions = MONTH_S / (duration + gap)
    restarted = [e["transitions"] for e in execs[1:] if e.get("transitions")]
    steady = len(run.result.get("steady_path") or [])
    transitions = sum(restarted) / len(restarted) if restarted else float(steady or (execs[0]["transitions"] if execs else 0))
    return {"budget_s": budget, "duration_s": duration, "gap_s": gap, "executions": executions,
            "billed_s": executions * duration, "transitions": transitions,
            "controller_s": run.controller_seconds(), "executions_run": len(execs)}


def price_run(run: ChainRun, memory_mb: int, worker_ms: float) -> dict[str, Any]:
    c = cadence(run)
    per_controller_s = c["billed_s"] / c["controller_s"] if c["controller_s"] else math.nan
    per_execution = c["executions"] / max(1, c["executions_run"])
    calls = []
    for call in run.calls():
        scale = per_execution if call["caller"] == "statemachine" else per_controller_s
        month = {k: call[k] * scale for k in ("count", "rru", "wru", "srru")}
        usd = month["rru"] * PRICES["ddb_rru"] + month["wru"] * PRICES["ddb_wru"] + month["srru"] * PRICES["ddb_streams_rru"]
        if call["service"] == "lambda" and call["op"] in ("Invoke", "InvokeAsync"):
            usd += month["count"] * PRICES["lambda_request"]
        calls.append({**call, "month": month, "usd": usd, "per_s": call["count"] / c["controller_s"]
                      if c["controller_s"] else math.nan})
    ddb = [x for x in calls if x["service"] == "dynamodb"]
    invokes = [x for x in calls if x["service"] == "lambda" and x["op"] in ("Invoke", "InvokeAsync")]
    invokes_month = sum(x["month"]["count"] for x in invokes)
    gb_s = c["billed_s"] * memory_mb / 1024
    log = run.result["log"]
    controller_log = (log["stdout_bytes"] + log["logging_bytes"]) * per_controller_s + c["executions"] * LAMBDA_PLATFORM_LOG_BYTES
    sample = [{"schedule_id": i["schedule_id"], "schedule": "default", "slot": "", "slot_ms": i["slot_ms"],
               "seq": i["seq"], "interval": 1.0, "controller": i["controller"]} for i in run.invokes()[:200]]
    worker_bytes = worker_log_bytes(sample)
    worker_bytes = (worker_bytes if not math.isnan(worker_bytes) else 0.0) + LAMBDA_PLATFORM_LOG_BYTES
    worker_gb_s = invokes_month * math.ceil(worker_ms) / 1000 * run.stack.worker_memory_mb / 1024
    lines = [
        ("controller Lambda duration", f"{gb_s:,.0f} GB-s ({c['billed_s']:,.0f} s x {memory_mb} MB)",
         gb_s * PRICES["lambda_gb_s_arm64"], True, "controller duration"),
        ("controller Lambda requests", f"{c['executions']:,.0f} executions", c["executions"] * PRICES["lambda_request"],
         True, "controller requests"),
        ("Step Functions transitions", f"{c['executions'] * c['transitions']:,.0f} ({c['transitions']:.0f} per execution)",
         c["executions"] * c["transitions"] * PRICES["sfn_transition"], True, "Step Functions"),
    ]
    by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in ddb:
        by_op[f"{x['caller']} {x['op']}"].append(x)
    for name, group in sorted(by_op.items()):
        rru = sum(x["month"]["rru"] for x in group)
        wru = sum(x["month"]["wru"] for x in group)
        units = f"{rru:,.0f} RRU" if rru else f"{wru:,.0f} WRU"
        lines.append((f"DynamoDB {name}", f"{sum(x['month']['count'] for x in group):,.0f} calls, {units}",
                      sum(x["usd"] for x in group), True, "DynamoDB"))
    lines += [
        ("worker invokes", f"{invokes_month:,.0f} requests", invokes_month * PRICES["lambda_request"], False, ""),
        ("worker duration", f"{worker_gb_s:,.0f} GB-s ({worker_ms:g} ms x {run.stack.worker_memory_mb} MB, assumed)",
         worker_gb_s * PRICES["lambda_gb_s_arm64"], False, ""),
        ("CloudWatch Logs, controller", f"{controller_log / 1e9:,.3f} GB", controller_log / 1e9 * PRICES["logs_gb"], False, ""),
        ("CloudWatch Logs, worker", f"{invokes_month * worker_bytes / 1e9:,.2f} GB ({worker_bytes:.0f} B per invoke)",
         invokes_month * worker_bytes / 1e9 * PRICES["logs_gb"], False, ""),
    ]
    fixed = sum(usd for _, _, usd, is_fixed, _ in lines if is_fixed)
    total = sum(usd for _, _, usd, _, _ in lines)
    return {"cadence": c, "calls": calls, "lines": lines, "fixed": fixed, "total": total, "gb_s": gb_s,
            "rru_month": sum(x["month"]["rru"] for x in ddb), "wru_month": sum(x["month"]["wru"] for x in ddb),
            "controller_rru_month": sum(x["month"]["rru"] for x in ddb if x["caller"] == "controller")}


def lateness(run: ChainRun) -> dict[str, Any]:
    invokes = run.invokes()
    firsts = {}
    for inv in invokes:
        firsts.setdefault(inv["controller"], inv)
    first_ids = {id(v) for v in firsts.values()}
    steady = summarize(i["lateness_ms"] for i in invokes if id(i) not in first_ids)
    first = summarize(v["lateness_ms"] for k, v in firsts.items() if k != run.executions[0].get("owner"))
    return {"all": summarize(i["lateness_ms"] for i in invokes), "steady": steady, "first_after_restart": first,
            "received": summarize(run.received_lateness()), "duplicates": run.duplicates()}


# -- printing ---------------------------------------------------------------------------------------------------
def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.005 or value == 0 else f"${value:,.4f}"


def print_main(run: ChainRun, priced: dict[str, Any], memory_mb: int, args: argparse.Namespace) -> None:
    c = priced["cadence"]
    print(f"\n== calls counted in {c['controller_s']:,.0f} s of controller time ({c['executions_run']} execution(s)), "
          f"per month at one execution per {c['duration_s'] + c['gap_s']:,.1f} s ==")
    rows = []
    for x in priced["calls"]:
        units = "  ".join(u for u in (f"{x['month']['rru']:,.0f} RRU" if x["rru"] else "",
                                      f"{x['month']['wru']:,.0f} WRU" if x["wru"] else "") if u)
        rows.append([x["caller"], f"{x['service']}.{x['op']}", x["count"], f"{x['per_s']:.3f}",
                     f"{x['req_bytes'] / max(1, x['count']):,.0f}", f"{x['month']['count']:,.0f}", units or "-",
                     _usd(x["usd"])])
    print_table(["caller", "call", "in run", "per s", "request bytes", "per month", "request units a month",
                 "$ a month"], rows)
    unknown = sum(x["units_unknown"] for x in priced["calls"])
    if unknown:
        print(f"(request units unknown for {unknown} call(s))")
    original = original_costs()
    o_lines = original["lines"]
    print(f"\n== cost a month: one schedule at 1 s, controller at {memory_mb} MB arm64 "
          f"({'run under ' + str(args.cpu_of_memory) + ' MB of CPU' if args.cpu_of_memory else 'CPU unthrottled'}) ==")
    table = []
    entries = priced["lines"]
    for n, (item, quantity, usd, fixed, key) in enumerate(entries):
        theirs = _usd(o_lines[key]) if key in o_lines and key != "DynamoDB" else ""
        table.append([("  " if key == "DynamoDB" else "") + item + ("" if key == "DynamoDB" else " *" if fixed else ""),
                      quantity, _usd(usd), theirs])
        if key == "DynamoDB" and (n + 1 == len(entries) or entries[n + 1][4] != "DynamoDB"):
            ddb = sum(u for _, _, u, _, k in entries if k == "DynamoDB")
            table.append(["DynamoDB, all *", f"{priced['rru_month']:,.0f} RRU, {priced['wru_month']:,.0f} WRU",
                          _usd(ddb), _usd(o_lines["DynamoDB"])])
    table.append(["FIXED * (controller + Step Functions + DynamoDB)", "", _usd(priced["fixed"]), _usd(original["fixed"])])
    table.append(["total", "", _usd(priced["total"]), ""])
    print_table(["item", "a month", "subminute (measured)", "original (from its code)"], table)
    print(f"original: controller {ORIGINAL['memory_mb']} MB {ORIGINAL['architecture']} "
          f"({original['gb_s']:,.0f} GB-s; at arm64 prices its fixed part would be {_usd(original['fixed_arm64'])}), "
          f"{original['executions']:,.0f} executions of {ORIGINAL['execution_s']} s x {ORIGINAL['transitions']} "
          f"transitions, {original['reads']:,.0f} eventually consistent GetItem a month ({original['rru']:,.0f} RRU) "
          f"on an on-demand table; as deployed its table is provisioned 5 RCU + 5 WCU: "
          f"{_usd(original['dynamodb_provisioned'])} a month instead of {_usd(o_lines['DynamoDB'])}; its demo worker "
          f"waits 500 ms ({_usd(original['worker_500ms'])} a month at 1 s, x86, not in the fixed part).")
    print(f"source: {ORIGINAL_SOURCE}")
    print(f"prices: {PRICES_AS_OF}")


def start_lateness_line(run: ChainRun) -> list[str]:
    lat = lateness(run)
    return [lat["all"].count, _ms(lat["all"].p50), _ms(lat["all"].p99), _ms(lat["all"].max),
            _ms(lat["first_after_restart"].max), lat["duplicates"]]


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the measured run (default 10)")
    parser.add_argument("--quick", action="store_true", help="a short smoke: 15 s run, 4 s per table size")
    parser.add_argument("--memory", type=int, help="price the controller at this memory (default: the template's)")
    parser.add_argument("--cpu-of-memory", type=float, help="run the measured controller under Lambda's CPU share "
                        "at this memory (a cgroup CPU quota)")
    parser.add_argument("--compare-memory", default="", help="e.g. 128,256,512: short runs under each CPU share")
    parser.add_argument("--compare-seconds", type=float, default=60.0)
    parser.add_argument("--period-us", type=int, default=100_000, help="cpu.cfs_period_us of the quota")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every DynamoDB and Lambda call")
    parser.add_argument("--budget", type=float, help="cut each execution after this many seconds (default: the "
                        "Lambda's timeout less its margin, as deployed)")
    parser.add_argument("--gap", type=float, default=0.3, help="restart time between executions, s")
    parser.add_argument("--rows", default="1,10,100", help="table sizes for the reads-vs-rows runs ('' to skip)")
    parser.add_argument("--rows-seconds", type=float, default=60.0)
    parser.add_argument("--worker-ms", type=float, default=5.0, help="assumed worker duration (demo worker)")
    parser.add_argument("--entry", choices=("run_controller", "handler"), default="run_controller")
    parser.add_argument("--src", help="import subminute from this src/ directory (e.g. a snapshot of HEAD)")
    parser.add_argument("--json", help="write the figures here as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 0.25)
        args.rows_seconds = min(args.rows_seconds, 4.0)
        args.compare_seconds = min(args.compare_seconds, 6.0)
    report: dict[str, Any] = {"prices": PRICES, "prices_as_of": PRICES_AS_OF, "original": original_costs()}
    with Harness(latency_ms=args.latency_ms, src=args.src) as harness:
        print(f"subminute from {subminute_origin()}")
        print(f"stand-in latency {args.latency_ms:g} ms per call; restart gap {args.gap:g} s; load average {loadavg()} "
              f"(this machine: {os.cpu_count()} CPUs, shared)")
        stack = harness.create_stack(rows=1, waitseconds=1)
        memory = args.memory or stack.controller_memory_mb
        cpu = args.cpu_of_memory
        note = ""
        if cpu:
            try:
                with CpuQuota(cpu, args.period_us) as probe:
                    note = probe.describe()
            except CgroupError as exc:
                print(f"CPU quota unavailable, running unthrottled: {exc}")
                cpu = None
        print(f"controller: {stack.controller_memory_mb} MB in the template, priced at {memory} MB; CPU: "
              + (f"Lambda's share at {args.cpu_of_memory:g} MB: {note}" if cpu else f"unthrottled ({os.cpu_count()} CPUs)"))
        started = time.monotonic()
        print(f"running the controller for {args.minutes:g} min ...", flush=True)
        run = harness.run_chain(stack, run_s=args.minutes * 60, budget_s=args.budget, gap_s=args.gap,
                                entry=args.entry, cpu_memory_mb=cpu, period_us=args.period_us)
        if run.result["errors"]:
            print("errors: " + "; ".join(run.result["errors"][:5]))
        priced = price_run(run, memory, args.worker_ms)
        print_main(run, priced, memory, args)
        lat = lateness(run)
        print(f"\nInvoke start lateness (request sent minus slot): {lat['all'].count} fires, p50 {_ms(lat['all'].p50)} ms, "
              f"p99 {_ms(lat['all'].p99)} ms, max {_ms(lat['all'].max)} ms"
              + (f" (under {args.cpu_of_memory:g} MB of CPU)" if cpu else "")
              + f"; at the stand-in: p99 {_ms(lat['received'].p99)} ms; duplicate slots {lat['duplicates']}; "
              f"controller CPU {run.result['rusage_cpu_s']:.1f} s in {run.wall_s:.0f} s, peak RSS {run.result['max_rss_mb']} MB"
              + (f"; cpu.stat {run.quota.get('stat')}" if run.quota else ""))
        report.update(memory_mb=memory, fixed_usd=priced["fixed"], total_usd=priced["total"],
                      calls_total=run.total_calls(), cadence=priced["cadence"],
                      lines=[{"item": i, "quantity": q, "usd": u, "fixed": f} for i, q, u, f, _ in priced["lines"]],
                      calls=[{k: x[k] for k in ("caller", "service", "op", "count", "rru", "wru", "req_bytes", "month",
                                                "usd")}
                             for x in priced["calls"]],
                      lateness={k: v.__dict__ if hasattr(v, "__dict__") else v for k, v in lat.items()},
                      cpu_quota=run.quota, errors=run.result["errors"])

        sizes = [int(s) for s in args.rows.split(",") if s.strip()]
        if sizes:
            print(f"\n== the controller's DynamoDB reads a month vs rows in the table (nothing changes; "
                  f"{args.rows_seconds:g} s each) ==")
            rows_out = []
            table = []
            for size in sizes:
                stack_n = harness.create_stack(rows=size, waitseconds=1)
                scanned = harness.client("dynamodb").scan(TableName=stack_n.table)["Items"]
                table_bytes = sum(item_size(i) for i in scanned)
                run_n = harness.run_chain(stack_n, run_s=args.rows_seconds, budget_s=args.budget, gap_s=args.gap)
                p = price_run(run_n, memory, args.worker_ms)
                reads = [x for x in p["calls"] if x["caller"] == "controller" and x["rru"]]
                calls_s = sum(x["per_s"] for x in reads)
                rru_call = sum(x["rru"] for x in reads) / max(1, sum(x["count"] for x in reads))
                rru_month = p["controller_rru_month"]
                wru_month = sum(x["month"]["wru"] for x in p["calls"] if x["caller"] == "controller")
                table.append([size, f"{table_bytes:,}", f"{calls_s:.2f}", f"{rru_call:.2f}", f"{rru_month:,.0f}",
                              _usd(rru_month * PRICES["ddb_rru"]), f"{wru_month:,.0f}", _usd(p["fixed"])])
                rows_out.append({"rows": size, "table_bytes_at_start": table_bytes, "read_calls_per_s": calls_s, "rru_per_call": rru_call,
                                 "rru_month": rru_month, "wru_month": wru_month, "fixed_usd": p["fixed"]})
            print_table(["rows", "table bytes", "read calls/s", "RRU per read", "RRU a month", "reads $ a month", "WRU a month",
                         "fixed $ a month"], table)
            report["rows"] = rows_out

        memories = [float(m) for m in args.compare_memory.split(",") if m.strip()]
        if memories:
            print(f"\n== start lateness under Lambda's CPU share ({args.compare_seconds:g} s each, one schedule at 1 s, "
                  f"{args.latency_ms:g} ms per call, cpu.cfs_period_us {args.period_us}) ==")
            table = []
            compare = []
            for mb in memories:
                stack_m = harness.create_stack(rows=1, waitseconds=1)
                try:
                    run_m = harness.run_chain(stack_m, run_s=args.compare_seconds, budget_s=args.budget, gap_s=args.gap,
                                              cpu_memory_mb=mb, period_us=args.period_us)
                except CgroupError as exc:
                    table.append([f"{mb:g}", f"{lambda_cpu_share(mb):.3f}", "cgroup failed", str(exc), "", "", "", "", ""])
                    continue
                lat_m = lateness(run_m)
                stat = run_m.quota.get("stat", {})
                used = run_m.result["rusage_cpu_s"] / max(run_m.wall_s, 1e-9)
                fixed_m = priced["fixed"] - priced["gb_s"] * PRICES["lambda_gb_s_arm64"] \
                    + priced["cadence"]["billed_s"] * mb / 1024 * PRICES["lambda_gb_s_arm64"]
                table.append([f"{mb:g}", f"{lambda_cpu_share(mb):.3f}", lat_m["all"].count, _ms(lat_m["all"].p50),
                              _ms(lat_m["all"].p99), _ms(lat_m["all"].max), f"{used * 100:.1f}%",
                              f"{stat.get('nr_throttled', 0)}/{stat.get('nr_periods', 0)}", _usd(fixed_m)])
                compare.append({"memory_mb": mb, "cpus": lambda_cpu_share(mb), "lateness": lat_m["all"].__dict__,
                                "cpu_used": used, "cpu_stat": stat, "fixed_usd": fixed_m})
            print_table(["MB", "CPUs", "fires", "p50 ms", "p99 ms", "max ms", "CPU used", "throttled periods",
                         "fixed $ a month"], table)
            report["compare"] = compare
        print(f"\n(done in {time.monotonic() - started:.0f} s; load average {loadavg()})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
