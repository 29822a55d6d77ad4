//! AWS KMS asymmetric signing: RS256 (`RSASSA_PKCS1_V1_5_SHA_256`) signatures from a KMS key, so the GitHub App private key never leaves KMS.

use super::{AwsEnv, AwsError, JsonApi};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::time::Duration;
use time::OffsetDateTime;

/// KMS answers to `Sign` are well under a KiB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// KMS accepts at most 4096 bytes of `RAW` message; an App JWT's signing input is a few hundred.
const MAX_RAW_MESSAGE: usize = 4096;

/// Signs with one KMS key (`kms:Sign` is the only permission it needs).
#[derive(Debug, Clone)]
pub struct KmsSigner {
    api: JsonApi,
    /// Key id, key ARN, alias name or alias ARN.
    key_id: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignOutput {
    signature: String,
}

impl KmsSigner {
    /// A signer for `key_id` at `env`'s KMS endpoint.
    pub fn new(env: AwsEnv, key_id: String, timeout: Duration) -> Result<Self, AwsError> {
        Ok(Self {
            api: JsonApi::new(env, "kms", "application/x-amz-json-1.1", timeout)?,
            key_id,
        })
    }

    /// The key as configured.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The RSASSA-PKCS1-v1_5 SHA-256 signature of `message` (KMS hashes it:
    /// `MessageType=RAW`), signed at `now`.
    pub async fn sign_rs256(
        &self,
        message: &[u8],
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, AwsError> {
        let malformed = || AwsError::Malformed { service: "KMS" };
        if message.len() > MAX_RAW_MESSAGE {
            return Err(malformed());
        }
        let body = serde_json::json!({
            "KeyId": self.key_id,
            "Message": STANDARD.encode(message),
            "MessageType": "RAW",
            "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
        });
        let reply = self
            .api
            .call("TrentService.Sign", &body, MAX_RESPONSE_BYTES, now)
            .await?;
        let out: SignOutput = serde_json::from_slice(&reply).map_err(|_| malformed())?;
        let signature = STANDARD
            .decode(out.signature.as_bytes())
            .map_err(|_| malformed())?;
        if signature.is_empty() {
            return Err(malformed());
        }
        Ok(signature)
    }
}
