//! End-to-end tests of the real `bootstrap`: the Lambda Runtime API stand-in (`tokenmint::dev::lambda_runtime`) on loopback, SSM served by moto, GitHub by tokenmint's stand-in, following github-token-broker's own scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Bytes;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokenmint::dev::github_standin::{Fault, GithubStandIn, StandInConfig};
use tokenmint::dev::lambda_runtime::{self as emulator, LambdaRuntime, RuntimeConfig};
use tokenmint::keys::RsaSigningKey;

const OWNER: &str = "acme";
const REPO: &str = "widgets";
const INSTALLATION: u64 = 4_242;
const CLIENT_ID: &str = "Iv23liTESTCLIENT";
const REJECTED: &str = "github-token-broker does not accept invocation input";

fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pinned AWS venv (built once by the script, shared with other tests).
fn aws_venv() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/python-env"))
        .arg("aws")
        .output()
        .expect("run scripts/python-env aws");
    assert!(
        out.status.success(),
        "scripts/python-env aws failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's server on a loopback port; killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new(aws_venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("{}/moto-api/", moto.url))
                .send()
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not start on port {port}");
    }

    /// `PutParameter` over moto's awsJson API (moto does not check signatures).
    async fn put(&self, name: &str, value: &str, secure: bool) {
        self.ssm(
            "PutParameter",
            json!({
                "Name": name,
                "Value": value,
                "Type": if secure { "SecureString" } else { "String" },
                "Overwrite": true
            }),
        )
        .await;
    }

    async fn delete(&self, name: &str) {
        self.ssm("DeleteParameter", json!({ "Name": name })).await;
    }

    /// One SSM API call to moto, which must succeed.
    async fn ssm(&self, action: &str, body: Value) {
        let resp = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("AmazonSSM.{action}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "{action} {body}: {}",
            resp.status()
        );
    }

    /// Seeds the three parameters under `prefix` (the default names when `prefix` is `/github-token-broker`).
    async fn seed(&self, prefix: &str, installation: &str, pem: &str) {
        self.put(&format!("{prefix}/app/client-id"), CLIENT_ID, false)
            .await;
        self.put(
            &format!("{prefix}/app/installation-id"),
            installation,
            false,
        )
        .await;
        self.put(&format!("{prefix}/app/private-key-pem"), pem, true)
            .await;
    }
}

/// What the bootstrap posted for one invocation, bodies parsed as JSON.
#[derive(Debug)]
enum Outcome {
    Response(Value),
    Error { body: Value, error_type: String },
}

/// One running `bootstrap` with its own Runtime API stand-in, and its captured output.
struct Function {
    child: Child,
    runtime: LambdaRuntime,
    dir: tempfile::TempDir,
    counter: usize,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Function {
    async fn start(env: &[(&str, String)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let runtime = LambdaRuntime::spawn(listener, RuntimeConfig::default())
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime.runtime_api())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start bootstrap");
        Self {
            child,
            runtime,
            dir,
            counter: 0,
        }
    }

    async fn invoke(&mut self, payload: &[u8]) -> Outcome {
        self.counter += 1;
        let id = format!("8f0c6a4e-0000-4000-8000-{:012}", self.counter);
        let pending = self
            .runtime
            .queue_with_id(id.clone(), payload.to_vec())
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(60), pending.answer())
            .await
            .expect("bootstrap answered in time")
            .expect("runtime API still up");
        assert_eq!(answer.request_id, id, "answer is for the invocation sent");
        match answer.outcome {
            emulator::Outcome::Response(body) => {
                Outcome::Response(serde_json::from_slice(&body).expect("response is JSON"))
            }
            emulator::Outcome::Error { body, error_type } => Outcome::Error {
                body: serde_json::from_slice(&body).expect("error is JSON"),
                error_type: error_type.unwrap_or_default(),
            },
        }
    }

