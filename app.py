#!/usr/bin/env python3
"""The CDK app: ``cdk deploy`` / ``cdk destroy`` from the repository root deploy subminute's AWS stack.

Needs ``pip install -e '.[cdk]'`` and the CDK CLI (``npm ci``, then ``npx cdk deploy``)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import aws_cdk as cdk
from infra.stack import SubMinuteStack

app = cdk.App()
SubMinuteStack(app, os.environ.get("SUBMINUTE_STACK", "SubMinuteLambdaExecutor"))  # the template's Description
app.synth()
