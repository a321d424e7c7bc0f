"""The state machine (Amazon States Language, as a Python dict): the sample's flow, on subminute's controller.

::

    CheckInput -> (no input) DefaultInput -> ReadControl (dynamodb:getItem id=1) -> Parse -> IsRunning
    IsRunning -> (row 1 running, or the last controller still had schedules running) RunController
              -> (otherwise) Stopped
    RunController (lambda:invoke, returns the hand-off) -> Continue -> Restart (states:startExecution of
              this same state machine, with the hand-off as input) | Standby (a second chain: it ends)
              | Idle (rows say running, none is valid: wait a minute, then ReadControl again)
              | ReadControl (nothing ran: row 1 decides, and a stop ends the chain in Stopped)
    any error -> Recover (keeps the hand-off) -> WaitBeforeRestart (60 s) -> Restart

So while nothing valid can run (a row the controller refuses, a controller that fails at once) the chain
starts at most one controller a minute; the execution's output and ``subminute aws status`` say why.

Starting an execution needs no input (``{}``); the input of a restart is
``{"handoff": {...}, "running": true|false}``. The table name and the controller's ARN are
``${TableName}`` and ``${ControllerArn}`` (CloudFormation ``DefinitionSubstitutions``) unless given.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IDLE_WAIT_S", "RECOVERY_WAIT_S", "definition"]

RECOVERY_WAIT_S = 60  # after an error: at most one restart a minute
IDLE_WAIT_S = 60  # rows say running but none is valid: look again a minute later

_CARRY = {"handoff.$": "$.handoff", "running.$": "$.running"}


def _present_and_true(path: str) -> dict[str, Any]:
    """For data a person may have written (row 1): present, a boolean, and true."""
    return {"And": [{"Variable": path, "IsPresent": True}, {"Variable": path, "IsBoolean": True},
                    {"Variable": path, "BooleanEquals": True}]}


def _true(path: str) -> dict[str, Any]:
    """For the controller's own answer, which always carries the boolean."""
    return {"Variable": path, "BooleanEquals": True}


def definition(table: Any = "${TableName}", controller_arn: Any = "${ControllerArn}") -> dict[str, Any]:
    """The ASL definition; ``table`` and ``controller_arn`` are put in as given."""
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}]
    return {
        "Comment": "subminute: run the controller while the control row says running; restart with the "
                   "hand-off so that the next execution continues at the next slot.",
        "StartAt": "CheckInput",
        "States": {
            "CheckInput": {
                "Type": "Choice",
                "Choices": [{"And": [{"Variable": "$.handoff", "IsPresent": True},
                                     {"Variable": "$.running", "IsPresent": True}],
                             "Next": "ReadControl"}],
                "Default": "DefaultInput",
            },
            "DefaultInput": {"Type": "Pass", "Result": {"handoff": None, "running": False},
                             "Next": "ReadControl"},
            "ReadControl": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:getItem",
                "Parameters": {"TableName": table, "Key": {"id": {"N": "1"}}, "ConsistentRead": True},
                "ResultPath": "$.control",
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3,
                           "BackoffRate": 2}],
                "Catch": catch,
                "Next": "Parse",
            },
            "Parse": {"Type": "Pass", "Parameters": {**_CARRY, "control.$": "$.control"}, "Next": "IsRunning"},
            "IsRunning": {
                "Type": "Choice",
                "Choices": [
                    {**_present_and_true("$.control.Item.running.BOOL"), "Next": "RunController"},
                    {**_present_and_true("$.running"), "Next": "RunController"},
                ],
                "Default": "Stopped",
            },
            "RunController": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": controller_arn, "Payload": dict(_CARRY)},
                "ResultSelector": {"handoff.$": "$.Payload.handoff", "running.$": "$.Payload.running",
                                   "standby.$": "$.Payload.standby", "idle.$": "$.Payload.idle",
                                   "invalid.$": "$.Payload.invalid"},
                "Retry": [{"ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException",
                                           "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
                           "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}],
                "Catch": catch,
                "Next": "Continue",
            },
            "Continue": {
                "Type": "Choice",
                "Choices": [{**_true("$.standby"), "Next": "Standby"}, {**_true("$.running"), "Next": "Restart"},
                            {**_true("$.idle"), "Next": "Idle"}],
                "Default": "ReadControl",  # nothing ran: row 1 decides (a stop ends the chain there)
            },
            "Idle": {"Type": "Wait", "Seconds": IDLE_WAIT_S, "Comment": "rows say running but none is valid "
                     "($.invalid says why): look again a minute later", "Next": "ReadControl"},
            "Recover": {"Type": "Pass", "Parameters": {**_CARRY, "error.$": "$.error"},
                        "Next": "WaitBeforeRestart"},
            "WaitBeforeRestart": {"Type": "Wait", "Seconds": RECOVERY_WAIT_S, "Next": "Restart"},
            "Restart": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn.$": "$$.StateMachine.Id",
                               "Input": {**_CARRY, "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id"}},
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 6,
                           "BackoffRate": 2}],
                "End": True,
            },
            "Standby": {"Type": "Succeed", "Comment": "another execution holds the controller lease"},
            "Stopped": {"Type": "Succeed", "Comment": "row 1 says running = false and nothing else runs"},
        },
    }
