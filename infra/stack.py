"""The subminute stack in CDK: the template of :func:`subminute.aws.template.build_template` (the one that
``SubMinuteLambdaExecutor.yaml`` is written from), included whole with ``cloudformation_include.CfnInclude``.

Nothing is declared here: resources, timeouts, memory sizes, environment, IAM, parameters (``waitseconds``,
``running``: ``cdk deploy --parameters waitseconds=2``) and outputs all come from the generated template,
built in-process at synth time, so a change to :mod:`subminute.aws.template` reaches ``cdk deploy`` with no
other edit. CDK adds only its own bootstrap check (and ``CDKMetadata`` when the CLI synthesizes).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk.cloudformation_include import CfnInclude
from constructs import Construct

from subminute.aws import template as generator

__all__ = ["SubMinuteStack"]

# what CfnInclude copies from a dehydrated resource; any other attribute (DependsOn, Condition) is put back
_COPIED = {"Type", "Properties", "CreationPolicy", "UpdatePolicy", "DeletionPolicy", "UpdateReplacePolicy",
           "Version", "Description", "Metadata"}


class SubMinuteStack(Stack):
    """The generated template as a CDK stack, with its logical IDs (``self.template`` is the CfnInclude)."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        body = generator.build_template()
        resources: dict[str, dict[str, Any]] = body["Resources"]
        with tempfile.TemporaryDirectory(prefix="subminute-cdk-") as tmp:  # CfnInclude reads a file, at once
            path = Path(tmp) / "template.json"
            path.write_text(json.dumps(body), encoding="utf-8")
            # dehydrated: the resources are taken as written, not parsed into L1 constructs (parsing drops
            # null values, such as the state machine's {"handoff": null} default input)
            self.template = CfnInclude(self, "Template", template_file=str(path),
                                       dehydrated_resources=list(resources))
        for logical_id, resource in resources.items():
            included = self.template.get_resource(logical_id)
            included.override_logical_id(logical_id)  # CfnInclude keeps the IDs of parsed resources only
            for key in sorted(set(resource) - _COPIED):
                included.add_override(key, resource[key])
