# broker-lambda: outputs, the same names as github-token-broker's module plus function_url.

output "function_arn" {
  description = "ARN of the broker function; give it to github-oidc-caller's broker_function_arns."
  value       = aws_lambda_function.this.arn
}

output "function_name" {
  description = "Name of the broker function (what callers pass to `aws lambda invoke --function-name`)."
  value       = aws_lambda_function.this.function_name
}

output "function_invoke_arn" {
  description = "Invoke ARN, for API Gateway integrations."
  value       = aws_lambda_function.this.invoke_arn
}

output "function_url" {
  description = "The AWS_IAM Function URL when enable_function_url is true, else null."
  value       = try(aws_lambda_function_url.this[0].function_url, null)
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the function's execution role."
  value       = aws_iam_role.this.name
}

output "log_group_name" {
  description = "CloudWatch log group holding the function's JSON log lines."
  value       = aws_cloudwatch_log_group.this.name
}