    /// The next report posted to `/runtime/init/error`: its JSON body and error type.
    async fn init_error(&self) -> (Value, String) {
        let report = tokio::time::timeout(Duration::from_secs(30), self.runtime.init_error())
            .await
            .expect("init error posted")
            .unwrap();
        (
            serde_json::from_slice(&report.body).expect("init error is JSON"),
            report.error_type.unwrap_or_default(),
        )
    }

    async fn invoke_err(&mut self, payload: &[u8]) -> (String, String) {
        match self.invoke(payload).await {
            Outcome::Error { body, error_type } => {
                assert_eq!(body["errorType"], error_type.as_str());
                (
                    body["errorMessage"].as_str().unwrap().to_owned(),
                    error_type,
                )
            }
            Outcome::Response(_) => panic!("expected an error for {payload:?}"),
        }
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("stderr"))
    }
}

struct World {
    moto: Moto,
    github: GithubStandIn,
    pem: String,
}

impl World {
    async fn start() -> Self {
        let (key, pem) = RsaSigningKey::generate_pem().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let github = GithubStandIn::spawn(
            listener,
            StandInConfig {
                app_id: CLIENT_ID.into(),
                app_public_key: key.public_jwk(),
                installations: vec![(format!("{OWNER}/{REPO}"), INSTALLATION, 56_789)],
            },
        )
        .await
        .unwrap();
        Self {
            moto: Moto::start().await,
            github,
            pem,
        }
    }

    /// The environment of a github-token-broker deployment reading parameters under `prefix`.
    fn env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST".into()),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-never-logged".into()),
            ("AWS_SESSION_TOKEN", "aws-session-never-logged".into()),
            ("AWS_ENDPOINT_URL_SSM", self.moto.url.clone()),
            ("GITHUB_TOKEN_BROKER_REPOSITORY_OWNER", OWNER.into()),
            ("GITHUB_TOKEN_BROKER_REPOSITORY_NAME", REPO.into()),
            (
                "GITHUB_TOKEN_BROKER_CLIENT_ID_PARAM",
                format!("{prefix}/app/client-id"),
            ),
            (
                "GITHUB_TOKEN_BROKER_INSTALLATION_ID_PARAM",
                format!("{prefix}/app/installation-id"),
            ),
            (
                "GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM",
                format!("{prefix}/app/private-key-pem"),
            ),
            (
                "GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL",
                self.github.url().to_string(),
            ),
        ]
    }

    /// Asserts no secret reached the function's output: the PEM (any line of
    /// its body), installation tokens, App JWTs, AWS secrets.
    fn assert_no_secrets(&self, function: &Function) {
        let out = function.output();
        for line in self.pem.lines().filter(|l| l.len() > 20) {
            assert!(!out.contains(line), "PEM material in output:\n{out}");
        }
        for t in self.github.issued_tokens() {
            assert!(!out.contains(&t.token), "token in output:\n{out}");
        }
        for r in self.github.requests() {
            if let Some(b) = r.bearer {
                assert!(!out.contains(&b), "bearer credential in output:\n{out}");
            }
        }
        assert!(
            !out.contains("aws-secret-never-logged") && !out.contains("aws-session-never-logged")
        );
    }
}

fn with(
    mut env: Vec<(&'static str, String)>,
    k: &'static str,
    v: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(name, _)| *name != k);
    env.push((k, v.to_owned()));
    env
}

