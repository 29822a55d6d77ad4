# github-oidc-caller: inputs. Every scope is literal: no wildcard owner, repository, ref,
# environment, audience or function, and a role without a `sub` scope cannot be planned.

variable "role_name" {
  description = "Name of the IAM role GitHub Actions jobs assume (1-64 of A-Z a-z 0-9 + = , . @ _ -)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be 1 to 64 characters from A-Z, a-z, 0-9 and + = , . @ _ -."
  }
}

variable "role_path" {
  description = "IAM path of the role."
  type        = string
  default     = "/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9+=,.@_-]+/)*$", var.role_path))
    error_message = "role_path must start and end with '/', e.g. \"/\" or \"/ci/\"."
  }
}

variable "create_oidc_provider" {
  description = "Create the account's IAM OIDC provider for https://token.actions.githubusercontent.com. An account has at most one, so set this in one stack only; elsewhere the module looks the existing one up."
  type        = bool
  default     = false
}

variable "oidc_thumbprints" {
  description = "Thumbprints for a created provider. AWS now validates GitHub's certificate chain itself and ignores them, but older providers still require the field."
  type        = list(string)
  default     = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]

  validation {
    condition     = alltrue([for t in var.oidc_thumbprints : can(regex("^[0-9a-f]{40}$", t))])
    error_message = "oidc_thumbprints must be lower-case SHA-1 hex strings (40 characters)."
  }
}

variable "audience" {
  description = "The `aud` the job requests (configure-aws-credentials sends sts.amazonaws.com). Required by the trust policy; literal."
  type        = string
  default     = "sts.amazonaws.com"

  validation {
    condition     = can(regex("^[A-Za-z0-9:/._-]+$", var.audience))
    error_message = "audience must be one literal value (no wildcards), normally sts.amazonaws.com."
  }
}

variable "repositories" {
  description = "Repositories whose jobs may assume the role, as \"owner/repo\" (or GitHub's immutable form \"owner@OWNER_ID/repo@REPO_ID\" for repositories whose sub uses it). Literal: a wildcard owner or repository is refused."
  type        = list(string)

  validation {
    condition     = length(var.repositories) > 0
    error_message = "repositories must name at least one repository."
  }

  validation {
    condition = alltrue([
      for r in var.repositories :
      can(regex("^[A-Za-z0-9_.-]+(@[0-9]+)?/[A-Za-z0-9_.-]+(@[0-9]+)?$", r)) &&
      !contains([".", ".."], split("@", split("/", r)[0])[0]) &&
      !contains([".", ".."], split("@", element(split("/", r), 1))[0])
    ])
    error_message = "repositories must be literal \"owner/repo\" entries (A-Z a-z 0-9 _ . -, optionally @ID): a wildcard owner or repository is refused."
  }
}

variable "refs" {
  description = "Git refs whose jobs may assume the role, e.g. [\"refs/heads/main\"] (sub = repo:OWNER/REPO:ref:REF). Literal: no wildcards. Set refs, environments or both."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ref in var.refs : can(regex("^refs/(heads|tags)/[A-Za-z0-9_./-]+$", ref))])
    error_message = "refs must be literal branch or tag refs such as \"refs/heads/main\" or \"refs/tags/v1.2.3\" (no wildcards)."
  }
}

variable "environments" {
  description = "GitHub environments whose jobs may assume the role (sub = repo:OWNER/REPO:environment:NAME). Literal: no wildcards. Prefer environments with protection rules."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for env in var.environments : can(regex("^[A-Za-z0-9 _.-]{1,255}$", env))])
    error_message = "environments must be literal environment names (A-Z a-z 0-9 space _ . -; no wildcards)."
  }
}

variable "job_workflow_refs" {
  description = "Optional: also require the job to run one of these reusable workflows, e.g. \"acme/shared/.github/workflows/release.yml@refs/heads/main\"."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for ref in var.job_workflow_refs :
      can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[.]github/workflows/[A-Za-z0-9_.-]+[.]ya?ml@refs/(heads|tags)/[A-Za-z0-9_./-]+$", ref))
    ])
    error_message = "job_workflow_refs must be literal \"owner/repo/.github/workflows/FILE.yml@refs/heads/BRANCH\" values (no wildcards)."
  }
}

variable "repository_ids" {
  description = "Optional: also require the job's repository_id to be one of these, so a deleted and re-created (or transferred) repository of the same name cannot assume the role."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.repository_ids : can(regex("^[0-9]+$", id))])
    error_message = "repository_ids must be decimal repository IDs, e.g. \"123456789\"."
  }
}

variable "broker_function_arns" {
  description = "ARNs of the broker functions the role may invoke (broker-lambda's function_arn). Literal: no wildcards."
  type        = list(string)

  validation {
    condition     = length(var.broker_function_arns) > 0
    error_message = "broker_function_arns must name at least one function."
  }

  validation {
    condition = alltrue([
      for arn in var.broker_function_arns :
      can(regex("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_-]{1,128})?$", arn))
    ])
    error_message = "broker_function_arns must be literal Lambda function ARNs (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:ALIAS]); wildcards are refused."
  }
}

variable "max_session_duration" {
  description = "Longest session, in seconds, the role's credentials may last (3600-43200). The job only needs them for one invoke."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200 seconds."
  }
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary for the role."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to every resource this module creates."
  type        = map(string)
  default     = {}
}
