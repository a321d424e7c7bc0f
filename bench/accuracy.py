"""How late does subminute fire? One run, on this machine, of:

* ``floor``: a bare loop sleeping to absolute deadlines (the best a Python thread can do here);
* subminute's real local runtime (SQLite control file, SQLite fire records, local dispatcher, no-op target)
  with 1, 100 and 1,000 schedules at 1 s, and 1 schedule at 0.1 s.

For each it prints fires, lateness p50/p99/max in ms (dispatch time minus slot), missed and duplicate slots,
slots off the drift-free grid, the lateness trend between the first and last tenth of the run, and CPU ms per
fire. Usage::

    python bench/accuracy.py                 # 30 s per case, about 3 minutes
    python bench/accuracy.py --seconds 10    # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from subminute.results.sinks import FireLog
from subminute.runtime.local import LocalRuntime
from subminute.timing.stats import summarize

COLUMNS = ["case", "fires", "p50 ms", "p99 ms", "max ms", "missed", "dup", "off-grid", "trend ms", "cpu ms/fire"]


def floor_case(seconds: float, interval_s: float) -> list[str]:
    """A bare loop: sleep to each epoch-aligned slot on the monotonic clock, note the lateness."""
    interval_ms = round(interval_s * 1000)
    lateness = []
    cpu0 = time.process_time()
    slot = (int(time.time() * 1000) // interval_ms + 1) * interval_ms
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        deadline = time.monotonic() + (slot - time.time() * 1000) / 1000
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        lateness.append(time.time() * 1000 - slot)
        slot += interval_ms
    cpu = (time.process_time() - cpu0) * 1000
    s = summarize(lateness)
    return [f"floor, sleep loop @{interval_s:g}s", str(s.count), f"{s.p50:.3f}", f"{s.p99:.3f}", f"{s.max:.3f}",
            "0", "0", "0", f"{_trend(lateness):.3f}", f"{cpu / max(s.count, 1):.3f}"]


def _trend(values: list[float]) -> float:
    tenth = max(len(values) // 10, 1)
    return sum(values[-tenth:]) / tenth - sum(values[:tenth]) / tenth


def subminute_case(seconds: float, schedules: int, interval_s: float) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        runtime = LocalRuntime(db)
        for i in range(1, schedules + 1):
            runtime.store.put({"id": i, "waitseconds": interval_s, "target": {"type": "noop"}})
        interval_ms = round(interval_s * 1000)
        timer = threading.Timer(seconds, runtime.stop)
        cpu0 = time.process_time()
        timer.start()
        runtime.run()
        cpu = (time.process_time() - cpu0) * 1000
        log = FireLog(db)
        rows = log.query("SELECT schedule_id, slot_ms, lateness_ms, status FROM fires ORDER BY dispatched_ms")
        log.close()
    fired = [r for r in rows if r[3] in ("ok", "error", "timeout")]
    lateness = [r[2] for r in fired]
    per_slot = Counter((r[0], r[1]) for r in fired)
    duplicates = sum(c - 1 for c in per_slot.values() if c > 1)
    off_grid = sum(1 for r in fired if r[1] % interval_ms)
    # every slot between the first and the last fire of each schedule must have fired exactly once
    missed = 0
    by_schedule: dict[int, list[int]] = {}
    for sid, slot in per_slot:
        by_schedule.setdefault(sid, []).append(slot)
    for slots in by_schedule.values():
        slots.sort()
        missed += (slots[-1] - slots[0]) // interval_ms + 1 - len(slots)
    missed += schedules - len(by_schedule)  # schedules that never fired
    s = summarize(lateness)
    return [f"subminute, {schedules} x {interval_s:g}s", str(s.count), f"{s.p50:.3f}", f"{s.p99:.3f}",
            f"{s.max:.3f}", str(missed), str(duplicates), str(off_grid), f"{_trend(lateness):.3f}",
            f"{cpu / max(s.count, 1):.3f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each case (default 30)")
    parser.add_argument("--cases", default="floor,1,100,1000,fast",
                        help="comma list of: floor, 1, 100, 1000, fast (1 x 0.1 s)")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    results = []
    plan = [("floor", lambda: floor_case(args.seconds, 1.0)),
            ("floor", lambda: floor_case(args.seconds, 0.1)),
            ("1", lambda: subminute_case(args.seconds, 1, 1.0)),
            ("100", lambda: subminute_case(args.seconds, 100, 1.0)),
            ("1000", lambda: subminute_case(args.seconds, 1000, 1.0)),
            ("fast", lambda: subminute_case(args.seconds, 1, 0.1))]
    todo = [(name, fn) for name, fn in plan if name in cases]
    for i, (name, fn) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {name}: {args.seconds:g}s ...", file=sys.stderr, flush=True)
        results.append(fn())
    widths = [max(len(c), *(len(r[i]) for r in results)) for i, c in enumerate(COLUMNS)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in results:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
