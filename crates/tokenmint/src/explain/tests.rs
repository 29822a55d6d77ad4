//! `policy explain` tests against the real local issuer: allowed, denied with the failing condition, claims-only, and an expired token's failed time check.

use super::*;
use crate::clock::{Clock as _, SystemClock};
use crate::dev::issuer::{DevIssuer, IssuerConfig as DevConfig};
use crate::keys::RsaSigningKey;
use std::path::Path;
use std::time::Duration;

async fn dev() -> DevIssuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    DevIssuer::spawn(listener, DevConfig::new("request-token"))
        .await
        .unwrap()
}

/// A config with one issuer (the dev issuer) and two brokers: `app-main`
/// (matches the dev issuer's default push to main) and `app-prod` (needs
/// the `prod` environment).
fn config(issuer_url: &str) -> Config {
    let (_, pem) = RsaSigningKey::generate_pem().unwrap();
    let text = format!(
        r#"
[github]
app_id = "1"
private_key_env = "PEM"

[[issuer]]
name = "dev"
url = "{issuer_url}"
audiences = ["tokenmint"]

[[broker]]
name = "app-main"
issuer = "dev"
repository = "acme/app"
permissions = {{ contents = "read" }}
[broker.claims]
repository_id = "123456789"
ref = "refs/heads/main"

[[broker]]
name = "app-prod"
issuer = "dev"
repository = "acme/app"
permissions = {{ contents = "write" }}
[broker.claims]
repository_id = "123456789"
environment = "prod"
"#
    );
    Config::parse(&text, Path::new("/tmp/t.toml"), &|_| Some(pem.clone())).unwrap()
}

fn verifier(config: &Config) -> Verifier {
    Verifier::with_timeouts(
        &config.issuers,
        Duration::from_millis(800),
        Duration::from_millis(1500),
    )
    .unwrap()
}

fn check<'a>(e: &'a Explanation, name: &str) -> &'a Check {
    e.checks.iter().find(|c| c.name == name).unwrap()
}

fn now() -> OffsetDateTime {
    SystemClock.now()
}

#[tokio::test]
async fn a_good_token_is_allowed_with_every_check_passed() {
    let dev = dev().await;
    let config = config(&dev.issuer_url());
    let token = dev.mint("tokenmint", Value::Null).unwrap();
    let e = explain_token(&config, "app-main", &token, Some(&verifier(&config)), now())
        .await
        .unwrap();
    assert!(e.allowed, "{e}");
    assert_eq!(e.mode, Mode::Verified);
    for name in [
        "structure",
        "issuer",
        "broker issuer",
        "algorithm",
        "signature",
        "required claims",
        "time",
        "audience",
    ] {
        assert!(check(&e, name).passed(), "{name}: {e}");
    }
    assert_eq!(e.conditions.len(), 2);
    assert!(e.conditions.iter().all(|c| c.passed));
    let text = e.to_string();
    assert!(text.contains("result: ALLOWED"), "{text}");
    assert!(
        !text.contains("eyJ"),
        "the token must not be echoed: {text}"
    );
    assert_eq!(e.to_json()["allowed"], true);
}

#[tokio::test]
async fn a_failing_condition_denies_and_is_shown_with_the_actual_value() {
    let dev = dev().await;
    let config = config(&dev.issuer_url());
    let token = dev
        .mint(
            "tokenmint",
            serde_json::json!({"environment": "staging\u{202e}"}),
        )
        .unwrap();
    let e = explain_token(&config, "app-prod", &token, Some(&verifier(&config)), now())
        .await
        .unwrap();
    assert!(!e.allowed, "{e}");
    assert!(check(&e, "signature").passed(), "{e}");
    let env = e
        .conditions
        .iter()
        .find(|c| c.claim == "environment")
        .unwrap();
    assert!(!env.passed);
    assert_eq!(env.actual.as_deref(), Some("staging\u{202e}"));
    let rid = e
        .conditions
        .iter()
        .find(|c| c.claim == "repository_id")
        .unwrap();
    assert!(
        rid.passed,
        "every condition is evaluated, not only up to the first failure"
    );
    let text = e.to_string();
    assert!(
        text.contains(r#"FAIL environment = "staging\u{202e}"; expected one of ["prod"]"#),
        "the value is escaped: {text}"
    );
    assert!(text.contains("result: DENIED"), "{text}");
    let json = e.to_json();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["policy_allowed"], false);
}

