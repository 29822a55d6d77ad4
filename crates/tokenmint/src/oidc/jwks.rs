//! JSON Web Key Sets: parsing an issuer's keys with strict hygiene, and verifying a signature with one key.

use super::algorithm::KeyFamily;
use super::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Private-key members; a JWK carrying any of them is refused.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];
/// RSA moduli under this many bytes (2048 bits) are refused.
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// RSA moduli over this many bytes (8192 bits) are refused.
const MAX_RSA_MODULUS_BYTES: usize = 1024;

/// One usable public key from an issuer's JWKS.
#[derive(Debug)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The JWK's own `alg`, if it names one.
    pub(crate) alg: Option<String>,
    /// The JWK's `use`, if present.
    pub(crate) use_: Option<String>,
    material: KeyMaterial,
}

#[derive(Debug)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point `04 || x || y`.
    Ec {
        family: KeyFamily,
        point: Vec<u8>,
    },
}

/// Why a key could not be used for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyUseError {
    /// The JWK's `kty`/curve does not fit the token's algorithm.
    #[error("key {kid} is {have}, but the token's alg {alg} needs another key type")]
    WrongType {
        /// Key id.
        kid: String,
        /// What the key is.
        have: &'static str,
        /// The token's alg.
        alg: Algorithm,
    },
    /// The JWK names a different `alg`.
    #[error("key {kid} is for alg {key_alg}, but the token says {alg}")]
    AlgMismatch {
        /// Key id.
        kid: String,
        /// The key's alg.
        key_alg: String,
        /// The token's alg.
        alg: Algorithm,
    },
    /// The JWK's `use` is not `sig`.
    #[error("key {kid} has use {use_:?}, not \"sig\"")]
    NotForSignatures {
        /// Key id.
        kid: String,
        /// The key's use.
        use_: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify with key {kid}")]
    BadSignature {
        /// Key id.
        kid: String,
    },
}

impl Jwk {
    fn label(&self) -> String {
        self.kid.clone().unwrap_or_else(|| "(no kid)".to_owned())
    }

    fn type_name(&self) -> &'static str {
        match &self.material {
            KeyMaterial::Rsa { .. } => "an RSA key",
            KeyMaterial::Ec {
                family: KeyFamily::P256,
                ..
            } => "a P-256 key",
            KeyMaterial::Ec { .. } => "a P-384 key",
        }
    }

    /// Checks that this key may verify `alg` (type, the key's `alg` and
    /// `use`), then verifies `signature` over `message`.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyUseError> {
        if let Some(use_) = &self.use_ {
            if use_ != "sig" {
                return Err(KeyUseError::NotForSignatures {
                    kid: self.label(),
                    use_: use_.clone(),
                });
            }
        }
        if let Some(key_alg) = &self.alg {
            if key_alg != alg.as_str() {
                return Err(KeyUseError::AlgMismatch {
                    kid: self.label(),
                    key_alg: key_alg.clone(),
                    alg,
                });
            }
        }
        let wrong_type = || KeyUseError::WrongType {
            kid: self.label(),
            have: self.type_name(),
            alg,
        };
        let ok = match (&self.material, alg.family()) {
            (KeyMaterial::Rsa { n, e }, KeyFamily::Rsa) => {
                let params = alg.rsa_params().ok_or_else(wrong_type)?;
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            (KeyMaterial::Ec { family, point }, want) if *family == want => {
                let params = alg.ecdsa_params().ok_or_else(wrong_type)?;
                UnparsedPublicKey::new(params, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => return Err(wrong_type()),
        };
        if ok {
            Ok(())
        } else {
            Err(KeyUseError::BadSignature { kid: self.label() })
        }
    }
}

/// An issuer's usable keys, indexed by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<Jwk>>,
    without_kid: Vec<Arc<Jwk>>,
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    #[error("JWKS is not a JSON object with a \"keys\" array")]
    Shape,
    /// No key survived the hygiene checks.
    #[error("JWKS holds no usable public signing key ({0} keys refused)")]
    NoUsableKeys(usize),
}

impl KeySet {
    /// Parses a JWKS document. Keys that are symmetric, carry private members,
    /// are malformed, or are weak RSA are dropped; a set with no usable key at
    /// all is an error (so garbage never replaces good keys).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, JwksError> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| JwksError::Shape)?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::Shape)?;
        let mut set = KeySet::default();
        let mut refused = 0;
        for key in keys {
            match parse_jwk(key) {
                Some(jwk) => {
                    let jwk = Arc::new(jwk);
                    match &jwk.kid {
                        // The first key with a given kid wins; an issuer never
                        // legitimately publishes two.
                        Some(kid) => {
                            set.by_kid.entry(kid.clone()).or_insert(jwk);
                        }
                        None => set.without_kid.push(jwk),
                    }
                }
                None => refused += 1,
            }
        }
        if set.len() == 0 {
            return Err(JwksError::NoUsableKeys(refused));
        }
        Ok(set)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// The key for `kid`; a token without `kid` is only matched when the set
    /// holds exactly one key.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<Arc<Jwk>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None if self.len() == 1 => self
                .by_kid
                .values()
                .chain(self.without_kid.iter())
                .next()
                .cloned(),
            None => None,
        }
    }
}

fn b64_field(key: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(key.get(name)?.as_str()?).ok()
}

