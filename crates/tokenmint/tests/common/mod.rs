//! The shared end-to-end harness: the real router and server on loopback, the local OIDC issuer and the GitHub API stand-in, and a config tying them together.
//!
//! Used by `tests/api.rs` and `tests/adversarial.rs`. The service runs on a
//! [`FixedClock`] set to the real time at start, and tokens are minted
//! relative to it, so tests can move time without sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::{json, Value};
use std::sync::Arc;
use time::Duration as TimeDelta;
use tokenmint::audit::{AuditLog, ListFilter};
use tokenmint::clock::{Clock, FixedClock, SystemClock};
use tokenmint::config::Config;
use tokenmint::dev::github_standin::{GithubStandIn, StandInConfig};
use tokenmint::dev::issuer::{DevIssuer, IssuerConfig};
use tokenmint::exchange::Service;
use tokenmint::http::ServeOptions;
use tokenmint::keys::RsaSigningKey;

pub(crate) const AUD: &str = "tokenmint";

pub(crate) struct Harness {
    pub(crate) issuer: DevIssuer,
    pub(crate) github: GithubStandIn,
    pub(crate) clock: Arc<FixedClock>,
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) app_pem: String,
    pub(crate) db_url: String,
    pub(crate) shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(crate) const BROKERS: &str = r#"
[[broker]]
name = "widgets-read"
issuer = "dev"
repository = "acme/widgets"
permissions = { contents = "read", issues = "write" }
[broker.claims]
repository_owner_id = "987654321"
repository_id = "123456789"
sub = ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]
job_workflow_ref = { like = "acme/app/.github/workflows/*@refs/heads/main" }
ref = { matches = "refs/heads/(main|release/.*)" }

[[broker]]
name = "widgets-other-issuer"
issuer = "other"
repository = "acme/widgets"
permissions = { contents = "read" }
[broker.claims]
repository_id = "123456789"

[[broker]]
name = "widgets-iam"
issuer = "dev"
repository = "acme/widgets"
permissions = { contents = "read" }
trust_policy_file = "trust.json"