#[tokio::test]
async fn an_expired_token_fails_the_time_check_but_shows_conditions() {
    let dev = dev().await;
    let config = config(&dev.issuer_url());
    let t = now().unix_timestamp();
    let token = dev
        .mint(
            "tokenmint",
            serde_json::json!({"iat": t - 1000, "nbf": t - 1000, "exp": t - 700}),
        )
        .unwrap();
    let e = explain_token(&config, "app-main", &token, Some(&verifier(&config)), now())
        .await
        .unwrap();
    assert!(!e.allowed);
    assert!(check(&e, "signature").passed(), "{e}");
    let time = check(&e, "time");
    assert_eq!(time.status, CheckStatus::Failed, "{e}");
    assert!(time.detail.contains("expired"), "{}", time.detail);
    assert_eq!(check(&e, "audience").status, CheckStatus::Skipped);
    assert!(e.policy_allowed(), "the policy itself holds: {e}");
}

#[tokio::test]
async fn no_verify_skips_the_signature_and_fetches_nothing() {
    let dev = dev().await;
    let config = config(&dev.issuer_url());
    // Signed by a key the issuer never published: verification would fail.
    let stranger = RsaSigningKey::generate().unwrap();
    let t = now().unix_timestamp();
    let claims = serde_json::json!({
        "iss": dev.issuer_url(), "sub": "repo:acme/app:ref:refs/heads/main", "aud": "tokenmint",
        "iat": t, "exp": t + 300, "repository_id": "123456789", "ref": "refs/heads/main"
    });
    let token = stranger.sign_jwt(&claims, true).unwrap();
    let e = explain_token(&config, "app-main", &token, None, now())
        .await
        .unwrap();
    assert_eq!(e.mode, Mode::ClaimsOnlyNoVerify);
    assert_eq!(check(&e, "signature").status, CheckStatus::Skipped);
    assert!(e.allowed, "{e}");
    assert!(e.to_string().contains("if the signature is good"));
    assert_eq!(dev.jwks_fetch_count(), 0);
    assert_eq!(e.to_json()["signature_checked"], false);

    // The same token, verified, fails on the signature.
    let e = explain_token(&config, "app-main", &token, Some(&verifier(&config)), now())
        .await
        .unwrap();
    assert!(!e.allowed);
    assert_eq!(check(&e, "signature").status, CheckStatus::Failed, "{e}");
}

#[tokio::test]
async fn a_claims_file_is_claims_only_and_checks_the_issuer_binding() {
    let config = config("https://issuer.example");
    let t = now().unix_timestamp();
    let mut claims = serde_json::json!({
        "iss": "https://issuer.example", "sub": "x", "aud": "tokenmint",
        "iat": t, "exp": t + 300, "repository_id": "123456789", "environment": "prod"
    });
    let map = claims.as_object().unwrap().clone();
    let e = explain_claims(&config, "app-prod", &map, now()).unwrap();
    assert_eq!(e.mode, Mode::ClaimsOnlyFile);
    assert!(e.allowed, "{e}");
    assert!(e.to_string().contains("claims only"));

    claims["iss"] = "https://elsewhere.example".into();
    let e = explain_claims(&config, "app-prod", claims.as_object().unwrap(), now()).unwrap();
    assert!(!e.allowed);
    assert_eq!(check(&e, "issuer").status, CheckStatus::Failed);
    assert_eq!(check(&e, "broker issuer").status, CheckStatus::Failed);
    assert_eq!(check(&e, "time").status, CheckStatus::Skipped);
    assert!(e.policy_allowed(), "conditions are still shown: {e}");
}

#[tokio::test]
async fn garbage_fails_structure_and_unknown_broker_is_an_error() {
    let config = config("https://issuer.example");
    let e = explain_token(&config, "app-main", "not-a-jwt", None, now())
        .await
        .unwrap();
    assert!(!e.allowed);
    assert_eq!(check(&e, "structure").status, CheckStatus::Failed);
    assert!(e.conditions.is_empty());
    let err = explain_token(&config, "nope", "a.b.c", None, now())
        .await
        .unwrap_err();
    assert!(matches!(err, ExplainError::UnknownBroker { .. }), "{err}");
}
