"""``subminute run``: the controller on the SQLite control file, until Ctrl-C, SIGTERM or the budget."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..controller import ControllerOptions
from ..controller.options import MIN_LEASE_TTL_S
from ..runtime.local import LocalRuntime
from .args import count, db_path, seconds_flag
from .config import apply_config, load_config
from .live import LiveView, summary_table
from .output import print_json

T = TypeVar("T")

__all__ = ["in_own_thread", "register", "signals_stop"]


@contextmanager
def signals_stop(stop: Callable[[], object]) -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM call ``stop()`` (the lease is released, records are flushed);
    the handlers before it are put back at its end. Around the whole command, the summary it prints
    included: a second signal while it ends must not cut that short (only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda *_: stop())
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def in_own_thread(run: Callable[[], T]) -> T:
    """``run()`` in a thread of its own, the calling thread only waiting for it (what it returns or raises
    comes back here). A signal handler runs in the main thread between two of its bytecodes: had the
    controller been running there, the handler could interrupt it while it held the lock of the event
    that ``stop()`` sets, and then wait for that lock forever (a SIGTERM that landed while the loop
    cleared its wake-up event hung the process)."""
    if threading.current_thread() is not threading.main_thread():
        return run()
    returned: list[T] = []
    raised: list[BaseException] = []

    def body() -> None:
        try:
            returned.append(run())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            raised.append(exc)

    thread = threading.Thread(target=body, name="subminute-run")
    thread.start()
    thread.join()  # interrupted by a signal, the handler runs, then the join goes on
    if raised:
        raise raised[0]
    return returned[0]


log = logging.getLogger("subminute.cli")

MAX_BUDGET_S = 10 * 365 * 86400


def _cmd_run(args: argparse.Namespace) -> int:
    budget = seconds_flag(args.budget, "--budget", 0.001, MAX_BUDGET_S)
    lease_ttl = seconds_flag(args.lease_ttl, "--lease-ttl", MIN_LEASE_TTL_S, 3600)
    port = count(args.metrics_port, "--metrics-port", 0, 65535, "a port")
    db = db_path(args)
    # the file's schedules are checked whole before anything is opened or written
    rows = load_config(args.config) if args.config else None
    options = ControllerOptions() if lease_ttl is None else ControllerOptions(lease_ttl_s=lease_ttl)
    wrap = None
    if port is not None:
        from ..observe.metrics import Metrics, MetricsSink

        metrics = Metrics()
        port = metrics.serve(port)
        log.info("metrics on http://127.0.0.1:%d/metrics", port)  # a log line: JSON with --log-json

        def wrap(sink: Any) -> Any:
            return MetricsSink(sink, metrics)

    runtime = LocalRuntime(db, budget_s=budget, options=options, wrap_sink=wrap)
    if rows is not None:
        for change in apply_config(runtime.store, rows, file_wins=args.file_wins, source=args.config):
            (log.warning if change.differences else log.info)("%s", change.describe(args.config))
    if not runtime.store.rows():
        log.warning("no schedules yet; add one with 'subminute add --every 2s --http URL' "
                    "(the controller picks it up at once)")
    live = LiveView(runtime.controller, title=f"subminute run ({db})", tty=None if not args.no_live else False)
    with signals_stop(runtime.stop):  # the summary too: a second Ctrl-C or SIGTERM must not cut it short
        with live:
            handoff = in_own_thread(runtime.run)
        if args.json:
            print_json(handoff.to_dict())
        else:
            print(summary_table(runtime.controller))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run the controller: fire every running schedule on time")
    p.add_argument("--config", metavar="FILE", help="TOML file of schedules to add (the table wins on conflicts)")
    p.add_argument("--file-wins", action="store_true", help="overwrite table rows that differ from --config")
    p.add_argument("--budget", metavar="DURATION",
                   help="stop after this long (90, 2m, 1h), handing the next slots to a successor")
    p.add_argument("--lease-ttl", metavar="DURATION",
                   help="how soon a standby takes over a dead controller: 1 to 3600 s (default 5)")
    p.add_argument("--no-live", action="store_true", help="plain log lines even on a terminal")
    p.add_argument("--metrics-port", metavar="PORT",
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)")
    p.add_argument("--json", action="store_true", help="print the final hand-off as JSON")
    p.set_defaults(func=_cmd_run)
