//! SSM Parameter Store client: one SigV4-signed `AmazonSSM.GetParameters` call (awsJson1_1) with decryption, values kept secret.

use super::{AwsEnv, AwsError, JsonApi};
use secrecy::SecretString;
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// SSM answers here are a few KiB (three parameters of at most 8 KiB each).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Why `GetParameters` failed (the shared AWS call error).
pub type SsmError = AwsError;

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

/// An SSM client for one region and set of credentials.
#[derive(Debug, Clone)]
pub struct SsmClient {
    api: JsonApi,
}

impl SsmClient {
    /// Builds the client for `env`'s SSM endpoint.
    pub fn new(env: AwsEnv, timeout: Duration) -> Result<Self, SsmError> {
        Ok(Self {
            api: JsonApi::new(env, "ssm", "application/x-amz-json-1.1", timeout)?,
        })
    }

    /// `GetParameters` for `names` with `WithDecryption=true`, signed at `now`.
    pub async fn get_parameters(
        &self,
        names: &[&str],
        now: OffsetDateTime,
    ) -> Result<Parameters, SsmError> {
        let body = serde_json::json!({ "Names": names, "WithDecryption": true });
        let reply = self
            .api
            .call("AmazonSSM.GetParameters", &body, MAX_RESPONSE_BYTES, now)
            .await?;
        let raw: RawOutput =
            serde_json::from_slice(&reply).map_err(|_| SsmError::Malformed { service: "SSM" })?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_debug_redacts_value() {
        let p = Parameter {
            name: "/x".into(),
            value: SecretString::from("-----BEGIN"),
        };
        assert!(!format!("{p:?}").contains("BEGIN"));
    }
}
