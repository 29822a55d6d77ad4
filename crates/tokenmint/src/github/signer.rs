//! How the App JWT is signed: with a local RSA key (from a file or an environment variable), a key kept in SSM and re-read as it rotates, or by AWS KMS so the private key never leaves KMS.

use crate::aws::kms::KmsSigner;
use crate::aws::ssm::SsmClient;
use crate::aws::AwsError;
use crate::keys::{KeyError, RsaSigningKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;

/// How long a key read from SSM is used before the next App JWT signed
/// reads it again: a rotated key takes effect within a minute of the first
/// App JWT signed after it (about every 8 minutes, and at once after GitHub
/// refuses one).
pub const SSM_KEY_REFRESH: time::Duration = time::Duration::seconds(60);

/// The App's signing key.
#[derive(Debug, Clone)]
pub enum AppSigner {
    /// An RSA private key held in memory.
    Local(RsaSigningKey),
    /// An asymmetric RSA KMS key (`SIGN_VERIFY`); each signature is one `kms:Sign` call.
    Kms(Box<KmsSigner>),
    /// An RSA private key kept in an SSM SecureString, re-read at most every
    /// [`SSM_KEY_REFRESH`] when an App JWT is signed.
    Ssm(Arc<SsmAppKey>),
}

impl From<RsaSigningKey> for AppSigner {
    fn from(key: RsaSigningKey) -> Self {
        Self::Local(key)
    }
}

impl From<KmsSigner> for AppSigner {
    fn from(signer: KmsSigner) -> Self {
        Self::Kms(Box::new(signer))
    }
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The local key failed.
    #[error(transparent)]
    Local(#[from] KeyError),
    /// KMS refused or failed (`AccessDeniedException` means the role lacks `kms:Sign` on the key).
    #[error("KMS Sign: {0}")]
    Kms(#[from] AwsError),
}

impl AppSigner {
    /// `claims` as a compact RS256 JWS with header `{"alg":"RS256","typ":"JWT"}`;
    /// `now` signs the KMS request.
    pub async fn sign_jwt<C: Serialize + ?Sized>(
        &self,
        claims: &C,
        now: OffsetDateTime,
    ) -> Result<String, SignError> {
        match self {
            Self::Local(key) => Ok(key.sign_jwt(claims, false)?),
            Self::Ssm(ssm) => Ok(ssm.current(now).await.sign_jwt(claims, false)?),
            Self::Kms(kms) => {
                let claims = serde_json::to_vec(claims).map_err(KeyError::Json)?;
                let mut jwt = String::new();
                URL_SAFE_NO_PAD.encode_string(br#"{"alg":"RS256","typ":"JWT"}"#, &mut jwt);
                jwt.push('.');
                URL_SAFE_NO_PAD.encode_string(&claims, &mut jwt);
                let signature = kms.sign_rs256(jwt.as_bytes(), now).await?;
                jwt.push('.');
                URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
                Ok(jwt)
            }
        }
    }
}

/// Why the App key could not be read from SSM.
#[derive(Debug, thiserror::Error)]
pub enum SsmKeyError {
    /// The `GetParameters` call failed.
    #[error("read the GitHub App private key from SSM: {0}")]
    Read(#[source] AwsError),
    /// The parameter is missing, empty, or not an RSA key.
    #[error("[github] private_key_ssm {parameter}: {reason}")]
    Parameter {
        /// The parameter name.
        parameter: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// The App's private key as an SSM SecureString holds it. Read once when the
/// service starts (a failure there stops the start); then, whenever an App
/// JWT is signed and the key was read [`SSM_KEY_REFRESH`] or longer ago, read
/// again. A failed re-read, or a value that is not a usable key, keeps the
/// key read before and logs a warning: the service keeps minting while SSM is
/// down or an edit is half done, and GitHub still refuses a key it no longer
/// holds.
#[derive(Debug)]
pub struct SsmAppKey {
    ssm: SsmClient,
    parameter: String,
    /// The key in use and when it was read. The lock is held across a
    /// re-read, so concurrent signers wait for one `GetParameters`.
    state: tokio::sync::Mutex<(RsaSigningKey, OffsetDateTime)>,
}

impl SsmAppKey {
    /// Reads `parameter` now; fails if it cannot be read or holds no RSA key.
    pub async fn load(
        ssm: SsmClient,
        parameter: String,
        now: OffsetDateTime,
    ) -> Result<Self, SsmKeyError> {
        let key = read_key(&ssm, &parameter, now).await?;
        Ok(Self {
            ssm,
            parameter,
            state: tokio::sync::Mutex::new((key, now)),
        })
    }

    /// The key to sign with at `now`, re-read first when it is due.
    async fn current(&self, now: OffsetDateTime) -> RsaSigningKey {
        let mut state = self.state.lock().await;
        let (key, read_at) = &mut *state;
        // Due a minute after the last read, or when the clock moved back by a
        // minute or more. Exchanges pass the time they started, so callers
        // reach this lock slightly out of order: a smaller step back is that.
        if (now - *read_at).abs() >= SSM_KEY_REFRESH {
            match read_key(&self.ssm, &self.parameter, now).await {
                Ok(fresh) => {
                    if fresh.kid() != key.kid() {
                        tracing::info!(
                            parameter = %self.parameter,
                            old_kid = key.kid(),
                            new_kid = fresh.kid(),
                            "the GitHub App private key in SSM changed; signing App JWTs with the new key"
                        );
                    }
                    *key = fresh;
                }
                Err(error) => tracing::warn!(
                    parameter = %self.parameter,
                    kid = key.kid(),
                    error = %error,
                    "could not re-read the GitHub App private key from SSM; signing with the key read before (retried in a minute)"
                ),
            }
            // Also after a failure: SSM is asked again a minute later, not on every signature.
            *read_at = now;
        }
        key.clone()
    }
}

/// One `GetParameters` for `parameter`, parsed as an RSA private key PEM.
async fn read_key(
    ssm: &SsmClient,
    parameter: &str,
    now: OffsetDateTime,
) -> Result<RsaSigningKey, SsmKeyError> {
    let reply = ssm
        .get_parameters(&[parameter], now)
        .await
        .map_err(SsmKeyError::Read)?;
    let err = |reason: String| SsmKeyError::Parameter {
        parameter: parameter.to_owned(),
        reason,
    };
    let value = reply
        .found
        .iter()
        .find(|p| p.name == parameter)
        .filter(|p| !p.value.expose_secret().trim().is_empty())
        .ok_or_else(|| err("the parameter is missing or empty (or this role may not read it); store the App's PEM key there as a SecureString".into()))?;
    RsaSigningKey::from_pem(value.value.expose_secret().as_bytes()).map_err(|e| err(e.to_string()))
}
