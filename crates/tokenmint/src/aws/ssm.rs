//! SSM Parameter Store client: one SigV4-signed `AmazonSSM.GetParameters` call (awsJson1_1) with decryption, values kept secret.

use super::sigv4;
use super::{AwsEnv, AwsEnvError};
use secrecy::SecretString;
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// SSM answers here are a few KiB (three parameters of at most 8 KiB each).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest AWS error message quoted in our errors.
const MAX_AWS_MESSAGE: usize = 300;

/// Why `GetParameters` failed. Never carries a parameter value.
#[derive(Debug, thiserror::Error)]
pub enum SsmError {
    /// The endpoint could not be resolved from the environment.
    #[error(transparent)]
    Env(#[from] AwsEnvError),
    /// The HTTP client could not be built.
    #[error("build SSM HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// No answer (connection refused, timeout, TLS failure).
    #[error("SSM request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// SSM refused the request (`AccessDeniedException`, `ValidationException`, throttling, …).
    #[error("{code}: {message} (HTTP {status})")]
    Aws {
        /// The HTTP status.
        status: u16,
        /// AWS's error code, e.g. `AccessDeniedException`.
        code: String,
        /// AWS's message (cut to a few hundred characters).
        message: String,
    },
    /// The answer is not the JSON `GetParameters` returns, or is too large.
    #[error("SSM GetParameters response is not the expected JSON")]
    Malformed,
}

/// One parameter SSM returned. `Debug` never prints the value.
#[derive(Clone)]
pub struct Parameter {
    /// Its name, as SSM reports it.
    pub name: String,
    /// Its (decrypted) value.
    pub value: SecretString,
}

impl fmt::Debug for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parameter")
            .field("name", &self.name)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

/// What `GetParameters` returned.
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    /// The parameters found.
    pub found: Vec<Parameter>,
    /// The names SSM reported as `InvalidParameters` (absent or not readable).
    pub invalid: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawOutput {
    #[serde(default)]
    parameters: Vec<RawParameter>,
    #[serde(default)]
    invalid_parameters: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawParameter {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(serde::Deserialize)]
struct RawError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

/// An SSM client for one region and set of credentials.
#[derive(Debug, Clone)]
pub struct SsmClient {
    http: reqwest::Client,
    endpoint: Url,
    env: AwsEnv,
}

impl SsmClient {
    /// Builds the client for `env`'s SSM endpoint.
    pub fn new(env: AwsEnv, timeout: Duration) -> Result<Self, SsmError> {
        let endpoint = env.endpoint("ssm")?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(SsmError::HttpClient)?;
        Ok(Self {
            http,
            endpoint,
            env,
        })
    }

    /// `GetParameters` for `names` with `WithDecryption=true`, signed at `now`.
    pub async fn get_parameters(
        &self,
        names: &[&str],
        now: OffsetDateTime,
    ) -> Result<Parameters, SsmError> {
        let body = serde_json::json!({ "Names": names, "WithDecryption": true }).to_string();
        let (status, reply) = self
            .call("AmazonSSM.GetParameters", body.into_bytes(), now)
            .await?;
        if !(200..300).contains(&status) {
            return Err(aws_error(status, &reply));
        }
        let raw: RawOutput = serde_json::from_slice(&reply).map_err(|_| SsmError::Malformed)?;
        Ok(Parameters {
            found: raw
                .parameters
                .into_iter()
                .map(|p| Parameter {
                    name: p.name,
                    value: SecretString::from(p.value),
                })
                .collect(),
            invalid: raw.invalid_parameters,
        })
    }

    async fn call(
        &self,
        target: &str,
        body: Vec<u8>,
        now: OffsetDateTime,
    ) -> Result<(u16, bytes::Bytes), SsmError> {
        let host = host_header(&self.endpoint);
        const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                host: &host,
                path: "/",
                query: "",
                headers: &[("content-type", CONTENT_TYPE), ("x-amz-target", target)],
                body: &body,
            },
            &self.env.credentials,
            &self.env.region,
            "ssm",
            now,
        );
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", target);
        for (name, value) in signed {
            let mut value =
                reqwest::header::HeaderValue::try_from(value).map_err(|_| SsmError::Malformed)?;
            value.set_sensitive(name != "x-amz-date");
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(SsmError::Transport)?;
        let status = response.status().as_u16();
        let reply = crate::net::read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                crate::net::CappedReadError::TooLarge => SsmError::Malformed,
                crate::net::CappedReadError::Transport(e) => SsmError::Transport(e),
            })?;
        Ok((status, reply))
    }
}

/// The `Host` header reqwest sends for `url`: host, plus the port when it is not the default.
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn aws_error(status: u16, body: &[u8]) -> SsmError {
    let raw: RawError = serde_json::from_slice(body).unwrap_or(RawError {
        kind: String::new(),
        message: String::new(),
    });
    // `__type` may be `com.amazonaws.ssm#AccessDeniedException`.
    let code = raw.kind.rsplit('#').next().unwrap_or_default();
    SsmError::Aws {
        status,
        code: if code.is_empty() {
            "UnknownError".to_owned()
        } else {
            crate::text::printable(code, 80)
        },
        message: crate::text::printable(&raw.message, MAX_AWS_MESSAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_keep_code_and_message() {
        let e = aws_error(
            400,
            br#"{"__type":"com.amazonaws.ssm#AccessDeniedException","message":"not allowed"}"#,
        );
        assert_eq!(
            e.to_string(),
            "AccessDeniedException: not allowed (HTTP 400)"
        );
    }

    #[test]
    fn parameter_debug_redacts_value() {
        let p = Parameter {
            name: "/x".into(),
            value: SecretString::from("-----BEGIN"),
        };
        assert!(!format!("{p:?}").contains("BEGIN"));
    }
}