#[tokio::test]
async fn default_permissions_mint_once_then_reuse_caches() {
    let world = World::start().await;
    world
        .moto
        .seed("/github-token-broker", "4242", &world.pem)
        .await;
    let mut env = world.env("/github-token-broker");
    // The defaults are the original's: drop the parameter names.
    env.retain(|(k, _)| !k.ends_with("_PARAM"));
    let mut f = Function::start(&env).await;

    let Outcome::Response(answer) = f.invoke(b"null").await else {
        panic!("expected a token")
    };
    let issued = world.github.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(answer["token"], issued[0].token.as_str());
    assert_eq!(answer["repositories"], json!(["acme/widgets"]));
    assert_eq!(answer["permissions"], json!({"contents": "read"}));
    let expires = answer["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(
        answer.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["expires_at", "permissions", "repositories", "token"]
    );
    let body = world.github.requests()[1].body.clone().unwrap();
    assert_eq!(
        body,
        json!({"repositories": ["widgets"], "permissions": {"contents": "read"}})
    );

    // Warm: the installation lookup and App JWT are cached, so one GitHub call.
    let before = world.github.call_count();
    let Outcome::Response(second) = f.invoke(b" \n").await else {
        panic!("expected a token")
    };
    assert_ne!(second["token"], answer["token"]);
    assert_eq!(world.github.call_count() - before, 1);
    let jwts: Vec<_> = world
        .github
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/access_tokens"))
        .map(|r| r.bearer.unwrap())
        .collect();
    assert_eq!(jwts[0], jwts[1], "the App JWT is reused");

    let out = f.output();
    assert!(out.contains("minted GitHub installation token"), "{out}");
    let sha = tokenmint::github::InstallationToken::new(issued[0].token.as_str()).sha256_hex();
    assert!(out.contains(&sha), "token_sha256 logged: {out}");
    assert!(
        out.contains("8f0c6a4e-0000-4000-8000-000000000001"),
        "request id logged: {out}"
    );
    world.assert_no_secrets(&f);
}

#[tokio::test]
async fn custom_permissions_are_requested_and_answered() {
    let world = World::start().await;
    world.moto.seed("/custom", "4242", &world.pem).await;
    let env = with(
        world.env("/custom"),
        "GITHUB_TOKEN_BROKER_PERMISSIONS",
        r#"{"issues":"write","contents":"read"}"#,
    );
    let mut f = Function::start(&env).await;
    let Outcome::Response(answer) = f.invoke(b"").await else {
        panic!("expected a token")
    };
    let expected = json!({"contents": "read", "issues": "write"});
    assert_eq!(answer["permissions"], expected);
    let issued = world.github.issued_tokens();
    assert_eq!(
        serde_json::to_value(&issued[0].permissions).unwrap(),
        expected
    );
    world.assert_no_secrets(&f);
}

#[tokio::test]
async fn every_rejected_payload_shape_fails_before_any_call() {
    let world = World::start().await;
    world.moto.seed("/payloads", "4242", &world.pem).await;
    let mut f = Function::start(&world.env("/payloads")).await;
    let shapes: &[&[u8]] = &[
        b"{}",
        b"[]",
        b"\"x\"",
        b"Null",
        b"NULL",
        b"null\0",
        b"null null",
        b"0",
        b"true",
        b"{\"repository\":\"other\"}",
        b"\xff\xfe",
        "\u{feff}null".as_bytes(),
    ];
    for shape in shapes {
        let (message, kind) = f.invoke_err(shape).await;
        assert_eq!(message, REJECTED, "{shape:?}");
        assert_eq!(kind, "InvalidInvocationInput");
    }
    assert_eq!(
        world.github.call_count(),
        0,
        "no GitHub call for a rejected payload"
    );
    // The payload never reaches the logs.
    assert!(!f.output().contains("repository\\\":\\\"other"));
    // And the accepted shapes still work afterwards.
    assert!(matches!(
        f.invoke("\u{2003}null\u{a0}\n".as_bytes()).await,
        Outcome::Response(_)
    ));
    world.assert_no_secrets(&f);
}

