//! A small client of the Lambda Runtime API (`/2018-06-01/runtime/…`): fetch the next invocation, post its response or error, report an init error; and the loop that drives a handler.

use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// The API version prefix.
const PREFIX: &str = "2018-06-01/runtime";
/// Longest error message posted (Lambda truncates far later; keep answers small).
const MAX_ERROR_MESSAGE: usize = 4096;
/// Largest payload accepted from `/next` (Lambda's own synchronous limit is 6 MB).
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Why talking to the Runtime API failed. Lambda then ends the environment.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `AWS_LAMBDA_RUNTIME_API` is unset: not running inside Lambda (or an emulator).
    #[error("AWS_LAMBDA_RUNTIME_API is not set; run this binary as a Lambda bootstrap (or under a Runtime API emulator)")]
    NotInLambda,
    /// `AWS_LAMBDA_RUNTIME_API` is not `host:port`.
    #[error("AWS_LAMBDA_RUNTIME_API {0:?} is not host:port")]
    BadAddress(String),
    /// The HTTP client could not be built.
    #[error("build the Runtime API client")]
    Client(#[source] reqwest::Error),
    /// A call to the Runtime API failed.
    #[error("Runtime API {call} failed: {source}")]
    Transport {
        /// Which call.
        call: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The Runtime API answered with an unexpected status.
    #[error("Runtime API {call} answered with status {status}")]
    Status {
        /// Which call.
        call: &'static str,
        /// The status.
        status: u16,
    },
    /// `/next` answered without a usable `Lambda-Runtime-Aws-Request-Id`.
    #[error("Runtime API next invocation has no usable Lambda-Runtime-Aws-Request-Id")]
    RequestId,
    /// `/next` answered with a payload over 6 MB.
    #[error("Runtime API next invocation payload exceeds 6 MB")]
    PayloadTooLarge,
}

/// One invocation, as `/next` delivered it.
#[derive(Clone)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`: the id callers and CloudWatch see.
    pub request_id: String,
    /// `Lambda-Runtime-Invoked-Function-Arn` (names the alias or version the caller invoked).
    pub invoked_function_arn: Option<String>,
    /// `cognitoIdentityId` from `Lambda-Runtime-Cognito-Identity`, when the caller came through Cognito.
    pub cognito_identity_id: Option<String>,
    /// `Lambda-Runtime-Deadline-Ms`: when Lambda stops the invocation (Unix ms).
    pub deadline_ms: Option<u64>,
    /// The payload bytes, never logged.
    pub payload: Bytes,
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("request_id", &self.request_id)
            .field("invoked_function_arn", &self.invoked_function_arn)
            .field("payload_bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// A failed invocation, posted as `{"errorMessage","errorType"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationError {
    /// What went wrong and what to do (never a secret).
    pub message: String,
    /// A short classification, e.g. `InvalidInvocationInput`.
    pub error_type: &'static str,
}

/// The Runtime API at `AWS_LAMBDA_RUNTIME_API`.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    http: reqwest::Client,
    base: String,
}

impl RuntimeApi {
    /// The API at `address` (`host:port`, as in `AWS_LAMBDA_RUNTIME_API`).
    pub fn new(address: Option<&str>) -> Result<Self, RuntimeError> {
        let address = address.ok_or(RuntimeError::NotInLambda)?;
        let base = format!("http://{address}/{PREFIX}");
        let valid = url::Url::parse(&base)
            .ok()
            .is_some_and(|u| u.host().is_some() && u.path() == format!("/{PREFIX}"));
        if !valid {
            return Err(RuntimeError::BadAddress(crate::text::printable(
                address, 100,
            )));
        }
        // No overall timeout: `/next` blocks until an invocation arrives.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(None)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(RuntimeError::Client)?;
        Ok(Self { http, base })
    }

    /// Blocks until the next invocation.
    pub async fn next(&self) -> Result<Invocation, RuntimeError> {
        const CALL: &str = "next invocation";
        let response = self
            .http
            .get(format!("{}/invocation/next", self.base))
            .send()
            .await
            .map_err(|source| RuntimeError::Transport { call: CALL, source })?;
        if !response.status().is_success() {
            return Err(RuntimeError::Status {
                call: CALL,
                status: response.status().as_u16(),
            });
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("lambda-runtime-aws-request-id")
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= 128
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            })
            .ok_or(RuntimeError::RequestId)?;
        let invoked_function_arn = header("lambda-runtime-invoked-function-arn");
        let deadline_ms = header("lambda-runtime-deadline-ms").and_then(|v| v.parse().ok());
        let cognito_identity_id = header("lambda-runtime-cognito-identity").and_then(|v| {
            serde_json::from_str::<serde_json::Value>(&v)
                .ok()?
                .get("cognitoIdentityId")?
                .as_str()
                .map(|s| crate::text::printable(s, 200))
        });
        let payload = crate::net::read_capped(response, MAX_PAYLOAD_BYTES)
            .await
            .map_err(|e| match e {
                crate::net::CappedReadError::TooLarge => RuntimeError::PayloadTooLarge,
                crate::net::CappedReadError::Transport(source) => {
                    RuntimeError::Transport { call: CALL, source }
                }
            })?;
        Ok(Invocation {
            request_id,
            invoked_function_arn,
            cognito_identity_id,
            deadline_ms,
            payload,
        })
    }

    /// Posts the response of invocation `request_id`.
    pub async fn respond(&self, request_id: &str, body: Vec<u8>) -> Result<(), RuntimeError> {
        self.post(
            "invocation response",
            format!("{}/invocation/{request_id}/response", self.base),
            body,
            None,
        )
        .await
    }

    /// Posts the error of invocation `request_id`.
    pub async fn fail(
        &self,
        request_id: &str,
        error: &InvocationError,
    ) -> Result<(), RuntimeError> {
        self.post(
            "invocation error",
            format!("{}/invocation/{request_id}/error", self.base),
            error_body(error),
            Some(error.error_type),
        )
        .await
    }

    /// Reports that initialisation failed; Lambda then shows this message to
    /// callers (instead of `Runtime.ExitError`) and retries init later.
    pub async fn init_error(&self, error: &InvocationError) -> Result<(), RuntimeError> {
        self.post(
            "init error",
            format!("{}/init/error", self.base),
            error_body(error),
            Some(error.error_type),
        )
        .await
    }

    async fn post(
        &self,
        call: &'static str,
        url: String,
        body: Vec<u8>,
        error_type: Option<&str>,
    ) -> Result<(), RuntimeError> {
        let mut request = self
            .http
            .post(url)
            .timeout(Duration::from_secs(10))
            .header("content-type", "application/json")
            .body(body);
        if let Some(kind) = error_type {
            request = request.header("lambda-runtime-function-error-type", kind);
        }
        let response = request
            .send()
            .await
            .map_err(|source| RuntimeError::Transport { call, source })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(RuntimeError::Status {
                call,
                status: response.status().as_u16(),
            })
        }
    }
}

fn error_body(error: &InvocationError) -> Vec<u8> {
    serde_json::json!({
        "errorMessage": crate::text::truncate(&error.message, MAX_ERROR_MESSAGE),
        "errorType": error.error_type,
    })
    .to_string()
    .into_bytes()
}
