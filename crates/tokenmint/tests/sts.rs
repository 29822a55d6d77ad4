//! End-to-end tests of the AWS STS-compatible endpoint with real AWS clients: boto3 (direct call and the web-identity provider chain) and the AWS CLI, from the pinned venv of `scripts/python-env aws`.
//!
//! No AWS network call can escape: the Python processes get a cleared
//! environment (no credentials, no config files, no proxies), the instance
//! metadata service disabled, region `us-east-1`, and every client is pointed
//! at the loopback server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Harness;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokenmint::audit::Decision;
use tokenmint::clock::{Clock, SystemClock};
use tokenmint::http::ServeOptions;

const ROLE: &str = "arn:aws:iam::123456789012:role/ci/deployer";
const LONG_ROLE: &str = "arn:aws:iam::123456789012:role/long";

/// Roles on the harness's `trust.json` (aud `tokenmint`, sub
/// `repo:acme/app:ref:refs/heads/*`, the dev issuer in 123456789012), and an
/// issuer whose keys cannot be fetched.
const ROLES: &str = r#"
[[issuer]]
name = "down"
url = "http://127.0.0.1:9"
audiences = ["tokenmint"]

[[role]]
arn = "arn:aws:iam::123456789012:role/ci/deployer"
trust_policy_file = "trust.json"

[[role]]
arn = "arn:aws:iam::123456789012:role/long"
trust_policy_file = "trust.json"
max_session_duration = 7200
"#;

async fn harness() -> Harness {
    logs();
    Harness::with_extra_config(false, ServeOptions::default(), ROLES).await
}

/// Everything this test binary logs, at debug level (one global subscriber
/// shared by the tests, which is enough to show a value never reached it).
fn logs() -> String {
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    let buffer = LOGS.get_or_init(|| {
        let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    });
    String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
}

