//! invoke mode: one invocation mints one token for the configured repository, exactly as github-token-broker does (payload rule, one SSM read, installation check, response shape), with cached credentials and checked grants.
//!
//! # Steps of [`InvokeHandler::handle`]
//!
//! 1. Refuse any payload but empty or `null`.
//! 2. The App's client id, installation id and key: from the cache when read
//!    less than [`CREDENTIALS_TTL`] ago, else with one SSM `GetParameters`
//!    call (with decryption). The GitHub client (its App JWT and installation
//!    caches) is kept while the client id and key are unchanged.
//! 3. Mint through [`GithubClient::mint_in_installation`]: the repository's
//!    installation must be the configured one, and GitHub's grant is checked.
//! 4. Answer `{"token","expires_at","repositories","permissions"}`.

use super::config::InvokeConfig;
use super::payload;
use super::runtime::{Invocation, InvocationError};
use crate::aws::kms::KmsSigner;
use crate::aws::ssm::{SsmClient, SsmError};
use crate::clock::Clock;
use crate::github::{
    AppSigner, GithubClient, GithubError, GithubSettings, MintRequest, MintedToken,
};
use crate::keys::{KeyError, RsaSigningKey};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long credentials read from SSM are reused: a rotated key or changed
/// installation takes effect within this time.
pub const CREDENTIALS_TTL: time::Duration = time::Duration::seconds(60);
/// Limit on each SSM call.
const SSM_TIMEOUT: Duration = Duration::from_secs(5);
/// Limits on GitHub calls (each retried once at most), well inside a Lambda timeout.
const GITHUB_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const GITHUB_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an invocation failed. Messages follow github-token-broker's catalogue;
/// none carries a token, a key or an upstream body.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The payload was not empty or `null`.
    #[error("{}", payload::REJECTED_PAYLOAD)]
    Payload,
    /// SSM reported some names as invalid (absent, or not readable by this role).
    #[error("missing GitHub App SSM parameters: [{}]", .0.join(" "))]
    MissingParameters(Vec<String>),
    /// A parameter was not returned or is blank.
    #[error("SSM parameter {0} is empty or missing")]
    EmptyParameter(String),
    /// The SSM call failed.
    #[error("read GitHub App parameters from SSM: {0}")]
    Ssm(#[source] SsmError),
    /// The installation id parameter is not a decimal number.
    #[error("SSM parameter {0} must hold the GitHub App installation ID as a decimal number")]
    InstallationId(String),
    /// The private key does not parse (the message starts with the original's wording).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A GitHub call failed or its answer was refused.
    #[error(transparent)]
    Github(#[from] GithubError),
}

impl InvokeError {
    /// The Lambda `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Payload => "InvalidInvocationInput",
            Self::MissingParameters(_)
            | Self::EmptyParameter(_)
            | Self::Ssm(_)
            | Self::InstallationId(_) => "SsmParameterError",
            Self::Key(_) => "PrivateKeyError",
            Self::Github(_) => "GitHubError",
        }
    }
}

/// The App's credentials as last read from SSM, and the client built from them.
struct CachedApp {
    /// When SSM was read.
    fetched_at: OffsetDateTime,
    /// SHA-256 over client id and PEM: the client is rebuilt only when they change.
    fingerprint: [u8; 32],
    /// The configured installation.
    installation_id: u64,
    /// Holds the parsed key, the cached App JWT and installation lookups.
    client: GithubClient,
}

/// The invoke-mode handler, built once at init.
pub struct InvokeHandler {
    config: InvokeConfig,
    ssm: SsmClient,
    /// Signs App JWTs when a KMS key is configured (the PEM parameter is then not read).
    kms: Option<KmsSigner>,
    clock: Arc<dyn Clock>,
    /// One invocation runs at a time per Lambda environment; the lock also
    /// keeps two refreshes from racing.
    app: tokio::sync::Mutex<Option<CachedApp>>,
}

impl std::fmt::Debug for InvokeHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeHandler")
            .field("owner", &self.config.owner)
            .field("repo", &self.config.repo)
            .finish_non_exhaustive()
    }
}

/// The success answer, field for field as github-token-broker sends it.
#[derive(serde::Serialize)]
struct Answer<'a> {
    token: &'a str,
    expires_at: String,
    repositories: [String; 1],
    permissions: &'a crate::github::Permissions,
}

impl InvokeHandler {
    /// Builds the handler (no network calls: SSM is read on first invocation).
    pub fn new(config: InvokeConfig, clock: Arc<dyn Clock>) -> Result<Self, SsmError> {
        let ssm = SsmClient::new(config.aws.clone(), SSM_TIMEOUT)?;
        let kms = config
            .kms_key_id
            .clone()
            .map(|key| KmsSigner::new(config.aws.clone(), key, SSM_TIMEOUT))
            .transpose()?;
        Ok(Self {
            config,
            ssm,
            kms,
            clock,
            app: tokio::sync::Mutex::new(None),
        })
    }

