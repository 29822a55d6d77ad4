//! Signature algorithms tokenmint accepts, and how each maps to a key type and a ring verifier.

use ring::signature as sig;
use std::fmt;

/// An asymmetric JWS algorithm. `none` and the HMAC family cannot be
/// represented, so no configuration or token can select them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (GitHub Actions, GitLab).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
}

/// Why an algorithm name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    /// `none`, in any case.
    #[error("algorithm {0:?} (unsigned tokens) is never accepted")]
    None(String),
    /// `HS256` and friends.
    #[error("algorithm {0:?} is symmetric and is never accepted; use the issuer's asymmetric algorithm, e.g. RS256")]
    Symmetric(String),
    /// Anything else unknown.
    #[error("unsupported algorithm {0:?}; supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384")]
    Unsupported(String),
}

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Rsa,
    P256,
    P384,
}

impl Algorithm {
    /// Parses a JOSE algorithm name, case-sensitively.
    pub fn parse(name: &str) -> Result<Self, AlgorithmError> {
        Ok(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            n if n.eq_ignore_ascii_case("none") => return Err(AlgorithmError::None(n.to_owned())),
            // Compared as bytes: the name is attacker-controlled, and slicing
            // the string could split a multi-byte character (and panic).
            n if n
                .as_bytes()
                .get(..2)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"HS")) =>
            {
                return Err(AlgorithmError::Symmetric(n.to_owned()))
            }
            n => return Err(AlgorithmError::Unsupported(n.to_owned())),
        })
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
        }
    }

    pub(crate) fn family(self) -> KeyFamily {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 => KeyFamily::P256,
            Self::ES384 => KeyFamily::P384,
        }
    }

    /// ring's RSA parameters (2048-bit minimum) for the RSA algorithms.
    pub(crate) fn rsa_params(self) -> Option<&'static sig::RsaParameters> {
        Some(match self {
            Self::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Self::ES256 | Self::ES384 => return None,
        })
    }

    /// ring's ECDSA verifier (fixed-width `r || s`, as JWS uses) for the EC algorithms.
    pub(crate) fn ecdsa_params(self) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
        match self {
            Self::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
            Self::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_asymmetric_only() {
        assert_eq!(Algorithm::parse("RS256"), Ok(Algorithm::RS256));
        assert_eq!(Algorithm::parse("ES384"), Ok(Algorithm::ES384));
        for n in ["none", "NONE", "nOnE"] {
            assert!(matches!(Algorithm::parse(n), Err(AlgorithmError::None(_))));
        }
        for n in ["HS256", "hs384", "HS512"] {
            assert!(matches!(
                Algorithm::parse(n),
                Err(AlgorithmError::Symmetric(_))
            ));
        }
        // Found by the jose_parse fuzz target: a multi-byte character at byte 1
        // made the `HS` prefix check slice inside it and panic.
        for n in [
            "rs256",
            "EdDSA",
            "",
            "RS1",
            "n\u{5db}e",
            "\u{5db}",
            "H\u{e9}",
            "\u{e9}S",
        ] {
            assert!(matches!(
                Algorithm::parse(n),
                Err(AlgorithmError::Unsupported(_))
            ));
        }
    }

    #[test]
    fn names_round_trip() {
        for a in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
        ] {
            assert_eq!(Algorithm::parse(a.as_str()), Ok(a));
            assert!(a.rsa_params().is_some() != a.ecdsa_params().is_some());
        }
    }
}
