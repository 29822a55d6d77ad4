# Example: the whole keyless path in one stack. A broker Lambda that mints contents:read tokens
# for acme/widgets, and the role that acme/widgets' main-branch jobs assume to invoke it.
# See docs/aws-tutorial.md for the steps around it (GitHub App, SSM parameters, workflow).

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "lambda_zip_path" {
  description = "Path of the Lambda zip (a single `bootstrap`), e.g. built with scripts/package-lambda or downloaded from a release."
  type        = string
  default     = "tokenmint-lambda-arm64.zip"
}

module "broker" {
  source = "../../modules/broker-lambda"

  function_name    = "widgets-token-broker"
  repository_owner = "acme"
  repository_name  = "widgets"
  permissions      = { contents = "read", issues = "write" }

  # The defaults, written out: three parameters the role may read and nothing else.
  ssm_parameter_paths = {
    client_id       = "/github-token-broker/app/client-id"
    installation_id = "/github-token-broker/app/installation-id"
    private_key     = "/github-token-broker/app/private-key-pem"
  }

  lambda_artifact = { lambda_zip_path = var.lambda_zip_path }
  architecture    = "arm64"

  reserved_concurrent_executions = 5
  log_retention_days             = 365

  tags = { service = "tokenmint" }
}

module "caller" {
  source = "../../modules/github-oidc-caller"

  # One OIDC provider per account: create it in exactly one stack.
  create_oidc_provider = true

  role_name    = "widgets-ci-token-broker"
  repositories = ["acme/widgets"]
  refs         = ["refs/heads/main"]
  environments = ["release"]

  broker_function_arns = [module.broker.function_arn]

  tags = { service = "tokenmint" }
}

output "role_to_assume" {
  description = "Put this in the workflow's configure-aws-credentials step."
  value       = module.caller.role_arn
}

output "function_name" {
  description = "Pass this to `aws lambda invoke --function-name`."
  value       = module.broker.function_name
}
