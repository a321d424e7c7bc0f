"""The AWS home of subminute: DynamoDB control store, Lambda dispatcher, Lambda handlers, the state
machine, and the CloudFormation template generator. Importing this package needs nothing beyond the
standard library; the modules that talk to AWS take a boto3 client."""
