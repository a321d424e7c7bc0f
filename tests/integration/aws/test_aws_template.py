"""The committed template and its inline code: up to date, made of the real sources, valid for cfn-lint and
asl-validator, small enough for --template-body; the bundle runs alone; the CDK app is that template, whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from subminute.aws.bundle import (
    HANDLERS,
    build_bundle,
    bundle_key,
    minify,
    module_sources,
    unpack_bundle,
)
from subminute.aws.statemachine import definition
from subminute.aws.template import (
    MAX_TEMPLATE_BYTES,
    TEMPLATE_NAME,
    build_template,
    function_code,
    template_text,
)

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / TEMPLATE_NAME


def _committed() -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(str(COMMITTED))
    assert not matches, matches
    return json.loads(json.dumps(template))  # plain dicts


def test_the_committed_template_is_up_to_date() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == template_text(), \
        f"{TEMPLATE_NAME} is stale: run `python -m subminute.aws.template` and commit it"


def test_every_function_runs_the_one_bundle_built_from_the_sources() -> None:
    template = _committed()
    bundle = template["Mappings"]["Code"]["Lambda"]["Index"]
    assert bundle == build_bundle()
    functions = {name: r["Properties"] for name, r in template["Resources"].items()
                 if r["Type"] == "AWS::Lambda::Function"}
    assert {name: (function_code(template, name), p["Handler"]) for name, p in functions.items()} == {
        "ControllerFunction": (bundle, "index.controller_handler"), "WorkerFunction": (bundle, "index.worker_handler"),
        "SeedFunction": (bundle, "index.seed_handler")}
    modules = unpack_bundle(bundle)
    entries = sorted({ref.partition(":")[0] for ref in HANDLERS.values()})
    for name, source in module_sources(*entries).items():
        assert modules[bundle_key(name)] == minify(source), f"{name} in the template differs from its source"
    assert {"subminute.controller.__init__", "subminute.controller.loop", "subminute.aws.dynamodb",
            "subminute.aws.lambda_dispatch", "subminute.targets.http", "subminute.control.base",
            "subminute.timing.plan", "subminute.aws.seed"} <= set(modules)
    assert not {"subminute.timing.fake", "subminute.storage.sqlite", "subminute.results.keep"} & set(modules)


def test_the_template_fits_the_template_body_limit() -> None:
    size = COMMITTED.stat().st_size
    assert size <= MAX_TEMPLATE_BYTES, f"{size} bytes"


def test_cfn_lint_is_clean() -> None:
    from cfnlint.api import lint_all

    matches = lint_all(COMMITTED.read_text(encoding="utf-8"))
    assert matches == [], "\n".join(str(m) for m in matches)


def test_least_privilege() -> None:
    resources = _committed()["Resources"]
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Resource"] != "*" and "*" not in json.dumps(statement["Action"]), (name, statement)
    machine = resources["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    start = [s for s in machine if s["Action"] == "states:StartExecution"]
    assert start[0]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
                                               "stateMachine:${AWS::StackName}"}
    assert resources["StateMachine"]["Properties"]["StateMachineName"] == {"Ref": "AWS::StackName"}


def test_parameters_outputs_and_the_seeded_row() -> None:
    template = _committed()
    assert template["Parameters"]["waitseconds"]["Default"] == 5
    assert template["Parameters"]["running"]["Default"] == "true"
    assert set(template["Outputs"]) == {"TableName", "TableArn", "ControllerFunctionName", "ControllerFunctionArn",
                                        "WorkerFunctionName", "WorkerFunctionArn", "StateMachineName",
                                        "StateMachineArn"}
    row = template["Resources"]["ControlRow"]["Properties"]
    assert row["Running"] == {"Ref": "running"} and row["WaitSeconds"] == {"Ref": "waitseconds"}
    machine = template["Resources"]["StateMachine"]["Properties"]
    assert machine["Definition"] == definition() and machine["StateMachineType"] == "STANDARD"


def test_the_seed_function_sets_row_one_and_leaves_the_rest(aws_ddb: Any) -> None:
    from subminute.aws.seed import seed_row

    aws_ddb.put_item(TableName="t", Item={"id": {"N": "1"}, "running": {"BOOL": False}, "_note": {"S": "x"}})
    seed_row(aws_ddb, "t", "true", "0.5")
    item = aws_ddb.get_item(TableName="t", Key={"id": {"N": "1"}})["Item"]
    assert item == {"id": {"N": "1"}, "running": {"BOOL": True}, "waitseconds": {"N": "0.5"}, "_note": {"S": "x"}}


@pytest.fixture
def aws_ddb(monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
                            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        yield client


def test_the_bundle_runs_alone(tmp_path: Path) -> None:
    """index.py imports and runs with no subminute installed: its modules come from the bundle (minified:
    tests/integration/aws/test_aws_bundle.py runs its controller and worker for real)."""
    (tmp_path / "index.py").write_text(build_bundle(), encoding="utf-8")
    script = (
        "import sys, json\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]\n"
        "sys.path = ['.'] + [p for p in sys.path if 'subminute' not in p and not p.endswith('/src')]\n"
        "import index\n"
        "out = index.worker_handler({'schedule_id': 1, 'slot_ms': 0, 'seq': 1}, None)\n"
        "import subminute.aws.worker as w, subminute.controller as c\n"
        "assert type(w.__spec__.loader).__name__ == '_Finder', w.__spec__\n"
        "assert type(c.__spec__.loader).__name__ == '_Finder' and c.Controller.__name__ == 'Controller'\n"
        "assert callable(index.controller_handler) and callable(index.seed_handler)\n"
        "print(json.dumps(sorted(out)))\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, check=False,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"msg": "fire"' in result.stdout and "delay_ms" in result.stdout


def _tool(name: str) -> str:
    path = ROOT / "node_modules" / ".bin" / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: run `npm ci` first")
        pytest.skip(f"{name} is not installed (npm ci)")
    return str(path)


def test_asl_validator_accepts_the_state_machine(tmp_path: Path) -> None:
    tool = _tool("asl-validator")
    for n, asl in enumerate((definition(), definition("table", "arn:aws:lambda:us-east-1:123456789012:function:c"))):
        path = tmp_path / f"asl{n}.json"
        path.write_text(json.dumps(asl), encoding="utf-8")
        result = subprocess.run([tool, "--json-path", str(path)], capture_output=True, text=True, check=False, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_generator_writes_and_checks(tmp_path: Path) -> None:
    from subminute.aws.template import main

    path = tmp_path / "t.yaml"
    assert main([str(path), "--check"]) == 1
    assert main([str(path)]) == 0 and path.read_text(encoding="utf-8") == template_text()
    assert main([str(path), "--check"]) == 0
    assert build_template()["Resources"]["ControllerFunction"]["Properties"]["Handler"] == "index.controller_handler"


# What CDK adds to a stack of its own, by section; anything else in the synthesized template fails the test.
CDK_ADDITIONS = {
    "Parameters": {"BootstrapVersion"},  # the bootstrap stack's version, read from SSM
    "Rules": {"CheckBootstrapVersion"},  # fails the deploy on an old bootstrap stack
    "Resources": {"CDKMetadata"},  # version reporting (the CLI's synth only)
    "Conditions": {"CDKMetadataAvailable"},  # the regions where CDKMetadata exists
}


def _without_cdk_additions(body: dict[str, Any]) -> dict[str, Any]:
    body = dict(body)
    assert "BootstrapVersion" in body["Parameters"] and "CheckBootstrapVersion" in body["Rules"]
    for section, names in CDK_ADDITIONS.items():
        rest = {name: item for name, item in body.get(section, {}).items() if name not in names}
        if rest:
            body[section] = rest
        else:
            body.pop(section, None)
    return body


def _synth_cdk_app(outdir: Path) -> dict[str, Any]:
    """The CDK app's stack, synthesized in process: the template file (``Template.from_stack`` would drop
    null values on the way to Python)."""
    pytest.importorskip("aws_cdk")
    import aws_cdk as cdk

    sys.path.insert(0, str(ROOT))
    try:
        from infra.stack import SubMinuteStack
    finally:
        sys.path.remove(str(ROOT))
    app = cdk.App(outdir=str(outdir))
    SubMinuteStack(app, "SubMinuteLambdaExecutor")
    path = app.synth().get_stack_by_name("SubMinuteLambdaExecutor").template_full_path
    body: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return body


@pytest.mark.slow
def test_the_cdk_app_is_the_generated_template(tmp_path: Path) -> None:
    """Resources, parameters, outputs, description: all of it, whole; CDK adds only CDK_ADDITIONS."""
    assert _without_cdk_additions(_synth_cdk_app(tmp_path)) == build_template()


@pytest.mark.slow
def test_a_change_to_the_template_reaches_the_cdk_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's MemorySize changed in subminute.aws.template alone shows in the CDK app's stack."""
    import subminute.aws.template as generator

    function = generator._function

    def bigger_controller(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if args[1] == "index.controller_handler":
            kwargs["memory"] = 512
        return function(*args, **kwargs)

    monkeypatch.setattr(generator, "_function", bigger_controller)
    body = _synth_cdk_app(tmp_path)
    assert body["Resources"]["ControllerFunction"]["Properties"]["MemorySize"] == 512
    assert _without_cdk_additions(body) == build_template()


@pytest.mark.slow
def test_cdk_cli_synth_from_the_repository_root(tmp_path: Path) -> None:
    tool = _tool("cdk")
    if shutil.which("python3") is None:
        pytest.skip("python3 is not on PATH")
    result = subprocess.run([tool, "synth", "--quiet", "-o", str(tmp_path)], cwd=ROOT, capture_output=True, check=False,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads((tmp_path / "SubMinuteLambdaExecutor.template.json").read_text(encoding="utf-8"))
    assert _without_cdk_additions(body) == build_template()
