//! RSA signing keys: loading PKCS#1/PKCS#8 PEM, generating throwaway keys for the dev stack, and signing compact JWS (RS256).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Why a key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text holds no unencrypted PEM private key block.
    #[error("decode GitHub App private key PEM: expected an unencrypted `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8) block")]
    Pem,
    /// The PEM block is not an RSA key ring accepts (wrong type, malformed, or under 2048 bits).
    #[error("parse GitHub App private key: the key must be RSA, 2048 to 8192 bits ({0})")]
    Parse(String),
    /// Generating a throwaway key failed.
    #[error("generate RSA key: {0}")]
    Generate(String),
    /// Signing failed (ring reports no detail).
    #[error("sign with RSA key: the signing operation failed")]
    Sign,
    /// The JWS header or claims could not be serialised.
    #[error("serialise JWT: {0}")]
    Json(#[from] serde_json::Error),
}

/// An RSA private key for RS256 signing. Cloning shares the key; `Debug`
/// never prints key material.
#[derive(Clone)]
pub struct RsaSigningKey {
    pair: Arc<RsaKeyPair>,
    kid: String,
}

impl fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaSigningKey")
            .field("kid", &self.kid)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// The public half of an RSA key, as JWK members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RsaPublicJwk {
    /// Always `RSA`.
    pub kty: &'static str,
    /// Key id.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Always `RS256`.
    pub alg: &'static str,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
}

impl RsaSigningKey {
    /// Parses the first private-key PEM block in `pem` (PKCS#1 or PKCS#8).
    /// Encrypted keys are refused.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::Pem)?;
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(KeyError::Parse("GitHub App private key must be RSA".into())),
        }
        .map_err(|e| KeyError::Parse(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// Generates a fresh 2048-bit key. For the dev stack and tests only:
    /// production keys come from GitHub.
    pub fn generate() -> Result<Self, KeyError> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let pair = RsaKeyPair::from_pkcs8(der.as_bytes())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// The key as PKCS#8 PEM. Only the dev stack writes keys out.
    pub fn generate_pem() -> Result<(Self, String), KeyError> {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let parsed = Self::from_pem(pem.as_bytes())?;
        Ok((parsed, pem.to_string()))
    }

    fn from_pair(pair: RsaKeyPair) -> Self {
        let public = pair.public_key().as_ref();
        let kid = hex::encode(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8]);
        Self {
            pair: Arc::new(pair),
            kid,
        }
    }

    /// A stable key id: the first 8 bytes of SHA-256 over the public key, in hex.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> RsaPublicJwk {
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = self.pair.public().into();
        RsaPublicJwk {
            kty: "RSA",
            kid: self.kid.clone(),
            use_: "sig",
            alg: "RS256",
            n: URL_SAFE_NO_PAD.encode(&public.n),
            e: URL_SAFE_NO_PAD.encode(&public.e),
        }
    }

    /// Signs `claims` as a compact RS256 JWS with header
    /// `{"alg":"RS256","typ":"JWT"}` plus `kid` when `with_kid` is set.
    pub fn sign_jwt<C: Serialize + ?Sized>(
        &self,
        claims: &C,
        with_kid: bool,
    ) -> Result<String, KeyError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
        }
        let header = Header {
            alg: "RS256",
            typ: "JWT",
            kid: with_kid.then_some(self.kid.as_str()),
        };
        let header = serde_json::to_vec(&header)?;
        let claims = serde_json::to_vec(claims)?;
        self.sign_raw(&header, &claims)
    }

    /// Signs arbitrary header and payload bytes as compact RS256 JWS. Tests use
    /// this to build hostile tokens.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> Result<String, KeyError> {
        let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 360);
        URL_SAFE_NO_PAD.encode_string(header, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                out.as_bytes(),
                &mut sig,
            )
            .map_err(|_| KeyError::Sign)?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_roundtrip_and_debug_redacts() {
        let (key, pem) = RsaSigningKey::generate_pem().unwrap();
        let again = RsaSigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.public_jwk(), again.public_jwk());
        let debug = format!("{key:?}");
        assert!(debug.contains("REDACTED"));
        assert!(!debug.contains(&pem[40..80]));
    }

    #[test]
    fn rejects_garbage_and_encrypted_pem() {
        assert!(matches!(
            RsaSigningKey::from_pem(b"not a pem"),
            Err(KeyError::Pem)
        ));
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            RsaSigningKey::from_pem(enc.as_bytes()),
            Err(KeyError::Pem)
        ));
    }

    #[test]
    fn signs_three_part_jwt() {
        let key = RsaSigningKey::generate().unwrap();
        let jwt = key
            .sign_jwt(&serde_json::json!({"iss": "x"}), true)
            .unwrap();
        assert_eq!(jwt.split('.').count(), 3);
    }
}
