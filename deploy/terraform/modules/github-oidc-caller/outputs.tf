# github-oidc-caller: outputs.

output "role_arn" {
  description = "ARN to pass to aws-actions/configure-aws-credentials as role-to-assume."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.this.name
}

output "oidc_provider_arn" {
  description = "ARN of the account's GitHub Actions OIDC provider (created here or looked up)."
  value       = local.provider_arn
}

output "subjects" {
  description = "The exact `sub` values the trust policy accepts."
  value       = local.subjects
}
