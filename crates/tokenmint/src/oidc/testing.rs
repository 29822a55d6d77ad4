//! Hooks into the JWKS code for fuzz targets and test vectors; not a stable API.
//!
//! These run exactly the production path: [`KeySet::parse`] for a JWKS
//! document, then the chosen key's own checks and ring verification. They
//! exist only because that path is crate-private.

use super::jwks::KeySet;
use super::{Algorithm, JwksError, KeyUseError};

/// Why [`verify_with_jwks`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksVerifyError {
    /// The JWKS document was refused as a whole.
    #[error("{0}")]
    Jwks(#[from] JwksError),
    /// No key matches `kid` (or, without a kid, the set is not a single key).
    #[error("no key matches the kid")]
    NoKey,
    /// The key does not fit the algorithm, or the signature is wrong.
    #[error("{0}")]
    Key(#[from] KeyUseError),
}

/// Parses a JWKS document with the production hygiene rules and returns how
/// many keys are usable.
pub fn parse_jwks(body: &[u8]) -> Result<usize, JwksError> {
    KeySet::parse(body).map(|set| set.len())
}

/// Parses `jwks` as the verifier does, looks `kid` up as the verifier does,
/// and verifies `signature` over `message` for `alg` with that key.
pub fn verify_with_jwks(
    jwks: &[u8],
    kid: Option<&str>,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), JwksVerifyError> {
    let set = KeySet::parse(jwks)?;
    let key = set.find(kid).ok_or(JwksVerifyError::NoKey)?;
    key.verify(alg, message, signature)?;
    Ok(())
}
