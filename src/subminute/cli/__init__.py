"""The ``subminute`` command: ``main(argv) -> int``.

This is the one place where errors become messages and exit codes: 0 success, 1 runtime failure,
2 bad input (a one-line message naming the field, the value and what is allowed). Output cut short by its
reader (``subminute status | head -1``) ends the command quietly, as Unix tools do (exit code 141, as
for SIGPIPE).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from ..errors import ConfigError, NotFoundError, SubminuteError

__all__ = ["main", "build_parser"]

# command modules: each has register(subparsers); optional ones are skipped when missing
_COMMAND_MODULES = ("run_cmd", "schedules", "status_cmd", "demo_cmd", "results_cmd", "aws_cmd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"subminute: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="subminute",
        description="Fire jobs every second or faster, on time: precise sub-minute schedules.",
    )
    parser.add_argument("--version", action="version", version=f"subminute {__version__}")
    parser.add_argument("--db", metavar="PATH",
                        help="the SQLite control file (default: $SUBMINUTE_DB or ~/.local/share/subminute/subminute.db)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    parser.add_argument("--log-json", action="store_true", help="log to stderr as JSON lines (secrets masked)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            if exc.name and exc.name.endswith(name):
                continue  # an optional command whose module is not there
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..observe.logs import configure_logging

    configure_logging(logging.DEBUG if args.verbose else logging.INFO, json_format=args.log_json)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a reader that went away is noticed, not at the interpreter's exit
        return code
    except SubminuteError as exc:
        code = 2 if isinstance(exc, (ConfigError, NotFoundError)) else 1  # bad input, or a runtime failure
        from .output import clean

        _flush_quietly()
        print(f"subminute: error: {clean(exc)}", file=sys.stderr)
        return code
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:  # the output could not be written (a full disk, /dev/full, an I/O error)
        _reader_gone()  # what is still buffered for stdout cannot be written either
        where = f" ({exc.filename})" if exc.filename else ""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        advice = "free some space or write the output elsewhere" if full else "check the paths and their permissions"
        print(f"subminute: error: {exc.strerror or exc}{where}; {advice}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()


def _reader_gone() -> int:
    """The reader of stdout went away (or it cannot be written): stop writing, without a message (and
    without the one Python would print when it flushes stdout at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is no real file (a test's capture): nothing will be flushed to it at exit
    return 128 + signal.SIGPIPE