    /// Runs one invocation; the `Ok` value is the JSON response body.
    pub async fn handle(&self, invocation: &Invocation) -> Result<Vec<u8>, InvocationError> {
        let started = std::time::Instant::now();
        // 1. The payload rule. The payload itself is never logged.
        if !payload::accepts(&invocation.payload) {
            tracing::warn!(
                request_id = %invocation.request_id,
                payload_bytes = invocation.payload.len(),
                "rejected invocation input"
            );
            return Err(to_invocation_error(&InvokeError::Payload));
        }
        let now = self.clock.now();
        match self.mint(now).await {
            Ok(minted) => {
                let expires_at = minted
                    .expires_at
                    .to_offset(time::UtcOffset::UTC)
                    .replace_nanosecond(0)
                    .unwrap_or(minted.expires_at)
                    .format(&Rfc3339)
                    .unwrap_or_default();
                let repository = format!("{}/{}", self.config.owner, self.config.repo);
                tracing::info!(
                    request_id = %invocation.request_id,
                    invoked_function_arn = invocation.invoked_function_arn.as_deref().unwrap_or(""),
                    cognito_identity_id = invocation.cognito_identity_id.as_deref().unwrap_or(""),
                    repositories = %repository,
                    expires_at = %expires_at,
                    installation_id = minted.installation_id,
                    token_sha256 = %minted.token.sha256_hex(),
                    latency_ms = started.elapsed().as_millis() as u64,
                    "minted GitHub installation token"
                );
                let answer = Answer {
                    token: minted.token.expose_secret(),
                    expires_at,
                    repositories: [repository],
                    permissions: &self.config.permissions,
                };
                serde_json::to_vec(&answer).map_err(|_| InvocationError {
                    message: "encode the response".into(),
                    error_type: "InternalError",
                })
            }
            Err(error) => {
                tracing::error!(
                    request_id = %invocation.request_id,
                    invoked_function_arn = invocation.invoked_function_arn.as_deref().unwrap_or(""),
                    error = %error,
                    latency_ms = started.elapsed().as_millis() as u64,
                    "mint GitHub installation token"
                );
                Err(to_invocation_error(&error))
            }
        }
    }

    async fn mint(&self, now: OffsetDateTime) -> Result<MintedToken, InvokeError> {
        let mut slot = self.app.lock().await;
        // 2. Credentials, cached for at most CREDENTIALS_TTL.
        let fresh = slot
            .as_ref()
            .is_some_and(|a| a.fetched_at <= now && now < a.fetched_at + CREDENTIALS_TTL);
        let app = match slot.take() {
            Some(cached) if fresh => slot.insert(cached),
            previous => {
                let loaded = self.load(previous, now).await?;
                slot.insert(loaded)
            }
        };
        // 3. Mint, bound to the configured installation.
        let request = MintRequest {
            owner: &self.config.owner,
            repo: &self.config.repo,
            repository_id: None,
            permissions: &self.config.permissions,
        };
        let result = app
            .client
            .mint_in_installation(&request, app.installation_id, now)
            .await;
        if result.is_err() {
            // Whatever went wrong (a rotated key, a moved installation), read
            // SSM again on the next invocation instead of a minute later.
            app.fetched_at = OffsetDateTime::UNIX_EPOCH;
        }
        Ok(result?)
    }

    /// Reads the three parameters (one `GetParameters` call) and returns the
    /// App, reusing `previous`'s client when client id and key are unchanged.
    async fn load(
        &self,
        previous: Option<CachedApp>,
        now: OffsetDateTime,
    ) -> Result<CachedApp, InvokeError> {
        let names = &self.config.parameters;
        // With a KMS key, the private key is not in SSM at all.
        let wanted = if self.kms.is_some() {
            &[names.client_id.as_str(), names.installation_id.as_str()][..]
        } else {
            &[
                names.client_id.as_str(),
                names.installation_id.as_str(),
                names.private_key.as_str(),
            ][..]
        };
        let reply = self
            .ssm
            .get_parameters(wanted, now)
            .await
            .map_err(InvokeError::Ssm)?;
        if !reply.invalid.is_empty() {
            return Err(InvokeError::MissingParameters(reply.invalid));
        }
        let value = |name: &str| -> Result<SecretString, InvokeError> {
            reply
                .found
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.value.clone())
                .filter(|v| !v.expose_secret().trim().is_empty())
                .ok_or_else(|| InvokeError::EmptyParameter(name.to_owned()))
        };
        let client_id = value(&names.client_id)?;
        let installation_id = value(&names.installation_id)?;
        let pem = match self.kms {
            Some(_) => SecretString::from(String::new()),
            None => value(&names.private_key)?,
        };
        let client_id = client_id.expose_secret().trim().to_owned();
        let installation_id: u64 = installation_id
            .expose_secret()
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| InvokeError::InstallationId(names.installation_id.clone()))?;

        let mut hasher = Sha256::new();
        hasher.update(client_id.as_bytes());
        hasher.update([0]);
        hasher.update(pem.expose_secret().as_bytes());
        let fingerprint: [u8; 32] = hasher.finalize().into();

        let client = match previous {
            Some(p) if p.fingerprint == fingerprint => p.client,
            _ => {
                let key: AppSigner = match &self.kms {
                    Some(kms) => kms.clone().into(),
                    None => RsaSigningKey::from_pem(pem.expose_secret().as_bytes())?.into(),
                };
                GithubClient::new(GithubSettings {
                    api_url: self.config.api_url.clone(),
                    app_id: client_id,
                    key,
                    connect_timeout: GITHUB_CONNECT_TIMEOUT,
                    request_timeout: GITHUB_REQUEST_TIMEOUT,
                    // One invocation at a time per instance: the defaults never bind.
                    max_concurrent_requests: crate::config::DEFAULT_GITHUB_CONCURRENCY,
                    max_queue_wait: std::time::Duration::from_millis(
                        crate::config::DEFAULT_GITHUB_QUEUE_WAIT_MS,
                    ),
                })?
            }
        };
        Ok(CachedApp {
            fetched_at: now,
            fingerprint,
            installation_id,
            client,
        })
    }
}

fn to_invocation_error(error: &InvokeError) -> InvocationError {
    InvocationError {
        message: error.to_string(),
        error_type: error.error_type(),
    }
}
