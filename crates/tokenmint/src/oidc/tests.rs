//! Verifier tests against the real local issuer over loopback: one test per verification rule, plus the key cache's behaviour.

use super::*;
use crate::dev::issuer::{DevIssuer, IssuerConfig as DevConfig, JwksMode};
use crate::keys::RsaSigningKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use time::Duration as TimeDelta;

const AUD: &str = "tokenmint";

async fn dev() -> DevIssuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    DevIssuer::spawn(listener, DevConfig::new("request-token"))
        .await
        .unwrap()
}

fn issuer_config(dev: &DevIssuer) -> IssuerConfig {
    config_for(&dev.issuer_url())
}

fn config_for(url: &str) -> IssuerConfig {
    IssuerConfig {
        name: "dev".into(),
        url: url.to_owned(),
        audiences: vec![AUD.into()],
        algorithms: vec![Algorithm::RS256],
        jwks_url: None,
        max_token_age: Duration::from_secs(900),
        max_token_lifetime: Duration::from_secs(21_600),
        leeway: Duration::from_secs(60),
        single_use: false,
    }
}

fn verifier(configs: Vec<IssuerConfig>) -> Verifier {
    let configs: Vec<_> = configs.into_iter().map(Arc::new).collect();
    Verifier::with_timeouts(
        &configs,
        Duration::from_millis(500),
        Duration::from_millis(800),
    )
    .unwrap()
}

/// A verifier whose fetches outlast the slow modes used below.
fn patient_verifier(configs: Vec<IssuerConfig>) -> Verifier {
    let configs: Vec<_> = configs.into_iter().map(Arc::new).collect();
    Verifier::with_timeouts(&configs, Duration::from_secs(2), Duration::from_secs(10)).unwrap()
}

/// Waits (boundedly, generously: the test machine may be busy) until `done`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The reason of a [`VerifyError::KeysUnavailable`], or a panic.
fn unavailable_reason(r: Result<VerifiedClaims, Rejection>) -> String {
    match err(r) {
        VerifyError::KeysUnavailable { reason, .. } => reason,
        other => panic!("expected KeysUnavailable, got {other:?}"),
    }
}

/// A fixed "now" a little in the past, so tokens are built relative to it.
fn now() -> OffsetDateTime {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// A token valid at `at`.
fn token_at(dev: &DevIssuer, at: OffsetDateTime, extra: Value) -> String {
    let t = at.unix_timestamp();
    let mut o = json!({"iat": t, "nbf": t, "exp": t + 300});
    if let (Some(o), Value::Object(e)) = (o.as_object_mut(), extra) {
        o.extend(e);
    }
    dev.mint(AUD, o).unwrap()
}

fn err(r: Result<VerifiedClaims, Rejection>) -> VerifyError {
    r.unwrap_err().error
}

/// Builds a token with a hand-written header and payload, signed by `key`.
fn raw_token(key: &RsaSigningKey, header: &str, payload: &str) -> String {
    key.sign_raw(header.as_bytes(), payload.as_bytes()).unwrap()
}

fn header_for(key: &RsaSigningKey) -> String {
    format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{}"}}"#, key.kid())
}

fn payload(dev: &DevIssuer, at: OffsetDateTime, extra: Value) -> Value {
    let t = at.unix_timestamp();
    let mut p = json!({"iss": dev.issuer_url(), "sub": "repo:acme/app:ref:refs/heads/main", "aud": AUD, "iat": t, "nbf": t, "exp": t + 300});
    if let (Some(o), Value::Object(e)) = (p.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                o.remove(&k);
            } else {
                o.insert(k, v);
            }
        }
    }
    p
}

#[tokio::test]
async fn accepts_a_good_token_and_exposes_claims() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let claims = v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    assert_eq!(claims.issuer_name(), "dev");
    assert_eq!(claims.iss(), dev.issuer_url());
    assert_eq!(claims.str_claim("repository"), Some("acme/app"));
    assert_eq!(dev.discovery_fetch_count(), 1);
    assert_eq!(dev.jwks_fetch_count(), 1);
    // Cached: a second token costs no fetch.
    v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    assert_eq!(dev.jwks_fetch_count(), 1);
}

