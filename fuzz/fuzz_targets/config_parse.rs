//! Fuzz `Config::parse` on arbitrary TOML text: never panics, and an accepted config holds its invariants.
//!
//! `private_key_env = "APP_KEY"` reads a fixed, valid App key, made once per
//! process. Generating an RSA key in-process takes over a minute under the
//! sanitizer, so `run.sh` generates one with openssl and passes its path in
//! `TOKENMINT_FUZZ_APP_KEY_FILE`; without it the target generates its own.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;
use tokenmint::config::Config;
use tokenmint::keys::RsaSigningKey;

fn pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        std::env::var("TOKENMINT_FUZZ_APP_KEY_FILE")
            .ok()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .filter(|pem| RsaSigningKey::from_pem(pem.as_bytes()).is_ok())
            .unwrap_or_else(|| RsaSigningKey::generate_pem().unwrap().1)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "APP_KEY").then(|| pem().to_owned());
    let Ok(config) = Config::parse(text, Path::new("/nonexistent/tokenmint.toml"), &env) else {
        return;
    };
    assert!(!config.issuers.is_empty());
    assert!(!config.brokers.is_empty());
    for issuer in &config.issuers {
        assert!(!issuer.audiences.is_empty() && !issuer.algorithms.is_empty());
        assert!(issuer.leeway.as_secs() <= 300);
    }
    for (name, broker) in &config.brokers {
        assert_eq!(name, &broker.name);
        assert!(config.issuers.iter().any(|i| i.name == broker.issuer));
        if let tokenmint::config::BrokerPolicy::Claims(policy) = &broker.policy {
            assert!(
                policy.conditions().count() >= 1,
                "a broker without conditions"
            );
        }
    }
});