fn opt_str(key: &Value, name: &str) -> Result<Option<String>, ()> {
    match key.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

fn parse_jwk(key: &Value) -> Option<Jwk> {
    if !key.is_object() || PRIVATE_MEMBERS.iter().any(|m| key.get(m).is_some()) {
        return None;
    }
    let kid = opt_str(key, "kid").ok()?;
    let alg = opt_str(key, "alg").ok()?;
    let use_ = opt_str(key, "use").ok()?;
    let material = match key.get("kty")?.as_str()? {
        "RSA" => {
            let n = strip_leading_zeros(b64_field(key, "n")?);
            let e = strip_leading_zeros(b64_field(key, "e")?);
            if !(MIN_RSA_MODULUS_BYTES..=MAX_RSA_MODULUS_BYTES).contains(&n.len()) {
                return None;
            }
            // e must be odd and at least 3 (ring enforces more on use).
            if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
                return None;
            }
            KeyMaterial::Rsa { n, e }
        }
        "EC" => {
            let (family, len) = match key.get("crv")?.as_str()? {
                "P-256" => (KeyFamily::P256, 32),
                "P-384" => (KeyFamily::P384, 48),
                _ => return None,
            };
            let x = b64_field(key, "x")?;
            let y = b64_field(key, "y")?;
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::Ec { family, point }
        }
        // `oct` (symmetric) and anything unknown are never usable.
        _ => return None,
    };
    Some(Jwk {
        kid,
        alg,
        use_,
        material,
    })
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RsaSigningKey;
    use serde_json::json;

    fn rsa_jwk(key: &RsaSigningKey) -> Value {
        serde_json::to_value(key.public_jwk()).unwrap()
    }

    #[test]
    fn parses_rsa_and_verifies() {
        let key = RsaSigningKey::generate().unwrap();
        let doc = json!({"keys": [rsa_jwk(&key)]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let jwt = key.sign_jwt(&json!({"a": 1}), true).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let jwk = set.find(Some(key.kid())).unwrap();
        jwk.verify(Algorithm::RS256, input.as_bytes(), &sig)
            .unwrap();
        // Tampered message fails.
        let err = jwk.verify(Algorithm::RS256, b"other", &sig).unwrap_err();
        assert!(matches!(err, KeyUseError::BadSignature { .. }));
        // A single key also serves tokens without kid.
        assert!(set.find(None).is_some());
        assert!(set.find(Some("other")).is_none());
    }

    #[test]
    fn key_must_agree_with_header() {
        let key = RsaSigningKey::generate().unwrap();
        let mut jwk = rsa_jwk(&key);
        let set = KeySet::parse(json!({"keys": [jwk.clone()]}).to_string().as_bytes()).unwrap();
        let k = set.find(Some(key.kid())).unwrap();
        // JWK says RS256, token says RS512.
        assert!(matches!(
            k.verify(Algorithm::RS512, b"m", b"s"),
            Err(KeyUseError::AlgMismatch { .. })
        ));
        // RSA key used for an EC alg.
        jwk["alg"] = json!(null);
        jwk.as_object_mut().unwrap().remove("alg");
        let set = KeySet::parse(json!({"keys": [jwk.clone()]}).to_string().as_bytes()).unwrap();
        let k = set.find(Some(key.kid())).unwrap();
        assert!(matches!(
            k.verify(Algorithm::ES256, b"m", b"s"),
            Err(KeyUseError::WrongType { .. })
        ));
        // use = enc.
        jwk["use"] = json!("enc");
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        let k = set.find(Some(key.kid())).unwrap();
        assert!(matches!(
            k.verify(Algorithm::RS256, b"m", b"s"),
            Err(KeyUseError::NotForSignatures { .. })
        ));
    }

    #[test]
    fn hygiene_drops_bad_keys() {
        let key = RsaSigningKey::generate().unwrap();
        let good = rsa_jwk(&key);
        let mut private = good.clone();
        private["kid"] = json!("private");
        private["d"] = json!("AQAB");
        let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let weak = json!({"kty": "RSA", "kid": "weak", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 128]), "e": "AQAB"});
        let even_e = json!({"kty": "RSA", "kid": "even", "n": good["n"], "e": "Ag"});
        let doc = json!({"keys": [good, private, oct, weak, even_e, "junk"]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        for kid in ["private", "hmac", "weak", "even"] {
            assert!(set.find(Some(kid)).is_none(), "{kid} should be dropped");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(KeySet::parse(b"<html>").unwrap_err(), JwksError::Shape);
        assert_eq!(KeySet::parse(b"{}").unwrap_err(), JwksError::Shape);
        assert_eq!(
            KeySet::parse(br#"{"keys":[]}"#).unwrap_err(),
            JwksError::NoUsableKeys(0)
        );
        assert_eq!(
            KeySet::parse(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).unwrap_err(),
            JwksError::NoUsableKeys(1)
        );
    }

    #[test]
    fn no_kid_with_several_keys_is_ambiguous() {
        let a = RsaSigningKey::generate().unwrap();
        let b = RsaSigningKey::generate().unwrap();
        let doc = json!({"keys": [rsa_jwk(&a), rsa_jwk(&b)]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert!(set.find(None).is_none());
        assert!(set.find(Some(b.kid())).is_some());
    }

    #[test]
    fn ecdsa_zero_signature_is_rejected() {
        // CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify.
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        use ring::signature::KeyPair as _;
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        let k = set.find(Some("ec")).unwrap();
        let good = pair.sign(&rng, b"msg").unwrap();
        k.verify(Algorithm::ES256, b"msg", good.as_ref()).unwrap();
        assert!(k.verify(Algorithm::ES256, b"msg", &[0u8; 64]).is_err());
        assert!(k.verify(Algorithm::ES384, b"msg", good.as_ref()).is_err());
    }
}