#[tokio::test]
async fn unknown_issuer_is_rejected_without_any_fetch() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    for iss in [
        "https://evil.example",
        &format!("{}/", dev.issuer_url()),
        &dev.issuer_url().to_uppercase(),
    ] {
        let t = token_at(&dev, t0, json!({"iss": iss}));
        assert!(
            matches!(err(v.verify(&t, t0).await), VerifyError::UnknownIssuer(_)),
            "{iss}"
        );
    }
    let t = token_at(&dev, t0, json!({"iss": null}));
    assert_eq!(err(v.verify(&t, t0).await), VerifyError::NoIssuer);
    assert_eq!(
        dev.discovery_fetch_count() + dev.jwks_fetch_count(),
        0,
        "an unknown iss must never cause a fetch"
    );
}

#[tokio::test]
async fn oversized_and_malformed_tokens_cause_no_fetch() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let big = token_at(&dev, t0, json!({"pad": "x".repeat(17 * 1024)}));
    assert!(matches!(
        err(v.verify(&big, t0).await),
        VerifyError::Malformed(JoseError::TooLarge(_))
    ));
    assert!(matches!(
        err(v.verify("a.b", t0).await),
        VerifyError::Malformed(_)
    ));
    assert_eq!(dev.jwks_fetch_count(), 0);
}

#[tokio::test]
async fn discovery_issuer_must_match() {
    let dev = dev().await;
    // Configure the issuer with a trailing slash: discovery answers without it.
    let mut cfg = issuer_config(&dev);
    cfg.url = format!("{}/", dev.issuer_url());
    let v = verifier(vec![cfg.clone()]);
    let t0 = now();
    let t = token_at(&dev, t0, json!({"iss": cfg.url}));
    match err(v.verify(&t, t0).await) {
        VerifyError::KeysUnavailable { reason, .. } => {
            assert!(reason.contains("names issuer"), "{reason}")
        }
        other => panic!("expected KeysUnavailable, got {other:?}"),
    }
    assert_eq!(
        dev.jwks_fetch_count(),
        0,
        "a mismatched discovery document must not lead to its jwks_uri"
    );
}

#[tokio::test]
async fn jwks_url_skips_discovery() {
    let dev = dev().await;
    let mut cfg = issuer_config(&dev);
    cfg.jwks_url =
        Some(url::Url::parse(&format!("{}/.well-known/jwks", dev.issuer_url())).unwrap());
    let v = verifier(vec![cfg]);
    let t0 = now();
    v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    assert_eq!(dev.discovery_fetch_count(), 0);
    assert_eq!(dev.jwks_fetch_count(), 1);
}

#[tokio::test]
async fn algorithm_must_be_allowed_for_the_issuer() {
    let dev = dev().await;
    let mut cfg = issuer_config(&dev);
    cfg.algorithms = vec![Algorithm::PS256];
    let v = verifier(vec![cfg]);
    let t0 = now();
    assert!(matches!(
        err(v.verify(&token_at(&dev, t0, json!({})), t0).await),
        VerifyError::DisallowedAlgorithm { .. }
    ));
    assert_eq!(dev.jwks_fetch_count(), 0);
}

#[tokio::test]
async fn hostile_headers_are_rejected() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let key = dev.current_key();
    let p = payload(&dev, t0, json!({})).to_string();
    let kid = key.kid().to_owned();
    // alg none, unsigned.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(&p)
    );
    assert!(matches!(
        err(v.verify(&none, t0).await),
        VerifyError::Malformed(_)
    ));
    // HS256 "signed" with the RSA public key as the HMAC secret.
    let h = format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&h),
        URL_SAFE_NO_PAD.encode(&p)
    );
    let secret = serde_json::to_vec(&key.public_jwk()).unwrap();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert!(matches!(
        err(v.verify(&hs, t0).await),
        VerifyError::Malformed(_)
    ));
    // crit, cty, wrong typ.
    for h in [
        format!(r#"{{"alg":"RS256","kid":"{kid}","crit":["exp"],"exp":1}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","cty":"JWT"}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","typ":"JOSE+JSON"}}"#),
    ] {
        assert!(
            matches!(
                err(v.verify(&raw_token(&key, &h, &p), t0).await),
                VerifyError::Malformed(_)
            ),
            "{h}"
        );
    }
    // jku/jwk injection pointing at an attacker key: ignored, so the attacker's signature fails.
    let attacker = RsaSigningKey::generate().unwrap();
    let jwk = serde_json::to_string(&attacker.public_jwk()).unwrap();
    let h =
        format!(r#"{{"alg":"RS256","kid":"{kid}","jku":"http://127.0.0.1:1/jwks","jwk":{jwk}}}"#);
    assert!(matches!(
        err(v.verify(&raw_token(&attacker, &h, &p), t0).await),
        VerifyError::Signature(KeyUseError::BadSignature { .. })
    ));
    // The same header signed by the real key passes: the hints are only ignored.
    v.verify(&raw_token(&key, &h, &p), t0).await.unwrap();
}

#[tokio::test]
async fn duplicate_claims_are_rejected() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let key = dev.current_key();
    let p = payload(&dev, t0, json!({})).to_string();
    let dup = p.replacen('{', r#"{"sub":"repo:evil/x:ref:refs/heads/main","#, 1);
    assert!(matches!(
        err(v
            .verify(&raw_token(&key, &header_for(&key), &dup), t0)
            .await),
        VerifyError::Malformed(_)
    ));
}

#[tokio::test]
async fn bad_signature_is_rejected() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let good = token_at(&dev, t0, json!({}));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["repository"] = json!("acme/other");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = parts.join(".");
    assert!(matches!(
        err(v.verify(&forged, t0).await),
        VerifyError::Signature(KeyUseError::BadSignature { .. })
    ));
}