#[tokio::test]
async fn ssm_and_github_failures_use_the_original_messages() {
    let world = World::start().await;
    // Missing private key parameter.
    world
        .moto
        .put("/missing/app/client-id", CLIENT_ID, false)
        .await;
    world
        .moto
        .put("/missing/app/installation-id", "4242", false)
        .await;
    let mut f = Function::start(&world.env("/missing")).await;
    let (message, _) = f.invoke_err(b"null").await;
    assert_eq!(
        message,
        "missing GitHub App SSM parameters: [/missing/app/private-key-pem]"
    );
    drop(f);

    // Installation mismatch: refused before any token is minted.
    world.moto.seed("/mismatch", "999", &world.pem).await;
    let mut f = Function::start(&world.env("/mismatch")).await;
    let (message, kind) = f.invoke_err(b"null").await;
    assert_eq!(
        message,
        "GitHub repository installation 4242 does not match configured installation 999"
    );
    assert_eq!(kind, "GitHubError");
    assert!(world.github.issued_tokens().is_empty());
    world.assert_no_secrets(&f);
    drop(f);

    // Malformed PEM.
    world
        .moto
        .seed(
            "/badpem",
            "4242",
            "-----BEGIN RSA PRIVATE KEY-----\nnot base64\n-----END RSA PRIVATE KEY-----\n",
        )
        .await;
    let mut f = Function::start(&world.env("/badpem")).await;
    let (message, kind) = f.invoke_err(b"null").await;
    assert!(
        message.starts_with("decode GitHub App private key PEM"),
        "{message}"
    );
    assert_eq!(kind, "PrivateKeyError");
    drop(f);

    // GitHub answers 403 to the token request.
    world.moto.seed("/forbidden", "4242", &world.pem).await;
    let mut f = Function::start(&world.env("/forbidden")).await;
    world.github.set_fault(Fault::TokenStatus {
        status: 403,
        times: 1,
    });
    let (message, _) = f.invoke_err(b"null").await;
    assert!(
        message.starts_with("GitHub installation-token request failed with status 403"),
        "{message}"
    );
    assert!(f.output().contains("mint GitHub installation token"));
    world.assert_no_secrets(&f);
}

#[tokio::test]
async fn configuration_errors_reach_the_init_error_endpoint() {
    let world = World::start().await;
    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (
            with(world.env("/x"), "GITHUB_TOKEN_BROKER_LOG_LEVEL", "verbose"),
            "GITHUB_TOKEN_BROKER_LOG_LEVEL \"verbose\" is not a log level",
        ),
        (
            with(world.env("/x"), "GITHUB_TOKEN_BROKER_REPOSITORY_OWNER", ".."),
            "GITHUB_TOKEN_BROKER_REPOSITORY_OWNER \"..\" is invalid",
        ),
        (
            with(world.env("/x"), "GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM", "/app/*"),
            "GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM \"/app/*\" must be a literal absolute SSM parameter path",
        ),
        (
            with(world.env("/x"), "GITHUB_TOKEN_BROKER_PERMISSIONS", r#"{"contents":"owner"}"#),
            "GITHUB_TOKEN_BROKER_PERMISSIONS: permission `contents` does not allow level `owner`",
        ),
        (
            with(world.env("/x"), "GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL", "http://api.github.com"),
            "GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL \"http://api.github.com\" must be an absolute https URL",
        ),
        (
            with(world.env("/x"), "TOKENMINT_MODE", "fast"),
            "TOKENMINT_MODE \"fast\" is not a mode",
        ),
    ];
    for (env, expected) in cases {
        let mut f = Function::start(&env).await;
        let (body, kind) = f.init_error().await;
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");
        assert_eq!(kind, "Runtime.ConfigError");
        assert_eq!(body["errorType"], "Runtime.ConfigError");
        let status = tokio::task::spawn_blocking(move || {
            let s = f.child.wait().unwrap();
            (s, f)
        })
        .await
        .unwrap()
        .0;
        assert!(
            !status.success(),
            "bootstrap exits non-zero after an init error"
        );
    }
}

