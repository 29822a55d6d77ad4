# broker-lambda: the tokenmint `bootstrap` function, its log group and its least-privilege role.
# The role can read exactly the three SSM parameters, decrypt or sign with exactly the given KMS
# keys, and write to exactly its own log group; nothing else, and no wildcard actions or resources
# (the one `:*` below names the log streams of this one log group, which Lambda names itself).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  # The exact ARNs of the App's parameters; the paths are literal (validated), so are these.
  parameter_arns = [
    for path in values(var.ssm_parameter_paths) :
    "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${path}"
  ]

  use_release = try(var.lambda_artifact.release_version, null) != null
  use_zip     = try(var.lambda_artifact.lambda_zip_path, null) != null
  use_s3      = try(var.lambda_artifact.lambda_source_s3, null) != null

  release_asset = "tokenmint-lambda-${var.architecture}.zip"
  release_dir   = "${path.root}/.terraform/tokenmint-lambda/${coalesce(try(var.lambda_artifact.release_version, null), "none")}"
  zip_path = (
    local.use_zip ? var.lambda_artifact.lambda_zip_path :
    local.use_release ? "${local.release_dir}/${local.release_asset}" : null
  )

  # The runtime's environment, one variable per rule in docs/lambda-reference.md. Nothing here
  # is secret: the App credentials stay in SSM (or KMS) and are read at run time.
  environment = merge(
    {
      GITHUB_TOKEN_BROKER_REPOSITORY_OWNER     = var.repository_owner
      GITHUB_TOKEN_BROKER_REPOSITORY_NAME      = var.repository_name
      GITHUB_TOKEN_BROKER_PERMISSIONS          = jsonencode(var.permissions)
      GITHUB_TOKEN_BROKER_CLIENT_ID_PARAM      = var.ssm_parameter_paths.client_id
      GITHUB_TOKEN_BROKER_INSTALLATION_ID_PARAM = var.ssm_parameter_paths.installation_id
      GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM    = var.ssm_parameter_paths.private_key
      GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL  = var.github_api_base_url
      GITHUB_TOKEN_BROKER_LOG_LEVEL            = var.log_level
    },
    # With a KMS signing key, App JWTs are signed by kms:Sign and the private-key parameter is
    # not read (invoke mode; in http mode the config's [github] kms_key_id names the key).
    var.kms_signing_key_arn == null ? {} : {
      TOKENMINT_GITHUB_APP_KMS_KEY_ID = var.kms_signing_key_arn
    },
    var.mode == "http" ? {
      TOKENMINT_MODE      = "http"
      TOKENMINT_CONFIG    = coalesce(var.tokenmint_config, "/var/task/tokenmint.toml")
      TOKENMINT_LOG_LEVEL = var.log_level
    } : {},
  )
}

# Downloads the release zip with the `gh` CLI and refuses it unless its SHA-256 is the one
# listed in the release's checksums.txt. Only when lambda_artifact.release_version is set.
resource "terraform_data" "release_artifact" {
  count = local.use_release ? 1 : 0

  triggers_replace = [var.release_repository, var.lambda_artifact.release_version, var.architecture]

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = <<-EOT
      set -eu
      mkdir -p "$DIR"
      gh release download "$VERSION" --repo "$REPO" --dir "$DIR" --clobber --pattern "$ASSET" --pattern checksums.txt
      cd "$DIR"
      grep -E "^[0-9a-f]{64}[ *]+$ASSET\$" checksums.txt | sha256sum -c -
    EOT
    environment = {
      DIR     = local.release_dir
      VERSION = var.lambda_artifact.release_version
      REPO    = var.release_repository
      ASSET   = local.release_asset
    }
  }
}

resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158: logs never carry the token, the key or the App JWT (only token_sha256); a customer key is optional via log_kms_key_arn.
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "LambdaServiceInThisAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    # Confused-deputy guard: only Lambda acting for this account may assume the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = var.function_name
  description        = "tokenmint broker ${var.function_name}: reads its GitHub App parameters and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "permissions" {
  # One GetParameters call reads all three (never GetParameter, never a path or wildcard).
  statement {
    sid       = "ReadAppParameters"
    effect    = "Allow"
    actions   = ["ssm:GetParameters"]
    resources = local.parameter_arns
  }

  # A customer key on the SecureString: decrypt with it only through SSM.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptAppParametersViaSsm"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${local.region}.amazonaws.com"]
      }
    }
  }

  # Key custody in KMS: sign the App JWT there, with the one algorithm GitHub accepts.
  dynamic "statement" {
    for_each = var.kms_signing_key_arn == null ? [] : [var.kms_signing_key_arn]
    content {
      sid       = "SignAppJwt"
      effect    = "Allow"
      actions   = ["kms:Sign"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:SigningAlgorithm"
        values   = ["RSASSA_PKCS1_V1_5_SHA_256"]
      }
    }
  }

  # Log streams of this one log group; Lambda picks the stream names, so they cannot be listed.
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "${var.function_name}-policy"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.permissions.json
}

resource "aws_lambda_function" "broker" {
  #checkov:skip=CKV_AWS_50: X-Ray's write actions only accept Resource "*", which this module's least-privilege role never grants; latency is in each JSON log line.
  #checkov:skip=CKV_AWS_116: callers invoke synchronously (RequestResponse) and read the error themselves; a dead-letter queue only applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_117: the function talks only to SSM, KMS and GitHub over TLS and holds no network trust; a VPC would add a NAT gateway and no protection.
  #checkov:skip=CKV_AWS_173: the environment holds no secrets (repository, permissions, parameter names); the App credentials stay in SSM or KMS.
  #checkov:skip=CKV_AWS_272: code signing needs an AWS Signer profile the module cannot assume exists; the release path checks the zip's SHA-256 against checksums.txt instead.
  function_name = var.function_name
  description   = "tokenmint: mints a GitHub App installation token for ${var.repository_owner}/${var.repository_name}"
  role          = aws_iam_role.lambda.arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.architecture]
  memory_size   = var.memory_size
  timeout       = var.timeout

  # A throttle: at most this many mints run at once, whatever the callers do.
  reserved_concurrent_executions = var.reserved_concurrent_executions

  filename         = local.zip_path
  source_code_hash = local.use_zip ? filebase64sha256(var.lambda_artifact.lambda_zip_path) : null
  s3_bucket        = local.use_s3 ? var.lambda_artifact.lambda_source_s3.bucket : null
  s3_key           = local.use_s3 ? var.lambda_artifact.lambda_source_s3.key : null

  environment {
    variables = local.environment
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.mode != "http" || var.tokenmint_config != null
      error_message = "mode = \"http\" needs tokenmint_config, the path of the tokenmint TOML config inside the package or a layer."
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.lambda,
    aws_iam_role_policy.lambda,
    terraform_data.release_artifact,
  ]
}

resource "aws_lambda_function_url" "broker" {
  count = var.enable_function_url ? 1 : 0

  function_name      = aws_lambda_function.broker.function_name
  authorization_type = "AWS_IAM"
}
