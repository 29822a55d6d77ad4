//! End-to-end tests of the HTTP API: the real router and server on loopback, against the local OIDC issuer and the GitHub API stand-in.
//!
//! The harness lives in `tests/common/mod.rs`: the service runs on a fixed
//! clock set to the real time at start, and tokens are minted relative to it,
//! so tests can move time (key rotation, cache expiry) without sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_error, Harness};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokenmint::audit::Decision;
use tokenmint::clock::Clock;
use tokenmint::dev::github_standin::Fault;
use tokenmint::dev::issuer::JwksMode;
use tokenmint::http::ServeOptions;
use tokenmint::keys::RsaSigningKey;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn success_mints_the_configured_scope_and_audits_only_a_hash() {
    let h = Harness::start().await;
    let token = h.token(json!({}));
    let (status, body, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["repositories"], json!(["acme/widgets"]));
    assert_eq!(
        body["permissions"],
        json!({"contents": "read", "issues": "write"})
    );
    assert_eq!(body["broker"], "widgets-read");
    let minted = body["token"].as_str().unwrap();
    time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    // GitHub was asked for exactly the configured scope.
    let issued = h.github.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].token, minted);
    let mint_call = h
        .github
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(mint_call.path, "/app/installations/4242/access_tokens");
    assert_eq!(
        mint_call.body.unwrap(),
        json!({"repositories": ["widgets"], "permissions": {"contents": "read", "issues": "write"}})
    );

    // The audit row holds the hash, the claims, and never the token.
    let rows = h.rows().await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0].record;
    assert_eq!(r.decision, Decision::Allow);
    assert_eq!(
        r.subject.as_deref(),
        Some("repo:acme/app:ref:refs/heads/main")
    );
    assert_eq!(r.claims.repository.as_deref(), Some("acme/app"));
    assert_eq!(r.request_id, body["request_id"].as_str().unwrap());
    let grant = r.grant.as_ref().unwrap();
    assert_eq!(
        grant.token_sha256,
        hex::encode(Sha256::digest(minted.as_bytes()))
    );
    assert_eq!(grant.installation_id, 4242);
    for file in ["audit.db", "audit.db-wal"] {
        let bytes = std::fs::read(h.dir.path().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(minted), "token found in {file}");
        assert!(!text.contains(&token), "OIDC token found in {file}");
        assert!(
            !text.contains(h.app_pem.lines().nth(1).unwrap()),
            "App key found in {file}"
        );
    }
}

#[tokio::test]
async fn repository_id_pin_mints_by_id() {
    let h = Harness::start().await;
    let (status, body) = h.exchange("widgets-pinned", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let mint_call = h
        .github
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        mint_call.body.unwrap(),
        json!({"repository_ids": [56789], "permissions": {"contents": "write"}})
    );
}

#[tokio::test]
async fn any_body_is_refused() {
    let h = Harness::start().await;
    for body in [
        "{}",
        " ",
        "null",
        "{\"permissions\":{\"administration\":\"write\"}}",
    ] {
        let token = h.token(json!({}));
        let (status, resp, _) = h.post("widgets-read", Some(&token), Some(body)).await;
        assert_error(status, &resp, 400, "invalid_request");
        assert!(resp["message"]
            .as_str()
            .unwrap()
            .contains("body must be empty"));
    }
    assert!(h.github.issued_tokens().is_empty());
    assert_eq!(h.rows().await.len(), 4, "every refusal is audited");
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let h = Harness::start().await;
    let token = h.token(json!({}));
    let (s, b, _) = h.post("bad%20name", Some(&token), None).await;
    assert_error(s, &b, 400, "invalid_request");
    let (s, b, _) = h.post(&"a".repeat(65), Some(&token), None).await;
    assert_error(s, &b, 400, "invalid_request");
    for auth in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        &format!("Bearer  {token}"),
        &format!("Token {token}"),
    ] {
        let resp = h
            .client
            .post(format!("{}/v1/brokers/widgets-read/token", h.base))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        let b: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_error(s, &b, 400, "invalid_request");
    }
    let resp = h
        .client
        .post(format!("{}/v1/brokers/widgets-read/token", h.base))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn invalid_tokens_are_401_and_audited() {
    let h = Harness::start().await;
    let (s, b, headers) = h.post("widgets-read", None, None).await;
    assert_error(s, &b, 401, "invalid_token");
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    let t = h.clock.now().unix_timestamp();
    let other_key = RsaSigningKey::generate().unwrap();
    let forged = {
        let good = h.token(json!({}));
        let (input, _) = good.rsplit_once('.').unwrap();
        let (_, sig) = other_key
            .sign_jwt(&json!({}), false)
            .unwrap()
            .rsplit_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        format!("{input}.{sig}")
    };
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".into()),
        (
            "expired",
            h.token(json!({"iat": t - 400, "nbf": t - 400, "exp": t - 100})),
        ),
        ("not yet valid", h.token(json!({"nbf": t + 600}))),
        (
            "issued in future",
            h.token(json!({"iat": t + 600, "nbf": t, "exp": t + 900})),
        ),
        (
            "too old",
            h.token(json!({"iat": t - 1000, "nbf": t - 1000, "exp": t + 300})),
        ),
        (
            "wrong audience",
            h.issuer
                .mint(
                    "sts.amazonaws.com",
                    json!({"iat": t, "nbf": t, "exp": t + 300}),
                )
                .unwrap(),
        ),
        (
            "unknown issuer",
            h.token(json!({"iss": "https://token.actions.githubusercontent.com"})),
        ),
        ("oversized", h.token(json!({"pad": "x".repeat(17 * 1024)}))),
        ("bad signature", forged),
        ("no sub", h.token(json!({"sub": null}))),
    ];
    for (name, token) in &cases {
        let (s, b, _) = h.post("widgets-read", Some(token), None).await;
        assert_error(s, &b, 401, "invalid_token");
        eprintln!("{name}: {}", b["message"]);
    }
    assert!(h.github.issued_tokens().is_empty());
    let rows = h.rows().await;
    assert_eq!(rows.len(), cases.len() + 1);
    assert!(rows
        .iter()
        .all(|r| r.record.decision == Decision::Deny && r.record.status == 401));
    // Authentic claims are kept for late failures (here: the expired token).
    let expired = &rows[2].record;
    assert!(expired.reason.contains("expired"), "{}", expired.reason);
    assert_eq!(expired.claims.repository.as_deref(), Some("acme/app"));
}