/// The library's invoke handler on a controlled clock: credentials read from
/// SSM are reused for 60 s, then read again (so a rotated key or installation
/// takes effect within a minute).
#[tokio::test]
async fn credentials_are_read_again_after_sixty_seconds() {
    use tokenmint::clock::{Clock as _, FixedClock, SystemClock};
    use tokenmint::lambda::{Env, Invocation, InvokeHandler, LambdaConfig, Mode};

    let world = World::start().await;
    world.moto.seed("/rotate", "4242", &world.pem).await;
    let config = LambdaConfig::from_env(&Env::from_pairs(world.env("/rotate"))).unwrap();
    let Mode::Invoke(config) = config.mode else {
        panic!("invoke mode expected")
    };
    let start = SystemClock.now();
    let clock = Arc::new(FixedClock::new(start));
    let handler = InvokeHandler::new(*config, clock.clone()).unwrap();
    let invocation = |n: u32| Invocation {
        request_id: format!("req-{n}"),
        invoked_function_arn: None,
        cognito_identity_id: None,
        deadline_ms: None,
        payload: Bytes::from_static(b"null"),
    };
    handler.handle(&invocation(1)).await.unwrap();

    // The operator points the installation parameter elsewhere.
    world
        .moto
        .put("/rotate/app/installation-id", "999", false)
        .await;
    clock.set(start + time::Duration::seconds(59));
    handler
        .handle(&invocation(2))
        .await
        .expect("within 60 s the cached credentials are used");
    clock.set(start + time::Duration::seconds(61));
    let err = handler.handle(&invocation(3)).await.unwrap_err();
    assert_eq!(
        err.message,
        "GitHub repository installation 4242 does not match configured installation 999"
    );
}

/// http mode: the same binary serves the shared router over Function URL
/// events; the mode comes from configuration, so a `null` payload is refused.
#[tokio::test]
async fn http_mode_serves_the_token_endpoint_over_function_url_events() {
    use tokenmint::dev::{DevStack, DevStackOptions};

    let dir = tempfile::tempdir().unwrap();
    let stack = DevStack::start(DevStackOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        dir: dir.path().to_owned(),
        claims: Vec::new(),
    })
    .await
    .unwrap();
    let mut f = Function::start(&[
        ("TOKENMINT_MODE", "http".to_owned()),
        ("TOKENMINT_CONFIG", stack.config_path.display().to_string()),
    ])
    .await;
    let event = |jwt: &str| {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/v1/brokers/widgets-read/token",
            "rawQueryString": "",
            "headers": {"authorization": format!("Bearer {jwt}"), "user-agent": "test"},
            "requestContext": {"http": {"method": "POST", "path": "/v1/brokers/widgets-read/token", "sourceIp": "203.0.113.7"}},
            "isBase64Encoded": false
        })
        .to_string()
        .into_bytes()
    };

    let jwt = stack.issuer.mint("tokenmint", json!({})).unwrap();
    let Outcome::Response(answer) = f.invoke(&event(&jwt)).await else {
        panic!("expected an HTTP answer")
    };
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let issued = stack.github.issued_tokens();
    assert_eq!(body["token"], issued[0].token.as_str());
    assert!(answer["headers"]["x-request-id"].is_string());

    // A token for another branch is denied with the router's own 403.
    let other = stack
        .issuer
        .mint("tokenmint", json!({"ref": "refs/heads/dev"}))
        .unwrap();
    let Outcome::Response(denied) = f.invoke(&event(&other)).await else {
        panic!("expected an HTTP answer")
    };
    assert_eq!(denied["statusCode"], 403, "{denied}");

    // The payload cannot switch modes.
    let (message, kind) = f.invoke_err(b"null").await;
    assert_eq!(kind, "InvalidEvent");
    assert!(message.starts_with("http mode expects"), "{message}");

    let out = f.output();
    assert!(
        !out.contains(issued[0].token.as_str()),
        "token in output: {out}"
    );
    assert!(!out.contains(&jwt), "OIDC token in output: {out}");
}

