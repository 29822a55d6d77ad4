//! OIDC token verification: JOSE parsing, issuer selection, discovery, the JWKS cache and claim checks.

mod claims;

#[cfg(test)]
pub(crate) use claims::claims_for_tests;
pub use claims::{claim_text, VerifiedClaims};