#[tokio::test]
async fn kid_of_another_issuer_is_unknown_here() {
    let a = dev().await;
    let b = dev().await;
    let mut cb = issuer_config(&b);
    cb.name = "other".into();
    let v = verifier(vec![issuer_config(&a), cb]);
    let t0 = now();
    // Warm B's cache so its key is known to tokenmint.
    v.verify(&token_at(&b, t0, json!({})), t0).await.unwrap();
    // A token claiming issuer A, signed with B's key and kid.
    let key = b.current_key();
    let p = payload(&a, t0, json!({})).to_string();
    let e = err(v.verify(&raw_token(&key, &header_for(&key), &p), t0).await);
    assert!(
        matches!(e, VerifyError::Key(KeyLookupError::UnknownKid(_))),
        "{e:?}"
    );
}

#[tokio::test]
async fn required_claims_are_enforced() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let key = dev.current_key();
    for (claim, expected) in [
        ("sub", "sub"),
        ("aud", "aud"),
        ("exp", "exp"),
        ("iat", "iat"),
    ] {
        let p = payload(&dev, t0, json!({ claim: null })).to_string();
        let e = err(v.verify(&raw_token(&key, &header_for(&key), &p), t0).await);
        assert_eq!(e, VerifyError::MissingClaim(expected), "{claim}");
    }
    for bad in [
        json!({"exp": "soon"}),
        json!({"iat": 1.5}),
        json!({"nbf": "x"}),
        json!({"sub": ""}),
        json!({"sub": 5}),
        json!({"aud": []}),
        json!({"aud": [AUD, 7]}),
        json!({"aud": {"x": 1}}),
    ] {
        let p = payload(&dev, t0, bad.clone()).to_string();
        let e = err(v.verify(&raw_token(&key, &header_for(&key), &p), t0).await);
        assert!(matches!(e, VerifyError::BadClaim { .. }), "{bad}: {e:?}");
    }
}

#[tokio::test]
async fn time_rules_with_leeway_boundaries() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let t = t0.unix_timestamp();
    let check = |extra: Value, at: OffsetDateTime| {
        let token = token_at(&dev, t0, extra);
        let v = &v;
        async move { v.verify(&token, at).await.map(|_| ()).map_err(|r| r.error) }
    };
    // exp: valid until exp + leeway (exclusive).
    let exp = t + 100;
    assert!(
        check(json!({"exp": exp}), t0 + TimeDelta::seconds(100 + 59))
            .await
            .is_ok()
    );
    assert_eq!(
        check(json!({"exp": exp}), t0 + TimeDelta::seconds(160)).await,
        Err(VerifyError::Expired { exp })
    );
    // nbf: up to leeway in the future is fine.
    assert!(check(json!({"nbf": t + 60}), t0).await.is_ok());
    assert_eq!(
        check(json!({"nbf": t + 61}), t0).await,
        Err(VerifyError::NotYetValid { nbf: t + 61 })
    );
    // iat in the future beyond leeway.
    assert_eq!(
        check(json!({"iat": t + 61, "nbf": t}), t0).await,
        Err(VerifyError::IssuedInFuture { iat: t + 61 })
    );
    assert!(check(json!({"iat": t + 60, "nbf": t}), t0).await.is_ok());
    // Too old: now - iat > max age (900), even though exp is far away.
    assert_eq!(
        check(json!({"iat": t - 901, "nbf": t - 901, "exp": t + 3600}), t0).await,
        Err(VerifyError::TooOld { age: 901, max: 900 })
    );
    assert!(
        check(json!({"iat": t - 900, "nbf": t - 900, "exp": t + 3600}), t0)
            .await
            .is_ok()
    );
    // Lifetime: exp - iat over the limit.
    assert_eq!(
        check(json!({"exp": t + 21_601}), t0).await,
        Err(VerifyError::LifetimeTooLong {
            lifetime: 21_601,
            max: 21_600
        })
    );
}

