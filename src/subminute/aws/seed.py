"""The stack's custom resource that seeds control row ``id = 1`` from the stack parameters.

On create, and on an update that changes the parameters, it sets ``running`` (BOOL) and ``waitseconds``
(N) of row 1, leaving any other attribute of the row alone. On delete it does nothing (the table goes
with the stack). ``cfnresponse`` is the module CloudFormation provides to inline Python code.
Standard library plus boto3: inlined as it is in the template.
"""

from __future__ import annotations

from typing import Any

__all__ = ["handler", "seed_row"]


def seed_row(client: Any, table: str, running: Any, waitseconds: Any) -> None:
    """Set ``running`` and ``waitseconds`` of row 1 (creating the row if needed)."""
    client.update_item(
        TableName=table, Key={"id": {"N": "1"}},
        UpdateExpression="SET running = :r, waitseconds = :w",
        ExpressionAttributeValues={":r": {"BOOL": str(running).lower() == "true"},
                                   ":w": {"N": str(waitseconds)}},
    )


def handler(event: Any, context: Any) -> None:
    import boto3
    import cfnresponse  # type: ignore[import-not-found]

    try:
        if event["RequestType"] in ("Create", "Update"):
            props = event["ResourceProperties"]
            seed_row(boto3.client("dynamodb"), props["TableName"], props["Running"], props["WaitSeconds"])
        cfnresponse.send(event, context, cfnresponse.SUCCESS, {}, "control-row-1")
    except Exception as exc:  # noqa: BLE001 - CloudFormation must hear back, or the stack waits an hour
        cfnresponse.send(event, context, cfnresponse.FAILED, {"Error": str(exc)[:500]}, "control-row-1")
