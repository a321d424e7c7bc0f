"""Generate ``SubMinuteLambdaExecutor.yaml``: the whole AWS system as one CloudFormation template.

``python -m subminute.aws.template [PATH]`` writes it (default: ``SubMinuteLambdaExecutor.yaml`` in the
current directory); ``--check`` exits 1 if the file differs from what would be written. The Lambda code
is inline (built by :mod:`subminute.aws.bundle` from the package sources) and the state machine is a
``Definition`` object, so the file uploads as is in the CloudFormation console, cfn-lint validates all of
it, and it stays under the 51,200 bytes that ``create-stack --template-body`` accepts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from .bundle import build_bundle
from .statemachine import definition

__all__ = ["MAX_TEMPLATE_BYTES", "TEMPLATE_NAME", "build_template", "function_code", "main", "render_yaml", "template_text"]

TEMPLATE_NAME = "SubMinuteLambdaExecutor.yaml"
MAX_TEMPLATE_BYTES = 51_200  # CloudFormation's limit for a template passed in the request body
RUNTIME = "python3.12"
LOG_RETENTION_DAYS = 14
# chosen by measurement (bench/aws_cost.py --compare-memory, under Lambda's CPU share at each size; docs/aws.md):
# 128 MB keeps one schedule's invoke start lateness p99 within a few ms, at half the cost of 256 MB
CONTROLLER_MEMORY_MB = 128
FLOW_WIDTH = 2000


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _att(name: str, attr: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, attr]}


def _role(statements: list[dict[str, Any]], log_group: str, service: str = "lambda.amazonaws.com") -> dict[str, Any]:
    logs = {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": _sub(f"${{{log_group}.Arn}}:*")} if log_group else None
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "least-privilege", "PolicyDocument": {
                "Version": "2012-10-17", "Statement": ([logs] if logs else []) + statements}}],
        },
    }


def _log_group(part: str) -> dict[str, Any]:
    return {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete",
            "Properties": {"LogGroupName": _sub("/subminute/${AWS::StackName}/" + part),
                           "RetentionInDays": LOG_RETENTION_DAYS}}


def _function(code: Any, handler: str, role: str, log_group: str, *, description: str, timeout: int,
              memory: int, env: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Description": description, "Runtime": RUNTIME, "Architectures": ["arm64"], "Handler": handler,
        "Role": _att(role, "Arn"), "Timeout": timeout, "MemorySize": memory, "Code": {"ZipFile": code},
        "LoggingConfig": {"LogGroup": _ref(log_group), "LogFormat": "Text"},
    }
    if env:
        props["Environment"] = {"Variables": env}
    return {"Type": "AWS::Lambda::Function", "Properties": props}


def _no_retries(function: str) -> dict[str, Any]:
    """An async invoke that fails is not retried: a retry would be a late second fire of the slot."""
    return {"Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {"FunctionName": _ref(function), "Qualifier": "$LATEST", "MaximumRetryAttempts": 0,
                           "MaximumEventAgeInSeconds": 60}}


def build_template() -> dict[str, Any]:
    """The template as a dict (CloudFormation JSON form)."""
    code = {"Fn::FindInMap": ["Code", "Lambda", "Index"]}  # one bundle, both functions (see Mappings)
    table_arn = _att("ControlTable", "Arn")
    machine_arn = _sub("arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}")
    functions = [("Controller", "controller", "the controller"),
                 ("Worker", "worker", "the worker: logs each fire, or polls URL once it is set")]
    resources: dict[str, Any] = {
        "ControlTable": {
            "Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete",
            "Properties": {"BillingMode": "PAY_PER_REQUEST",
                           "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "N"}],
                           "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]},
        },
    }
    for name, part, _ in functions:
        resources[f"{name}Logs"] = _log_group(part)
    resources["ControllerRole"] = _role([
        {"Effect": "Allow", "Action": ["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem",
                                       "dynamodb:UpdateItem"], "Resource": table_arn},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": _att("WorkerFunction", "Arn")},
    ], "ControllerLogs")
    resources["WorkerRole"] = _role([], "WorkerLogs")
    resources["ControllerFunction"] = _function(
        code, "index.controller_handler", "ControllerRole", "ControllerLogs",
        description="subminute controller: fires the control table's schedules, invoking the worker",
        timeout=900, memory=CONTROLLER_MEMORY_MB,
        env={"TABLE_NAME": _ref("ControlTable"), "WORKER_FUNCTION": _ref("WorkerFunction")})
    resources["WorkerFunction"] = _function(
        code, "index.worker_handler", "WorkerRole", "WorkerLogs",
        description="subminute worker: logs each fire; polls URL (one JSON log line per result) once set",
        timeout=30, memory=128, env={"URL": "", "METHOD": "GET", "HEADERS": "{}", "TIMEOUT": "10"})
    resources["WorkerInvokeConfig"] = _no_retries("WorkerFunction")
    resources["StateMachineRole"] = _role([
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table_arn},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": [_att("ControllerFunction", "Arn"), _sub("${ControllerFunction.Arn}:*")]},
        # its own ARN, built by name: a reference to the state machine would be a circular dependency
        {"Effect": "Allow", "Action": "states:StartExecution", "Resource": machine_arn},
    ], "", service="states.amazonaws.com")
    resources["StateMachine"] = {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "StateMachineName": _ref("AWS::StackName"), "StateMachineType": "STANDARD",
            "RoleArn": _att("StateMachineRole", "Arn"), "Definition": definition(),
            "DefinitionSubstitutions": {"TableName": _ref("ControlTable"),
                                        "ControllerArn": _att("ControllerFunction", "Arn")},
        },
    }
    resources["SeedLogs"] = _log_group("seed")
    resources["SeedRole"] = _role([{"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": table_arn}],
                                  "SeedLogs")
    resources["SeedFunction"] = _function(
        code, "index.seed_handler", "SeedRole", "SeedLogs",
        description="subminute: seeds control row 1 from the stack parameters", timeout=60, memory=128)
    resources["ControlRow"] = {
        "Type": "Custom::ControlRow",
        "Properties": {"ServiceToken": _att("SeedFunction", "Arn"), "TableName": _ref("ControlTable"),
                       "Running": _ref("running"), "WaitSeconds": _ref("waitseconds")},
    }
    outputs: dict[str, Any] = {
        "TableName": {"Description": "the control table", "Value": _ref("ControlTable")},
        "TableArn": {"Value": table_arn},
    }
    for name, _, what in functions:
        outputs[f"{name}FunctionName"] = {"Description": what, "Value": _ref(f"{name}Function")}
        outputs[f"{name}FunctionArn"] = {"Value": _att(f"{name}Function", "Arn")}
    outputs["StateMachineName"] = {"Description": "start an execution of it to run (no input needed)",
                                   "Value": _att("StateMachine", "Name")}
    outputs["StateMachineArn"] = {"Value": _ref("StateMachine")}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "subminute: fire a Lambda every few seconds (Step Functions + Lambda + DynamoDB), "
                       "a Python rebuild of the Sub Minute Lambda Executor sample. Generated by "
                       "`python -m subminute.aws.template`; do not edit.",
        "Parameters": {
            "waitseconds": {"Type": "Number", "Default": 5, "MinValue": 0.1, "MaxValue": 86400,
                            "Description": "seconds between fires of schedule 1 (row id = 1)"},
            "running": {"Type": "String", "Default": "true", "AllowedValues": ["true", "false"],
                        "Description": "whether schedule 1 runs once the state machine is started"},
        },
        # the Lambda code, once: both functions' ZipFile is this text (the template's size limit is 51,200 bytes)
        "Mappings": {"Code": {"Lambda": {"Index": build_bundle()}}},
        "Resources": resources,
        "Outputs": outputs,
    }


# -- a small YAML writer: block style, JSON-quoted scalars where needed, literal blocks for code --------
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            out[-1] += " {}"
            return
        for key, item in value.items():
            out.append(f"{pad}{_scalar(key)}:")
            _attach(item, indent, out)
    elif isinstance(value, list):
        if not value:
            out[-1] += " []"
            return
        for item in value:
            out.append(f"{pad}-")
            _attach(item, indent, out)
    else:
        raise TypeError(type(value))


def _flow(item: Any) -> str | None:
    """A small container without code, written on one line in JSON (YAML flow) style; else ``None``."""
    text = json.dumps(item, separators=(", ", ": "))
    return text if len(text) <= FLOW_WIDTH and "\\n" not in text else None


def _attach(item: Any, indent: int, out: list[str]) -> None:
    flow = _flow(item) if isinstance(item, (dict, list)) else None
    if flow is not None:
        out[-1] += " " + flow
    elif isinstance(item, (dict, list)) and item:
        _emit(item, indent + 1, out)
    elif isinstance(item, (dict, list)):
        out[-1] += " {}" if isinstance(item, dict) else " []"
    elif isinstance(item, str) and "\n" in item:
        keep = "|" if item.endswith("\n") and not item.endswith("\n\n") else "|-"
        out[-1] += " " + keep
        pad = "  " * (indent + 1)
        out.extend(pad + line if line else "" for line in item.rstrip("\n").split("\n"))
    else:
        out[-1] += " " + _scalar(item)


def render_yaml(template: dict[str, Any]) -> str:
    out: list[str] = []
    _emit(template, 0, out)
    return "\n".join(out) + "\n"


def function_code(template: dict[str, Any], logical: str) -> str:
    """The inline code of a function of ``template`` (each names the one bundle in Mappings)."""
    code = template["Resources"][logical]["Properties"]["Code"]["ZipFile"]
    if isinstance(code, dict) and "Fn::FindInMap" in code:
        name, top, key = code["Fn::FindInMap"]
        code = template["Mappings"][name][top][key]
    assert isinstance(code, str)
    return code


def template_text() -> str:
    return render_yaml(build_template())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m subminute.aws.template", description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=TEMPLATE_NAME)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    args = parser.parse_args(argv)
    text = template_text()
    size = len(text.encode())
    if size > MAX_TEMPLATE_BYTES:
        print(f"the template is {size} bytes, over CloudFormation's {MAX_TEMPLATE_BYTES}", file=sys.stderr)
        return 1
    path = Path(args.path)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run python -m subminute.aws.template", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