/// Calls a moto KMS action over awsJson (moto does not check signatures).
async fn kms(moto: &Moto, action: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(&moto.url)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("TrentService.{action}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "KMS {action}: {}",
        resp.status()
    );
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// Key custody: with a KMS key configured, the App JWT is signed by KMS
/// (`RSASSA_PKCS1_V1_5_SHA_256`), no PEM is read from SSM, and the GitHub
/// stand-in verifies the JWT against the KMS key's public half.
#[tokio::test]
async fn kms_signs_the_app_jwt_and_no_pem_is_needed() {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;

    let moto = Moto::start().await;
    let created = kms(
        &moto,
        "CreateKey",
        json!({"KeyUsage": "SIGN_VERIFY", "KeySpec": "RSA_2048"}),
    )
    .await;
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let public = kms(&moto, "GetPublicKey", json!({"KeyId": arn})).await;
    let der = base64::engine::general_purpose::STANDARD
        .decode(public["PublicKey"].as_str().unwrap())
        .unwrap();
    let key = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = tokenmint::keys::RsaPublicJwk {
        kty: "RSA",
        kid: "kms".into(),
        use_: "sig",
        alg: "RS256",
        n: b64(key.n().to_bytes_be()),
        e: b64(key.e().to_bytes_be()),
    };
    let github = GithubStandIn::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        StandInConfig {
            app_id: CLIENT_ID.into(),
            app_public_key: jwk,
            installations: vec![(format!("{OWNER}/{REPO}"), INSTALLATION, 56_789)],
        },
    )
    .await
    .unwrap();
    moto.put("/kms/app/client-id", CLIENT_ID, false).await;
    moto.put("/kms/app/installation-id", "4242", false).await;

    let env = vec![
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "aws-secret-never-logged".to_owned(),
        ),
        // One override for both SSM and KMS.
        ("AWS_ENDPOINT_URL", moto.url.clone()),
        ("GITHUB_TOKEN_BROKER_REPOSITORY_OWNER", OWNER.to_owned()),
        ("GITHUB_TOKEN_BROKER_REPOSITORY_NAME", REPO.to_owned()),
        (
            "GITHUB_TOKEN_BROKER_CLIENT_ID_PARAM",
            "/kms/app/client-id".to_owned(),
        ),
        (
            "GITHUB_TOKEN_BROKER_INSTALLATION_ID_PARAM",
            "/kms/app/installation-id".to_owned(),
        ),
        // Deliberately absent from SSM: with KMS it is never read.
        (
            "GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM",
            "/kms/app/private-key-pem".to_owned(),
        ),
        (
            "GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL",
            github.url().to_string(),
        ),
        ("TOKENMINT_GITHUB_APP_KMS_KEY_ID", arn.clone()),
    ];
    let mut f = Function::start(&env).await;
    let Outcome::Response(answer) = f.invoke(b"null").await else {
        panic!("expected a token: {}", f.output())
    };
    assert_eq!(answer["token"], github.issued_tokens()[0].token.as_str());
    let out = f.output();
    assert!(
        !out.contains(github.issued_tokens()[0].token.as_str()),
        "{out}"
    );
}

