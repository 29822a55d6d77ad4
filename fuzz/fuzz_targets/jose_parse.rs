//! Fuzz `oidc::jose::parse`: never panics, and whatever it accepts obeys the structural rules.
//!
//! Input mode (first byte, low bit): `0` feeds the rest as the token text;
//! `1` splits the rest at `0xFF` bytes into header JSON, payload JSON and
//! signature bytes and base64url-encodes them, so the fuzzer explores the
//! JSON and header rules instead of fighting the encoding.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use tokenmint::oidc::jose::{parse, MAX_TOKEN_BYTES};
use tokenmint::oidc::Algorithm;
use tokenmint_fuzz::has_duplicate_keys;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        let mut parts = rest.splitn(3, |b| *b == 0xFF);
        let header = parts.next().unwrap_or_default();
        let payload = parts.next().unwrap_or_default();
        let signature = parts.next().unwrap_or_default();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    };
    check(&token);
});

fn check(token: &str) {
    let Ok(jws) = parse(token) else {
        return;
    };
    // Size and shape.
    assert!(token.len() <= MAX_TOKEN_BYTES);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "accepted a token without exactly three parts"
    );
    assert!(parts.iter().all(|p| !p.is_empty()));

    // The algorithm is one tokenmint implements, never none/HS*.
    assert_eq!(Algorithm::parse(jws.alg.as_str()), Ok(jws.alg));
    let name = jws.alg.as_str();
    assert!(!name.eq_ignore_ascii_case("none") && !name.to_ascii_uppercase().starts_with("HS"));

    // The signing input is exactly the first two parts, a prefix of the token.
    assert!(token.starts_with(jws.signing_input));
    assert_eq!(jws.signing_input.len(), parts[0].len() + 1 + parts[1].len());
    assert_eq!(&token[jws.signing_input.len()..][..1], ".");

    // Every part is canonical: decoding and re-encoding gives it back.
    let mut decoded = Vec::new();
    for part in &parts {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .expect("accepted part must decode");
        assert_eq!(
            &URL_SAFE_NO_PAD.encode(&bytes),
            part,
            "non-canonical base64url accepted"
        );
        decoded.push(bytes);
    }
    assert_eq!(jws.signature, decoded[2]);

    // Header and payload are JSON objects without duplicate keys, by an
    // independent check.
    for json in &decoded[..2] {
        assert_eq!(
            has_duplicate_keys(json),
            Some(false),
            "duplicate keys accepted"
        );
    }
    let header: serde_json::Value = serde_json::from_slice(&decoded[0]).unwrap();
    let header = header.as_object().expect("header must be an object");
    assert!(!header.contains_key("crit") && !header.contains_key("cty"));
    match header.get("typ") {
        None => {}
        Some(t) => assert!(t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))),
    }
    assert_eq!(header.get("alg").and_then(|a| a.as_str()), Some(name));
    assert_eq!(
        header.get("kid").and_then(|k| k.as_str()),
        jws.kid.as_deref()
    );
    let payload: serde_json::Value = serde_json::from_slice(&decoded[1]).unwrap();
    assert_eq!(payload.as_object(), Some(&jws.claims));
}
