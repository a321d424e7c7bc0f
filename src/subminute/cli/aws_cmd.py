"""``subminute aws start | stop | set | status``: operate the deployed AWS system.

The table and the state machine are found from the stack's outputs (``--stack``, default
``SubMinuteLambdaExecutor``), or given with ``--table`` and ``--state-machine`` (a table of the
original sample works as it is). ``--region``, ``--profile`` and ``--endpoint-url`` pick the account,
as for the AWS CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..control.rows import check_name
from ..errors import ConfigError, NotFoundError, SubminuteError
from .args import schedule_id
from .checks import check_row, inspect_rows
from .output import fmt_instant, print_json, print_table, say

__all__ = ["AwsTarget", "connect", "register"]

DEFAULT_STACK = "SubMinuteLambdaExecutor"


class AwsTarget:
    """The deployed system this command talks to: table, state machine and the clients to reach them."""

    def __init__(self, session: Any, endpoint_url: str | None, table: str, state_machine: str | None) -> None:
        from ..aws.dynamodb import DynamoStore

        self.session = session
        self.endpoint_url = endpoint_url
        self.table = table
        self.state_machine = state_machine
        self.store = DynamoStore(self.client("dynamodb"), table, consistent=True)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def executions(self, status: str = "RUNNING") -> list[dict[str, Any]]:
        if not self.state_machine:
            return []
        sfn = self.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine, statusFilter=status)
        return [e for page in pages for e in page.get("executions", [])]


def connect(args: argparse.Namespace) -> AwsTarget:
    """Find the table and state machine from the arguments (or the stack's outputs)."""
    try:
        import boto3
    except ImportError:
        raise ConfigError("aws", "boto3", "install the aws extra: pip install 'subminute[aws]'") from None
    from botocore.exceptions import BotoCoreError, ClientError

    logging.getLogger("botocore").setLevel(logging.WARNING)  # not its "found credentials" on every command
    if args.endpoint_url is not None:
        parts = urlsplit(args.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("--endpoint-url", args.endpoint_url, "use a URL such as http://127.0.0.1:5000")
    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    table, machine = args.table, args.state_machine
    if not table or not machine:
        try:
            cfn = session.client("cloudformation", endpoint_url=args.endpoint_url)
            stacks = cfn.describe_stacks(StackName=args.stack)["Stacks"]
        except (BotoCoreError, ClientError) as exc:
            raise SubminuteError(f"cannot read stack {args.stack} ({exc}); deploy it, or give --table and "
                                 "--state-machine") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        table = table or outputs.get("TableName")
        machine = machine or outputs.get("StateMachineArn")
        if not table:
            raise ConfigError("--stack", args.stack, "use a stack deployed from SubMinuteLambdaExecutor.yaml or the CDK app")
    return AwsTarget(session, args.endpoint_url, table, machine)


def _aws_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise SubminuteError(f"AWS: {exc}") from None


def _start(args: argparse.Namespace) -> int:
    args.id = schedule_id(args.id)
    target = connect(args)
    _aws_call(target.store.update, args.id, {"running": True})
    running = _aws_call(target.executions)
    if running and not args.force:
        say(f"schedule {args.id} set running; execution {running[0]['name']} is already running")
        return 0
    if not target.state_machine:
        raise ConfigError("--state-machine", None, "give the state machine's ARN to start an execution")
    # no hand-off: a token from the table would let this chain share the lease with a live one
    name = time.strftime("subminute-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]
    sfn = target.client("stepfunctions")
    result = _aws_call(sfn.start_execution, stateMachineArn=target.state_machine, name=name,
                       input=json.dumps({"handoff": None, "running": True}))
    say(f"schedule {args.id} set running; started execution {name}")
    if args.json:
        print_json({"executionArn": result["executionArn"], "name": name})
    return 0


def _stop(args: argparse.Namespace) -> int:
    args.id = schedule_id(args.id)
    target = connect(args)
    _aws_call(target.store.update, args.id, {"running": False})
    say(f"schedule {args.id} stopped; the execution ends by itself once nothing runs")
    if args.now:
        sfn = target.client("stepfunctions")
        for execution in _aws_call(target.executions):
            _aws_call(sfn.stop_execution, executionArn=execution["executionArn"], cause="subminute aws stop --now")
            say(f"stopped execution {execution['name']}")
    return 0


def _set(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.every is not None:
        changes["waitseconds"] = args.every
    if args.plan is not None:
        changes["plan"] = args.plan or None
    if args.target is not None:
        try:
            changes["target"] = json.loads(args.target) if args.target else None
        except (json.JSONDecodeError, RecursionError):  # (nested thousands deep)
            raise ConfigError("--target", args.target, "use a JSON object such as {\"type\": \"lambda\", "
                              "\"function\": \"my-fn\"}, or '' to remove it") from None
        if isinstance(changes["target"], dict):
            changes["target"] = json.dumps(changes["target"], separators=(",", ":"), sort_keys=True)
    if args.name is not None:
        changes["name"] = args.name
    if args.running is not None:
        changes["running"] = args.running == "true"
    if not changes:
        raise ConfigError("set", None, "give at least one of --every, --plan, --target, --name, --running")
    if isinstance(changes.get("name"), str):
        changes["name"] = check_name(changes["name"], "--name")
    sid = schedule_id(args.id)
    target = connect(args)
    try:
        current: dict[str, Any] | None = _aws_call(target.store.get, sid)
    except NotFoundError:
        current = None
    base = {k: v for k, v in (current or {"id": sid}).items() if not str(k).startswith("_")}
    _, note = check_row({**base, **changes}, runtime="aws")  # as the AWS controller will run it
    if current is not None:
        _aws_call(target.store.update, sid, changes)
    else:
        _aws_call(target.store.put, {"id": sid, **{k: v for k, v in changes.items() if v is not None}})
    say(f"schedule {sid} {'updated' if current is not None else 'created'}: " + ", ".join(sorted(changes)))
    if note:
        say(f"subminute: note: schedule {sid}: {note}", file=sys.stderr)
    return 0


def _timing(row: Mapping[str, Any]) -> str:
    from ..control.rows import schedule_from_row

    schedule = schedule_from_row(row)
    if schedule.error:
        return "invalid"
    return "plan" if schedule.timetable.kind == "plan" else schedule.timetable.describe()


def _status(args: argparse.Namespace) -> int:
    from ..control.rows import plain

    target = connect(args)
    rows = _aws_call(target.store.rows)
    lease = _aws_call(target.store.read_lease)
    handoff = _aws_call(target.store.load_handoff)
    executions = _aws_call(target.executions)
    if args.json:
        print_json({
            "table": target.table, "state_machine": target.state_machine,
            "rows": [{k: plain(v) for k, v in row.items()} for row in rows],
            "executions": [{"name": e["name"], "arn": e["executionArn"], "started": e["startDate"]}
                           for e in executions],
            "lease": None if lease is None else {"owner": lease.owner, "token": lease.token,
                                                 "expires_at": lease.expires_at, "damaged": lease.damaged},
            "handoff": handoff.to_dict() if handoff is not None else None,
        })
        return 0
    say(f"table {target.table}")
    table_rows = []
    for checked in inspect_rows(rows, runtime="aws"):  # each row as the AWS controller will run it
        row, schedule = checked.raw, checked.schedule
        target_spec = row.get("target")
        table_rows.append([plain(row.get("id")), schedule.name,
                           "INVALID" if checked.error else ("yes" if schedule.running else "no"),
                           _timing(row), (target_spec if isinstance(target_spec, str) else "worker")[:40],
                           checked.error or ""])
    print_table(["id", "name", "running", "timing", "target", "error"], table_rows)
    print()
    print_table(["execution", "started"], [[e["name"], str(e["startDate"])[:19]] for e in executions]
                or [["(none running)", None]])
    print()
    if lease is not None and lease.damaged:
        say(f"lease: damaged ({lease.damaged}); it counts as expired: the next execution takes it over")
    elif lease is not None:
        say(f"lease: token {lease.token} held by {lease.owner} until {fmt_instant(lease.expires_at * 1000)}")
    if handoff is not None:
        say(f"last hand-off at {fmt_instant(handoff.at_ms)} by {handoff.owner}:")
        print_table(["schedule", "next slot", "seq"],
                    [[sid, fmt_instant(p.next_ms), p.seq] for sid, p in sorted(handoff.positions.items())]
                    or [["(none)", None, None]])
    else:
        say("no hand-off saved yet")
    return 0


def _bool(text: str) -> str:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use true or false")
    return text.lower()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("aws", help="operate the AWS deployment (Step Functions + Lambda + DynamoDB)",
                                   description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", default=None, help="AWS region (default: as the AWS CLI)")
    common.add_argument("--profile", default=None, help="AWS profile (default: as the AWS CLI)")
    common.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="another endpoint, such as a local emulator")
    common.add_argument("--stack", default=os.environ.get("SUBMINUTE_STACK", DEFAULT_STACK),
                        help=f"the CloudFormation stack (default {DEFAULT_STACK})")
    common.add_argument("--table", default=os.environ.get("SUBMINUTE_TABLE"), help="the control table's name")
    common.add_argument("--state-machine", default=os.environ.get("SUBMINUTE_STATE_MACHINE"),
                        help="the state machine's ARN")
    common.add_argument("--json", action="store_true", help="print JSON")
    commands = parser.add_subparsers(dest="aws_command", metavar="ACTION")
    start = commands.add_parser("start", parents=[common], help="set a schedule running and start an execution")
    start.add_argument("id", nargs="?", default="1", help="schedule id (default 1)")
    start.add_argument("--force", action="store_true", help="start an execution even if one is running")
    start.set_defaults(func=_start)
    stop = commands.add_parser("stop", parents=[common], help="set a schedule not running")
    stop.add_argument("id", nargs="?", default="1", help="schedule id (default 1)")
    stop.add_argument("--now", action="store_true", help="also stop the running executions at once")
    stop.set_defaults(func=_stop)
    set_ = commands.add_parser("set", parents=[common], help="change (or create) a schedule's row")
    set_.add_argument("id", nargs="?", default="1", help="schedule id (default 1)")
    set_.add_argument("--every", metavar="SECONDS", help="the interval: waitseconds (0.1 to 86400)")
    set_.add_argument("--plan", metavar="TEXT", help="an interval plan by time of day ('' removes it)")
    set_.add_argument("--target", metavar="JSON", help="what to invoke ('' for the stack's worker)")
    set_.add_argument("--name", help="a name for the schedule")
    set_.add_argument("--running", type=_bool, help="true or false")
    set_.set_defaults(func=_set)
    status = commands.add_parser("status", parents=[common],
                                 help="show the control rows, running executions and last hand-off")
    status.set_defaults(func=_status)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