#[tokio::test]
async fn unknown_broker_and_policy_denial_look_the_same() {
    let h = Harness::start().await;
    let (s1, b1) = h.exchange("no-such-broker", json!({})).await;
    let (s2, b2) = h
        .exchange(
            "widgets-read",
            json!({"sub": "repo:evil/x:ref:refs/heads/main"}),
        )
        .await;
    assert_error(s1, &b1, 403, "access_denied");
    assert_error(s2, &b2, 403, "access_denied");
    assert_eq!(b1["message"], b2["message"]);
    assert!(!b2["message"].as_str().unwrap().contains("evil"));
    // The audit log has the precise reasons.
    let rows = h.rows().await;
    assert!(
        rows[0].record.reason.contains("unknown broker"),
        "{}",
        rows[0].record.reason
    );
    assert!(
        rows[1]
            .record
            .reason
            .contains(r#"claim sub "repo:evil/x:ref:refs/heads/main" matched none of"#),
        "{}",
        rows[1].record.reason
    );
    assert!(h.github.issued_tokens().is_empty());
}

#[tokio::test]
async fn a_broker_only_accepts_its_own_issuer() {
    let h = Harness::start().await;
    // The token satisfies the broker's claim conditions, but comes from another issuer.
    let (s, b) = h.exchange("widgets-other-issuer", json!({})).await;
    assert_error(s, &b, 403, "access_denied");
    let rows = h.rows().await;
    assert!(
        rows[0]
            .record
            .reason
            .contains(r#"accepts tokens from issuer "other", not "dev""#),
        "{}",
        rows[0].record.reason
    );
    assert!(h.github.issued_tokens().is_empty());
}

#[tokio::test]
async fn a_broker_can_use_an_aws_iam_trust_policy() {
    let h = Harness::start().await;
    let (s, b) = h.exchange("widgets-iam", json!({})).await;
    assert_eq!(s, 200, "{b}");
    // An environment job's sub does not match the StringLike condition.
    let (s, b) = h
        .exchange("widgets-iam", json!({"environment": "prod"}))
        .await;
    assert_error(s, &b, 403, "access_denied");
    let rows = h.rows().await;
    assert!(
        rows[1].record.reason.starts_with("IAM trust policy:"),
        "{}",
        rows[1].record.reason
    );
    assert!(
        rows[1].record.reason.contains("StringLike"),
        "{}",
        rows[1].record.reason
    );
}

#[tokio::test]
async fn explain_denials_says_which_condition_failed() {
    let h = Harness::with(true).await;
    let (s, b) = h
        .exchange("widgets-read", json!({"ref": "refs/heads/dev"}))
        .await;
    assert_error(s, &b, 403, "access_denied");
    assert!(b["message"].as_str().unwrap().contains("claim ref"), "{b}");
}

#[tokio::test]
async fn each_policy_condition_is_enforced_over_http() {
    let h = Harness::start().await;
    for bad in [
        json!({"repository_id": "1"}),
        json!({"repository_owner_id": "1"}),
        json!({"repository_owner_id": null}),
        json!({"job_workflow_ref": "acme/app/.github/workflows/x.yml@refs/heads/dev"}),
        json!({"ref": "refs/heads/mainline"}),
    ] {
        let (s, b) = h.exchange("widgets-read", bad.clone()).await;
        assert_eq!(s, 403, "{bad}: {b}");
    }
    let (s, b) = h
        .exchange("widgets-read", json!({"environment": "prod"}))
        .await;
    assert_eq!(s, 200, "environment sub is in the OR list: {b}");
}

#[tokio::test]
async fn github_failures_are_502_without_leaking() {
    let h = Harness::start().await;
    h.github.set_fault(Fault::TokenStatus {
        status: 403,
        times: 1,
    });
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_error(s, &b, 502, "upstream_error");

    // A grant broader than requested is revoked and refused.
    h.github.set_fault(Fault::GrantExtraPermission);
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_error(s, &b, 502, "upstream_error");
    let issued = h.github.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert!(issued[0].revoked, "over-broad token must be revoked");
    assert!(!b.to_string().contains(&issued[0].token));

    h.github.set_fault(Fault::MalformedJson);
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_error(s, &b, 502, "upstream_error");
    let rows = h.rows().await;
    assert!(rows
        .iter()
        .all(|r| r.record.decision == Decision::Error && r.record.status == 502));
}

#[tokio::test]
async fn issuer_keys_unreachable_with_none_cached_is_503() {
    let h = Harness::start().await;
    h.issuer.set_jwks_mode(JwksMode::Down);
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_error(s, &b, 503, "unavailable");
    // After the issuer recovers (and the cold retry interval passes) it works.
    h.issuer.set_jwks_mode(JwksMode::Normal);
    h.advance(6);
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn key_rotation_is_picked_up() {
    let h = Harness::start().await;
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    h.issuer.rotate(false).unwrap();
    h.advance(31);
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h.issuer.jwks_fetch_count(), 2);
}

#[tokio::test]
async fn audit_failure_revokes_the_token_and_recovers() {
    let h = Harness::start().await;
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    h.sql("ALTER TABLE audit_log RENAME TO audit_log_away")
        .await;
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_error(s, &b, 503, "unavailable");
    let issued = h.github.issued_tokens();
    assert_eq!(issued.len(), 2);
    assert!(!issued[0].revoked);
    assert!(
        issued[1].revoked,
        "a token without its audit row must be revoked"
    );
    let ready = h
        .client
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    h.sql("ALTER TABLE audit_log_away RENAME TO audit_log")
        .await;
    let (s, b) = h.exchange("widgets-read", json!({})).await;
    assert_eq!(s, 200, "recovers by itself: {b}");
    let report = h.audit().await.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn tampering_is_detected_and_named() {
    let h = Harness::start().await;
    for _ in 0..3 {
        assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    }
    assert!(h.audit().await.verify().await.unwrap().problems.is_empty());
    h.sql("UPDATE audit_log SET record = replace(record, 'acme/app', 'acme/evil') WHERE seq = 2")
        .await;
    let report = h.audit().await.verify().await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].seq, 2);
    assert!(
        report.problems[0].to_string().contains("#2"),
        "{}",
        report.problems[0]
    );
}

#[tokio::test]
async fn concurrent_exchanges_cost_one_github_call_each_when_warm() {
    let h = Arc::new(Harness::start().await);
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    let before = h.github.call_count();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.exchange("widgets-read", json!({})).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        h.github.call_count() - before,
        32,
        "one GitHub call per exchange once caches are warm"
    );
    let report = h.audit().await.verify().await.unwrap();
    assert_eq!(report.chains.iter().map(|c| c.rows).sum::<u64>(), 33);
    assert!(report.problems.is_empty());
}

