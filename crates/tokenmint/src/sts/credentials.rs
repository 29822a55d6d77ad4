//! tokenmint's own STS credentials: access key ids, secret keys derived by HMAC (never stored), and MAC-sealed session tokens.
//!
//! - `AccessKeyId`: `ASIA` plus 16 random characters from `A-Z2-7`.
//! - `SecretAccessKey`: the first 30 bytes of
//!   `HMAC-SHA256(K_secret, AccessKeyId)`, base64 (40 characters). It is
//!   derived again whenever a signature is checked, so it is never stored.
//! - `SessionToken`: `tm1.` + base64url(JSON session) + `.` +
//!   base64url(`HMAC-SHA256(K_token, "tm1." + base64url(JSON))`). It carries
//!   the access key id, role, session name, subject and expiry, so checking a
//!   credential needs no database lookup; the audit log records the
//!   SHA-256 of the session token for every credential issued.
//!
//! `K_secret` and `K_token` are separate HMAC keys derived from the
//! configured [`StsKey`] (`[sts] secret_file`, or random per process).

use crate::config::StsKey;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::Rng as _;
use ring::hmac;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The session token's format prefix.
const TOKEN_PREFIX: &str = "tm1.";
/// Longest session token accepted for opening (the subject is bounded when issued).
const MAX_TOKEN_BYTES: usize = 8192;
/// base32 alphabet used for key ids and role ids, as AWS's ids use.
const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The keys credentials are derived from. `Debug` redacts them.
pub(crate) struct Keys {
    secret: hmac::Key,
    token: hmac::Key,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(REDACTED)")
    }
}

/// What a session token says. Nothing in it is secret; the MAC makes it
/// unforgeable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The access key id the token belongs to.
    pub(crate) akid: String,
    /// The assumed role's ARN.
    pub(crate) role: String,
    /// `RoleSessionName`.
    pub(crate) session: String,
    /// The web identity token's `sub`.
    pub(crate) sub: String,
    /// Expiry, Unix seconds.
    pub(crate) exp: i64,
}

/// Why a session token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    /// Not `tm1.<payload>.<mac>`, or too long.
    Malformed,
    /// The MAC does not verify (another server's key, or tampering).
    BadMac,
}

impl Keys {
    /// Derives the two keys from the configured secret.
    pub(crate) fn new(key: &StsKey) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret());
        let derive = |label: &str| {
            hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(&root, label.as_bytes()).as_ref(),
            )
        };
        Self {
            secret: derive("tokenmint sts secret-access-key v1"),
            token: derive("tokenmint sts session-token v1"),
        }
    }

    /// The secret access key of `akid`.
    pub(crate) fn secret_access_key(&self, akid: &str) -> SecretString {
        let tag = hmac::sign(&self.secret, akid.as_bytes());
        SecretString::from(STANDARD.encode(&tag.as_ref()[..30]))
    }

    /// Seals `session` into a session token.
    pub(crate) fn seal(&self, session: &Session) -> SecretString {
        let payload = serde_json::to_vec(session).unwrap_or_default();
        let signed = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let mac = hmac::sign(&self.token, signed.as_bytes());
        SecretString::from(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref())))
    }

    /// Opens a session token: checks its MAC, then parses it.
    pub(crate) fn open(&self, token: &str) -> Result<Session, TokenProblem> {
        if token.len() > MAX_TOKEN_BYTES || !token.starts_with(TOKEN_PREFIX) {
            return Err(TokenProblem::Malformed);
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenProblem::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenProblem::Malformed)?;
        hmac::verify(&self.token, signed.as_bytes(), &mac).map_err(|_| TokenProblem::BadMac)?;
        let body = signed
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenProblem::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenProblem::Malformed)?;
        serde_json::from_slice(&payload).map_err(|_| TokenProblem::Malformed)
    }
}

/// A fresh access key id: `ASIA` + 16 random base32 characters.
pub(crate) fn new_access_key_id() -> String {
    let mut rng = rand::thread_rng();
    let mut id = String::from("ASIA");
    for _ in 0..16 {
        id.push(char::from(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())]));
    }
    id
}

/// The role's stable unique id: `AROA` + 17 base32 characters derived from
/// its ARN (AWS assigns these at creation; ours are stable per ARN).
pub(crate) fn role_id(role_arn: &str) -> String {
    let digest = Sha256::digest(role_arn.as_bytes());
    let mut id = String::from("AROA");
    for byte in digest.iter().take(17) {
        id.push(char::from(ID_ALPHABET[usize::from(byte & 31)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn keys(byte: u8) -> Keys {
        Keys::new(&StsKey::from_bytes([byte; 32]))
    }

    fn session() -> Session {
        Session {
            akid: "ASIAABCDEFGHIJKLMNOP".into(),
            role: "arn:aws:iam::123456789012:role/ci/deployer".into(),
            session: "build-1".into(),
            sub: "repo:acme/app:ref:refs/heads/main".into(),
            exp: 1_900_000_000,
        }
    }

    #[test]
    fn ids_look_like_aws_ids() {
        let id = new_access_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("ASIA"));
        assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)));
        assert_ne!(new_access_key_id(), id);
        let role = role_id("arn:aws:iam::123456789012:role/x");
        assert_eq!(role.len(), 21);
        assert!(role.starts_with("AROA"));
        assert_eq!(role, role_id("arn:aws:iam::123456789012:role/x"));
        assert_ne!(role, role_id("arn:aws:iam::123456789012:role/y"));
    }

    #[test]
    fn secret_keys_depend_on_the_server_key_and_the_key_id() {
        let a = keys(1).secret_access_key("ASIAAAAA");
        assert_eq!(a.expose_secret().len(), 40);
        assert_eq!(
            a.expose_secret(),
            keys(1).secret_access_key("ASIAAAAA").expose_secret()
        );
        assert_ne!(
            a.expose_secret(),
            keys(2).secret_access_key("ASIAAAAA").expose_secret()
        );
        assert_ne!(
            a.expose_secret(),
            keys(1).secret_access_key("ASIAAAAB").expose_secret()
        );
        assert!(!format!("{:?}", keys(1)).contains("1"));
    }

    #[test]
    fn session_tokens_round_trip_and_resist_tampering() {
        let k = keys(7);
        let token = k.seal(&session());
        let token = token.expose_secret();
        assert!(token.starts_with("tm1."));
        assert_eq!(k.open(token), Ok(session()));
        // Another server's key.
        assert_eq!(keys(8).open(token), Err(TokenProblem::BadMac));
        // A changed payload with the old MAC.
        let (signed, mac) = token.rsplit_once('.').unwrap();
        let mut other = session();
        other.role = "arn:aws:iam::123456789012:role/admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        let forged = format!("tm1.{forged_payload}.{mac}");
        assert_eq!(k.open(&forged), Err(TokenProblem::BadMac));
        assert_eq!(k.open(signed), Err(TokenProblem::BadMac));
        assert_eq!(k.open("garbage"), Err(TokenProblem::Malformed));
        assert!(k.open(&format!("{token}x")).is_err());
    }
}
