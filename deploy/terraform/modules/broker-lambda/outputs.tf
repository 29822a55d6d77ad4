# broker-lambda: outputs, the same names as github-token-broker's module.

output "function_arn" {
  description = "ARN of the broker function; give it to github-oidc-caller's broker_function_arns."
  value       = aws_lambda_function.broker.arn
}

output "function_name" {
  description = "Name of the broker function (what callers pass to `aws lambda invoke --function-name`)."
  value       = aws_lambda_function.broker.function_name
}

output "function_invoke_arn" {
  description = "Invoke ARN, for API Gateway integrations."
  value       = aws_lambda_function.broker.invoke_arn
}

output "function_url" {
  description = "The AWS_IAM Function URL when enable_function_url is true, else null."
  value       = try(aws_lambda_function_url.broker[0].function_url, null)
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.lambda.arn
}

output "role_name" {
  description = "Name of the function's execution role."
  value       = aws_iam_role.lambda.name
}

output "log_group_name" {
  description = "CloudWatch log group holding the function's JSON log lines."
  value       = aws_cloudwatch_log_group.lambda.name
}

output "deployed_version" {
  description = "The release version deployed, or null for a local zip or an S3 object."
  value       = try(var.lambda_artifact.release_version, null)
}
