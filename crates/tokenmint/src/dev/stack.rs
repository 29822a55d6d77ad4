//! `tokenmint dev`: starts the local issuer, the GitHub stand-in and tokenmint itself on loopback, with a generated example config.

use super::github_standin::{GithubStandIn, StandInConfig};
use super::issuer::{DevIssuer, IssuerConfig as DevIssuerConfig, IssuerError};
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError};
use crate::exchange::{Service, StartError};
use crate::keys::{KeyError, RsaSigningKey};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The example broker's repository on the stand-in.
pub const DEV_REPOSITORY: &str = "acme/widgets";
/// Its installation id on the stand-in.
pub const DEV_INSTALLATION_ID: u64 = 4_242;
/// Its repository id on the stand-in.
pub const DEV_REPOSITORY_ID: u64 = 56_789;
/// The App id the stand-in expects.
pub const DEV_APP_ID: &str = "1";
/// The audience the example issuer accepts.
pub const DEV_AUDIENCE: &str = "tokenmint";
/// The example `[[role]]` the STS-compatible endpoint serves.
pub const DEV_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/tokenmint-dev";
/// Its trust policy file, written next to the generated config.
pub const DEV_ROLE_TRUST_FILE: &str = "tokenmint-dev-trust.json";
/// The `sub` the example role's trust policy admits: the local issuer's
/// default (`--claim` overrides that change it are denied, as AWS would).
pub const DEV_ROLE_SUB: &str = "repo:acme/app:ref:refs/heads/main";

/// Why the dev stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    /// A listener could not bind.
    #[error("bind {addr}: {source}; pick another address with --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Files could not be written.
    #[error("write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The issuer failed.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The generated config did not validate (a bug).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// tokenmint did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The stand-in failed.
    #[error("start the GitHub API stand-in: {0}")]
    StandIn(std::io::Error),
}

/// Where and how to run the stack.
#[derive(Debug, Clone)]
pub struct DevStackOptions {
    /// tokenmint's address (loopback); port 0 picks one.
    pub listen: SocketAddr,
    /// Directory for the generated config, App key and audit database.
    pub dir: PathBuf,
    /// Claims the local issuer puts in every token instead of its
    /// GitHub-shaped defaults (e.g. `ref` = `refs/heads/dev` to see a denial);
    /// an empty value removes the claim.
    pub claims: Vec<(String, String)>,
}

/// A running dev stack.
#[derive(Debug)]
pub struct DevStack {
    /// The local OIDC issuer.
    pub issuer: DevIssuer,
    /// The local GitHub API stand-in.
    pub github: GithubStandIn,
    /// tokenmint's bound address.
    pub addr: SocketAddr,
    /// The generated config file.
    pub config_path: PathBuf,
    /// The running service.
    pub service: Arc<Service>,
    listener: Option<TcpListener>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DevStackError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DevStackError::Bind { addr, source })
}

fn write(path: &Path, text: &str) -> Result<(), DevStackError> {
    let err = |source| DevStackError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, text).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

impl DevStack {
    /// Starts the issuer and the stand-in, writes the example config, and
    /// starts tokenmint's service (not yet serving: see [`DevStack::serve`]).
    pub async fn start(opts: DevStackOptions) -> Result<Self, DevStackError> {
        if !opts.listen.ip().is_loopback() {
            return Err(DevStackError::Bind {
                addr: opts.listen,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the dev stack listens on loopback only",
                ),
            });
        }
        std::fs::create_dir_all(&opts.dir).map_err(|source| DevStackError::Write {
            path: opts.dir.clone(),
            source,
        })?;
        let loopback = SocketAddr::new(opts.listen.ip(), 0);

        let request_token = uuid::Uuid::new_v4().simple().to_string();
        let issuer = DevIssuer::spawn(
            bind(loopback).await?,
            issuer_config(request_token, &opts.claims),
        )
        .await?;

        let (app_key, app_pem) = RsaSigningKey::generate_pem()?;
        let github = GithubStandIn::spawn(
            bind(loopback).await?,
            StandInConfig {
                app_id: DEV_APP_ID.to_owned(),
                app_public_key: app_key.public_jwk(),
                installations: vec![(
                    DEV_REPOSITORY.to_owned(),
                    DEV_INSTALLATION_ID,
                    DEV_REPOSITORY_ID,
                )],
            },
        )
        .await
        .map_err(DevStackError::StandIn)?;

        let listener = bind(opts.listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| DevStackError::Bind {
                addr: opts.listen,
                source,
            })?;

        let key_path = opts.dir.join("github-app.pem");
        write(&key_path, &app_pem)?;
        write(
            &opts.dir.join(DEV_ROLE_TRUST_FILE),
            &dev_role_trust_policy(&issuer.issuer_url()),
        )?;
        let config_path = opts.dir.join("tokenmint.toml");
        write(
            &config_path,
            &example_config(addr, &issuer.issuer_url(), github.url().as_str()),
        )?;

