"""Invoke start lateness across restarts, and with many schedules, on the AWS home (issue 10, items 3 and 5).

Start lateness is the instant the controller's Invoke request of the worker left the client minus the
``slot_ms`` in its payload (bench/aws_harness.py records it with a botocore hook; the stand-in endpoint's
receipt instant is printed as a cross-check).

* default: ``--restarts`` (20) restarts at ``--latency-ms`` (20) per DynamoDB and Lambda call, one schedule
  at 1 s, executions cut at ``--budget`` (5 s) and restarted ``--gap`` (0.3 s) later through the state
  machine's definition. Per restart: the lateness of the first slot the new execution fires against the
  steady-state p99 of all the others (issue 10: max of the first slots <= steady p99 + 5 ms).
* ``--schedules N``: N schedules at 1 s (all running) in one execution of ``--seconds`` (60): lateness
  p50/p99/max, invokes a second, and how many due fires were never sent (issue 10: 1,000 schedules,
  p99 <= 10 ms at 20 ms per invoke).

    python bench/aws_restart.py                      # 20 restarts, about 2 minutes
    python bench/aws_restart.py --schedules 1000     # 1,000 schedules for 60 s
    python bench/aws_restart.py --quick              # 3 restarts; with --schedules: 8 s
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aws_harness import (  # noqa: E402 - the bench directory first
    CgroupError,
    CpuQuota,
    Harness,
    loadavg,
    print_table,
    subminute_origin,
    summarize,
)


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.1f}"


def restarts(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    stack = harness.create_stack(rows=1, waitseconds=1)
    run = harness.run_chain(stack, run_s=(args.restarts + 1) * (args.budget + args.gap + 5) + 30, budget_s=args.budget,
                            gap_s=args.gap, max_executions=args.restarts + 1, entry=args.entry,
                            cpu_memory_mb=args.cpu_of_memory, period_us=args.period_us)
    invokes = run.invokes()
    by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for inv in invokes:
        by_owner[inv["controller"]].append(inv)
    all_sent = sorted(run.result["invokes"], key=lambda r: r[0])
    firsts, rows, steady_values = [], [], []
    previous_slots: set[int] = set()
    for n, execution in enumerate(run.executions):
        mine = sorted(by_owner.get(execution.get("owner", ""), []), key=lambda i: i["slot_ms"])
        # every send of this execution, duplicates included (a slot its predecessor already fired)
        sends = [r for r in all_sent if r[4] == execution.get("owner")]
        own_first = min(sends, key=lambda r: r[2]) if sends else None
        steady_values += [i["lateness_ms"] for i in mine[1:]]
        if n == 0 or own_first is None:
            previous_slots |= {i["slot_ms"] for i in mine}
            continue
        late = own_first[0] - own_first[2]
        firsts.append(late)
        start_ms = execution["started"] * 1000
        rows.append([n, _ms(execution.get("gap_s", math.nan) * 1000), _ms(own_first[2] - start_ms), _ms(late),
                     "yes" if own_first[2] in previous_slots else "", len(mine)])
        previous_slots |= {i["slot_ms"] for i in mine}
    steady = summarize(steady_values)
    first = summarize(firsts)
    slots = sorted({i["slot_ms"] for i in invokes})
    missed = sum(max(0, round((b - a) / 1000) - 1) for a, b in zip(slots, slots[1:]))
    print(f"\n== {len(firsts)} restarts: one schedule at 1 s, {args.latency_ms:g} ms per call, executions of "
          f"{args.budget:g} s, restart gap {args.gap:g} s ==")
    print_table(["restart", "gap ms", "slot - execution start ms", "first slot lateness ms", "fired before", "fires"],
                rows)
    print("(slot - execution start < 0: the slot fell in the restart gap; a slot shortly after the start is late by "
          "what the execution's start-up still had to do)")
    ok = first.count > 0 and first.max <= steady.p99 + 5
    print(f"first slot after a restart: p50 {_ms(first.p50)} ms, max {_ms(first.max)} ms; the rest: "
          f"{steady.count} fires, p50 {_ms(steady.p50)} ms, p99 {_ms(steady.p99)} ms, max {_ms(steady.max)} ms; "
          f"issue 10 (max first <= steady p99 + 5 ms): {'met' if ok else 'NOT met'}")
    print(f"slots fired twice: {run.duplicates()}; slots missed between fires: {missed}; at the stand-in: p99 "
          f"{_ms(summarize(run.received_lateness()).p99)} ms; errors: {run.result['errors'] or 'none'}")
    return {"restarts": len(firsts), "first": first.__dict__, "steady": steady.__dict__, "met": ok,
            "duplicates": run.duplicates(), "missed": missed, "calls_total": run.total_calls(),
            "per_restart": [dict(zip(["restart", "gap_ms", "slot_minus_start_ms", "first_ms", "fired_before", "fires"], r))
                            for r in rows], "errors": run.result["errors"]}


def many(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    rows = [{"id": i, "running": True, "waitseconds": 1, "name": f"schedule-{i:04d}"}
            for i in range(1, args.schedules + 1)]
    stack = harness.create_stack(rows=rows)
    run = harness.run_chain(stack, run_s=args.seconds, budget_s=None, gap_s=args.gap, max_executions=1,
                            entry=args.entry, cpu_memory_mb=args.cpu_of_memory, period_us=args.period_us)
    invokes = run.invokes()
    execution = run.executions[0] if run.executions else {}
    lat = summarize(i["lateness_ms"] for i in invokes)
    span_s = (max(i["sent_ms"] for i in invokes) - min(i["sent_ms"] for i in invokes)) / 1000 if len(invokes) > 1 else 0
    # due: every schedule's slots from the first slot fired to the end of the execution's budget
    budget_end = execution.get("started", 0) * 1000 + execution.get("cap_s", 0) * 1000
    first_slot = min((i["slot_ms"] for i in invokes), default=budget_end)
    fired = (execution.get("stats") or {}).get("fired", 0)
    due = args.schedules * max(0, math.floor((budget_end - first_slot) / 1000) + 1)
    tenth = max(1, len(invokes) // 10)
    by_sent = sorted(invokes, key=lambda i: i["sent_ms"])
    early, late = summarize(i["lateness_ms"] for i in by_sent[:tenth]), summarize(i["lateness_ms"] for i in by_sent[-tenth:])
    cpu_per_invoke = run.result["rusage_cpu_s"] * 1000 / max(1, len(invokes))
    print(f"\n== {args.schedules} schedules at 1 s, {args.latency_ms:g} ms per call, one execution of "
          f"{execution.get('duration_s', 0):.0f} s ==")
    print_table(["fires sent", "slots due", "fired by the loop", "invokes/s", "p50 ms", "p99 ms", "max ms",
                 "first 10% p50", "last 10% p50", "CPU ms/invoke"],
                [[lat.count, due, fired, f"{len(invokes) / span_s:,.0f}" if span_s else "-", _ms(lat.p50), _ms(lat.p99),
                  _ms(lat.max), _ms(early.p50), _ms(late.p50), f"{cpu_per_invoke:.2f}"]])
    ok = lat.count >= 0.99 * due and lat.p99 <= 10
    print(f"issue 10 (p99 <= 10 ms, every due slot sent): {'met' if ok else 'NOT met'}; at the stand-in: p99 "
          f"{_ms(summarize(run.received_lateness()).p99)} ms; slots fired twice {run.duplicates()}; controller CPU "
          f"{run.result['rusage_cpu_s']:.1f} s in {run.wall_s:.0f} s; errors: {run.result['errors'] or 'none'}")
    calls = [f"{c['caller']} {c['service']}.{c['op']} x{c['count']}" + (f" ({c['rru']:.0f} RRU)" if c["rru"] else "")
             + (f" ({c['wru']:.0f} WRU)" if c["wru"] else "") for c in run.calls()]
    print("calls: " + "; ".join(calls))
    return {"schedules": args.schedules, "sent": lat.count, "due": due, "fired": fired, "lateness": lat.__dict__,
            "invokes_per_s": len(invokes) / span_s if span_s else None, "first_tenth": early.__dict__,
            "last_tenth": late.__dict__, "cpu_ms_per_invoke": cpu_per_invoke, "met": ok,
            "calls_total": run.total_calls(), "errors": run.result["errors"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per execution (restart mode)")
    parser.add_argument("--gap", type=float, default=0.3, help="restart time between executions, s")
    parser.add_argument("--schedules", type=int, default=0, help="N schedules at 1 s instead of the restart run")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the --schedules run")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--cpu-of-memory", type=float, help="run the controller under Lambda's CPU share at this memory")
    parser.add_argument("--period-us", type=int, default=100_000)
    parser.add_argument("--entry", choices=("run_controller", "handler"), default="run_controller")
    parser.add_argument("--quick", action="store_true", help="3 restarts of 3 s, or an 8 s --schedules run")
    parser.add_argument("--src", help="import subminute from this src/ directory (e.g. a snapshot of HEAD)")
    parser.add_argument("--json", help="write the figures here as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.restarts, args.budget, args.seconds = min(args.restarts, 3), min(args.budget, 3.0), min(args.seconds, 8.0)
    with Harness(latency_ms=args.latency_ms, src=args.src) as harness:
        print(f"subminute from {subminute_origin()}")
        quota = ""
        if args.cpu_of_memory:
            try:
                with CpuQuota(args.cpu_of_memory, args.period_us) as probe:
                    quota = probe.describe()
            except CgroupError as exc:
                print(f"CPU quota unavailable, running unthrottled: {exc}")
                args.cpu_of_memory = None
        print(f"stand-in latency {args.latency_ms:g} ms per call; CPU: {quota or 'unthrottled'}; load average "
              f"{loadavg()} (this machine: {os.cpu_count()} CPUs, shared)")
        report = many(harness, args) if args.schedules else restarts(harness, args)
        print(f"(load average {loadavg()})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
