"""The subminute stack in CDK: the same resources as ``SubMinuteLambdaExecutor.yaml``, built from the same
sources (the inline handler bundles of :mod:`subminute.aws.bundle`, the state machine of
:mod:`subminute.aws.statemachine`), with the same outputs and the same least-privilege policies."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, CfnParameter, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from subminute.aws.bundle import CONTROLLER, SEED, WORKER, build_bundle, build_plain
from subminute.aws.statemachine import definition

__all__ = ["SubMinuteStack"]

RUNTIME = lambda_.Runtime.PYTHON_3_12


class SubMinuteStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        waitseconds = CfnParameter(self, "waitseconds", type="Number", default=5, min_value=0.1, max_value=86400,
                                   description="seconds between fires of schedule 1 (row id = 1)")
        running = CfnParameter(self, "running", type="String", default="true", allowed_values=["true", "false"],
                               description="whether schedule 1 runs once the state machine is started")
        table = dynamodb.Table(
            self, "ControlTable", partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, removal_policy=RemovalPolicy.DESTROY)

        def function(name: str, code: str, handler: str, *, timeout: int, memory: int,
                     env: dict[str, str] | None = None) -> lambda_.Function:
            log_group = logs.LogGroup(self, f"{name}Logs", retention=logs.RetentionDays.TWO_WEEKS,  # as the template
                                      removal_policy=RemovalPolicy.DESTROY)
            # a role that may write to its own log group only (not the managed policy's logs:* on "*")
            role = iam.Role(self, f"{name}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
            log_group.grant_write(role)
            return lambda_.Function(
                self, f"{name}Function", runtime=RUNTIME, architecture=lambda_.Architecture.ARM_64,
                handler=handler, code=lambda_.Code.from_inline(code), timeout=Duration.seconds(timeout),
                memory_size=memory, environment=env, log_group=log_group, role=role)

        worker = function("Worker", build_bundle(*WORKER), "index.worker_handler", timeout=30, memory=128,
                          env={"URL": "", "METHOD": "GET", "HEADERS": "{}", "TIMEOUT": "10"})
        # an async invoke that fails is not retried: a retry would be a late second fire of the slot
        worker.configure_async_invoke(retry_attempts=0, max_event_age=Duration.seconds(60))
        controller = function("Controller", build_bundle(*CONTROLLER), "index.controller_handler", timeout=900,
                              memory=256, env={"TABLE_NAME": table.table_name,
                                               "WORKER_FUNCTION": worker.function_name})
        controller.add_to_role_policy(iam.PolicyStatement(
            actions=["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[table.table_arn]))
        worker.grant_invoke(controller)

        name = self.stack_name
        machine_arn = f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{name}"
        role = iam.Role(self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
        role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[table.table_arn]))
        role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                               resources=[controller.function_arn, f"{controller.function_arn}:*"]))
        # its own ARN, built by name: a reference to the state machine would be a circular dependency
        role.add_to_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[machine_arn]))
        machine = sfn.StateMachine(
            self, "StateMachine", state_machine_name=name, state_machine_type=sfn.StateMachineType.STANDARD,
            role=role, definition_body=sfn.DefinitionBody.from_string(json.dumps(definition())),
            definition_substitutions={"TableName": table.table_name, "ControllerArn": controller.function_arn})

        seed = function("Seed", build_plain(SEED), "index.handler", timeout=60, memory=128)
        seed.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[table.table_arn]))
        CustomResource(self, "ControlRow", service_token=seed.function_arn, resource_type="Custom::ControlRow",
                       properties={"TableName": table.table_name, "Running": running.value_as_string,
                                   "WaitSeconds": waitseconds.value_as_string})

        CfnOutput(self, "TableName", value=table.table_name, description="the control table")
        CfnOutput(self, "TableArn", value=table.table_arn)
        for label, fn, what in (("Controller", controller, "the controller"),
                                ("Worker", worker, "the worker: logs each fire, or polls URL once it is set")):
            CfnOutput(self, f"{label}FunctionName", value=fn.function_name, description=what)
            CfnOutput(self, f"{label}FunctionArn", value=fn.function_arn)
        CfnOutput(self, "StateMachineName", value=machine.state_machine_name,
                  description="start an execution of it to run (no input needed)")
        CfnOutput(self, "StateMachineArn", value=machine.state_machine_arn)
