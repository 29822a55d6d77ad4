//! Strict parsing of compact JWS tokens: exact structure, canonical base64url, duplicate-free JSON, and the header rules.
//!
//! Nothing here is trusted yet: the output is an [`UnverifiedJws`], whose
//! name says so. Only the verifier turns it into verified claims.

use super::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token's structure was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("token is {0} bytes; the limit is 16384")]
    TooLarge(usize),
    /// Not three dot-separated parts.
    #[error("token is not a compact JWS (expected header.payload.signature)")]
    NotCompact,
    /// A part is not canonical unpadded base64url.
    #[error("token {0} is not canonical unpadded base64url")]
    Base64(&'static str),
    /// A part is not a duplicate-free JSON object.
    #[error("token {part} is not valid JSON: {message}")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
        /// What the parser said.
        message: String,
    },
    /// A header member breaks the rules.
    #[error("token header: {0}")]
    Header(String),
}

/// A parsed but not yet verified JWS. `Debug` omits the signing input and
/// signature: together they are the token, a replayable bearer credential.
pub struct UnverifiedJws<'a> {
    /// The algorithm named by the header, already checked to be one tokenmint
    /// implements (never `none` or `HS*`). Whether the issuer allows it is a
    /// later check.
    pub alg: Algorithm,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The claims, unverified.
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The raw signature.
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for UnverifiedJws<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedJws")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("claims", &format_args!("[{} claims]", self.claims.len()))
            .field("signing_input", &"[REDACTED]")
            .field("signature", &"[REDACTED]")
            .finish()
    }
}