#[tokio::test]
async fn audience_string_or_array() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    assert!(v
        .verify(
            &token_at(&dev, t0, json!({"aud": ["other", AUD, "third"]})),
            t0
        )
        .await
        .is_ok());
    for aud in [
        json!("sts.amazonaws.com"),
        json!(["a", "b"]),
        json!("https://github.com/acme"),
        json!("Tokenmint"),
    ] {
        let e = err(v
            .verify(&token_at(&dev, t0, json!({ "aud": aud })), t0)
            .await);
        assert!(
            matches!(e, VerifyError::AudienceNotAccepted { .. }),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn rotation_refetches_at_most_once_per_interval() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    assert_eq!(dev.jwks_fetch_count(), 1);

    dev.rotate(true).unwrap();
    // Within 30 s of the last fetch an unknown kid does not fetch again.
    let t1 = t0 + TimeDelta::seconds(10);
    let e = err(v.verify(&token_at(&dev, t1, json!({})), t1).await);
    assert!(
        matches!(e, VerifyError::Key(KeyLookupError::UnknownKid(_))),
        "{e:?}"
    );
    assert_eq!(dev.jwks_fetch_count(), 1);

    // After the interval, one refetch finds the new key.
    let t2 = t0 + TimeDelta::seconds(31);
    v.verify(&token_at(&dev, t2, json!({})), t2).await.unwrap();
    assert_eq!(dev.jwks_fetch_count(), 2);

    // A storm of unknown kids costs at most one more fetch per interval, even concurrently.
    let t3 = t2 + TimeDelta::seconds(31);
    let key = RsaSigningKey::generate().unwrap();
    let mut tasks = Vec::new();
    let v = Arc::new(v);
    for i in 0..20 {
        let h = format!(r#"{{"alg":"RS256","kid":"storm-{i}"}}"#);
        let token = raw_token(&key, &h, &payload(&dev, t3, json!({})).to_string());
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            v.verify(&token, t3).await.map(|_| ())
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    assert_eq!(dev.jwks_fetch_count(), 3);
}

#[tokio::test]
async fn cache_control_max_age_is_honoured_and_clamped() {
    let dev = dev().await;
    dev.set_cache_control(Some("public, max-age=3600".into()));
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    let t1 = t0 + TimeDelta::seconds(3599);
    v.verify(&token_at(&dev, t1, json!({})), t1).await.unwrap();
    assert_eq!(dev.jwks_fetch_count(), 1, "still fresh under max-age=3600");
    // The next fetch carries a tiny max-age, which is clamped up to 5 minutes.
    dev.set_cache_control(Some("max-age=1".into()));
    let t2 = t0 + TimeDelta::seconds(3601);
    // Stale: the cached key serves at once, and a background refresh runs.
    v.verify(&token_at(&dev, t2, json!({})), t2).await.unwrap();
    eventually("the background refresh completes", || {
        v.status()[0].fresh_until == Some(t2 + TimeDelta::seconds(300))
    })
    .await;
    assert_eq!(dev.jwks_fetch_count(), 2, "stale after max-age");
    let t3 = t2 + TimeDelta::seconds(200);
    v.verify(&token_at(&dev, t3, json!({})), t3).await.unwrap();
    assert_eq!(
        dev.jwks_fetch_count(),
        2,
        "max-age=1 must be clamped up to 300 s"
    );
    let t4 = t2 + TimeDelta::seconds(301);
    v.verify(&token_at(&dev, t4, json!({})), t4).await.unwrap();
    eventually("a third fetch", || dev.jwks_fetch_count() == 3).await;
}

#[tokio::test]
async fn failed_refresh_keeps_serving_cached_keys() {
    for mode in [
        JwksMode::Down,
        JwksMode::Garbage,
        JwksMode::Empty,
        JwksMode::Slow(Duration::from_secs(3)),
    ] {
        let dev = dev().await;
        let v = verifier(vec![issuer_config(&dev)]);
        let t0 = now();
        v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
        dev.set_jwks_mode(mode);
        // Past freshness: a refresh is attempted, fails, and cached keys still serve.
        let t1 = t0 + TimeDelta::seconds(400);
        let started = std::time::Instant::now();
        v.verify(&token_at(&dev, t1, json!({})), t1).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{mode:?}: a known kid must not wait for the refresh"
        );
        // The refresh runs in the background and fails within its timeout.
        eventually("the refresh fails", || v.status()[0].failures == 1).await;
        assert_eq!(dev.jwks_fetch_count(), 2, "{mode:?}");
        assert_eq!(v.status()[0].fetches, 2, "{mode:?}");
        // Good keys were not replaced: after recovery nothing changed.
        dev.set_jwks_mode(JwksMode::Normal);
        v.verify(&token_at(&dev, t1, json!({})), t1).await.unwrap();
        assert_eq!(v.status()[0].keys, 1, "{mode:?}");
        // The failed attempt counts for the rate limit: no retry within 30 s.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(dev.jwks_fetch_count(), 2, "{mode:?}");
    }
}

#[tokio::test]
async fn no_cached_keys_and_issuer_down_is_unavailable() {
    let dev = dev().await;
    dev.set_jwks_mode(JwksMode::Down);
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let e = err(v.verify(&token_at(&dev, t0, json!({})), t0).await);
    assert!(matches!(e, VerifyError::KeysUnavailable { .. }), "{e:?}");
    // Within the cold retry interval, no new fetch.
    let e = err(v
        .verify(&token_at(&dev, t0, json!({})), t0 + TimeDelta::seconds(1))
        .await);
    assert!(matches!(e, VerifyError::KeysUnavailable { .. }));
    assert_eq!(dev.jwks_fetch_count(), 1);
    // After it, the issuer is back and keys load.
    dev.set_jwks_mode(JwksMode::Normal);
    let t1 = t0 + TimeDelta::seconds(6);
    v.verify(&token_at(&dev, t1, json!({})), t1).await.unwrap();
}

#[tokio::test]
async fn signed_claims_are_reported_on_late_failures() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    let r = v
        .verify(&token_at(&dev, t0, json!({"aud": "wrong"})), t0)
        .await
        .unwrap_err();
    let (issuer, claims) = r.signed.expect("signature was valid");
    assert_eq!(issuer, "dev");
    assert_eq!(claims["repository"], "acme/app");
    // But a forged token reports nothing.
    let r = v
        .verify(&token_at(&dev, t0, json!({"iss": "https://evil"})), t0)
        .await
        .unwrap_err();
    assert!(r.signed.is_none());
}

#[tokio::test]
async fn a_dropped_request_does_not_cancel_the_fetch() {
    let dev = dev().await;
    dev.set_jwks_mode(JwksMode::Slow(Duration::from_secs(2)));
    let v = Arc::new(patient_verifier(vec![issuer_config(&dev)]));
    let t0 = now();
    let token = token_at(&dev, t0, json!({}));
    // A request that triggers the first fetch, then goes away mid-fetch (a
    // client disconnect drops the request's future the same way).
    let first = tokio::spawn({
        let (v, token) = (v.clone(), token.clone());
        async move { v.verify(&token, t0).await.map(|_| ()) }
    });
    eventually("the JWKS fetch starts", || dev.jwks_fetch_count() == 1).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    dev.set_jwks_mode(JwksMode::Normal);
    // At the same `now`, well within the cold retry interval, the next request
    // gets the keys that the orphaned fetch loads.
    v.verify(&token, t0).await.unwrap();
    assert_eq!(dev.jwks_fetch_count(), 1);
    let status = &v.status()[0];
    assert_eq!((status.fetches, status.failures), (1, 0));
}

#[tokio::test]
async fn stale_keys_serve_known_kids_while_refreshing_in_the_background() {
    let dev = dev().await;
    let v = patient_verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    let fresh_until = v.status()[0].fresh_until;
    dev.set_jwks_mode(JwksMode::Slow(Duration::from_secs(3)));
    let t1 = t0 + TimeDelta::seconds(400);
    let token = token_at(&dev, t1, json!({}));
    let started = std::time::Instant::now();
    v.verify(&token, t1).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a known kid must not wait for a slow refresh ({:?})",
        started.elapsed()
    );
    eventually("a background fetch starts", || dev.jwks_fetch_count() == 2).await;
    // While it is in flight, known kids are still served at once, and no
    // second fetch starts.
    let started = std::time::Instant::now();
    v.verify(&token, t1).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // It completes with nobody waiting for it.
    eventually("the background refresh completes", || {
        v.status()[0].fresh_until > fresh_until
    })
    .await;
    assert_eq!(dev.jwks_fetch_count(), 2);
    let status = &v.status()[0];
    assert_eq!((status.fetches, status.failures), (2, 0));
    assert_eq!(status.fresh_until, Some(t1 + TimeDelta::seconds(300)));
}

