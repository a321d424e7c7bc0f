"""Unit-test seams for the AWS code: moto in-process (real boto3 clients, botocore's full request path,
no server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aws_unit_support import REGION, Invokes, make_table


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Invokes]:
    from moto import mock_aws
    from moto.awslambda.models import LambdaFunction

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    invokes = Invokes()
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", lambda fn, event=None: invokes.record(fn, event))
    with mock_aws():
        yield invokes


@pytest.fixture
def ddb(aws: Invokes) -> Any:
    import boto3

    client = boto3.client("dynamodb", region_name=REGION)
    make_table(client)
    return client