/// Parses a compact JWS, enforcing size, structure, encoding and header rules.
pub fn parse(token: &str) -> Result<UnverifiedJws<'_>, JoseError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JoseError::TooLarge(token.len()));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::NotCompact);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JoseError::NotCompact);
    }
    let header = decode_object(h, "header")?;
    let claims = decode_object(p, "payload")?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JoseError::Base64("signature"))?;

    let (alg, kid) = check_header(&header)?;
    // Exactly three parts: the signing input is all before the last dot.
    let Some((signing_input, _)) = token.rsplit_once('.') else {
        return Err(JoseError::NotCompact);
    };
    Ok(UnverifiedJws {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn decode_object(part: &str, name: &'static str) -> Result<Map<String, Value>, JoseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JoseError::Base64(name))?;
    match parse_strict_json(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JoseError::Json {
            part: name,
            message: "not a JSON object".into(),
        }),
        Err(e) => Err(JoseError::Json {
            part: name,
            message: e.to_string(),
        }),
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(Algorithm, Option<String>), JoseError> {
    let bad = |m: &str| JoseError::Header(m.to_owned());
    if header.contains_key("crit") {
        return Err(bad(
            "`crit` is present; tokenmint understands no critical extensions",
        ));
    }
    if header.contains_key("cty") {
        return Err(bad(
            "`cty` is present; nested or typed content is not accepted",
        ));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(bad("`typ` must be absent or \"JWT\"")),
    }
    // `jku`, `x5u`, `jwk` and `x5c` are deliberately ignored: keys only ever
    // come from the configured issuer's JWKS.
    let alg = match header.get("alg") {
        Some(Value::String(a)) => {
            Algorithm::parse(a).map_err(|e| JoseError::Header(e.to_string()))?
        }
        Some(_) => return Err(bad("`alg` must be a string")),
        None => return Err(bad("`alg` is missing")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(bad("`kid` must be a non-empty string of at most 256 bytes")),
    };
    Ok((alg, kid))
}

/// Parses JSON, rejecting duplicate object keys at any depth and trailing
/// data. serde_json alone silently keeps the last duplicate, which lets two
/// parsers disagree about a claim.
pub fn parse_strict_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    const H: &str = r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#;

    #[test]
    fn parses_well_formed() {
        let t = token(H, r#"{"iss":"x"}"#);
        let jws = parse(&t).unwrap();
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims["iss"], "x");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn debug_does_not_print_the_token() {
        let t = token(H, r#"{"iss":"x","secret":"s3cr3t"}"#);
        let jws = parse(&t).unwrap();
        let debug = format!("{jws:?}");
        assert!(!debug.contains(t.split('.').next().unwrap()), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn rejects_oversize_before_parsing() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            parse(&t).unwrap_err(),
            JoseError::TooLarge(MAX_TOKEN_BYTES + 1)
        );
        // Exactly at the limit is parsed (and fails on structure instead).
        let t = "a".repeat(MAX_TOKEN_BYTES);
        assert_eq!(parse(&t).unwrap_err(), JoseError::NotCompact);
    }

    #[test]
    fn rejects_wrong_part_counts() {
        for t in ["a.b", "a.b.c.d", "..", "a..c", ".b.c", "a.b."] {
            assert_eq!(parse(t).unwrap_err(), JoseError::NotCompact, "{t}");
        }
    }

    #[test]
    fn rejects_non_canonical_base64url() {
        let good = token(H, r#"{"a":1}"#);
        let parts: Vec<&str> = good.split('.').collect();
        // Padding.
        let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
        assert!(matches!(parse(&padded), Err(JoseError::Base64(_))));
        // Standard alphabet.
        let std_alpha = format!("{}.{}.ab+/", parts[0], parts[1]);
        assert!(matches!(
            parse(&std_alpha),
            Err(JoseError::Base64("signature"))
        ));
        // Non-zero trailing bits: "QR" decodes like "QQ" if extra bits were allowed.
        let trailing = format!("{}.{}.QR", parts[0], parts[1]);
        assert!(matches!(
            parse(&trailing),
            Err(JoseError::Base64("signature"))
        ));
        let canonical = format!("{}.{}.QQ", parts[0], parts[1]);
        assert!(parse(&canonical).is_ok());
    }

    #[test]
    fn rejects_duplicate_keys_anywhere() {
        let t = token(H, r#"{"sub":"a","sub":"b"}"#);
        assert!(matches!(
            parse(&t),
            Err(JoseError::Json {
                part: "payload",
                ..
            })
        ));
        let t = token(r#"{"alg":"RS256","alg":"none"}"#, "{}");
        assert!(matches!(
            parse(&t),
            Err(JoseError::Json { part: "header", .. })
        ));
        let t = token(H, r#"{"x":{"y":1,"y":2}}"#);
        assert!(parse(&t).is_err());
        let t = token(H, r#"{"x":[{"y":1,"y":2}]}"#);
        assert!(parse(&t).is_err());
    }

    #[test]
    fn rejects_non_objects_and_trailing_data() {
        assert!(parse(&token(H, "[]")).is_err());
        assert!(parse(&token(H, r#"{"a":1} x"#)).is_err());
        assert!(parse(&token("\"RS256\"", "{}")).is_err());
        assert!(parse(&token(H, "\u{feff}{}")).is_err());
    }

    #[test]
    fn header_rules() {
        let cases = [
            (r#"{"alg":"none"}"#, "none"),
            (r#"{"alg":"None"}"#, "none"),
            (r#"{"alg":"HS256"}"#, "HS256"),
            (r#"{"alg":"RS256","crit":["exp"]}"#, "crit"),
            (r#"{"alg":"RS256","cty":"JWT"}"#, "cty"),
            (r#"{"alg":"RS256","typ":"at+jwt"}"#, "typ"),
            (r#"{"alg":"RS256","typ":1}"#, "typ"),
            (r#"{"typ":"JWT"}"#, "alg missing"),
            (r#"{"alg":["RS256"]}"#, "alg type"),
            (r#"{"alg":"RS256","kid":7}"#, "kid type"),
            (r#"{"alg":"RS256","kid":""}"#, "kid empty"),
        ];
        for (h, why) in cases {
            assert!(
                matches!(parse(&token(h, "{}")), Err(JoseError::Header(_))),
                "{why}: {h}"
            );
        }
    }

    #[test]
    fn key_hint_headers_are_ignored_not_trusted() {
        let h = r#"{"alg":"RS256","jku":"https://evil/jwks","x5u":"https://evil/c","jwk":{"kty":"RSA"},"x5c":["AA"]}"#;
        let t = token(h, "{}");
        let jws = parse(&t).unwrap();
        assert_eq!(jws.kid, None);
    }

    #[test]
    fn typ_absent_or_jwt() {
        assert!(parse(&token(r#"{"alg":"RS256"}"#, "{}")).is_ok());
        assert!(parse(&token(r#"{"alg":"RS256","typ":"jwt"}"#, "{}")).is_ok());
    }
}