#[tokio::test]
async fn health_methods_and_unknown_paths() {
    let h = Harness::start().await;
    let get = |p: &str| h.client.get(format!("{}{p}", h.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let r = get("/v1/brokers/widgets-read/token").await.unwrap();
    assert_eq!(r.status(), 405);
    let r = h
        .client
        .put(format!("{}/v1/brokers/widgets-read/token", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    // An AWS SDK pointed at a tokenmint without [[role]]s learns why.
    let r = h.client.post(format!("{}/", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("[[role]]"),
        "{body}"
    );
    // Nothing of this reached the audit log: no broker decision was involved.
    assert!(h.rows().await.is_empty());
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_cancel_the_exchange() {
    let h = Harness::start().await;
    // Warm the caches, then make GitHub slow.
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    h.github
        .set_fault(Fault::Delay(std::time::Duration::from_millis(800)));
    let token = h.token(json!({}));
    let quick = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let r = quick
        .post(format!("{}/v1/brokers/widgets-read/token", h.base))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(r.is_err(), "the client gave up before GitHub answered");
    // The exchange still completes and is audited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = h.rows().await;
        if rows.len() == 2 {
            assert_eq!(rows[1].record.decision, Decision::Allow);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned exchange was never audited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn slow_and_idle_clients_do_not_block_others() {
    let options = ServeOptions {
        header_read_timeout: std::time::Duration::from_millis(500),
        max_connections: 8,
        ..ServeOptions::default()
    };
    let h = Harness::with_options(false, options).await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    // A slow-loris client: half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/brokers/widgets-read/token HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Idle clients that never send anything.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Others are served meanwhile.
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    // The server hangs up on the slow client once its header timeout passes.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf)).await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => {} // closed (0 bytes), an error answer, or a reset
        Err(_) => panic!("the slow client was never cut off"),
    }
    for mut c in idle {
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf)).await;
        assert!(r.is_ok(), "an idle connection was never closed");
    }
}

#[tokio::test]
async fn connection_cap_queues_instead_of_failing() {
    let options = ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    };
    let h = Harness::with_options(false, options).await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    // Two connections hold both slots until they are closed.
    let hold1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let hold2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let h = Arc::new(h);
    let waiting = {
        let h = h.clone();
        tokio::spawn(async move { h.exchange("widgets-read", json!({})).await.0 })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection must wait for a free slot"
    );
    drop(hold1);
    drop(hold2);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let mut h = Harness::start().await;
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    h.github
        .set_fault(Fault::Delay(std::time::Duration::from_millis(700)));
    let token = h.token(json!({}));
    let in_flight = {
        let client = reqwest::Client::new();
        let url = format!("{}/v1/brokers/widgets-read/token", h.base);
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let _ = h.shutdown.take().unwrap().send(());
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the in-flight exchange completes"
    );
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), &mut h.server).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the server exits promptly once drained"
    );
    let refused = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://")).await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

// ------------------------------------------------------------ replay protection

fn reasons(rows: &[tokenmint::audit::StoredRecord]) -> Vec<&str> {
    rows.iter().map(|r| r.record.reason.as_str()).collect()
}

#[tokio::test]
async fn a_single_use_token_is_exchanged_once() {
    let h = Harness::single_use().await;
    let token = h.token(json!({"jti": "job-42-attempt-1"}));
    let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_error(s, &b, 401, "invalid_token");
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    assert!(
        b["message"].as_str().unwrap().contains("replayed jti"),
        "{b}"
    );
    // The same jti in a token with other bytes is the same token for replay purposes.
    let twin = h.token(json!({"jti": "job-42-attempt-1", "run_attempt": "2"}));
    assert_ne!(twin, token);
    let (s, b, _) = h.post("widgets-read", Some(&twin), None).await;
    assert_error(s, &b, 401, "invalid_token");
    assert_eq!(h.github.issued_tokens().len(), 1, "no token for a replay");

    let rows = h.rows().await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].record.decision, Decision::Allow);
    for r in &rows[1..] {
        assert_eq!(r.record.decision, Decision::Deny);
        assert_eq!(r.record.status, 401);
        assert_eq!(r.record.code.as_deref(), Some("invalid_token"));
        assert!(
            r.record
                .reason
                .contains(r#"replayed jti "job-42-attempt-1""#),
            "{}",
            r.record.reason
        );
        assert_eq!(r.record.claims.jti.as_deref(), Some("job-42-attempt-1"));
    }
    // A fresh token (fresh jti) is still welcome.
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
}

#[tokio::test]
async fn a_single_use_issuer_refuses_tokens_without_a_usable_jti() {
    let h = Harness::single_use().await;
    for (jti, why) in [
        (Value::Null, "has no jti"),
        (json!(""), "has an empty jti"),
        (json!(42), "not a string"),
        (json!("x".repeat(300)), "longer than 256 bytes"),
    ] {
        let (s, b) = h.exchange("widgets-read", json!({ "jti": jti })).await;
        assert_error(s, &b, 401, "invalid_token");
        assert!(b["message"].as_str().unwrap().contains(why), "{b}");
    }
    assert!(h.github.issued_tokens().is_empty());
    let rows = h.rows().await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows[0]
            .record
            .reason
            .contains(r#"token has no jti but issuer "dev" requires single use"#),
        "{:?}",
        reasons(&rows)
    );
    assert!(rows.iter().all(|r| r.record.status == 401));
}

#[tokio::test]
async fn concurrent_replays_of_one_token_have_one_winner() {
    let h = Arc::new(Harness::single_use().await);
    // Warm the caches so the racers arrive together.
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    let token = Arc::new(h.token(json!({})));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (h, token) = (h.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
            (s, b)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        if s == 200 {
            ok += 1;
        } else {
            assert_error(s, &b, 401, "invalid_token");
        }
    }
    assert_eq!(ok, 1, "exactly one exchange of one token succeeds");
    assert_eq!(h.github.issued_tokens().len(), 2);
    let rows = h.rows().await;
    assert_eq!(rows.len(), 17);
    let replays = rows
        .iter()
        .filter(|r| r.record.reason.contains("replayed jti"))
        .count();
    assert_eq!(replays, 15, "{:?}", reasons(&rows));
}

#[tokio::test]
async fn without_single_use_a_token_may_be_reused() {
    let h = Harness::start().await;
    let token = h.token(json!({}));
    for _ in 0..2 {
        let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
        assert_eq!(s, 200, "{b}");
    }
    // Nor is a jti required.
    assert_eq!(
        h.exchange("widgets-read", json!({"jti": null})).await.0,
        200
    );
}

#[tokio::test]
async fn a_denied_request_does_not_use_up_a_single_use_token() {
    let h = Harness::single_use().await;
    let token = h.token(json!({}));
    // A mistyped broker name is denied by policy; the jti is claimed only after the policy allows.
    let (s, b, _) = h.post("widgets-raed", Some(&token), None).await;
    assert_error(s, &b, 403, "access_denied");
    let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn an_unavailable_jti_store_fails_closed_and_recovers() {
    let h = Harness::single_use().await;
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    h.sql("ALTER TABLE used_jti RENAME TO used_jti_away").await;
    let token = h.token(json!({}));
    let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
    assert_error(s, &b, 503, "unavailable");
    assert_eq!(
        h.github.issued_tokens().len(),
        1,
        "nothing minted unguarded"
    );

    // (Restore before reading rows: opening the log would recreate the table.)
    h.sql("ALTER TABLE used_jti_away RENAME TO used_jti").await;
    let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
    assert_eq!(s, 200, "the refused token was not used up: {b}");
    let rows = h.rows().await;
    assert_eq!(rows[1].record.decision, Decision::Error);
    assert_eq!(rows[1].record.status, 503);
    assert_eq!(rows[2].record.decision, Decision::Allow);
}

// ------------------------------------------------------------------ metrics

/// The value of the exposition line for exactly `series`.
fn metric(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

async fn scrape(h: &Harness) -> String {
    let resp = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    resp.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_exchanges_github_calls_jwks_fetches_and_audit_writes() {
    let h = Harness::start().await;
    let before = scrape(&h).await;
    assert_eq!(
        metric(
            &before,
            "tokenmint_exchanges_total{broker=\"widgets-read\",outcome=\"allowed\"}"
        )
        .as_deref(),
        Some("0"),
        "{before}"
    );
    assert_eq!(
        metric(
            &before,
            "tokenmint_jwks_fetches_total{issuer=\"dev\",result=\"success\"}"
        )
        .as_deref(),
        Some("0"),
        "{before}"
    );
    assert!(metric(&before, "tokenmint_github_rate_limit_remaining").is_none());

    // Two allowed, one policy denial, one unknown broker, one bad token.
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let token = h.token(json!({}));
        let (s, b, _) = h.post("widgets-read", Some(&token), None).await;
        assert_eq!(s, 200, "{b}");
        secrets.push(token);
        secrets.push(b["token"].as_str().unwrap().to_owned());
        secrets.push(b["request_id"].as_str().unwrap().to_owned());
    }
    let denied = h.token(json!({"ref": "refs/heads/feature-x"}));
    let (s, b, _) = h.post("widgets-read", Some(&denied), None).await;
    assert_error(s, &b, 403, "access_denied");
    secrets.push(denied);
    let (s, b) = h.exchange("made-up-broker-name", json!({})).await;
    assert_error(s, &b, 403, "access_denied");
    let (s, b, _) = h.post("widgets-read", Some("not-a-jwt"), None).await;
    assert_error(s, &b, 401, "invalid_token");

    let text = scrape(&h).await;
    let exchanges = |broker: &str, outcome: &str| {
        metric(
            &text,
            &format!("tokenmint_exchanges_total{{broker=\"{broker}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        exchanges("widgets-read", "allowed").as_deref(),
        Some("2"),
        "{text}"
    );
    assert_eq!(exchanges("widgets-read", "denied").as_deref(), Some("1"));
    assert_eq!(
        exchanges("widgets-read", "invalid_token").as_deref(),
        Some("1")
    );
    assert_eq!(exchanges("unknown", "denied").as_deref(), Some("1"));
    assert_eq!(exchanges("widgets-iam", "allowed").as_deref(), Some("0"));
    assert!(!text.contains("made-up-broker-name"), "{text}");
    let duration_count = |class: &str| {
        metric(
            &text,
            &format!("tokenmint_exchange_duration_seconds_count{{class=\"{class}\"}}"),
        )
    };
    assert_eq!(duration_count("allowed").as_deref(), Some("2"));
    assert_eq!(duration_count("refused").as_deref(), Some("3"));
    assert_eq!(duration_count("failed").as_deref(), Some("0"));

    // GitHub: one installation lookup (then cached), two mints, each
    // answer one less in the stand-in's budget.
    let calls = |endpoint: &str, status: &str| {
        metric(
            &text,
            &format!("tokenmint_github_calls_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(
        calls("repository-installation", "200").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(calls("installation-token", "201").as_deref(), Some("2"));
    let rate_limit = tokenmint::dev::github_standin::RATE_LIMIT - 3;
    assert_eq!(
        metric(&text, "tokenmint_github_rate_limit_remaining"),
        Some(rate_limit.to_string()),
        "{text}"
    );

    // JWKS: one successful fetch for the dev issuer, none for the other.
    let jwks = |issuer: &str, result: &str| {
        metric(
            &text,
            &format!("tokenmint_jwks_fetches_total{{issuer=\"{issuer}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(jwks("dev", "success").as_deref(), Some("1"), "{text}");
    assert_eq!(jwks("dev", "failure").as_deref(), Some("0"));
    assert_eq!(jwks("other", "success").as_deref(), Some("0"));
    assert_eq!(
        metric(&text, "tokenmint_jwks_keys{issuer=\"dev\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&text, "tokenmint_jwks_keys{issuer=\"other\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        metric(
            &text,
            "tokenmint_jwks_last_success_timestamp_seconds{issuer=\"dev\"}"
        ),
        Some(h.clock.now().unix_timestamp().to_string())
    );
    assert!(metric(
        &text,
        "tokenmint_jwks_last_success_timestamp_seconds{issuer=\"other\"}"
    )
    .is_none());

    // The audit writer committed each of the five records on its own.
    assert_eq!(
        metric(&text, "tokenmint_audit_write_duration_seconds_count").as_deref(),
        Some("5"),
        "{text}"
    );

    // Counts and names only: no token, claim value or request id.
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret reached /metrics");
    }
    for claim in [
        "acme/app",
        "refs/heads",
        "987654321",
        "123456789",
        "eyJ",
        "ghs_",
    ] {
        assert!(
            !text.contains(claim),
            "claim value {claim:?} in /metrics:\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let h = Harness::with_server_settings("metrics = false").await;
    let resp = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The exchange still works.
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
}

#[tokio::test]
async fn one_request_id_per_request_in_header_and_body() {
    let h = Harness::start().await;
    let (s, b, headers) = h.post("no-such-broker", Some("not-a-jwt"), None).await;
    assert_error(s, &b, 401, "invalid_token");
    assert_eq!(headers["x-request-id"], b["request_id"].as_str().unwrap());
    let token = h.token(json!({}));
    let (s, b, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(headers["x-request-id"], b["request_id"].as_str().unwrap());
    let resp = h
        .client
        .get(format!("{}/nope", h.base))
        .send()
        .await
        .unwrap();
    let header = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["request_id"], header.as_str());
}

/// `Server-Timing` gives an allowed exchange's time and GitHub's and the
/// audit commit's shares of it; refusals carry none.
#[tokio::test]
async fn allowed_answers_say_where_the_time_went() {
    let h = Harness::start().await;
    h.github
        .set_fault(Fault::Delay(std::time::Duration::from_millis(150)));
    let token = h.token(json!({}));
    let (s, b, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_eq!(s, 200, "{b}");
    let timing = headers["server-timing"].to_str().unwrap().to_owned();
    let dur = |name: &str| -> f64 {
        let prefix = format!("{name};dur=");
        timing
            .split(", ")
            .find_map(|m| m.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} in Server-Timing {timing:?}"))
            .parse()
            .unwrap()
    };
    // The stand-in waited 150 ms before each of its calls.
    assert!(dur("github") >= 150.0, "{timing}");
    assert!((0.0..150.0).contains(&dur("audit")), "{timing}");
    assert!(dur("total") >= dur("github") + dur("audit"), "{timing}");

    let (s, b, headers) = h.post("no-such-broker", Some(&token), None).await;
    assert_error(s, &b, 403, "access_denied");
    assert!(headers.get("server-timing").is_none(), "{headers:?}");
}

// ------------------------------------------------------------ octo-sts compatibility

/// An octo-sts/action style request: `method /sts/exchange?query` with a bearer token.
async fn octo_sts(
    h: &Harness,
    method: reqwest::Method,
    query: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = h
        .client
        .request(method, format!("{}/sts/exchange?{query}", h.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn octo_sts_exchange_maps_identity_and_scope_onto_a_broker() {
    let h = Harness::start().await;
    // Exactly what octo-sts/action sends, by GET and by POST (no body).
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let token = h.token(json!({}));
        let (status, body) = octo_sts(
            &h,
            method,
            "scope=acme/widgets&scopes=acme/widgets&identity=widgets-read",
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
        assert_eq!(body["broker"], "widgets-read");
        assert_eq!(body["repositories"], json!(["acme/widgets"]));
        assert_eq!(
            body["permissions"],
            json!({"contents": "read", "issues": "write"})
        );
    }
    // The older form without `scopes`, and an IAM-policy broker, work too.
    let (status, body) = octo_sts(
        &h,
        reqwest::Method::GET,
        "scope=acme/widgets&identity=widgets-iam",
        &h.token(json!({})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let issued = h.github.issued_tokens();
    assert_eq!(issued.len(), 3);
    assert!(issued
        .iter()
        .all(|t| t.repositories == ["acme/widgets".to_owned()]));
    let rows = h.rows().await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.record.decision == Decision::Allow));
    assert_eq!(rows[2].record.broker, "widgets-iam");
}

#[tokio::test]
async fn octo_sts_wrong_scope_is_refused_like_an_unknown_broker() {
    let h = Harness::start().await;
    let get = |query: &'static str| {
        let token = h.token(json!({}));
        let h = &h;
        async move { octo_sts(h, reqwest::Method::GET, query, &token, None).await }
    };
    let (s0, unknown) = get("scope=acme/widgets&identity=no-such-broker").await;
    assert_error(s0, &unknown, 403, "access_denied");
    for query in [
        "scope=acme/gadgets&scopes=acme/gadgets&identity=widgets-read",
        "scope=acme/widgets&scopes=acme/gadgets&identity=widgets-read",
        "scope=acme/widgets&scopes=acme/widgets,acme/gadgets&identity=widgets-read",
        "scope=acme&identity=widgets-read",
        "scope=ACME/widgets&identity=widgets-read",
        "scopes=acme/widgets/x&identity=widgets-read",
    ] {
        let (status, body) = get(query).await;
        assert_error(status, &body, 403, "access_denied");
        assert_eq!(body["message"], unknown["message"], "{query}");
    }
    assert!(h.github.issued_tokens().is_empty());
    // The audit log has the precise reason.
    let rows = h.rows().await;
    assert_eq!(rows.len(), 7);
    assert!(rows[0].record.reason.contains("unknown broker"));
    assert_eq!(
        rows[1].record.reason,
        r#"octo-sts scope "acme/gadgets" is not broker "widgets-read"'s repository "acme/widgets""#
    );
    assert!(rows[3].record.reason.contains(r#"scope "acme/gadgets""#));
    assert!(rows[4].record.reason.contains(r#"scope "acme" is not"#));
    assert!(rows[1..]
        .iter()
        .all(|r| r.record.broker == "widgets-read" && r.record.status == 403));
}

#[tokio::test]
async fn octo_sts_malformed_requests_are_400() {
    let h = Harness::start().await;
    let token = h.token(json!({}));
    for query in [
        "scope=acme/widgets",
        "scope=acme/widgets&identity=",
        "identity=widgets-read",
        "identity=widgets-read&scope=acme/widgets&identity=widgets-read",
        "identity=widgets-read&scope=acme/widgets&permissions=admin",
        "identity=bad%20name&scope=acme/widgets",
    ] {
        let (status, body) = octo_sts(&h, reqwest::Method::GET, query, &token, None).await;
        assert_error(status, &body, 400, "invalid_request");
        if query == "scope=acme/widgets" {
            assert!(body["message"]
                .as_str()
                .unwrap()
                .starts_with("missing identity"));
        }
    }
    // The body rule holds here too: any body is refused.
    for body in ["{}", r#"{"permissions":{"administration":"write"}}"#] {
        let (status, resp) = octo_sts(
            &h,
            reqwest::Method::POST,
            "scope=acme/widgets&identity=widgets-read",
            &token,
            Some(body),
        )
        .await;
        assert_error(status, &resp, 400, "invalid_request");
        assert!(resp["message"].as_str().unwrap().contains("body"), "{resp}");
    }
    // Other methods are 405; HEAD too, so no token is minted for nobody.
    for method in [reqwest::Method::PUT, reqwest::Method::HEAD] {
        let (status, _) = octo_sts(
            &h,
            method,
            "scope=acme/widgets&identity=widgets-read",
            &token,
            None,
        )
        .await;
        assert_eq!(status, 405);
    }
    assert!(h.github.issued_tokens().is_empty());
    let rows = h.rows().await;
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.record.status == 400));
}

// ---------------------------------------------------------------- rate limits

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
}

const OTHER_SUBJECT: &str = "repo:acme/app:environment:prod";

#[tokio::test]
async fn a_subject_over_its_burst_gets_429_with_retry_after_and_an_audit_row() {
    let h = Harness::with_github_config(
        "",
        "[limits]\nper_subject = { rate_per_second = 0.5, burst = 2 }\n",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    }
    let token = h.token(json!({}));
    let (status, body, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_error(status, &body, 429, "rate_limited");
    // One token every 2 s: the next is due in exactly 2 s.
    assert_eq!(retry_after(&headers), 2);
    assert_eq!(
        h.github.issued_tokens().len(),
        2,
        "a limited request mints nothing"
    );

    let rows = h.rows().await;
    let last = &rows.last().unwrap().record;
    assert_eq!(last.decision, Decision::Deny);
    assert_eq!(last.status, 429);
    assert_eq!(last.code.as_deref(), Some("rate_limited"));
    assert!(last.reason.contains("per-subject limit"), "{}", last.reason);
    assert!(
        last.reason.contains("repo:acme/app:ref:refs/heads/main"),
        "{}",
        last.reason
    );

    // Another subject has its own bucket.
    assert_eq!(
        h.exchange("widgets-read", json!({"sub": OTHER_SUBJECT}))
            .await
            .0,
        200
    );
    // And the first one refills with time.
    h.advance(2);
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 429);
}

#[tokio::test]
async fn a_broker_over_its_limit_gets_429_and_other_brokers_do_not() {
    let h = Harness::with_github_config(
        "",
        r#"
[[broker]]
name = "limited"
issuer = "dev"
repository = "acme/widgets"
permissions = { contents = "read" }
rate_limit = { rate_per_second = 0.25, burst = 1 }
[broker.claims]
repository_id = "123456789"
"#,
    )
    .await;
    // A request the policy denies does not draw on the broker's budget.
    let (status, _) = h.exchange("limited", json!({"repository_id": "666"})).await;
    assert_eq!(status, 403);
    assert_eq!(h.exchange("limited", json!({})).await.0, 200);
    // The limit is the broker's: another subject is refused too.
    let token = h.token(json!({"sub": OTHER_SUBJECT}));
    let (status, body, headers) = h.post("limited", Some(&token), None).await;
    assert_error(status, &body, 429, "rate_limited");
    assert_eq!(retry_after(&headers), 4);
    let rows = h.rows().await;
    let last = &rows.last().unwrap().record;
    assert_eq!(last.decision, Decision::Deny);
    assert!(
        last.reason
            .contains("broker \"limited\" (per-broker limit)"),
        "{}",
        last.reason
    );
    // Other brokers keep their own budget.
    assert_eq!(
        h.exchange("widgets-read", json!({"sub": OTHER_SUBJECT}))
            .await
            .0,
        200
    );
    h.advance(4);
    assert_eq!(h.exchange("limited", json!({})).await.0, 200);
}

#[tokio::test]
async fn while_github_rate_limits_the_app_exchanges_get_503_without_calling_it() {
    let h = Harness::start().await;
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    h.github.set_fault(Fault::RateLimited {
        reset_in: std::time::Duration::from_secs(30),
        retry_after: None,
    });
    // GitHub answers 403 with x-ratelimit-remaining: 0 and a reset in 30 s.
    let token = h.token(json!({}));
    let (status, body, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_error(status, &body, 503, "upstream_rate_limited");
    assert!((29..=31).contains(&retry_after(&headers)), "{headers:?}");
    let calls = h.github.call_count();

    // The next exchange is refused without a call, even though GitHub would answer now.
    h.github.set_fault(Fault::None);
    let token = h.token(json!({}));
    let (status, body, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_error(status, &body, 503, "upstream_rate_limited");
    assert!((28..=31).contains(&retry_after(&headers)), "{headers:?}");
    assert_eq!(
        h.github.call_count(),
        calls,
        "GitHub was called while it limits the App"
    );
    let rows = h.rows().await;
    let last = &rows.last().unwrap().record;
    assert_eq!(last.decision, Decision::Error);
    assert_eq!(last.code.as_deref(), Some("upstream_rate_limited"));

    // After the reset, exchanges reach GitHub again.
    h.advance(32);
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    // The installation is looked up again (the 403 dropped it from the cache), then minted.
    assert_eq!(h.github.call_count(), calls + 2);
}

#[tokio::test]
async fn at_the_github_concurrency_cap_a_waiting_exchange_gets_503() {
    let h = Arc::new(
        Harness::with_github_config("max_concurrent_requests = 1\nmax_queue_wait_ms = 100", "")
            .await,
    );
    h.github
        .set_fault(Fault::Delay(std::time::Duration::from_millis(600)));
    let first = {
        let h = h.clone();
        tokio::spawn(async move { h.exchange("widgets-read", json!({})).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let token = h.token(json!({"sub": OTHER_SUBJECT}));
    let (status, body, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_error(status, &body, 503, "upstream_busy");
    assert_eq!(retry_after(&headers), 1);
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.github.issued_tokens().len(), 1);
    let rows = h.rows().await;
    assert!(rows
        .iter()
        .any(|r| r.record.code.as_deref() == Some("upstream_busy")));
}

#[tokio::test]
async fn a_rate_limited_request_does_not_use_up_a_single_use_token() {
    let h =
        Harness::single_use_with("[limits]\nper_subject = { rate_per_second = 1, burst = 1 }\n")
            .await;
    let first = h.token(json!({"jti": "job-1"}));
    let second = h.token(json!({"jti": "job-2"}));
    assert_eq!(h.post("widgets-read", Some(&first), None).await.0, 200);
    let (status, body, _) = h.post("widgets-read", Some(&second), None).await;
    assert_error(status, &body, 429, "rate_limited");
    // Once the bucket refills, the refused token still works: its jti was not claimed.
    h.advance(1);
    let (status, body, _) = h.post("widgets-read", Some(&second), None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn while_github_rate_limits_the_app_single_use_tokens_are_not_used_up() {
    let h = Harness::single_use().await;
    h.github.set_fault(Fault::RateLimited {
        reset_in: std::time::Duration::from_secs(30),
        retry_after: None,
    });
    let first = h.token(json!({"jti": "job-1"}));
    let (status, body, _) = h.post("widgets-read", Some(&first), None).await;
    assert_error(status, &body, 503, "upstream_rate_limited");
    h.github.set_fault(Fault::None);
    // Refused before its jti is claimed, so it can be retried after the reset.
    let second = h.token(json!({"jti": "job-2"}));
    let (status, body, _) = h.post("widgets-read", Some(&second), None).await;
    assert_error(status, &body, 503, "upstream_rate_limited");
    h.advance(32);
    let (status, body, _) = h.post("widgets-read", Some(&second), None).await;
    assert_eq!(status, 200, "{body}");
}

// ------------------------------------------------------------ load shedding

#[tokio::test]
async fn exchanges_beyond_max_in_flight_are_shed_with_503_and_no_audit_row() {
    let h = Harness::with_server_settings("max_in_flight = 1").await;
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
    // One slow exchange holds the only slot.
    h.github
        .set_fault(Fault::Delay(std::time::Duration::from_millis(800)));
    let slow = {
        let client = h.client.clone();
        let url = format!("{}/v1/brokers/widgets-read/token", h.base);
        let token = h.token(json!({}));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let token = h.token(json!({}));
    let (s, b, headers) = h.post("widgets-read", Some(&token), None).await;
    assert_error(s, &b, 503, "overloaded");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the admitted exchange completes"
    );
    // The shed request left no audit row: the first and the slow exchange only.
    assert_eq!(h.rows().await.len(), 2);
    let text = scrape(&h).await;
    assert_eq!(
        metric(
            &text,
            "tokenmint_exchanges_total{broker=\"widgets-read\",outcome=\"overloaded\"}"
        )
        .as_deref(),
        Some("1"),
        "{text}"
    );
    // The slot is free again.
    h.github.set_fault(Fault::None);
    assert_eq!(h.exchange("widgets-read", json!({})).await.0, 200);
}
