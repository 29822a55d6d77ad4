//! How the App JWT is signed: with a local RSA key (from a file, an environment variable or SSM), or by AWS KMS so the private key never leaves KMS.

use crate::aws::kms::KmsSigner;
use crate::aws::AwsError;
use crate::keys::{KeyError, RsaSigningKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use time::OffsetDateTime;

/// The App's signing key.
#[derive(Debug, Clone)]
pub enum AppSigner {
    /// An RSA private key held in memory.
    Local(RsaSigningKey),
    /// An asymmetric RSA KMS key (`SIGN_VERIFY`); each signature is one `kms:Sign` call.
    Kms(Box<KmsSigner>),
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