#[tokio::test]
async fn out_of_order_clocks_do_not_defeat_the_rate_limit() {
    let dev = dev().await;
    let v = verifier(vec![issuer_config(&dev)]);
    let t0 = now();
    v.verify(&token_at(&dev, t0, json!({})), t0).await.unwrap();
    // Tokens with an unknown kid: each may trigger a refetch (and fails at key
    // lookup, before any time check, so `at` only matters to the cache).
    let stranger = RsaSigningKey::generate().unwrap();
    let unknown = |at: OffsetDateTime| {
        raw_token(
            &stranger,
            r#"{"alg":"RS256","kid":"unknown"}"#,
            &payload(&dev, at, json!({})).to_string(),
        )
    };
    let check = |at: OffsetDateTime, fetches: usize| {
        let (v, dev, token) = (&v, &dev, unknown(at));
        async move {
            let e = err(v.verify(&token, at).await);
            assert!(
                matches!(e, VerifyError::Key(KeyLookupError::UnknownKid(_))),
                "{e:?}"
            );
            assert_eq!(dev.jwks_fetch_count(), fetches, "at {at}");
        }
    };
    let t1 = t0 + TimeDelta::seconds(31);
    check(t1, 2).await;
    // A request that read its clock a little earlier but got the lock later
    // must not refetch (nor move the last attempt back).
    check(t1 - TimeDelta::milliseconds(1), 2).await;
    check(t1 - TimeDelta::seconds(29), 2).await;
    check(t1 + TimeDelta::seconds(29), 2).await;
    check(t1 + TimeDelta::seconds(30), 3).await;
    // A clock that jumped back by more than the interval does not block refreshes.
    let t2 = t1 + TimeDelta::seconds(30);
    check(t2 - TimeDelta::seconds(31), 4).await;
    check(t2 - TimeDelta::seconds(30), 4).await;
}

