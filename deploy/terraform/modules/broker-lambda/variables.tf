# broker-lambda: inputs. Names match meigma/github-token-broker's module so a team swaps the
# source without changing its inputs; every rule here is the same as the runtime's (the
# `bootstrap` binary refuses the same values at init), so a bad value fails at plan time.

variable "function_name" {
  description = "Name of the Lambda function (1-64 of A-Z a-z 0-9 _ -). Also names its role and log group."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "function_name must be 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'."
  }
}

variable "repository_owner" {
  description = "GitHub owner (user or organisation) of the one repository the broker mints tokens for. Literal: no wildcards."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.repository_owner)) && !contains([".", ".."], var.repository_owner) && length(var.repository_owner) <= 100
    error_message = "repository_owner must be one literal owner name ([A-Za-z0-9_.-]+, at most 100 characters, not '.' or '..'); wildcards are refused."
  }
}

variable "repository_name" {
  description = "The one repository (name only, without the owner) the broker mints tokens for. Literal: no wildcards."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.repository_name)) && !contains([".", ".."], var.repository_name) && length(var.repository_name) <= 100
    error_message = "repository_name must be one literal repository name ([A-Za-z0-9_.-]+, at most 100 characters, not '.' or '..'); wildcards are refused."
  }
}

variable "lambda_artifact" {
  description = <<-EOT
    Where the Lambda zip (a single `bootstrap`) comes from. Set exactly one of:
    - `release_version`: a tag on `release_repository`; `terraform apply` downloads
      `tokenmint-lambda-<architecture>.zip` and `checksums.txt` with the `gh` CLI and checks the
      zip's SHA-256 against `checksums.txt` before deploying it;
    - `lambda_zip_path`: a zip on the machine running Terraform (air-gapped or self-built);
    - `lambda_source_s3`: `{ bucket, key }` of a zip staged in S3.
  EOT
  type = object({
    release_version = optional(string)
    lambda_zip_path = optional(string)
    lambda_source_s3 = optional(object({
      bucket = string
      key    = string
    }))
  })

  validation {
    condition = length(compact([
      try(var.lambda_artifact.release_version, null),
      try(var.lambda_artifact.lambda_zip_path, null),
      try(var.lambda_artifact.lambda_source_s3 == null ? null : "s3", null),
    ])) == 1
    error_message = "lambda_artifact must set exactly one of release_version, lambda_zip_path or lambda_source_s3."
  }

  validation {
    condition = (
      try(var.lambda_artifact.release_version, null) == null ||
      can(regex("^v?[0-9]+[.][0-9]+[.][0-9]+(-[A-Za-z0-9.-]+)?$", try(var.lambda_artifact.release_version, "")))
    )
    error_message = "lambda_artifact.release_version must be a version tag such as \"v0.2.0\" or \"0.2.0-rc.1\"."
  }

  validation {
    condition = (
      try(var.lambda_artifact.lambda_zip_path, null) == null ||
      length(trimspace(try(var.lambda_artifact.lambda_zip_path, ""))) > 0
    )
    error_message = "lambda_artifact.lambda_zip_path must not be empty when set."
  }
}

variable "release_repository" {
  description = "GitHub repository whose releases lambda_artifact.release_version refers to."
  type        = string
  default     = "tokenmint/tokenmint"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.release_repository))
    error_message = "release_repository must be \"owner/repo\"."
  }
}

variable "permissions" {
  description = "Permissions of every minted token, e.g. { contents = \"read\" }. Passed as JSON in GITHUB_TOKEN_BROKER_PERMISSIONS; the runtime also checks the names against GitHub's vocabulary at init."
  type        = map(string)
  default     = { contents = "read" }

  validation {
    condition     = length(var.permissions) > 0
    error_message = "permissions must name at least one permission; an empty set would mint a token with every permission the App has."
  }

  validation {
    condition = alltrue([
      for name, level in var.permissions : can(regex("^[a-z_]+$", name)) && contains(["read", "write", "admin"], level)
    ])
    error_message = "permissions must map GitHub permission names (lower-case, '_') to \"read\", \"write\" or \"admin\"."
  }
}

variable "ssm_parameter_paths" {
  description = "SSM parameters holding the GitHub App's client ID, installation ID and private key (SecureString). Literal absolute paths: no wildcards, no ARNs."
  type = object({
    client_id       = string
    installation_id = string
    private_key     = string
  })
  default = {
    client_id       = "/github-token-broker/app/client-id"
    installation_id = "/github-token-broker/app/installation-id"
    private_key     = "/github-token-broker/app/private-key-pem"
  }

  validation {
    condition = alltrue([
      for path in values(var.ssm_parameter_paths) : can(regex("^/[A-Za-z0-9_.\\-/]+$", path)) && length(path) <= 2048
    ])
    error_message = "ssm_parameter_paths must be literal absolute parameter names (^/[A-Za-z0-9_.\\-/]+$, at most 2048 characters): no wildcards, no ARNs."
  }
}