        let config = Arc::new(Config::load(&config_path)?);
        let service = Arc::new(Service::start(config, Arc::new(SystemClock)).await?);
        Ok(Self {
            issuer,
            github,
            addr,
            config_path,
            service,
            listener: Some(listener),
        })
    }

    /// tokenmint's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `tokenmint dev` prints: what is running, and how to use it.
    pub fn banner(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "tokenmint LOCAL DEV STACK — for trying tokenmint out; nothing here is GitHub."
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "  tokenmint               {}", self.url());
        let _ = writeln!(
            s,
            "  local OIDC issuer       {}   (a stand-in for GitHub Actions' token service)",
            self.issuer.issuer_url()
        );
        let _ = writeln!(
            s,
            "  GitHub API stand-in     {}   (NOT GitHub; mints fake ghs_ tokens)",
            self.github.url().as_str().trim_end_matches('/')
        );
        let _ = writeln!(
            s,
            "  config                  {}",
            self.config_path.display()
        );
        let _ = writeln!(s, "  example broker          widgets-read -> {DEV_REPOSITORY} (contents: read, issues: write)");
        let _ = writeln!(
            s,
            "  example STS role        {DEV_ROLE_ARN} (trust policy {})",
            self.config_path
                .with_file_name(DEV_ROLE_TRUST_FILE)
                .display()
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "In another shell, act as a CI job:");
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  export ACTIONS_ID_TOKEN_REQUEST_URL='{}'",
            self.issuer.request_url()
        );
        let _ = writeln!(
            s,
            "  export ACTIONS_ID_TOKEN_REQUEST_TOKEN='{}'",
            self.issuer.request_token()
        );
        let _ = writeln!(
            s,
            "  tokenmint exchange --url {} --broker widgets-read --audience {DEV_AUDIENCE}",
            self.url()
        );
        let _ = writeln!(
            s,
            "  # from a source checkout: cargo run -p tokenmint-cli -- exchange --url {} --broker widgets-read --audience {DEV_AUDIENCE}",
            self.url()
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "octo-sts/action's exchange (its domain, and so the audience, is {}):",
            self.addr
        );
        let _ = writeln!(
            s,
            "  GET {}/sts/exchange?scope={DEV_REPOSITORY}&identity=widgets-read",
            self.url()
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "AWS STS AssumeRoleWithWebIdentity (with the exports above; needs curl, jq and the AWS CLI):"
        );
        let _ = writeln!(
            s,
            "  ID_TOKEN=$(curl -s -H \"Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN\" \"$ACTIONS_ID_TOKEN_REQUEST_URL&audience={DEV_AUDIENCE}\" | jq -r .value)"
        );
        let _ = writeln!(
            s,
            "  aws sts assume-role-with-web-identity --endpoint-url {} --region us-east-1 --role-arn {DEV_ROLE_ARN} --role-session-name dev --web-identity-token \"$ID_TOKEN\"",
            self.url()
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "Then inspect the audit log:");
        let _ = writeln!(
            s,
            "  tokenmint audit list --config {}",
            self.config_path.display()
        );
        let _ = writeln!(
            s,
            "  tokenmint audit verify --config {}",
            self.config_path.display()
        );
        s
    }

    /// Serves tokenmint until `shutdown` resolves.
    pub async fn serve(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        let router = crate::http::router(self.service.clone());
        // The issuer and stand-in live as long as `self`.
        let result = crate::http::serve(listener, router, shutdown).await;
        drop(self);
        result
    }
}

fn issuer_config(request_token: String, claims: &[(String, String)]) -> DevIssuerConfig {
    let mut config = DevIssuerConfig::new(request_token);
    for (name, value) in claims {
        let value = if value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(value.clone())
        };
        config.default_claims.insert(name.clone(), value);
    }
    config
}

/// The example role's trust policy: the local issuer's provider in the
/// example account, audience [`DEV_AUDIENCE`], `sub` [`DEV_ROLE_SUB`]. The
/// condition keys are the issuer URL without its scheme (`127.0.0.1:PORT`),
/// as AWS names them for a registered provider.
fn dev_role_trust_policy(issuer_url: &str) -> String {
    let provider = crate::config::provider_host_path(issuer_url);
    let account = DEV_ROLE_ARN
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default();
    // Written out (not via serde_json) to keep AWS's key order, and
    // one key per line so `policy lint` findings point at a line.
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{
      "Sid": "TokenmintDevIssuer",
      "Effect": "Allow",
      "Principal": {{"Federated": "arn:aws:iam::{account}:oidc-provider/{provider}"}},
      "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {{
        "StringEquals": {{
          "{provider}:aud": "{DEV_AUDIENCE}",
          "{provider}:sub": "{DEV_ROLE_SUB}"
        }}
      }}
    }}
  ]
}}
"#
    )
}

/// The example configuration the dev stack runs with.
fn example_config(addr: SocketAddr, issuer_url: &str, github_url: &str) -> String {
    format!(
        r#"# Generated by `tokenmint dev`: a LOCAL example. The issuer and GitHub API below are stand-ins.

[server]
listen = "{addr}"
explain_denials = true   # dev only: 403 bodies say which condition failed

[audit]
database = "sqlite://tokenmint-audit.db"

[github]
api_url = "{github_url}"
app_id = "{DEV_APP_ID}"
private_key_file = "github-app.pem"

[[issuer]]
name = "dev-actions"
url = "{issuer_url}"
# octo-sts/action requests its `domain` input as the audience: here, this server's address.
audiences = ["{DEV_AUDIENCE}", "{addr}"]

[[broker]]
name = "widgets-read"
issuer = "dev-actions"
repository = "{DEV_REPOSITORY}"
repository_id = "{DEV_REPOSITORY_ID}"
permissions = {{ contents = "read", issues = "write" }}
[broker.claims]
repository_owner_id = "987654321"
repository_id = "123456789"
job_workflow_ref = {{ like = "acme/app/.github/workflows/*@refs/heads/main" }}
ref = {{ matches = "refs/heads/(main|release/.*)" }}

# The AWS STS-compatible endpoint (POST /): AssumeRoleWithWebIdentity for this
# role, evaluated against its IAM trust policy (the local issuer's provider,
# aud "{DEV_AUDIENCE}", sub "{DEV_ROLE_SUB}").
[[role]]
arn = "{DEV_ROLE_ARN}"
trust_policy_file = "{DEV_ROLE_TRUST_FILE}"
"#
    )
}