// --- Fetch misbehaviour, from a scripted server ---------------------------

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// What the scripted server answers on one path.
#[derive(Clone)]
enum Reply {
    Json(Value),
    /// 302 to this URL.
    Redirect(String),
    /// `head`, then spaces up to `len` bytes, with a `Content-Length`.
    Padded {
        head: String,
        len: usize,
    },
    /// The same bytes, chunked, with no `Content-Length`.
    Chunked {
        head: String,
        len: usize,
    },
    /// Declares `Content-Length: len`, sends `head`, then stalls.
    Stalled {
        head: String,
        len: usize,
    },
}

#[derive(Default)]
struct Script {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// A tiny HTTP server on 127.0.0.1 that answers as scripted and counts requests.
struct Scripted {
    base: String,
    port: u16,
    script: Arc<std::sync::Mutex<Script>>,
}

impl Scripted {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(std::sync::Mutex::new(Script::default()));
        let app = axum::Router::new()
            .fallback(scripted_reply)
            .with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            script,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn route(&self, path: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), reply);
    }

    fn hits(&self, path: &str) -> usize {
        self.script
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.script.lock().unwrap().hits.values().sum()
    }
}

async fn scripted_reply(
    axum::extract::State(script): axum::extract::State<Arc<std::sync::Mutex<Script>>>,
    uri: http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let reply = {
        let mut s = script.lock().unwrap();
        *s.hits.entry(uri.path().to_owned()).or_default() += 1;
        s.routes.get(uri.path()).cloned()
    };
    let json = [(http::header::CONTENT_TYPE, "application/json")];
    match reply {
        None => http::StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Json(v)) => axum::Json(v).into_response(),
        Some(Reply::Redirect(to)) => {
            (http::StatusCode::FOUND, [(http::header::LOCATION, to)]).into_response()
        }
        Some(Reply::Padded { head, len }) => (json, padded(&head, len)).into_response(),
        Some(Reply::Chunked { head, len }) => {
            let chunks = padded(&head, len)
                .chunks(16 * 1024)
                .map(bytes::Bytes::copy_from_slice)
                .collect();
            let body = Trickle {
                chunks,
                declared: None,
            };
            (json, axum::body::Body::new(body)).into_response()
        }
        Some(Reply::Stalled { head, len }) => {
            let body = Trickle {
                chunks: [bytes::Bytes::from(head)].into(),
                declared: Some(len as u64),
            };
            (json, axum::body::Body::new(body)).into_response()
        }
    }
}