variable "github_api_base_url" {
  description = "GitHub API base URL; https only. Override for GitHub Enterprise Server, e.g. https://ghes.example.com/api/v3."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$", var.github_api_base_url))
    error_message = "github_api_base_url must be an https URL without credentials, query or fragment, e.g. https://api.github.com."
  }
}

variable "log_level" {
  description = "Log level: debug, info, warn or error (GITHUB_TOKEN_BROKER_LOG_LEVEL; TOKENMINT_LOG_LEVEL in http mode). Unlike the original, an unknown level is an error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be one of debug, info, warn, error."
  }
}

variable "mode" {
  description = "\"invoke\" (default): the github-token-broker drop-in, called with lambda:InvokeFunction. \"http\": tokenmint's HTTP API behind a Function URL or API Gateway (sets TOKENMINT_MODE=http); needs tokenmint_config."
  type        = string
  default     = "invoke"

  validation {
    condition     = contains(["invoke", "http"], var.mode)
    error_message = "mode must be \"invoke\" or \"http\"."
  }
}

variable "tokenmint_config" {
  description = "http mode only: path of the tokenmint TOML config inside the deployment package or a layer (TOKENMINT_CONFIG), e.g. /var/task/tokenmint.toml."
  type        = string
  default     = null

  validation {
    condition     = var.tokenmint_config == null || can(regex("^/[A-Za-z0-9_.\\-/]+$", coalesce(var.tokenmint_config, "/")))
    error_message = "tokenmint_config must be an absolute path."
  }
}

variable "architecture" {
  description = "Lambda architecture, arm64 or x86_64 (runtime provided.al2023 either way)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "memory_size" {
  description = "Lambda memory in MB (128-10240)."
  type        = number
  default     = 128

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  description = "Lambda timeout in seconds (1-900)."
  type        = number
  default     = 10

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900
    error_message = "timeout must be between 1 and 900 seconds."
  }
}

variable "reserved_concurrent_executions" {
  description = "Reserved concurrency: the most invocations that run at once, a throttle on minting (GitHub rate-limits the App). 1-1000."
  type        = number
  default     = 10

  validation {
    condition     = var.reserved_concurrent_executions >= 1 && var.reserved_concurrent_executions <= 1000
    error_message = "reserved_concurrent_executions must be between 1 and 1000 (0 would disable the function; unreserved would remove the throttle)."
  }
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention in days (a value CloudWatch accepts; 0 = never expire)."
  type        = number
  default     = 365

  validation {
    condition = contains(
      [0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653],
      var.log_retention_days,
    )
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ..., 3653) or 0 for never expire."
  }
}

variable "log_kms_key_arn" {
  description = "Optional customer KMS key ARN to encrypt the log group. Logs never hold the token or the key (only token_sha256), so the default is CloudWatch's own encryption."
  type        = string
  default     = null

  validation {
    condition     = var.log_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", coalesce(var.log_kms_key_arn, "-")))
    error_message = "log_kms_key_arn must be one literal KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID): no alias, no wildcard."
  }
}

variable "tags" {
  description = "Tags applied to every resource this module creates."
  type        = map(string)
  default     = {}
}

variable "enable_function_url" {
  description = "Create a Function URL with AWS_IAM auth (never NONE). Callers still need lambda:InvokeFunctionUrl."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "Customer KMS key that encrypts the SSM SecureString parameters; grants kms:Decrypt on it, only via SSM. Null when SSM uses the AWS-managed key. Literal key ARN: no alias, no wildcard."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", coalesce(var.kms_key_arn, "-")))
    error_message = "kms_key_arn must be one literal KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID): no alias, no wildcard."
  }
}

variable "kms_signing_key_arn" {
  description = "KMS asymmetric key (RSA, RSASSA_PKCS1_V1_5_SHA_256) that signs the App JWT so the private key never leaves KMS; grants kms:Sign on it. Literal key ARN: no alias, no wildcard."
  type        = string
  default     = null

  validation {
    condition     = var.kms_signing_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", coalesce(var.kms_signing_key_arn, "-")))
    error_message = "kms_signing_key_arn must be one literal KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID): no alias, no wildcard."
  }
}
