//! Fuzz JWKS parsing and key use: `oidc::testing::parse_jwks` and `verify_with_jwks` never panic, and a parsed set is never empty.
//!
//! The first byte picks the algorithm and whether a `kid` is looked up; the
//! rest is split at the first `0xFF` into the JWKS document and the bytes
//! used as both message and signature.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use tokenmint::oidc::testing::{parse_jwks, verify_with_jwks};
use tokenmint::oidc::Algorithm;

const ALGS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (doc, tail) = match rest.iter().position(|b| *b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    if let Ok(n) = parse_jwks(doc) {
        assert!(n >= 1, "an accepted JWKS must hold a usable key");
    }
    let alg = ALGS[usize::from(selector & 7)];
    let kid = if selector & 8 == 0 { None } else { Some("k") };
    let (message, signature) = tail.split_at(tail.len() / 2);
    let _ = verify_with_jwks(doc, kid, alg, message, signature);
});
