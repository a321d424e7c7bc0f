"""Plain functions on schedules, in memory: decorate them, start, look at the status, stop.

    python examples/decorators.py
"""

import time

from subminute import Scheduler

scheduler = Scheduler()  # in memory: nothing written anywhere


@scheduler.every("200ms", overlap="skip")
def probe(event):
    """Gets the event: schedule, slot (the planned instant), seq ..."""
    if event["seq"] == 1:
        print(f"probe: first slot {event['slot']}")


@scheduler.every("500ms")
def heartbeat():  # no parameter: called without the event
    pass


def flaky(event):
    if event["seq"] % 2 == 0:
        raise RuntimeError("the device did not answer")  # recorded as an error; the schedule keeps firing


scheduler.add(flaky, every="250ms", timeout=1)

scheduler.start()  # a background thread; returns at once
time.sleep(1.1)
scheduler.set("probe", every="100ms")  # applied by the running scheduler within half a second
time.sleep(1.0)
scheduler.stop()  # within a second

for row in scheduler.status():
    print(f"{row['name']}: every {row['interval_now_ms']} ms, {row['fires']} fires, {row['errors']} errors, "
          f"start lateness p99 {row['start_p99_ms']} ms")
errors = [r["error"] for r in scheduler.history("flaky") if r["status"] == "error"]
print(f"flaky: last error: {errors[-1]}")