/// The venv with boto3 and the AWS CLI, built once by `scripts/python-env aws`.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new(root.join("scripts/python-env"))
            .arg("aws")
            .output()
            .expect("scripts/python-env needs bash and python3 (CI installs them)");
        assert!(
            out.status.success(),
            "scripts/python-env aws failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Runs `cases` through `tests/python/sts_clients.py` and returns one result per case.
async fn run_clients(h: &Harness, cases: Value) -> Vec<Value> {
    let venv = venv().to_owned();
    let cases_file = h
        .dir
        .path()
        .join(format!("cases-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    let home = h.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sts_clients.py");
    let out = tokio::process::Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(&cases_file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "sts_clients.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn assert_client_error(result: &Value, status: u16, code: &str) {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["code"], code, "{result}");
    assert_eq!(result["status"], status, "{result}");
}

#[tokio::test]
async fn boto3_provider_chain_and_aws_cli_assume_the_role_and_sign_get_caller_identity() {
    let h = harness().await;
    let endpoint = h.base.clone();
    let token_file = h.dir.path().join("web-identity-token");
    std::fs::write(&token_file, h.token(json!({}))).unwrap();
    let odd_sub = "repo:acme/app:ref:refs/heads/a<b>&'\"c";
    let results = run_clients(
        &h,
        json!([
            {"op": "assume", "endpoint": endpoint, "role_arn": ROLE, "session": "build-42",
             "token": h.token(json!({}))},
            {"op": "chain", "endpoint": endpoint, "role_arn": ROLE, "session": "chain-session",
             "token_file": token_file},
            {"op": "cli_assume", "endpoint": endpoint, "role_arn": LONG_ROLE, "session": "cli@ci",
             "token": h.token(json!({}))},
            {"op": "assume", "endpoint": endpoint, "role_arn": ROLE, "session": "odd",
             "token": h.token(json!({"sub": odd_sub}))},
        ]),
    )
    .await;

    // boto3, direct.
    let direct = &results[0];
    assert_eq!(direct["ok"], true, "{direct}");
    let akid = direct["AccessKeyId"].as_str().unwrap();
    assert!(akid.starts_with("ASIA") && akid.len() == 20, "{direct}");
    assert_eq!(direct["SecretAccessKey"].as_str().unwrap().len(), 40);
    assert_eq!(
        direct["AssumedRoleArn"],
        "arn:aws:sts::123456789012:assumed-role/deployer/build-42"
    );
    let role_id = direct["AssumedRoleId"].as_str().unwrap();
    assert!(
        role_id.starts_with("AROA") && role_id.ends_with(":build-42"),
        "{direct}"
    );
    assert_eq!(direct["Subject"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(direct["Provider"], h.issuer.issuer_url());
    assert_eq!(direct["Audience"], "tokenmint");
    let expiration = time::OffsetDateTime::parse(
        direct["Expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let lifetime = expiration - h.clock.now();
    assert!(
        (3590..=3600).contains(&lifetime.whole_seconds()),
        "{lifetime}"
    );
    // get_caller_identity, SigV4-signed with the returned credentials.
    assert_eq!(
        direct["identity"],
        json!({"Arn": "arn:aws:sts::123456789012:assumed-role/deployer/build-42",
               "UserId": role_id, "Account": "123456789012"})
    );

    // The provider chain: token file + role ARN + AWS_ENDPOINT_URL_STS only.
    let chain = &results[1];
    assert_eq!(chain["ok"], true, "{chain}");
    assert!(chain["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(
        chain["identity"]["Arn"],
        "arn:aws:sts::123456789012:assumed-role/deployer/chain-session"
    );

    // The AWS CLI.
    let cli = &results[2];
    assert_eq!(cli["ok"], true, "{cli}");
    assert_eq!(
        cli["AssumedRoleArn"],
        "arn:aws:sts::123456789012:assumed-role/long/cli@ci"
    );
    assert_eq!(cli["identity"]["Arn"], cli["AssumedRoleArn"]);
    assert_eq!(cli["identity"]["Account"], "123456789012");

    // Markup in a claim survives the XML round trip exactly.
    assert_eq!(results[3]["ok"], true, "{}", results[3]);
    assert_eq!(results[3]["Subject"], odd_sub);

    // Every assumption is audited with a hash of the session token, never
    // the secret or the token itself.
    let rows = h.rows().await;
    let allows: Vec<_> = rows
        .iter()
        .filter(|r| r.record.decision == Decision::Allow)
        .collect();
    assert_eq!(allows.len(), 4, "{rows:?}");
    let session_token = direct["SessionToken"].as_str().unwrap();
    let direct_row = allows
        .iter()
        .find(|r| r.record.reason.contains(akid))
        .expect("an audit row names the access key id");
    assert_eq!(direct_row.record.broker, format!("sts:{ROLE}"));
    let grant = direct_row.record.grant.as_ref().unwrap();
    assert_eq!(
        grant.token_sha256,
        tokenmint::audit::token_sha256(session_token)
    );
    assert_eq!(
        grant.repositories,
        vec!["arn:aws:sts::123456789012:assumed-role/deployer/build-42".to_owned()]
    );
    let logs = logs();
    assert!(logs.contains("assumed role"), "logs are captured:\n{logs}");
    assert!(logs.contains(akid), "the access key id is logged:\n{logs}");
    let db = std::fs::read(h.dir.path().join("audit.db")).unwrap();
    let wal = std::fs::read(h.dir.path().join("audit.db-wal")).unwrap_or_default();
    for secret in [direct["SecretAccessKey"].as_str().unwrap(), session_token] {
        assert!(!logs.contains(secret), "a credential reached the logs");
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a credential reached the audit store"
            );
        }
    }
}

#[tokio::test]
async fn every_error_code_reaches_botocore() {
    let h = harness().await;
    let endpoint = h.base.clone();
    let t = h.clock.now().unix_timestamp();
    let good = h.token(json!({}));
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let assume = |role: &str, session: &str, token: &str| json!({"op": "assume", "endpoint": endpoint, "role_arn": role, "session": session, "token": token});
    let mut long = assume(ROLE, "ok-session", &good);
    long["duration"] = json!(7200);
    let mut short = assume(ROLE, "ok-session", &good);
    short["duration"] = json!(899);
    let results = run_clients(
        &h,
        json!([
            assume(ROLE, "s1", &tampered),
            assume(
                ROLE,
                "s2",
                &h.token(json!({"iat": t - 400, "nbf": t - 400, "exp": t - 200}))
            ),
            assume(
                ROLE,
                "s3",
                &h.token(json!({"sub": "repo:evil/app:ref:refs/heads/main"}))
            ),
            assume("arn:aws:iam::123456789012:role/absent", "s4", &good),
            assume(ROLE, "s5", &h.token(json!({"iss": "http://127.0.0.1:9"}))),
            long,
            short,
            assume(ROLE, "bad/name", &good),
            assume(ROLE, "ok-session", &good),
        ]),
    )
    .await;
    assert_client_error(&results[0], 400, "InvalidIdentityToken");
    assert_client_error(&results[1], 400, "ExpiredTokenException");
    assert_client_error(&results[2], 403, "AccessDenied");
    assert_eq!(
        results[2]["message"],
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    assert_client_error(&results[3], 403, "AccessDenied");
    assert_eq!(results[3]["message"], results[2]["message"]);
    assert_client_error(&results[4], 400, "IDPCommunicationError");
    assert_client_error(&results[5], 400, "ValidationError");
    assert!(results[5]["message"]
        .as_str()
        .unwrap()
        .contains("MaxSessionDuration"));
    assert_client_error(&results[6], 400, "ValidationError");
    assert_client_error(&results[7], 400, "ValidationError");
    let ok = &results[8];
    assert_eq!(ok["ok"], true, "{ok}");

    // Broken credentials on GetCallerIdentity.
    let gci = |akid: &str, secret: &str, token: Option<&str>| {
        json!({"op": "gci", "endpoint": endpoint, "access_key_id": akid,
               "secret_access_key": secret, "session_token": token})
    };
    let akid = ok["AccessKeyId"].as_str().unwrap();
    let secret = ok["SecretAccessKey"].as_str().unwrap();
    let session = ok["SessionToken"].as_str().unwrap();
    let results = run_clients(
        &h,
        json!([
            gci(
                akid,
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                Some(session)
            ),
            gci(akid, secret, Some("tm1.forged.token")),
            gci("ASIAAAAAAAAAAAAAAAAA", secret, Some(session)),
            gci("AKIAAAAAAAAAAAAAAAAA", secret, None),
            gci(akid, secret, Some(session)),
        ]),
    )
    .await;
    assert_client_error(&results[0], 403, "SignatureDoesNotMatch");
    assert_client_error(&results[1], 403, "InvalidClientTokenId");
    assert_client_error(&results[2], 403, "InvalidClientTokenId");
    assert_client_error(&results[3], 403, "InvalidClientTokenId");
    assert_eq!(results[4]["ok"], true, "{}", results[4]);

    // Expired credentials: assume 2000 s in the past (900 s session), then
    // sign at the real time.
    let real = SystemClock.now();
    h.clock.set(real - time::Duration::seconds(2000));
    let mut past = assume(ROLE, "past", &h.token(json!({})));
    past["duration"] = json!(900);
    past["op"] = json!("assume_only");
    let results = run_clients(&h, json!([past])).await;
    h.clock.set(real);
    let old = &results[0];
    assert_eq!(old["ok"], true, "{old}");
    let results = run_clients(
        &h,
        json!([gci(
            old["AccessKeyId"].as_str().unwrap(),
            old["SecretAccessKey"].as_str().unwrap(),
            Some(old["SessionToken"].as_str().unwrap())
        )]),
    )
    .await;
    assert_client_error(&results[0], 400, "ExpiredToken");

    // Every AssumeRoleWithWebIdentity refusal is audited with its code and reason.
    let rows = h.rows().await;
    let codes: Vec<_> = rows
        .iter()
        .filter(|r| r.record.decision == Decision::Deny)
        .map(|r| r.record.code.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        [
            "InvalidIdentityToken",
            "ExpiredTokenException",
            "AccessDenied",
            "AccessDenied",
            "IDPCommunicationError",
            "ValidationError",
            "ValidationError",
            "ValidationError",
        ]
    );
    let denied = rows
        .iter()
        .find(|r| r.record.code.as_deref() == Some("AccessDenied"))
        .unwrap();
    assert!(
        denied.record.reason.contains("IAM trust policy"),
        "{}",
        denied.record.reason
    );
    assert_eq!(
        denied.record.subject.as_deref(),
        Some("repo:evil/app:ref:refs/heads/main")
    );
}

#[tokio::test]
async fn without_roles_the_endpoint_does_not_exist() {
    let h = Harness::start().await;
    let resp = h
        .client
        .post(format!("{}/", h.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=GetCallerIdentity&Version=2011-06-15")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn errors_are_aws_xml_and_unsigned_get_caller_identity_is_refused() {
    let h = harness().await;
    let post = |body: &'static str| {
        h.client
            .post(format!("{}/", h.base))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body)
            .send()
    };
    let resp = post("Action=GetCallerIdentity&Version=2011-06-15")
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "text/xml");
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(
        text,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>MissingAuthenticationToken</Code><Message>Request is missing Authentication Token; sign GetCallerIdentity with SigV4</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    );
    let resp = post("Action=Nope%3C%26&Version=2011-06-15").await.unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("<Code>InvalidAction</Code>"), "{text}");
    assert!(text.contains("Nope&lt;&amp;"), "{text}");
}