fn padded(head: &str, len: usize) -> Vec<u8> {
    let mut body = head.as_bytes().to_vec();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

/// A response body sent in separate chunks. With `declared`, its length is
/// announced and it stalls (forever) after the chunks; without, it is
/// sent chunked with no `Content-Length`.
struct Trickle {
    chunks: std::collections::VecDeque<bytes::Bytes>,
    declared: Option<u64>,
}

impl hyper::body::Body for Trickle {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
            None if self.declared.is_some() => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.declared
            .map(hyper::body::SizeHint::with_exact)
            .unwrap_or_default()
    }
}

fn jwks_of(keys: &[&RsaSigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

fn discovery_doc(issuer: &str, jwks_uri: &str) -> Value {
    json!({ "issuer": issuer, "jwks_uri": jwks_uri })
}

fn signed_by(key: &RsaSigningKey, iss: &str, at: OffsetDateTime) -> String {
    let t = at.unix_timestamp();
    let claims = json!({"iss": iss, "sub": "repo:acme/app:ref:refs/heads/main", "aud": AUD, "iat": t, "nbf": t, "exp": t + 300});
    key.sign_jwt(&claims, true).unwrap()
}

#[tokio::test]
async fn redirects_are_followed_only_within_the_origin() {
    let key = RsaSigningKey::generate().unwrap();
    let a = Scripted::start().await;
    let b = Scripted::start().await;
    let t0 = now();
    let token = signed_by(&key, &a.base, t0);

    // Same origin: both the discovery and the JWKS fetch are redirected, and followed.
    a.route(DISCOVERY, Reply::Redirect(a.url("/moved/discovery")));
    a.route(
        "/moved/discovery",
        Reply::Json(discovery_doc(&a.base, &a.url("/jwks"))),
    );
    a.route("/jwks", Reply::Redirect(a.url("/moved/jwks")));
    a.route("/moved/jwks", Reply::Json(jwks_of(&[&key])));
    let v = verifier(vec![config_for(&a.base)]);
    v.verify(&token, t0).await.unwrap();
    assert_eq!(a.hits("/moved/jwks"), 1);

    // Another origin (same host, other port) would serve good answers, but
    // must never be asked.
    b.route(
        DISCOVERY,
        Reply::Json(discovery_doc(&a.base, &b.url("/jwks"))),
    );
    b.route("/jwks", Reply::Json(jwks_of(&[&key])));

    // Discovery redirected to the other origin.
    a.route(DISCOVERY, Reply::Redirect(b.url(DISCOVERY)));
    let v = verifier(vec![config_for(&a.base)]);
    let reason = unavailable_reason(v.verify(&token, t0).await);
    assert!(reason.contains("redirect"), "{reason}");
    assert_eq!(b.total_hits(), 0);

    // JWKS redirected to the other origin.
    a.route(
        DISCOVERY,
        Reply::Json(discovery_doc(&a.base, &a.url("/jwks"))),
    );
    a.route("/jwks", Reply::Redirect(b.url("/jwks")));
    let v = verifier(vec![config_for(&a.base)]);
    let reason = unavailable_reason(v.verify(&token, t0).await);
    assert!(reason.contains("redirect"), "{reason}");
    assert_eq!(b.total_hits(), 0);
}

#[tokio::test]
async fn oversized_responses_are_refused_and_never_replace_keys() {
    let max = super::fetch::MAX_BODY_BYTES;
    assert_eq!(max, 256 * 1024);
    let too_large = format!("more than {max} bytes");
    let old = RsaSigningKey::generate().unwrap();
    let new = RsaSigningKey::generate().unwrap();
    let t0 = now();
    let t1 = t0 + TimeDelta::seconds(31);
    let oversized = |head: String| {
        [
            Reply::Padded {
                head: head.clone(),
                len: max + 1,
            },
            Reply::Chunked {
                head: head.clone(),
                len: max + 1,
            },
            // Refused on the header alone, before the body arrives.
            Reply::Stalled { head, len: max + 1 },
        ]
    };
    for (i, reply) in oversized(jwks_of(&[&old]).to_string())
        .into_iter()
        .enumerate()
    {
        let s = Scripted::start().await;
        let mut cfg = config_for(&s.base);
        cfg.jwks_url = Some(url::Url::parse(&s.url("/jwks")).unwrap());

        // No keys cached: an oversized (otherwise valid) JWKS is refused.
        s.route("/jwks", reply);
        let v = verifier(vec![cfg.clone()]);
        let reason = unavailable_reason(v.verify(&signed_by(&old, &s.base, t0), t0).await);
        assert!(reason.contains(&too_large), "variant {i}: {reason}");

        // Keys cached: an oversized JWKS with a new key replaces nothing.
        s.route("/jwks", Reply::Json(jwks_of(&[&old])));
        let v = verifier(vec![cfg]);
        v.verify(&signed_by(&old, &s.base, t0), t0).await.unwrap();
        s.route("/jwks", oversized(jwks_of(&[&new]).to_string())[i].clone());
        let e = err(v.verify(&signed_by(&new, &s.base, t1), t1).await);
        assert!(
            matches!(e, VerifyError::Key(KeyLookupError::UnknownKid(_))),
            "variant {i}: {e:?}"
        );
        let status = &v.status()[0];
        assert_eq!((status.fetches, status.failures), (2, 1), "variant {i}");
        v.verify(&signed_by(&old, &s.base, t1), t1).await.unwrap();
    }

    // Exactly the limit is accepted.
    let s = Scripted::start().await;
    let mut cfg = config_for(&s.base);
    cfg.jwks_url = Some(url::Url::parse(&s.url("/jwks")).unwrap());
    s.route(
        "/jwks",
        Reply::Padded {
            head: jwks_of(&[&old]).to_string(),
            len: max,
        },
    );
    let v = verifier(vec![cfg]);
    v.verify(&signed_by(&old, &s.base, t0), t0).await.unwrap();

    // The discovery document is capped too.
    let s = Scripted::start().await;
    s.route(
        DISCOVERY,
        Reply::Padded {
            head: discovery_doc(&s.base, &s.url("/jwks")).to_string(),
            len: max + 1,
        },
    );
    s.route("/jwks", Reply::Json(jwks_of(&[&old])));
    let v = verifier(vec![config_for(&s.base)]);
    let reason = unavailable_reason(v.verify(&signed_by(&old, &s.base, t0), t0).await);
    assert!(reason.contains(&too_large), "{reason}");
    assert_eq!(s.hits("/jwks"), 0);
}

#[tokio::test]
async fn discovered_plain_http_jwks_uri_off_loopback_is_refused() {
    let key = RsaSigningKey::generate().unwrap();
    let s = Scripted::start().await;
    let t0 = now();
    let token = signed_by(&key, &s.base, t0);
    s.route("/jwks", Reply::Json(jwks_of(&[&key])));
    // 0.0.0.0 is not a loopback address, yet on Linux it reaches this server:
    // without the rule, the fetch would be made (and would succeed).
    for jwks_uri in [
        format!("http://0.0.0.0:{}/jwks", s.port),
        "http://keys.example/jwks".to_owned(),
    ] {
        s.route(DISCOVERY, Reply::Json(discovery_doc(&s.base, &jwks_uri)));
        let v = verifier(vec![config_for(&s.base)]);
        let reason = unavailable_reason(v.verify(&token, t0).await);
        assert!(
            reason.contains("http:// on a non-loopback host"),
            "{jwks_uri}: {reason}"
        );
        assert_eq!(s.hits("/jwks"), 0, "{jwks_uri}");
    }
    // The same document with a loopback jwks_uri works.
    s.route(
        DISCOVERY,
        Reply::Json(discovery_doc(&s.base, &s.url("/jwks"))),
    );
    let v = verifier(vec![config_for(&s.base)]);
    v.verify(&token, t0).await.unwrap();
    assert_eq!(s.hits("/jwks"), 1);
}
