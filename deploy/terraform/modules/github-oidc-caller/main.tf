# github-oidc-caller: the IAM role a GitHub Actions job assumes keylessly (web identity through
# GitHub's OIDC provider) to invoke tokenmint broker functions, and nothing else. Its trust policy
# always requires the audience and a literal `sub` for the given repositories and refs or
# environments; its only permission is lambda:InvokeFunction on the given function ARNs.

locals {
  issuer_host = "token.actions.githubusercontent.com"

  # Every `sub` GitHub would send for the allowed repositories and refs or environments
  # (github.com's default format; a `:` in a value is sent as %3A).
  subjects = concat(
    [for pair in setproduct(var.repositories, var.refs) : "repo:${pair[0]}:ref:${pair[1]}"],
    [for pair in setproduct(var.repositories, var.environments) : "repo:${pair[0]}:environment:${replace(pair[1], ":", "%3A")}"],
  )

  provider_arn = (
    var.create_oidc_provider
    ? aws_iam_openid_connect_provider.github[0].arn
    : data.aws_iam_openid_connect_provider.github[0].arn
  )
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url             = "https://${local.issuer_host}"
  client_id_list  = [var.audience]
  thumbprint_list = var.oidc_thumbprints
  tags            = var.tags
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 0 : 1

  url = "https://${local.issuer_host}"
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "GitHubActionsJobs"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    # Always: the token was requested for AWS, not for another relying party.
    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host}:aud"
      values   = [var.audience]
    }

    # Always: one of the exact subjects (repository + ref or environment); no wildcards.
    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host}:sub"
      values   = local.subjects
    }

    dynamic "condition" {
      for_each = length(var.job_workflow_refs) > 0 ? [var.job_workflow_refs] : []
      content {
        test     = "StringEquals"
        variable = "${local.issuer_host}:job_workflow_ref"
        values   = condition.value
      }
    }

    dynamic "condition" {
      for_each = length(var.repository_ids) > 0 ? [var.repository_ids] : []
      content {
        test     = "StringEquals"
        variable = "${local.issuer_host}:repository_id"
        values   = condition.value
      }
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.role_name
  path                 = var.role_path
  description          = "GitHub Actions jobs of ${join(", ", var.repositories)} invoke tokenmint brokers"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = length(local.subjects) > 0
      error_message = "Set refs or environments (or both): without them the trust policy would have no sub condition, and any job that can get a token for this audience could assume the role."
    }
  }
}

data "aws_iam_policy_document" "invoke" {
  statement {
    sid       = "InvokeBrokers"
    effect    = "Allow"
    actions   = ["lambda:InvokeFunction"]
    resources = var.broker_function_arns
  }
}

resource "aws_iam_role_policy" "invoke" {
  name   = "invoke-tokenmint-brokers"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.invoke.json
}
