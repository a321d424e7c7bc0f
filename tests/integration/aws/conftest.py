"""A moto server (real AWS wire protocol over HTTP on 127.0.0.1) for the AWS integration tests.

moto cannot run Lambda code without Docker, so the Lambda "runtime" is patched to run the real handler
code in this process: the function's handler name picks the handler, and its context's remaining time
follows the function's timeout. The Step Functions runner of moto 5.2.5 has bugs around the
``states:startExecution`` integration, patched below (each patch says which). moto's DynamoDB writes are
not atomic under concurrent requests (two conditional updates of one item, arriving together, can both
pass their condition); DynamoDB's are, and the controller lease relies on it, so the server's writes are
serialized here (``_serialize_moto_dynamodb_writes``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aws_context import LambdaContext
from subminute.timing.clock import SystemClock

pytestmark = pytest.mark.aws

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _patch_moto_sfn_start_execution(mp: pytest.MonkeyPatch) -> None:
    """moto 5.2.5's runner calls boto3's ``start_execution`` with the ASL's PascalCase parameter names
    (``StateMachineArn``, ``Input``, ``Name``) where boto3 wants camelCase, and then fails to turn the
    response's ``startDate`` (a datetime) into JSON. Real Step Functions does both right; so rename the
    parameters, and return the date as text, before the runner sees them."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sfn as sfn_task,
    )
    from moto.stepfunctions.parser.asl.utils import boto_client

    real_client_for = boto_client.boto_client_for

    class _Client:
        def __init__(self, client: Any) -> None:
            self._client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def start_execution(self, **params: Any) -> dict[str, Any]:
            renamed = {key[:1].lower() + key[1:]: value for key, value in params.items()}
            response = dict(self._client.start_execution(**renamed))
            response["startDate"] = response["startDate"].isoformat()
            return response

    def client_for(*args: Any, **kwargs: Any) -> Any:
        client = real_client_for(*args, **kwargs)
        return _Client(client) if client.meta.service_model.service_name == "stepfunctions" else client

    mp.setattr(sfn_task, "boto_client_for", client_for)

    # An execution started without a name is named "None" by moto (AWS makes up a UUID), so the second
    # unnamed start of a state machine finds the first by name instead of starting anew.
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    real_start = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: str | None = None, *args: Any, **kw: Any) -> Any:
        return real_start(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kw)

    mp.setattr(StepFunctionsParserBackend, "start_execution", start_execution)


class LambdaRuntime:
    """Runs invoked functions' real handlers in this process; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.results: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def handler_for(self, name: str) -> Any:
        from subminute.aws import handlers, worker

        module, _, attr = name.partition(".")
        if module != "index":
            raise AssertionError(f"unexpected handler {name}")
        for source in (handlers, worker):
            if hasattr(source, attr):
                return getattr(source, attr)
        raise AssertionError(f"no handler {attr}")

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        for key, value in (fn.environment_vars or {}).items():  # handlers read the environment
            assert os.environ.get(key) == value, f"set {key}={value!r} in the test's environment"
        payload = json.loads(event) if isinstance(event, (str, bytes)) else event
        with self.lock:
            self.calls.append((fn.handler, payload))
        context = LambdaContext(SystemClock(), timeout_s=float(fn.timeout), function_name=fn.function_name)
        try:
            result = self.handler_for(fn.handler)(payload, context)
        except Exception as exc:  # noqa: BLE001 - reported like Lambda does: an error payload, the call "errored"
            with self.lock:
                self.results.append((fn.handler, exc))
            return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}), True, ""
        with self.lock:
            self.results.append((fn.handler, result))
        return json.dumps(result, default=str), False, ""

    def events(self, handler: str) -> list[dict[str, Any]]:
        """The fire events a handler received, one per fire (an invoke may carry a batch of them)."""
        with self.lock:
            calls = [event for name, event in self.calls if name == handler]
        return [one for event in calls for one in (event["events"] if "events" in event else [event])]


def _serialize_moto_dynamodb_writes(mp: pytest.MonkeyPatch) -> None:
    """One write at a time, condition check and update together, as DynamoDB does per item."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def serialized(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        mp.setattr(DynamoDBBackend, name, serialized)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                       # the Step Functions runner calls the other services at localhost:$MOTO_PORT
                       "MOTO_PORT": str(port)}.items():
        mp.setenv(key, value)
    mp.delenv("AWS_PROFILE", raising=False)
    _patch_moto_sfn_start_execution(mp)
    _serialize_moto_dynamodb_writes(mp)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import urllib.request

    request = urllib.request.Request(f"{endpoint}/moto-api/config", method="POST",
                                     data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
    urllib.request.urlopen(request, timeout=5).read()
    try:
        yield endpoint
    finally:
        server.stop()
        mp.undo()


@pytest.fixture
def moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaRuntime]:
    """A clean moto server whose Lambda functions run the real handlers in this process."""
    import urllib.request

    from moto.awslambda.models import LambdaFunction

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"),
                           timeout=5).read()
    runtime = LambdaRuntime()
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda",
                        lambda fn, event=None: runtime.invoke(fn, event))
    yield runtime
    time.sleep(0.05)


