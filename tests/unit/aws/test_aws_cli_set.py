"""``subminute aws set`` checks a row the way the AWS controller will run it (lambda, http or the stack's
worker; an http target as the poller builds it) and names are unique in DynamoDB too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_unit_support import TABLE

from subminute.aws.dynamodb import DynamoStore
from subminute.cli import main
from subminute.errors import ConfigError


def aws_set(*argv: str) -> int:
    try:
        return main(["aws", "set", "--table", TABLE, "--state-machine", "arn:aws:states:x", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["2", "--target", json.dumps({"type": "tcp", "host": "h", "port": 1})],
         "target.type: 'tcp' is not allowed; on AWS use lambda"),
        (["2", "--target", json.dumps({"type": "lambda"})], "target.function: None is not allowed"),
        (["2", "--target", json.dumps({"type": "http", "url": "ftp://x"})], "ftp://x"),
        (["2", "--name", "7"], "name: '7' is not allowed; use a name that is not a number"),
        (["2", "--name", "one"], "name: 'one' is not allowed; schedule 1 has that name"),
        (["0", "--every", "1"], "0 is not allowed; use a whole number from 1"),
        (["99999999999999999999", "--every", "1"], "is not allowed; use a whole number from 1"),
        (["2", "--every", "0.01"], "waitseconds: '0.01' is not allowed"),
        (["2", "--target", "[" * 5000], "--target: "),  # a RecursionError traceback before
        (["2", "--target", json.dumps({"type": "http", "url": "https://x/", "method": "BREW"})], "target.method"),
    ],
)
def test_aws_set_refuses_what_the_aws_controller_would_not_run(ddb: Any, argv: list[str], needle: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    DynamoStore(ddb, TABLE).put({"id": 1, "name": "one", "waitseconds": 5})
    assert aws_set(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert [int(r["id"]) for r in DynamoStore(ddb, TABLE).rows()] == [1]


def test_aws_set_accepts_lambda_http_and_the_worker(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert aws_set("2", "--target", json.dumps({"type": "lambda", "function": "fn"}), "--every", "2") == 0
    assert aws_set("3", "--target", json.dumps({"type": "http", "url": "https://example.com/x"})) == 0
    assert aws_set("4", "--target", "", "--name", "plain") == 0
    assert [int(r["id"]) for r in DynamoStore(ddb, TABLE).rows()] == [2, 3, 4]


def test_dynamo_store_names_are_unique(ddb: Any) -> None:
    store = DynamoStore(ddb, TABLE, consistent=True)
    store.put({"id": 1, "name": "buses"})
    with pytest.raises(ConfigError, match="schedule 1 has that name"):
        store.put({"id": 2, "name": "buses"})
    store.put({"id": 2, "name": "trams"})
    with pytest.raises(ConfigError, match="schedule 1 has that name"):
        store.update(2, {"name": "buses"})
    assert [r["name"] for r in store.rows()] == ["buses", "trams"]


@pytest.mark.parametrize("damage", [{"lease_expires": {"S": "x"}}, {"lease_token": {"S": "abc"}},
                                    # numbers that are no token: never taken over before (the write's
                                    # condition wanted a token that is no number)
                                    {"lease_token": {"N": "-5"}}, {"lease_token": {"N": "1.5"}},
                                    {"lease_token": {"N": "1e38"}}])
def test_a_damaged_lease_item_counts_as_expired(ddb: Any, damage: dict[str, Any]) -> None:
    store = DynamoStore(ddb, TABLE, consistent=True)
    first = store.acquire_lease("a", 5.0, 1000.0)
    assert first is not None
    item = {"id": {"N": "0"}, "lease_owner": {"S": "a"}, "lease_token": {"N": str(first.token)},
            "lease_expires": {"N": "99999999999"}, **damage}
    ddb.put_item(TableName=TABLE, Item=item)
    lease = store.read_lease()
    assert lease is not None and lease.damaged and lease.expires_at == 0.0
    taken = store.acquire_lease("b", 5.0, 1001.0)
    assert taken is not None and taken.owner == "b" and taken.token >= 1 and taken.damaged is None
    assert store.read_lease() == taken


def test_aws_commands_refuse_an_endpoint_that_is_no_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "status", "--table", TABLE, "--endpoint-url", "not a url"]) == 2  # a ValueError before
    assert "--endpoint-url: 'not a url' is not allowed; use a URL" in capsys.readouterr().err


def test_aws_status_shows_instants_no_date_can_show(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # a lease expiry or a hand-off instant written by hand far in the future: OverflowError, ValueError
    DynamoStore(ddb, TABLE).put({"id": 1, "waitseconds": 5})
    ddb.put_item(TableName=TABLE, Item={"id": {"N": "0"}, "lease_owner": {"S": "a"}, "lease_token": {"N": "3"},
                                        "lease_expires": {"N": "1e20"},
                                        "handoff": {"S": json.dumps({"token": 3, "at_ms": 2**53})}})
    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(name="sm", roleArn="arn:aws:iam::123456789012:role/sm",
                                       definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))
    assert main(["aws", "status", "--table", TABLE, "--state-machine", machine["stateMachineArn"]]) == 0
    out = capsys.readouterr().out
    assert "until 1e+23 ms" in out and "hand-off at 9.0072e+15 ms" in out  # the numbers (ms) themselves
