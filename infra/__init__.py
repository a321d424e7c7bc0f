"""The CDK app of subminute's AWS deployment (``cdk deploy`` from the repository root)."""
