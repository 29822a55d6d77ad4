//! Fuzz `parse_strict_json` against plain `serde_json`: the same value whenever there is no duplicate key, and a refusal whenever there is one.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenmint::oidc::jose::parse_strict_json;
use tokenmint_fuzz::has_duplicate_keys;

fuzz_target!(|data: &[u8]| {
    let strict = parse_strict_json(data);
    let lax = serde_json::from_slice::<Value>(data);
    match (has_duplicate_keys(data), &strict, &lax) {
        // Not JSON at all: both refuse.
        (None, s, l) => {
            assert!(s.is_err(), "strict accepted what the reference refused");
            assert!(l.is_err(), "serde_json accepted what the reference refused");
        }
        // Duplicates: strict refuses (serde_json keeps the last one).
        (Some(true), s, _) => assert!(s.is_err(), "duplicate key accepted"),
        // No duplicates: both accept, with the same value.
        (Some(false), Ok(s), Ok(l)) => assert_eq!(s, l),
        (Some(false), s, l) => {
            panic!("disagreement without duplicates: strict {s:?}, serde_json {l:?}")
        }
    }
});
