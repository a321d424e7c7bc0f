"""Helpers of the AWS unit tests: a table shaped like the template's, a function to invoke, injected
latency, and Lambda invokes recorded instead of run (moto would need Docker to run them)."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

REGION = "us-east-1"
TABLE = "subminute-control"


class Invokes:
    """Every Lambda invoke moto received: (function name, payload, wall ms at receipt)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self.lock = threading.Lock()

    def record(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        payload = json.loads(event) if isinstance(event, (str, bytes)) else event
        now = time.time() * 1000
        with self.lock:  # one entry per fire: an invoke of the stack's worker may carry a batch of events
            for one in payload["events"] if isinstance(payload, dict) and "events" in payload else [payload]:
                self.calls.append((fn.function_name, one, now))
        return "{}", False, ""


def make_table(client: Any, name: str = TABLE) -> str:
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    return name


def make_function(client: Any, name: str = "worker") -> str:
    import io
    import zipfile

    iam = __import__("boto3").client("iam", region_name=REGION)
    role = iam.create_role(RoleName=f"role-{name}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    client.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                           Code={"ZipFile": buffer.getvalue()})
    return name


def add_latency(client: Any, low_s: float = 0.010, high_s: float = 0.050, seed: int = 7) -> list[float]:
    """Make every call of ``client`` take 10-50 ms more, as calls to AWS from a Lambda do (a botocore
    event hook before each request is sent). Returns the list of injected delays."""
    rng = random.Random(seed)
    delays: list[float] = []

    def sleep(**_: Any) -> None:
        delay = rng.uniform(low_s, high_s)
        delays.append(delay)
        time.sleep(delay)

    client.meta.events.register("before-send", sleep)
    return delays