/// `tokenmint serve` key custody: `[github] private_key_ssm` and `[github]
/// kms_key_id` (every App JWT signed by KMS) each mint through the shared
/// router.
#[tokio::test]
async fn serve_reads_the_app_key_from_ssm_or_signs_with_kms() {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    use tokenmint::clock::SystemClock;
    use tokenmint::dev::issuer::{DevIssuer, IssuerConfig};
    use tower::ServiceExt as _;

    let world = World::start().await;
    world
        .moto
        .put("/serve/private-key-pem", &world.pem, true)
        .await;
    let created = kms(
        &world.moto,
        "CreateKey",
        json!({"KeyUsage": "SIGN_VERIFY", "KeySpec": "RSA_2048"}),
    )
    .await;
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let public = kms(&world.moto, "GetPublicKey", json!({"KeyId": arn})).await;
    let der = base64::engine::general_purpose::STANDARD
        .decode(public["PublicKey"].as_str().unwrap())
        .unwrap();
    let kms_key = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let kms_github = GithubStandIn::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        StandInConfig {
            app_id: CLIENT_ID.into(),
            app_public_key: tokenmint::keys::RsaPublicJwk {
                kty: "RSA",
                kid: "kms".into(),
                use_: "sig",
                alg: "RS256",
                n: b64(kms_key.n().to_bytes_be()),
                e: b64(kms_key.e().to_bytes_be()),
            },
            installations: vec![(format!("{OWNER}/{REPO}"), INSTALLATION, 56_789)],
        },
    )
    .await
    .unwrap();
    let issuer = DevIssuer::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        IssuerConfig::new("request-token"),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let moto_url = world.moto.url.clone();
    let env = move |name: &str| match name {
        "AWS_REGION" => Some("us-east-1".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some("AKIDTEST".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("aws-secret".to_owned()),
        "AWS_ENDPOINT_URL" => Some(moto_url.clone()),
        _ => None,
    };

    for (key_line, github) in [
        (
            r#"private_key_ssm = "/serve/private-key-pem""#.to_owned(),
            &world.github,
        ),
        (format!("kms_key_id = {arn:?}"), &kms_github),
    ] {
        let text = format!(
            r#"
[audit]
database = "sqlite://audit.db"
[github]
api_url = "{}"
app_id = "{CLIENT_ID}"
{key_line}
[[issuer]]
name = "dev"
url = "{}"
audiences = ["tokenmint"]
[[broker]]
name = "widgets"
issuer = "dev"
repository = "{OWNER}/{REPO}"
permissions = {{ contents = "read" }}
[broker.claims]
repository_owner_id = "987654321"
"#,
            github.url(),
            issuer.issuer_url()
        );
        let path = dir.path().join("tokenmint.toml");
        let config = tokenmint::config::Config::parse(&text, &path, &env).unwrap();
        let service = tokenmint::exchange::Service::start(Arc::new(config), Arc::new(SystemClock))
            .await
            .unwrap();
        let router = tokenmint::http::router(Arc::new(service));
        let jwt = issuer.mint("tokenmint", json!({})).unwrap();
        let response = router
            .oneshot(
                axum::http::Request::post("/v1/brokers/widgets/token")
                    .header("authorization", format!("Bearer {jwt}"))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{key_line}");
        assert_eq!(github.issued_tokens().len(), 1, "{key_line}");
    }
}

/// `tokenmint serve` with `[github] private_key_ssm`: a key rotated in SSM
/// signs the App JWTs signed a minute or more after the last read, and a
/// failed re-read (a deleted parameter, a value that is not a key) keeps the
/// key read before. PKCS#1 v1.5 signatures are deterministic, so each App JWT
/// names the key that signed it.
#[tokio::test]
async fn serve_re_reads_a_rotated_app_key_from_ssm_and_keeps_the_last_good_one() {
    use tokenmint::aws::ssm::SsmClient;
    use tokenmint::aws::AwsEnv;
    use tokenmint::clock::{Clock as _, SystemClock};
    use tokenmint::github::{AppSigner, SsmAppKey, SSM_KEY_REFRESH};
    use tracing_subscriber::util::SubscriberInitExt as _;

    // This test's log lines (current-thread runtime: everything runs here).
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Logs::default();
    let writer = logs.clone();
    let _logging = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .set_default();

    let world = World::start().await;
    let name = "/rotate/private-key-pem";
    let (old, old_pem) = RsaSigningKey::generate_pem().unwrap();
    let (new, new_pem) = RsaSigningKey::generate_pem().unwrap();
    world.moto.put(name, &old_pem, true).await;
    let moto_url = world.moto.url.clone();
    let env = AwsEnv::from_env(|var: &str| match var {
        "AWS_REGION" => Some("us-east-1".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some("AKIDTEST".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("aws-secret".to_owned()),
        "AWS_ENDPOINT_URL" => Some(moto_url.clone()),
        _ => None,
    })
    .unwrap();
    let ssm = SsmClient::new(env, Duration::from_secs(5)).unwrap();
    let t0 = SystemClock.now();
    let signer = AppSigner::Ssm(Arc::new(
        SsmAppKey::load(ssm, name.to_owned(), t0).await.unwrap(),
    ));
    let claims = json!({"iss": CLIENT_ID});
    let signed_by = |key: &RsaSigningKey| key.sign_jwt(&claims, false).unwrap();
    let at = |secs: i64| t0 + time::Duration::seconds(secs);
    let refresh = SSM_KEY_REFRESH.whole_seconds();

    assert_eq!(signer.sign_jwt(&claims, t0).await.unwrap(), signed_by(&old));
    world.moto.put(name, &new_pem, true).await;
    // Within the minute: the key read at start.
    assert_eq!(
        signer.sign_jwt(&claims, at(refresh - 1)).await.unwrap(),
        signed_by(&old)
    );
    // A minute on: read again, and the rotated key signs.
    assert_eq!(
        signer.sign_jwt(&claims, at(refresh)).await.unwrap(),
        signed_by(&new)
    );
    // A value that is no key: the last good key signs.
    world.moto.put(name, "not a PEM key", true).await;
    assert_eq!(
        signer.sign_jwt(&claims, at(2 * refresh)).await.unwrap(),
        signed_by(&new)
    );
    // A failed read also waits a minute before the next: not read again yet.
    world.moto.put(name, &old_pem, true).await;
    assert_eq!(
        signer.sign_jwt(&claims, at(2 * refresh + 1)).await.unwrap(),
        signed_by(&new)
    );
    // The parameter gone: the last good key signs.
    world.moto.delete(name).await;
    assert_eq!(
        signer.sign_jwt(&claims, at(3 * refresh + 1)).await.unwrap(),
        signed_by(&new)
    );
    // Put back, the next due read picks it up.
    world.moto.put(name, &old_pem, true).await;
    assert_eq!(
        signer.sign_jwt(&claims, at(4 * refresh + 1)).await.unwrap(),
        signed_by(&old)
    );
    // A signer whose exchange started a little earlier (they reach the
    // signer out of order) reads nothing again...
    world.moto.put(name, &new_pem, true).await;
    assert_eq!(
        signer.sign_jwt(&claims, at(4 * refresh - 5)).await.unwrap(),
        signed_by(&old)
    );
    // ...but a clock that moved back by a minute or more makes a read due.
    assert_eq!(signer.sign_jwt(&claims, t0).await.unwrap(), signed_by(&new));

    // The log names the change and the failed reads by key id, never a key.
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("the GitHub App private key in SSM changed")
            && logs.contains(&format!("new_kid=\"{}\"", new.kid()))
            && logs.contains("could not re-read the GitHub App private key from SSM"),
        "{logs}"
    );
    for pem in [&old_pem, &new_pem] {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for chunk in body.as_bytes().chunks(24) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!logs.contains(chunk), "key material in the log: {chunk}");
        }
    }
}

/// Our SigV4 signature of an SSM request equals botocore's (the AWS SDK for
/// Python), session token and non-default port included: moto does not check
/// signatures, so this is what keeps the signer honest beyond AWS's test vector.
#[test]
fn sigv4_matches_botocore() {
    use secrecy::SecretString;
    use tokenmint::aws::sigv4::{sign, Request};
    use tokenmint::aws::AwsCredentials;

    let body = br#"{"Names":["/github-token-broker/app/client-id"],"WithDecryption":true}"#;
    let script = r#"
import sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
body = sys.argv[1].encode()
req = AWSRequest(method="POST", url="http://127.0.0.1:4566/", data=body, headers={
    "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.GetParameters"})
auth = SigV4Auth(Credentials("AKIDTEST", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session/token+=="), "ssm", "eu-west-1")
req.context["timestamp"] = "20260101T120000Z"
req.headers["X-Amz-Date"] = "20260101T120000Z"
req.headers["X-Amz-Security-Token"] = "session/token+=="
print(auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req))
"#;
    let out = Command::new(aws_venv().join("bin/python"))
        .args(["-c", script, std::str::from_utf8(body).unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let headers = sign(
        &Request {
            method: "POST",
            host: "127.0.0.1:4566",
            path: "/",
            query: "",
            headers: &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "AmazonSSM.GetParameters"),
            ],
            body,
        },
        &AwsCredentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: Some(SecretString::from("session/token+==")),
        },
        "eu-west-1",
        "ssm",
        time::macros::datetime!(2026-01-01 12:00:00 UTC),
    );
    let authorization = &headers
        .iter()
        .find(|(k, _)| *k == "authorization")
        .unwrap()
        .1;
    assert_eq!(
        authorization.rsplit("Signature=").next().unwrap(),
        expected,
        "{authorization}"
    );
}