[[broker]]
name = "widgets-pinned"
issuer = "dev"
repository = "acme/widgets"
repository_id = "56789"
permissions = { contents = "write" }
[broker.claims]
repository_id = "123456789"
"#;

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::with(false).await
    }

    pub(crate) async fn with(explain_denials: bool) -> Self {
        Self::with_options(explain_denials, ServeOptions::default()).await
    }

    pub(crate) async fn with_options(explain_denials: bool, options: ServeOptions) -> Self {
        Self::with_extra_config(explain_denials, options, "").await
    }

    /// Like [`Harness::with_options`], with `extra` (more `[[issuer]]` and
    /// `[[broker]]` entries) appended to the config.
    pub(crate) async fn with_extra_config(
        explain_denials: bool,
        options: ServeOptions,
        extra: &str,
    ) -> Self {
        Self::with_settings(explain_denials, options, "", extra, false, "").await
    }

    /// `github` (more `[github]` keys) and `extra` (top-level tables such as
    /// `[limits]`, or more `[[issuer]]`/`[[broker]]` entries) added to the config.
    pub(crate) async fn with_github_config(github: &str, extra: &str) -> Self {
        Self::with_settings(false, ServeOptions::default(), github, extra, false, "").await
    }

    /// The `dev` issuer with `single_use = true`.
    pub(crate) async fn single_use() -> Self {
        Self::single_use_with("").await
    }

    /// [`Harness::single_use`] with `extra` added to the config.
    pub(crate) async fn single_use_with(extra: &str) -> Self {
        Self::with_settings(false, ServeOptions::default(), "", extra, true, "").await
    }

    /// With `server` (more `key = value` lines) added to `[server]`.
    pub(crate) async fn with_server_settings(server: &str) -> Self {
        Self::with_settings(false, ServeOptions::default(), "", "", false, server).await
    }

    async fn with_settings(
        explain_denials: bool,
        options: ServeOptions,
        github_extra: &str,
        extra: &str,
        single_use: bool,
        server: &str,
    ) -> Self {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let issuer = DevIssuer::spawn(bind().await.unwrap(), IssuerConfig::new("request-token"))
            .await
            .unwrap();
        let (app_key, app_pem) = RsaSigningKey::generate_pem().unwrap();
        let github = GithubStandIn::spawn(
            bind().await.unwrap(),
            StandInConfig {
                app_id: "1".into(),
                app_public_key: app_key.public_jwk(),
                installations: vec![("acme/widgets".into(), 4242, 56789)],
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.pem"), &app_pem).unwrap();
        // An AWS IAM trust policy for the widgets-iam broker, bound to the local issuer.
        let provider = issuer.issuer_url().trim_start_matches("http://").to_owned();
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow",
              "Principal":{{"Federated":"arn:aws:iam::123456789012:oidc-provider/{provider}"}},
              "Action":"sts:AssumeRoleWithWebIdentity",
              "Condition":{{"StringEquals":{{"{provider}:aud":"{AUD}"}},
                           "StringLike":{{"{provider}:sub":"repo:acme/app:ref:refs/heads/*"}}}}}}]}}"#
        );
        std::fs::write(dir.path().join("trust.json"), trust).unwrap();
        let listener = bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = format!(
            r#"
[server]
listen = "{addr}"
explain_denials = {explain_denials}
{server}
[audit]
database = "sqlite://audit.db"
[github]
api_url = "{github}"
app_id = "1"
private_key_file = "app.pem"
{github_extra}
[[issuer]]
name = "dev"
url = "{issuer}"
audiences = ["{AUD}"]
single_use = {single_use}
[[issuer]]
name = "other"
url = "https://other-issuer.example"
audiences = ["{AUD}"]
{BROKERS}
{extra}
"#,
            github = github.url(),
            issuer = issuer.issuer_url()
        );
        let path = dir.path().join("tokenmint.toml");
        std::fs::write(&path, config).unwrap();
        let config = Arc::new(Config::load(&path).unwrap());
        let db_url = config.audit.database.clone();
        let clock = Arc::new(FixedClock::new(SystemClock.now()));
        let service = Arc::new(Service::start(config, clock.clone()).await.unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(tokenmint::http::serve_with(
            listener,
            tokenmint::http::router(service),
            async {
                let _ = rx.await;
            },
            options,
        ));
        Self {
            issuer,
            github,
            clock,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            dir,
            app_pem,
            db_url,
            shutdown: Some(tx),
            server,
        }
    }

    /// A token valid at the service's current time, with claim overrides.
    pub(crate) fn token(&self, overrides: Value) -> String {
        let t = self.clock.now().unix_timestamp();
        let mut claims = json!({"iat": t, "nbf": t, "exp": t + 300});
        if let (Some(c), Value::Object(o)) = (claims.as_object_mut(), overrides) {
            c.extend(o);
        }
        self.issuer.mint(AUD, claims).unwrap()
    }

    pub(crate) fn advance(&self, seconds: i64) {
        self.clock
            .set(self.clock.now() + TimeDelta::seconds(seconds));
    }

    pub(crate) async fn post(
        &self,
        broker: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .post(format!("{}/v1/brokers/{broker}/token", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body =
            serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, body, headers)
    }

    pub(crate) async fn exchange(&self, broker: &str, overrides: Value) -> (u16, Value) {
        let token = self.token(overrides);
        let (s, b, _) = self.post(broker, Some(&token), None).await;
        (s, b)
    }

    pub(crate) async fn audit(&self) -> AuditLog {
        AuditLog::open(&self.db_url, "inspect").await.unwrap()
    }

    pub(crate) async fn rows(&self) -> Vec<tokenmint::audit::StoredRecord> {
        let mut rows = self
            .audit()
            .await
            .list(&ListFilter {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        rows.sort_by_key(|r| r.seq);
        rows
    }

    pub(crate) async fn sql(&self, statement: &str) {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
}

pub(crate) fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("token").is_none());
}
