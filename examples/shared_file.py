"""A program and the CLI sharing one SQLite file: the CLI sees the program's schedules and changes them
while the program runs.

    python examples/shared_file.py [FILE]        # default: a file in a temporary directory
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from subminute import Scheduler

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "jobs.db")


def cli(*args):
    """`subminute --db FILE ...`, as you would type it in another terminal."""
    done = subprocess.run([sys.executable, "-m", "subminute", "--db", path, *args], capture_output=True, text=True,
                          check=True)
    return done.stdout


def probe(event):
    pass


with Scheduler(path) as scheduler:  # stopped (and the file closed) at the end of the block
    scheduler.add(probe, every="250ms")
    scheduler.start()
    time.sleep(0.5)
    seen = json.loads(cli("status", "--json"))["schedules"]
    print(f"the CLI sees: {[(s['name'], s['interval_now_ms'], s['state']) for s in seen]}")
    cli("set", "probe", "--every", "1s")  # from "another terminal"
    time.sleep(1.0)
    print(f"the program now fires probe every {scheduler.status()[0]['interval_now_ms']} ms")

print(f"fires recorded in {path}: {scheduler.status()[0]['fires']}")