@pytest.fixture
def clients(moto: LambdaRuntime) -> dict[str, Any]:
    import boto3

    return {name: boto3.client(name, region_name=REGION) for name in ("dynamodb", "lambda", "stepfunctions", "iam")}


class System:
    """The template's resources created in moto: table, controller and worker functions, state machine."""

    def __init__(self, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *, running: bool = True,
                 waitseconds: float = 0.5, controller_timeout: int = 3) -> None:
        import io
        import zipfile

        from subminute.aws.seed import seed_row
        from subminute.aws.template import build_template, function_code

        self.clients = clients
        template = build_template()
        resources = template["Resources"]
        ddb, lam, sfn, iam = clients["dynamodb"], clients["lambda"], clients["stepfunctions"], clients["iam"]
        self.table = "subminute-control"
        table = resources["ControlTable"]["Properties"]
        ddb.create_table(TableName=self.table, AttributeDefinitions=table["AttributeDefinitions"],
                         KeySchema=table["KeySchema"], BillingMode=table["BillingMode"])
        role = iam.create_role(RoleName="subminute-test", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        self.worker = "subminute-worker"
        self.controller = "subminute-controller"
        # the handlers read the environment of this process: give the functions the same
        env = {"TABLE_NAME": self.table, "WORKER_FUNCTION": self.worker, "SAFETY_MARGIN_S": "0.5",
               "REFRESH_S": "0.25", "LEASE_TTL_S": "2"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("URL", raising=False)
        monkeypatch.delenv("MAX_BUDGET_S", raising=False)
        self.arns: dict[str, str] = {}
        for logical, name, timeout, variables in (
                ("WorkerFunction", self.worker, 10, {}),
                ("ControllerFunction", self.controller, controller_timeout, env)):
            props = resources[logical]["Properties"]
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("index.py", function_code(template, logical))
            self.arns[name] = lam.create_function(
                FunctionName=name, Runtime=props["Runtime"], Role=role, Handler=props["Handler"],
                Code={"ZipFile": buffer.getvalue()}, Timeout=timeout, MemorySize=props["MemorySize"],
                Environment={"Variables": variables})["FunctionArn"]
        text = json.dumps(resources["StateMachine"]["Properties"]["Definition"])
        text = text.replace("${TableName}", self.table).replace("${ControllerArn}", self.arns[self.controller])
        self.machine = sfn.create_state_machine(
            name="subminute", definition=text, type="STANDARD",
            roleArn=role)["stateMachineArn"]
        seed_row(ddb, self.table, "true" if running else "false", waitseconds)
        from subminute.aws.dynamodb import DynamoStore

        self.store = DynamoStore(ddb, self.table)

    def executions(self) -> list[dict[str, Any]]:
        sfn = self.clients["stepfunctions"]
        return sfn.list_executions(stateMachineArn=self.machine)["executions"]


@pytest.fixture
def system(clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> System:
    return System(clients, monkeypatch)
