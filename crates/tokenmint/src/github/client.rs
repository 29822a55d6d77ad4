//! The GitHub App client: signs and caches the App JWT, looks up (and caches) a repository's installation, mints a token scoped to one repository, checks what GitHub granted, and revokes tokens.
//!
//! Every call sends GitHub's required headers, follows no redirects, has a
//! connect and a total timeout, reads at most 1 MiB of response, and is
//! retried exactly once on a 5xx answer or a connection/timeout failure.
//! Upstream bodies never reach an error or a log line; neither do the App
//! key, the App JWT or an installation token.
//!
//! Load on GitHub is bounded two ways. At most `max_concurrent_requests`
//! lookup and mint calls are in flight at once; a call that finds no free
//! slot within `max_queue_wait` fails with [`GithubError::Busy`]. And every
//! response's rate-limit headers (`x-ratelimit-remaining`,
//! `x-ratelimit-reset`, `retry-after`, read by `parse_rate_limit_headers`)
//! are tracked in two atomics: while GitHub is limiting the App (remaining 0
//! until the reset, a `retry-after` window, or a 429), lookup and mint calls
//! fail at once with [`GithubError::Throttled`] instead of reaching GitHub.
//! Revocations skip both: they are rare, and a token in hand must be revoked
//! whenever possible.

use super::{AppSigner, Permissions, SignError};
use crate::metrics::{CallResult, GithubMetrics};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

/// Responses larger than this are refused: GitHub's answers here are a few KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The REST API version every call pins.
const API_VERSION: &str = "2022-11-28";
/// The media type every call asks for.
const GITHUB_JSON: &str = "application/vnd.github+json";
/// `tokenmint/<version>`: GitHub requires a User-Agent and asks that it name the client.
const USER_AGENT: &str = concat!("tokenmint/", env!("CARGO_PKG_VERSION"));
/// The App JWT's `iat` is backdated to tolerate clock drift between us and GitHub.
const JWT_BACKDATE: time::Duration = time::Duration::seconds(60);
/// The App JWT's lifetime from `now` (GitHub allows at most ten minutes).
const JWT_LIFETIME: time::Duration = time::Duration::minutes(9);
/// A cached App JWT is replaced this long before its `exp`.
const JWT_REFRESH_MARGIN: time::Duration = time::Duration::seconds(60);
/// How long a repository → installation binding is trusted.
const INSTALLATION_TTL: time::Duration = time::Duration::minutes(10);
/// The pause before the single retry.
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest owner or repository name accepted (GitHub's own limit is 100 for repositories, 39 for accounts).
const MAX_NAME_LEN: usize = 100;
/// The longest GitHub rate-limit window honoured (its primary window is an
/// hour); a later reset (a skewed clock, a bogus header) is cut to this.
const MAX_THROTTLE: Duration = Duration::from_secs(3600);
/// How long to hold off after a limit with no usable reset time: GitHub asks
/// for at least a minute before retrying a secondary rate limit.
const DEFAULT_THROTTLE: Duration = Duration::from_secs(60);
/// `remaining` before any response has reported it.
const REMAINING_UNKNOWN: u64 = u64::MAX;

/// What the client needs: where GitHub is, which App it acts as, and how long to wait.
#[derive(Debug, Clone)]
pub struct GithubSettings {
    /// The REST API root, `https://api.github.com` or `https://HOST/api/v3` on GitHub Enterprise Server.
    pub api_url: Url,
    /// The App's id or client id, used verbatim as the App JWT's `iss`.
    pub app_id: String,
    /// The App's signing key (local, or KMS).
    pub key: AppSigner,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on one whole attempt (connect, send, and read the response).
    pub request_timeout: Duration,
    /// Lookup and mint calls in flight at once (at least 1).
    pub max_concurrent_requests: usize,
    /// How long a call waits for a free slot before failing with [`GithubError::Busy`].
    pub max_queue_wait: Duration,
}

/// What to mint: a token for exactly one repository with exactly these permissions.
#[derive(Debug, Clone, Copy)]
pub struct MintRequest<'a> {
    /// The repository owner (user or organisation), as configured.
    pub owner: &'a str,
    /// The repository name, as configured.
    pub repo: &'a str,
    /// When set, the token is requested by repository id (`repository_ids`)
    /// and GitHub's answer must name this id: a deleted-and-recreated
    /// repository with the same name is then not covered.
    pub repository_id: Option<u64>,
    /// The permissions to request; GitHub must grant no more.
    pub permissions: &'a Permissions,
}

/// A GitHub App installation token. `Debug` and `Display` never print it.
#[derive(Clone)]
pub struct InstallationToken(SecretString);

impl InstallationToken {
    /// Wraps a token value.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    /// The token itself, for the one place that hands it to the caller.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// SHA-256 of the token, in lowercase hex: safe to log and audit, and
    /// enough to match a leaked token to its issuance.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.expose_secret().as_bytes()))
    }
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InstallationToken([REDACTED])")
    }
}

impl fmt::Display for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A token GitHub minted and tokenmint checked.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The token.
    pub token: InstallationToken,
    /// When GitHub says it expires (checked to be in the future).
    pub expires_at: OffsetDateTime,
    /// The installation that issued it.
    pub installation_id: u64,
    /// The one repository it covers, as `owner/repo` (from the request).
    pub repositories: Vec<String>,
    /// The permissions GitHub granted (checked to be no more than requested;
    /// usually also `metadata: read`).
    pub permissions: BTreeMap<String, String>,
}

/// Which GitHub call failed; its `Display` is the name used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `GET /repos/{owner}/{repo}/installation`
    RepositoryInstallation,
    /// `POST /app/installations/{id}/access_tokens`
    InstallationToken,
    /// `DELETE /installation/token`
    TokenRevocation,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RepositoryInstallation => "repository-installation",
            Self::InstallationToken => "installation-token",
            Self::TokenRevocation => "token-revocation",
        })
    }
}

/// Why GitHub's installation-token answer was refused. `Display` completes
/// the sentence "GitHub installation-token response …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No `expires_at`.
    MissingExpiration,
    /// `expires_at` is not an RFC 3339 time.
    UnparseableExpiration,
    /// `expires_at` is not after `now`.
    Expired {
        /// GitHub's `expires_at`.
        expires_at: OffsetDateTime,
    },
    /// `repository_selection` is `all`: the token would reach every repository of the installation.
    AllRepositories {
        /// The configured `owner/repo`.
        expected: String,
    },
    /// `repositories` is not exactly the configured repository (name and, when pinned, id).
    WrongRepositories {
        /// The configured `owner/repo`.
        expected: String,
        /// How many repositories GitHub listed.
        listed: usize,
    },
    /// No `permissions`, so what was granted cannot be checked.
    MissingPermissions,
    /// A permission name or level outside GitHub's vocabulary.
    UnrecognisedPermissions,
    /// More was granted than requested.
    ExcessPermissions(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingExpiration => f.write_str("did not include an expiration"),
            Self::UnparseableExpiration => {
                f.write_str("included an expiration that is not an RFC 3339 time")
            }
            Self::Expired { expires_at } => write!(
                f,
                "included an expiration that is not in the future ({}); check this host's clock",
                expires_at.format(&Rfc3339).unwrap_or_default()
            ),
            Self::AllRepositories { expected } => write!(
                f,
                "granted access to all of the installation's repositories instead of only {expected}"
            ),
            Self::WrongRepositories { expected, listed } => write!(
                f,
                "listed {listed} repositories that are not exactly {expected}"
            ),
            Self::MissingPermissions => f.write_str("did not include the granted permissions"),
            Self::UnrecognisedPermissions => {
                f.write_str("included a permission name or level tokenmint does not recognise")
            }
            Self::ExcessPermissions(detail) => {
                write!(f, "granted more than was requested: {detail}")
            }
        }
    }
}

/// Why a GitHub call failed. No variant carries an upstream body, the App
/// key, the App JWT or a token.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// The settings are unusable.
    #[error("configure GitHub client: {0}")]
    Settings(&'static str),
    /// The HTTP client could not be built (TLS setup).
    #[error("build GitHub HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The owner or repository name is not a valid GitHub name.
    #[error("invalid GitHub repository {owner:?}/{repo:?}: owner and name must be 1 to 100 of A-Z a-z 0-9 _ . - and not `.` or `..`")]
    InvalidRepository {
        /// The owner as given.
        owner: String,
        /// The name as given.
        repo: String,
    },
    /// Signing the App JWT failed.
    #[error("sign GitHub App JWT: {0}")]
    Sign(#[source] SignError),
    /// Building the request body failed.
    #[error("encode GitHub {call} request")]
    Encode {
        /// The call.
        call: Call,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No usable answer: connection refused, reset, TLS failure, and so on (after one retry when retryable).
    #[error("GitHub {call} request failed")]
    Transport {
        /// The call.
        call: Call,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// An attempt exceeded the request timeout (after one retry).
    #[error("GitHub {call} request timed out after {timeout:?}")]
    Timeout {
        /// The call.
        call: Call,
        /// The per-attempt limit.
        timeout: Duration,
    },
    /// GitHub answered with a non-success status.
    #[error(
        "GitHub {call} request failed with status {status}{}",
        hint_suffix(hint)
    )]
    Status {
        /// The call.
        call: Call,
        /// The HTTP status.
        status: u16,
        /// What the operator can do about it; empty when there is nothing specific.
        hint: String,
    },
    /// GitHub refused because of a rate limit.
    #[error("GitHub {call} request failed with status {status}: rate limited{}", retry_after_suffix(*retry_after))]
    RateLimited {
        /// The call.
        call: Call,
        /// 403 or 429.
        status: u16,
        /// GitHub's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// The response exceeded 1 MiB.
    #[error("GitHub {call} response exceeded the 1 MiB limit")]
    BodyTooLarge {
        /// The call.
        call: Call,
    },
    /// The response is not the JSON expected (position only: the body is never quoted).
    #[error("GitHub {call} response is not the expected JSON (line {line}, column {column})")]
    MalformedResponse {
        /// The call.
        call: Call,
        /// Where decoding failed.
        line: usize,
        /// Where decoding failed.
        column: usize,
    },
    /// The repository's installation is not the one configured: minting would
    /// act for another owner's installation.
    #[error(
        "GitHub repository installation {found} does not match configured installation {expected}"
    )]
    InstallationMismatch {
        /// The installation GitHub reports for the repository.
        found: u64,
        /// The installation configured.
        expected: u64,
    },
    /// The token answer had no (or an empty) `token`.
    #[error("GitHub installation-token response did not include a token")]
    MissingToken,
    /// The token cannot be sent back in an HTTP header, so it can be neither used nor revoked.
    #[error("GitHub installation-token response included a token that is not a valid HTTP header value; it could not be revoked")]
    UnusableToken,
    /// Every call slot stayed taken for the whole queue wait: tokenmint is
    /// at its cap on concurrent GitHub calls.
    #[error(
        "too many GitHub calls are in flight (no slot freed within {waited:?}); retry shortly"
    )]
    Busy {
        /// The queue wait that ran out.
        waited: Duration,
    },
    /// GitHub's rate-limit headers said to hold off; no call was made.
    #[error("GitHub is rate-limiting this App, so no call was made; retry after {} s", crate::limits::retry_after_secs(*retry_after))]
    Throttled {
        /// Until GitHub's window ends.
        retry_after: Duration,
    },
    /// The answer was refused after checking it; the token was revoked if possible.
    #[error("GitHub installation-token response {reason}; {}", if *revoked { "the token was revoked" } else { "revoking the token also failed, so it stays valid until it expires" })]
    Rejected {
        /// What was wrong.
        reason: Rejection,
        /// Whether revocation succeeded.
        revoked: bool,
    },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

fn retry_after_suffix(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!("; retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

impl GithubError {
    /// The HTTP status GitHub answered with, when that is the failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::RateLimited { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether one more attempt is worth it: a 5xx, or a connection
    /// failure. Timeouts and broken responses are retried only for calls
    /// that are safe to repeat: minting again after GitHub may already have
    /// minted would leave an unaudited, unrevoked token behind.
    fn is_retryable(&self) -> bool {
        let repeatable = |call: &Call| !matches!(call, Call::InstallationToken);
        match self {
            Self::Status { status, .. } => *status >= 500,
            Self::Timeout { call, .. } => repeatable(call),
            Self::Transport { source, .. } if source.is_connect() => true,
            Self::Transport { call, source } => {
                repeatable(call) && (source.is_request() || source.is_body())
            }
            _ => false,
        }
    }
}

/// The GitHub App client. Cloning shares one connection pool and the JWT and
/// installation caches. `Debug` shows no secrets.
#[derive(Clone)]
pub struct GithubClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Pooled HTTP client with the fixed headers, timeouts and no redirects.
    http: reqwest::Client,
    /// API root; endpoints are appended as escaped path segments.
    api_url: Url,
    /// The App JWT's `iss`.
    app_id: String,
    /// Signs App JWTs.
    key: AppSigner,
    /// Reported in timeout errors.
    request_timeout: Duration,
    /// The current App JWT, reused until shortly before it expires.
    app_jwt: Mutex<Option<AppJwt>>,
    /// `owner/repo` (ASCII-lowercased) → installation, so a warm mint is one call.
    installations: Mutex<HashMap<String, CachedInstallation>>,
    /// Calls by endpoint and status, and GitHub's rate-limit headroom.
    metrics: GithubMetrics,
    /// Slots for lookup and mint calls in flight.
    permits: tokio::sync::Semaphore,
    /// How long a call waits for a slot.
    max_queue_wait: Duration,
    /// What GitHub's rate-limit headers last said.
    rate: RateLimitState,
}

/// GitHub's rate-limit view, updated from every response without a lock.
#[derive(Debug)]
struct RateLimitState {
    /// The last `x-ratelimit-remaining` seen, or [`REMAINING_UNKNOWN`].
    remaining: AtomicU64,
    /// No lookup or mint call before this time ([`crate::limits::ticks`]); 0 = none.
    blocked_until: AtomicU64,
}

impl RateLimitState {
    /// Folds one response's headers in. A block only ever extends, so a late
    /// answer to an older call cannot lift it early.
    fn observe(&self, status: u16, seen: RateLimitHeaders, now: u64) {
        if let Some(remaining) = seen.remaining {
            self.remaining.store(remaining, Ordering::Relaxed);
        }
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let cap = now.saturating_add(nanos(MAX_THROTTLE));
        let mut until = seen
            .retry_after
            .map(|s| now.saturating_add(s.saturating_mul(1_000_000_000)));
        if seen.remaining == Some(0) {
            let reset = seen
                .reset
                .map(|s| s.saturating_mul(1_000_000_000))
                .filter(|&reset| reset > now)
                .unwrap_or_else(|| now.saturating_add(nanos(DEFAULT_THROTTLE)));
            until = until.max(Some(reset));
        } else if status == 429 && until.is_none() {
            until = Some(now.saturating_add(nanos(DEFAULT_THROTTLE)));
        }
        if let Some(until) = until {
            self.blocked_until
                .fetch_max(until.min(cap), Ordering::Relaxed);
        }
    }

    /// How long calls must still wait at `now`, if GitHub is limiting us.
    fn throttled_for(&self, now: u64) -> Option<Duration> {
        let until = self.blocked_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_nanos(until - now))
    }
}

/// GitHub's rate-limit headers on one response; absent or unparsable ones are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RateLimitHeaders {
    /// `x-ratelimit-remaining`: calls left in the current window.
    pub(crate) remaining: Option<u64>,
    /// `x-ratelimit-reset`: when the window resets, in Unix seconds.
    pub(crate) reset: Option<u64>,
    /// `retry-after`: seconds to wait (GitHub sends the delta-seconds form).
    pub(crate) retry_after: Option<u64>,
}

/// Reads GitHub's rate-limit headers. The one place they are parsed.
pub(crate) fn parse_rate_limit_headers(headers: &HeaderMap) -> RateLimitHeaders {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    RateLimitHeaders {
        remaining: number("x-ratelimit-remaining"),
        reset: number("x-ratelimit-reset"),
        retry_after: number("retry-after"),
    }
}

struct AppJwt {
    jwt: SecretString,
    iat: OffsetDateTime,
    exp: OffsetDateTime,
}

#[derive(Clone, Copy)]
struct CachedInstallation {
    id: u64,
    fetched_at: OffsetDateTime,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubClient")
            .field("api_url", &self.inner.api_url.as_str())
            .field("app_id", &self.inner.app_id)
            .field("key", &self.inner.key)
            .field("app_jwt", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AppJwtClaims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

#[derive(Serialize)]
struct TokenRequestBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    repositories: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_ids: Option<[u64; 1]>,
    permissions: &'a Permissions,
}

#[derive(serde::Deserialize)]
struct InstallationReply {
    id: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment, so a poisoned
    // lock still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GithubClient {
    /// Checks the settings and builds the HTTP client.
    pub fn new(settings: GithubSettings) -> Result<Self, GithubError> {
        let url = &settings.api_url;
        if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
            return Err(GithubError::Settings(
                "the GitHub API URL must be an absolute http(s) URL",
            ));
        }
        if url.host().is_none() {
            return Err(GithubError::Settings("the GitHub API URL has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GithubError::Settings(
                "the GitHub API URL must not carry credentials",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(GithubError::Settings(
                "the GitHub API URL must not have a query or fragment",
            ));
        }
        let app_id = settings.app_id.trim();
        if app_id.is_empty() || app_id.chars().any(char::is_control) {
            return Err(GithubError::Settings(
                "the GitHub App id must be non-empty printable text",
            ));
        }
        if settings.connect_timeout.is_zero() || settings.request_timeout.is_zero() {
            return Err(GithubError::Settings("GitHub timeouts must be non-zero"));
        }
        if settings.max_concurrent_requests == 0
            || settings.max_concurrent_requests > tokio::sync::Semaphore::MAX_PERMITS
            || settings.max_queue_wait.is_zero()
        {
            return Err(GithubError::Settings(
                "the GitHub concurrency cap and queue wait must be non-zero",
            ));
        }

        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(GITHUB_JSON));
        headers.insert(
            HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()
            .map_err(GithubError::HttpClient)?;

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_url: settings.api_url,
                app_id: app_id.to_owned(),
                key: settings.key,
                request_timeout: settings.request_timeout,
                app_jwt: Mutex::new(None),
                installations: Mutex::new(HashMap::new()),
                metrics: GithubMetrics::default(),
                permits: tokio::sync::Semaphore::new(settings.max_concurrent_requests),
                max_queue_wait: settings.max_queue_wait,
                rate: RateLimitState {
                    remaining: AtomicU64::new(REMAINING_UNKNOWN),
                    blocked_until: AtomicU64::new(0),
                },
            }),
        })
    }

    /// The last `x-ratelimit-remaining` GitHub reported, if any response has carried it.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        let remaining = self.inner.rate.remaining.load(Ordering::Relaxed);
        (remaining != REMAINING_UNKNOWN).then_some(remaining)
    }

    /// How long lookup and mint calls are held back at `now` because GitHub
    /// is rate-limiting the App; `None` when they may go ahead.
    pub fn throttled_for(&self, now: OffsetDateTime) -> Option<Duration> {
        self.inner.rate.throttled_for(crate::limits::ticks(now))
    }

    /// Mints a token for exactly `req.owner/req.repo` with exactly
    /// `req.permissions`, and checks GitHub's answer before returning it.
    pub async fn mint(
        &self,
        req: &MintRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<MintedToken, GithubError> {
        self.mint_checked(req, None, now).await
    }

    /// [`GithubClient::mint`], refusing (before any token is minted) when the
    /// repository's installation is not `installation_id`: this binds the
    /// owner, so a same-named repository under another installation is never
    /// minted for.
    pub async fn mint_in_installation(
        &self,
        req: &MintRequest<'_>,
        installation_id: u64,
        now: OffsetDateTime,
    ) -> Result<MintedToken, GithubError> {
        self.mint_checked(req, Some(installation_id), now).await
    }

    async fn mint_checked(
        &self,
        req: &MintRequest<'_>,
        expected_installation: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<MintedToken, GithubError> {
        // 1. Validate the coordinates before they go anywhere near a URL.
        validate_name(req.owner, req.repo)?;
        let full_name = format!("{}/{}", req.owner, req.repo);

        // 2. The App JWT, reused while fresh.
        let jwt = self.app_jwt(now).await?;

        // 3. The installation that holds this repository (binds the owner), cached.
        let installation_id = self.installation_id(req, &full_name, &jwt, now).await?;
        if let Some(expected) = expected_installation {
            if installation_id != expected {
                self.forget_installation(&full_name, installation_id);
                return Err(GithubError::InstallationMismatch {
                    found: installation_id,
                    expected,
                });
            }
        }

        // 4. Ask for a token restricted to the repository AND the permissions:
        //    omitting either would grant everything the installation has.
        let body = TokenRequestBody {
            repositories: req.repository_id.is_none().then_some([req.repo]),
            repository_ids: req.repository_id.map(|id| [id]),
            permissions: req.permissions,
        };
        let body = serde_json::to_vec(&body).map_err(|source| GithubError::Encode {
            call: Call::InstallationToken,
            source,
        })?;
        let url = self.endpoint(&[
            "app",
            "installations",
            &installation_id.to_string(),
            "access_tokens",
        ])?;
        let reply = match self
            .send(
                Call::InstallationToken,
                Method::POST,
                &url,
                jwt.expose_secret(),
                Some(body),
                &full_name,
                now,
            )
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                // The installation may be gone or moved, or the JWT refused:
                // look both up afresh next time.
                if matches!(e.status(), Some(401 | 403 | 404)) {
                    self.forget_installation(&full_name, installation_id);
                }
                if e.status() == Some(401) {
                    *lock(&self.inner.app_jwt) = None;
                }
                return Err(e);
            }
        };

        // 5. Check what GitHub granted; revoke anything we will not hand out.
        self.accept_token(&reply, req, &full_name, installation_id, now)
            .await
    }

    /// Revokes `token` (`DELETE /installation/token`, authenticated with the
    /// token itself). Not held back by the concurrency cap or GitHub's rate
    /// limit: the attempt is always made.
    pub async fn revoke(
        &self,
        token: &InstallationToken,
        now: OffsetDateTime,
    ) -> Result<(), GithubError> {
        let url = self.endpoint(&["installation", "token"])?;
        self.send(
            Call::TokenRevocation,
            Method::DELETE,
            &url,
            token.expose_secret(),
            None,
            "",
            now,
        )
        .await
        .map(|_| ())
    }

    /// The cached App JWT, or a freshly signed one when there is none, it is
    /// within a minute of `exp`, or `now` is before its `iat` (clock moved back).
    async fn app_jwt(&self, now: OffsetDateTime) -> Result<SecretString, GithubError> {
        if let Some(cached) = lock(&self.inner.app_jwt).as_ref() {
            if cached.iat <= now && now < cached.exp - JWT_REFRESH_MARGIN {
                return Ok(cached.jwt.clone());
            }
        }
        let iat = now - JWT_BACKDATE;
        let exp = now + JWT_LIFETIME;
        let claims = AppJwtClaims {
            iat: iat.unix_timestamp(),
            exp: exp.unix_timestamp(),
            iss: &self.inner.app_id,
        };
        // The lock is not held across the (possibly remote) signature.
        let jwt = SecretString::from(
            self.inner
                .key
                .sign_jwt(&claims, now)
                .await
                .map_err(GithubError::Sign)?,
        );
        *lock(&self.inner.app_jwt) = Some(AppJwt {
            jwt: jwt.clone(),
            iat,
            exp,
        });
        Ok(jwt)
    }

    async fn installation_id(
        &self,
        req: &MintRequest<'_>,
        full_name: &str,
        jwt: &SecretString,
        now: OffsetDateTime,
    ) -> Result<u64, GithubError> {
        let key = full_name.to_ascii_lowercase();
        if let Some(cached) = lock(&self.inner.installations).get(&key).copied() {
            if cached.fetched_at <= now && now < cached.fetched_at + INSTALLATION_TTL {
                return Ok(cached.id);
            }
        }
        let url = self.endpoint(&["repos", req.owner, req.repo, "installation"])?;
        let body = self
            .send(
                Call::RepositoryInstallation,
                Method::GET,
                &url,
                jwt.expose_secret(),
                None,
                full_name,
                now,
            )
            .await
            .inspect_err(|e| {
                if e.status() == Some(401) {
                    *lock(&self.inner.app_jwt) = None;
                }
            })?;
        let reply: InstallationReply = serde_json::from_slice(&body)
            .map_err(|e| malformed(Call::RepositoryInstallation, &e))?;
        lock(&self.inner.installations).insert(
            key,
            CachedInstallation {
                id: reply.id,
                fetched_at: now,
            },
        );
        Ok(reply.id)
    }

    fn forget_installation(&self, full_name: &str, id: u64) {
        let key = full_name.to_ascii_lowercase();
        let mut cache = lock(&self.inner.installations);
        if cache.get(&key).is_some_and(|c| c.id == id) {
            cache.remove(&key);
        }
    }

    /// Checks GitHub's token answer; on any failure after a token is in hand,
    /// revokes it before returning the error.
    async fn accept_token(
        &self,
        body: &[u8],
        req: &MintRequest<'_>,
        full_name: &str,
        installation_id: u64,
        now: OffsetDateTime,
    ) -> Result<MintedToken, GithubError> {
        let doc: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| malformed(Call::InstallationToken, &e))?;
        let token = match doc.get("token") {
            Some(Value::String(t)) if !t.is_empty() => InstallationToken::new(t.as_str()),
            _ => return Err(GithubError::MissingToken),
        };
        // No assumption about length or shape, only that it can be sent back
        // as a bearer credential (visible ASCII).
        if !token.expose_secret().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(GithubError::UnusableToken);
        }
        match check_grant(&doc, req, full_name, now) {
            Ok((expires_at, permissions)) => Ok(MintedToken {
                token,
                expires_at,
                installation_id,
                repositories: vec![full_name.to_owned()],
                permissions,
            }),
            Err(reason) => {
                let revoked = match self.revoke(&token, now).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(
                            error = %ErrorChain(&error),
                            token_sha256 = %token.sha256_hex(),
                            "revoke a refused GitHub installation token"
                        );
                        false
                    }
                };
                Err(GithubError::Rejected { reason, revoked })
            }
        }
    }

    /// `api_url` with `segments` appended, each percent-escaped as one path segment.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, GithubError> {
        let mut url = self.inner.api_url.clone();
        url.path_segments_mut()
            .map_err(|()| GithubError::Settings("the GitHub API URL cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends one call, retrying once per [`GithubError::is_retryable`].
    /// Returns the body of a 2xx answer; `repo` names the repository in hints.
    /// Lookup and mint calls first pass the rate-limit gate and take a call
    /// slot, held until the call (with its retry) is over.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        call: Call,
        method: Method,
        url: &Url,
        bearer: &str,
        body: Option<Vec<u8>>,
        repo: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, GithubError> {
        let now = crate::limits::ticks(now);
        let _permit = if call == Call::TokenRevocation {
            None
        } else {
            Some(self.admit(now).await?)
        };
        let mut authorization = HeaderValue::try_from(format!("Bearer {bearer}"))
            .map_err(|_| GithubError::UnusableToken)?;
        authorization.set_sensitive(true);
        let mut retried = false;
        loop {
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, authorization.clone());
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            match self.attempt(call, request, repo, now).await {
                Err(error) if !retried && error.is_retryable() => {
                    tracing::warn!(
                        %call,
                        error = %ErrorChain(&error),
                        "GitHub request failed; retrying once"
                    );
                    retried = true;
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// The rate-limit gate and a call slot, or why there is none.
    async fn admit(&self, now: u64) -> Result<tokio::sync::SemaphorePermit<'_>, GithubError> {
        let throttled = |rate: &RateLimitState| match rate.throttled_for(now) {
            Some(retry_after) => Err(GithubError::Throttled { retry_after }),
            None => Ok(()),
        };
        throttled(&self.inner.rate)?;
        let waited = self.inner.max_queue_wait;
        let permit = match tokio::time::timeout(waited, self.inner.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // Timed out, or (never: it is not closed) the semaphore closed.
            Ok(Err(_)) | Err(_) => return Err(GithubError::Busy { waited }),
        };
        // The window may have opened while this call waited for its slot.
        throttled(&self.inner.rate)?;
        Ok(permit)
    }

    async fn attempt(
        &self,
        call: Call,
        request: reqwest::RequestBuilder,
        repo: &str,
        now: u64,
    ) -> Result<Vec<u8>, GithubError> {
        let response = request.send().await;
        self.observe(call, &response);
        let response = response.map_err(|e| self.transport(call, e))?;
        let status = response.status();
        let limits = parse_rate_limit_headers(response.headers());
        self.inner.rate.observe(status.as_u16(), limits, now);
        if let Some(remaining) = limits.remaining {
            self.inner.metrics.set_rate_limit_remaining(remaining);
        }
        if !status.is_success() {
            // The body is dropped unread: it never reaches an error or a log.
            return Err(status_error(call, status, limits, repo));
        }
        match crate::net::read_capped(response, MAX_RESPONSE_BYTES).await {
            Ok(body) => Ok(body.to_vec()),
            Err(crate::net::CappedReadError::TooLarge) => Err(GithubError::BodyTooLarge { call }),
            Err(crate::net::CappedReadError::Transport(e)) => Err(self.transport(call, e)),
        }
    }

    /// The client's call counters, for [`crate::metrics::Metrics`].
    pub(crate) fn metrics(&self) -> &GithubMetrics {
        &self.inner.metrics
    }

    /// Counts one call by status (or timeout, or error), for metrics.
    fn observe(&self, call: Call, response: &Result<reqwest::Response, reqwest::Error>) {
        let metrics = &self.inner.metrics;
        match response {
            Ok(response) => {
                metrics.record_call(call, CallResult::Status(response.status().as_u16()));
            }
            Err(e) if e.is_timeout() => metrics.record_call(call, CallResult::Timeout),
            Err(_) => metrics.record_call(call, CallResult::Error),
        }
    }

    fn transport(&self, call: Call, source: reqwest::Error) -> GithubError {
        if source.is_timeout() {
            GithubError::Timeout {
                call,
                timeout: self.inner.request_timeout,
            }
        } else {
            GithubError::Transport { call, source }
        }
    }
}

/// Displays an error with its causes (`a: b: c`) for log lines. Causes here
/// are transport errors (which name the URL, never headers or bodies).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A decoding error reduced to its position, so no fragment of the body
/// (serde_json quotes unexpected values) reaches the message.
fn malformed(call: Call, e: &serde_json::Error) -> GithubError {
    GithubError::MalformedResponse {
        call,
        line: e.line(),
        column: e.column(),
    }
}

fn status_error(
    call: Call,
    status: StatusCode,
    limits: RateLimitHeaders,
    repo: &str,
) -> GithubError {
    let retry_after = limits.retry_after.map(Duration::from_secs);
    let exhausted = limits.remaining == Some(0);
    let code = status.as_u16();
    if code == 429 || (code == 403 && (exhausted || retry_after.is_some())) {
        return GithubError::RateLimited {
            call,
            status: code,
            retry_after,
        };
    }
    let hint = match (call, code) {
        (_, 300..=399) => "GitHub answered with a redirect, which tokenmint does not follow; check the GitHub API URL".to_owned(),
        (Call::RepositoryInstallation | Call::InstallationToken, 401) => {
            "check the GitHub App id and private key, and this host's clock".to_owned()
        }
        (Call::RepositoryInstallation, 404) => {
            format!("check that the GitHub App is installed on {repo}")
        }
        (Call::InstallationToken, 403) => format!(
            "check that the GitHub App installation on {repo} is not suspended"
        ),
        (Call::InstallationToken, 404) => format!(
            "the installation was not found; check that the GitHub App is still installed on {repo}"
        ),
        (Call::InstallationToken, 422) => format!(
            "check that the GitHub App has the requested permissions and that its installation includes {repo}"
        ),
        (Call::TokenRevocation, 401) => "the token is unknown, expired or already revoked".to_owned(),
        _ => String::new(),
    };
    GithubError::Status {
        call,
        status: code,
        hint,
    }
}

/// GitHub's naming rule for owners and repositories (ASCII letters, digits,
/// `_`, `.`, `-`), minus `.` and `..`, which would change the URL path.
fn validate_name(owner: &str, repo: &str) -> Result<(), GithubError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    if ok(owner) && ok(repo) {
        Ok(())
    } else {
        Err(GithubError::InvalidRepository {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
        })
    }
}

/// Checks the parts of a token answer other than the token: expiry,
/// repository scope, and permissions. Returns the expiry and the granted map.
fn check_grant(
    doc: &Map<String, Value>,
    req: &MintRequest<'_>,
    full_name: &str,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, BTreeMap<String, String>), Rejection> {
    // 1. Expiry: present, RFC 3339, in the future.
    let expires_at = match doc.get("expires_at") {
        None | Some(Value::Null) => return Err(Rejection::MissingExpiration),
        Some(Value::String(s)) => {
            OffsetDateTime::parse(s, &Rfc3339).map_err(|_| Rejection::UnparseableExpiration)?
        }
        Some(_) => return Err(Rejection::UnparseableExpiration),
    };
    if expires_at <= now {
        return Err(Rejection::Expired { expires_at });
    }

    // 2. Scope: never "all"; a listed scope must be exactly the one repository.
    if doc.get("repository_selection").and_then(Value::as_str) == Some("all") {
        return Err(Rejection::AllRepositories {
            expected: full_name.to_owned(),
        });
    }
    match doc.get("repositories") {
        None | Some(Value::Null) => {}
        Some(Value::Array(listed)) => {
            let exact = match listed.as_slice() {
                [only] => {
                    let name_ok = only
                        .get("full_name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(full_name));
                    let id_ok = req
                        .repository_id
                        .is_none_or(|id| only.get("id").and_then(Value::as_u64) == Some(id));
                    name_ok && id_ok
                }
                _ => false,
            };
            if !exact {
                return Err(Rejection::WrongRepositories {
                    expected: full_name.to_owned(),
                    listed: listed.len(),
                });
            }
        }
        Some(_) => {
            return Err(Rejection::WrongRepositories {
                expected: full_name.to_owned(),
                listed: 0,
            })
        }
    }

    // 3. Permissions: present, recognisable, and no more than requested.
    let Some(Value::Object(raw)) = doc.get("permissions") else {
        return Err(Rejection::MissingPermissions);
    };
    let mut granted = BTreeMap::new();
    for (name, level) in raw {
        let plausible_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match level.as_str() {
            Some(level @ ("read" | "write" | "admin")) if plausible_name => {
                granted.insert(name.clone(), level.to_owned());
            }
            _ => return Err(Rejection::UnrecognisedPermissions),
        }
    }
    req.permissions
        .check_granted(granted.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(Rejection::ExcessPermissions)?;
    Ok((expires_at, granted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock as _, SystemClock};
    use crate::dev::github_standin::{Fault, GithubStandIn, StandInConfig};
    use crate::keys::RsaSigningKey;
    use serde_json::json;
    use std::sync::OnceLock;
    use std::time::Instant;

    const APP_ID: &str = "12345";

    /// One App key for all tests (generation is the slow part), with its PEM
    /// for the canary test.
    fn app_key() -> &'static (RsaSigningKey, String) {
        static KEY: OnceLock<(RsaSigningKey, String)> = OnceLock::new();
        KEY.get_or_init(|| RsaSigningKey::generate_pem().unwrap())
    }

    struct Fixture {
        standin: GithubStandIn,
        client: GithubClient,
        permissions: Permissions,
    }

    async fn fixture_with(request_timeout: Duration, api_path: &str) -> Fixture {
        let (key, _) = app_key();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let standin = GithubStandIn::spawn(
            listener,
            StandInConfig {
                app_id: APP_ID.into(),
                app_public_key: key.public_jwk(),
                installations: vec![
                    ("acme/widgets".into(), 42, 1001),
                    ("acme/gadgets".into(), 42, 1002),
                    ("other/thing".into(), 7, 2001),
                ],
            },
        )
        .await
        .unwrap();
        let client = GithubClient::new(GithubSettings {
            api_url: standin.url().join(api_path).unwrap(),
            app_id: APP_ID.into(),
            key: key.clone().into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout,
            max_concurrent_requests: 32,
            max_queue_wait: Duration::from_secs(2),
        })
        .unwrap();
        Fixture {
            standin,
            client,
            permissions: Permissions::parse([("contents", "read"), ("issues", "write")]).unwrap(),
        }
    }

    async fn fixture() -> Fixture {
        fixture_with(Duration::from_secs(5), "").await
    }

    /// The stand-in judges App JWTs by the real clock, so tests pass real time.
    fn now() -> OffsetDateTime {
        SystemClock.now()
    }

    impl Fixture {
        fn request(&self) -> MintRequest<'_> {
            MintRequest {
                owner: "acme",
                repo: "widgets",
                repository_id: None,
                permissions: &self.permissions,
            }
        }

        fn paths(&self) -> Vec<String> {
            self.standin
                .requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect()
        }
    }

    #[tokio::test]
    async fn github_mint_success_sends_scoped_body() {
        let f = fixture().await;
        let now = now();
        let minted = f.client.mint(&f.request(), now).await.unwrap();

        assert_eq!(
            f.paths(),
            vec![
                "GET /repos/acme/widgets/installation",
                "POST /app/installations/42/access_tokens"
            ]
        );
        let requests = f.standin.requests();
        assert_eq!(
            requests[1].body,
            Some(json!({
                "repositories": ["widgets"],
                "permissions": {"contents": "read", "issues": "write"}
            }))
        );
        let issued = f.standin.issued_tokens();
        assert_eq!(issued.len(), 1);
        assert_eq!(minted.token.expose_secret(), issued[0].token);
        assert!(!issued[0].revoked);
        assert_eq!(minted.installation_id, 42);
        assert_eq!(minted.repositories, vec!["acme/widgets".to_owned()]);
        assert_eq!(
            minted.permissions,
            BTreeMap::from([
                ("contents".to_owned(), "read".to_owned()),
                ("issues".to_owned(), "write".to_owned()),
                ("metadata".to_owned(), "read".to_owned()),
            ])
        );
        assert!(minted.expires_at > now + time::Duration::minutes(50));
        assert_eq!(minted.token.sha256_hex().len(), 64);
    }

    #[tokio::test]
    async fn github_mint_by_repository_id() {
        let f = fixture().await;
        let req = MintRequest {
            repository_id: Some(1001),
            ..f.request()
        };
        let minted = f.client.mint(&req, now()).await.unwrap();
        assert_eq!(
            f.standin.requests()[1].body,
            Some(json!({
                "repository_ids": [1001],
                "permissions": {"contents": "read", "issues": "write"}
            }))
        );
        assert_eq!(minted.repositories, vec!["acme/widgets".to_owned()]);
    }

    #[tokio::test]
    async fn github_mint_under_ghes_path_prefix() {
        let f = fixture_with(Duration::from_secs(5), "api/v3").await;
        f.client.mint(&f.request(), now()).await.unwrap();
        assert_eq!(
            f.paths(),
            vec![
                "GET /api/v3/repos/acme/widgets/installation",
                "POST /api/v3/app/installations/42/access_tokens"
            ]
        );
        // A trailing slash on the API root changes nothing.
        let f = fixture_with(Duration::from_secs(5), "api/v3/").await;
        f.client.mint(&f.request(), now()).await.unwrap();
        assert_eq!(f.paths()[0], "GET /api/v3/repos/acme/widgets/installation");
    }

    #[tokio::test]
    async fn github_app_jwt_reused_across_mints_and_installation_cached() {
        let f = fixture().await;
        let t0 = now();
        f.client.mint(&f.request(), t0).await.unwrap();
        assert_eq!(f.standin.call_count(), 2);
        f.client
            .mint(&f.request(), t0 + time::Duration::minutes(2))
            .await
            .unwrap();
        f.client
            .mint(&f.request(), t0 + time::Duration::minutes(5))
            .await
            .unwrap();
        // Warm: one GitHub call per mint.
        assert_eq!(f.standin.call_count(), 4);
        let bearers: Vec<_> = f
            .standin
            .requests()
            .into_iter()
            .map(|r| r.bearer.unwrap())
            .collect();
        assert!(bearers.iter().all(|b| b == &bearers[0]), "one App JWT");
        // The cache key is case-insensitive, like GitHub's names.
        let upper = MintRequest {
            owner: "ACME",
            repo: "Widgets",
            ..f.request()
        };
        f.client
            .mint(&upper, t0 + time::Duration::minutes(6))
            .await
            .unwrap();
        assert_eq!(f.standin.call_count(), 5);
    }

    #[tokio::test]
    async fn github_installation_cache_expires() {
        let f = fixture().await;
        // The stand-in judges JWTs by the real clock, so rather than mint at
        // a past `now`, seed the cache with an entry fetched 11 minutes ago.
        let t0 = now() - time::Duration::minutes(11);
        lock(&f.client.inner.installations).insert(
            "acme/widgets".into(),
            CachedInstallation {
                id: 42,
                fetched_at: t0,
            },
        );
        f.client.mint(&f.request(), now()).await.unwrap();
        assert_eq!(
            f.paths(),
            vec![
                "GET /repos/acme/widgets/installation",
                "POST /app/installations/42/access_tokens"
            ]
        );
    }

    #[tokio::test]
    async fn github_app_jwt_claims_and_refresh_schedule() {
        let (key, _) = app_key();
        let client = GithubClient::new(GithubSettings {
            api_url: Url::parse("https://api.github.com").unwrap(),
            app_id: APP_ID.into(),
            key: key.clone().into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_concurrent_requests: 32,
            max_queue_wait: Duration::from_secs(2),
        })
        .unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let first = client.app_jwt(t0).await.unwrap();
        let payload = first.expose_secret().split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims,
            json!({"iat": 1_800_000_000 - 60, "exp": 1_800_000_000 + 540, "iss": APP_ID})
        );
        let at = |secs| t0 + time::Duration::seconds(secs);
        let same = |s: &SecretString| s.expose_secret() == first.expose_secret();
        assert!(same(&client.app_jwt(at(1)).await.unwrap()));
        assert!(same(&client.app_jwt(at(479)).await.unwrap()));
        // Within a minute of exp: re-signed (about every 8 minutes).
        let second = client.app_jwt(at(480)).await.unwrap();
        assert!(!same(&second));
        // A clock that jumped back before iat also forces a new JWT.
        let third = client.app_jwt(at(480 - 120)).await.unwrap();
        assert_ne!(third.expose_secret(), second.expose_secret());
    }

    #[tokio::test]
    async fn github_retries_once_on_500_then_succeeds() {
        let f = fixture().await;
        f.standin.set_fault(Fault::Status {
            status: 500,
            times: 1,
        });
        f.client.mint(&f.request(), now()).await.unwrap();
        assert_eq!(
            f.paths(),
            vec![
                "GET /repos/acme/widgets/installation",
                "GET /repos/acme/widgets/installation",
                "POST /app/installations/42/access_tokens"
            ]
        );
        // Two 5xx in a row: exactly one retry, then the error.
        let f = fixture().await;
        f.standin.set_fault(Fault::Status {
            status: 502,
            times: 5,
        });
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert_eq!(f.standin.call_count(), 2);
        assert_eq!(
            err.to_string(),
            "GitHub repository-installation request failed with status 502"
        );
    }

    #[tokio::test]
    async fn github_no_retry_on_4xx() {
        let f = fixture().await;
        f.standin.set_fault(Fault::Status {
            status: 403,
            times: 5,
        });
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert_eq!(err.status(), Some(403));
        assert_eq!(f.standin.call_count(), 1);
        assert!(err
            .to_string()
            .starts_with("GitHub repository-installation request failed with status 403"));

        let f = fixture().await;
        let req = MintRequest {
            repo: "unknown",
            ..f.request()
        };
        let err = f.client.mint(&req, now()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "GitHub repository-installation request failed with status 404; check that the GitHub App is installed on acme/unknown"
        );
        assert_eq!(f.standin.call_count(), 1);
    }

    #[tokio::test]
    async fn github_mint_refusal_invalidates_installation_cache() {
        for status in [401u16, 403, 404] {
            let f = fixture().await;
            f.client.mint(&f.request(), now()).await.unwrap();
            f.standin.set_fault(Fault::TokenStatus { status, times: 1 });
            let err = f.client.mint(&f.request(), now()).await.unwrap_err();
            assert!(
                err.to_string().starts_with(&format!(
                    "GitHub installation-token request failed with status {status}"
                )),
                "{err}"
            );
            assert_eq!(f.standin.call_count(), 3, "no retry on {status}");
            f.client.mint(&f.request(), now()).await.unwrap();
            assert_eq!(
                f.paths()[3..],
                [
                    "GET /repos/acme/widgets/installation",
                    "POST /app/installations/42/access_tokens"
                ],
                "looked up again after {status}"
            );
        }
        // A 422 (say, a permission the App lacks) keeps the cache.
        let f = fixture().await;
        f.client.mint(&f.request(), now()).await.unwrap();
        f.standin.set_fault(Fault::TokenStatus {
            status: 422,
            times: 1,
        });
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert!(err
            .to_string()
            .contains("check that the GitHub App has the requested permissions"));
        f.client.mint(&f.request(), now()).await.unwrap();
        assert_eq!(f.standin.call_count(), 4);
    }

    #[tokio::test]
    async fn github_rate_limit_is_reported() {
        let f = fixture().await;
        f.standin.set_fault(Fault::Status {
            status: 429,
            times: 1,
        });
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert!(matches!(err, GithubError::RateLimited { status: 429, .. }));
        assert_eq!(f.standin.call_count(), 1);
    }

    #[tokio::test]
    async fn github_timeout_is_bounded_and_retried_once() {
        let f = fixture_with(Duration::from_millis(300), "").await;
        f.standin.set_fault(Fault::Delay(Duration::from_secs(5)));
        let started = Instant::now();
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(
                err,
                GithubError::Timeout {
                    call: Call::RepositoryInstallation,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        assert_eq!(f.standin.call_count(), 2);
    }

    #[tokio::test]
    async fn timed_out_mint_is_not_retried() {
        // A second POST after a timeout could mint a token nobody receives.
        let f = fixture_with(Duration::from_millis(300), "").await;
        f.client.mint(&f.request(), now()).await.unwrap();
        let before = f.standin.call_count();
        f.standin.set_fault(Fault::Delay(Duration::from_secs(5)));
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert!(
            matches!(
                err,
                GithubError::Timeout {
                    call: Call::InstallationToken,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            f.standin.call_count() - before,
            1,
            "the mint POST must not be retried after a timeout"
        );
    }

    #[tokio::test]
    async fn github_connection_failure_retried_once() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (key, _) = app_key();
        let client = GithubClient::new(GithubSettings {
            api_url: Url::parse(&format!("http://{addr}")).unwrap(),
            app_id: APP_ID.into(),
            key: key.clone().into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_concurrent_requests: 32,
            max_queue_wait: Duration::from_secs(2),
        })
        .unwrap();
        let p = Permissions::parse([("contents", "read")]).unwrap();
        let started = Instant::now();
        let err = client
            .mint(
                &MintRequest {
                    owner: "acme",
                    repo: "widgets",
                    repository_id: None,
                    permissions: &p,
                },
                now(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, GithubError::Transport { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "GitHub repository-installation request failed"
        );
        assert!(started.elapsed() >= RETRY_DELAY, "retried after the pause");
    }

    #[tokio::test]
    async fn github_body_cap_enforced() {
        for fault in [Fault::OversizedBody, Fault::OversizedChunkedBody] {
            let f = fixture().await;
            f.standin.set_fault(fault.clone());
            let err = f.client.mint(&f.request(), now()).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    GithubError::BodyTooLarge {
                        call: Call::RepositoryInstallation
                    }
                ),
                "{fault:?}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                "GitHub repository-installation response exceeded the 1 MiB limit"
            );
            assert_eq!(f.standin.call_count(), 1, "{fault:?}");
        }
    }

    #[tokio::test]
    async fn github_redirect_not_followed() {
        let f = fixture().await;
        let elsewhere = f
            .standin
            .url()
            .join("repos/other/thing/installation")
            .unwrap();
        f.standin.set_fault(Fault::Redirect(elsewhere.to_string()));
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert_eq!(err.status(), Some(307));
        assert!(err.to_string().contains("does not follow"));
        assert_eq!(f.standin.call_count(), 1);
    }

    #[tokio::test]
    async fn github_malformed_json_is_an_error_without_body() {
        let f = fixture().await;
        f.standin.set_fault(Fault::MalformedJson);
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert!(
            matches!(err, GithubError::MalformedResponse { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("ghs_"));
    }

    #[tokio::test]
    async fn github_refused_grants_are_revoked() {
        let cases: [(Fault, Option<u64>, &str); 8] = [
            (Fault::GrantExtraPermission, None, "granted more than was requested: GitHub granted `administration: write`, which was not requested"),
            (Fault::WrongRepository, None, "listed 1 repositories that are not exactly acme/widgets"),
            (Fault::WrongRepositoryId, Some(1001), "listed 1 repositories that are not exactly acme/widgets"),
            (Fault::ExtraRepository, None, "listed 2 repositories that are not exactly acme/widgets"),
            (Fault::AllRepositories, None, "granted access to all of the installation's repositories instead of only acme/widgets"),
            (Fault::ExpiredToken, None, "included an expiration that is not in the future"),
            (Fault::OmitExpiration, None, "did not include an expiration"),
            (Fault::OmitPermissions, None, "did not include the granted permissions"),
        ];
        for (fault, repository_id, reason) in cases {
            let f = fixture().await;
            f.standin.set_fault(fault.clone());
            let req = MintRequest {
                repository_id,
                ..f.request()
            };
            let err = f.client.mint(&req, now()).await.unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("GitHub installation-token response {reason}")),
                "{fault:?}: {message}"
            );
            assert!(message.ends_with("; the token was revoked"), "{message}");
            assert!(matches!(err, GithubError::Rejected { revoked: true, .. }));
            let issued = f.standin.issued_tokens();
            assert_eq!(issued.len(), 1);
            assert!(issued[0].revoked, "{fault:?}");
            let last = f.standin.requests().pop().unwrap();
            assert_eq!(
                (last.method.as_str(), last.path.as_str()),
                ("DELETE", "/installation/token")
            );
            assert_eq!(last.bearer.as_deref(), Some(issued[0].token.as_str()));
            assert!(!message.contains(&issued[0].token));
        }
    }

    #[tokio::test]
    async fn github_empty_token_is_an_error() {
        let f = fixture().await;
        f.standin.set_fault(Fault::EmptyToken);
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "GitHub installation-token response did not include a token"
        );
        assert_eq!(f.standin.call_count(), 2, "nothing to revoke");
    }

    #[tokio::test]
    async fn github_revocation_failure_is_reported() {
        let f = fixture().await;
        f.standin.set_fault(Fault::GrantExtraPermissionUnrevocable);
        let err = f.client.mint(&f.request(), now()).await.unwrap_err();
        assert!(matches!(err, GithubError::Rejected { revoked: false, .. }));
        assert!(err
            .to_string()
            .ends_with("; revoking the token also failed, so it stays valid until it expires"));
        // The revocation was retried once (500), then given up.
        assert_eq!(f.standin.call_count(), 4);
        f.standin.set_fault(Fault::None);
        let unknown = InstallationToken::new("ghs_not_a_token_the_standin_issued");
        let err = f.client.revoke(&unknown, now()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "GitHub token-revocation request failed with status 401; the token is unknown, expired or already revoked"
        );
    }

    #[tokio::test]
    async fn github_revoke_roundtrip() {
        let f = fixture().await;
        let minted = f.client.mint(&f.request(), now()).await.unwrap();
        f.client.revoke(&minted.token, now()).await.unwrap();
        assert!(f.standin.issued_tokens()[0].revoked);
        let last = f.standin.requests().pop().unwrap();
        assert_eq!(last.bearer.as_deref(), Some(minted.token.expose_secret()));
    }

    #[tokio::test]
    async fn github_invalid_names_make_no_call() {
        let f = fixture().await;
        for (owner, repo) in [
            ("acme", ".."),
            ("..", "widgets"),
            (".", "widgets"),
            ("acme", "wid/gets"),
            ("acme", "wid%2Fgets"),
            ("acme", "widgets?x=1"),
            ("", "widgets"),
            ("acme", "w i"),
            ("ácme", "widgets"),
        ] {
            let req = MintRequest {
                owner,
                repo,
                ..f.request()
            };
            let err = f.client.mint(&req, now()).await.unwrap_err();
            assert!(
                matches!(err, GithubError::InvalidRepository { .. }),
                "{owner}/{repo}"
            );
        }
        assert_eq!(f.standin.call_count(), 0);
    }

    #[test]
    fn github_settings_are_checked() {
        let (key, _) = app_key();
        let settings = |url: &str, app_id: &str| GithubSettings {
            api_url: Url::parse(url).unwrap(),
            app_id: app_id.into(),
            key: key.clone().into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_concurrent_requests: 32,
            max_queue_wait: Duration::from_secs(2),
        };
        for url in [
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?q=1",
            "https://example.com/#x",
            "mailto:x@example.com",
        ] {
            assert!(GithubClient::new(settings(url, APP_ID)).is_err(), "{url}");
        }
        assert!(GithubClient::new(settings("https://api.github.com", " ")).is_err());
        assert!(GithubClient::new(settings("https://ghe.example/api/v3", "Iv23abc")).is_ok());
        let mut zero = settings("https://api.github.com", APP_ID);
        zero.request_timeout = Duration::ZERO;
        assert!(GithubClient::new(zero).is_err());
    }

    #[tokio::test]
    async fn github_debug_redacts() {
        let f = fixture().await;
        let minted = f.client.mint(&f.request(), now()).await.unwrap();
        let token = minted.token.expose_secret().to_owned();
        let jwt = f.standin.requests()[0].bearer.clone().unwrap();
        let (_, pem) = app_key();
        let pem_body = &pem[40..120];
        for shown in [
            format!("{:?}", f.client),
            format!("{:?}", minted),
            format!("{:?}", minted.token),
            format!("{}", minted.token),
            format!("{:?}", f.standin.requests()),
            format!("{:?}", f.standin.issued_tokens()),
        ] {
            assert!(!shown.contains(&token), "{shown}");
            assert!(!shown.contains(&jwt), "{shown}");
            assert!(!shown.contains(pem_body), "{shown}");
        }
        assert_eq!(format!("{}", minted.token), "[REDACTED]");
        assert!(format!("{:?}", minted.token).contains("REDACTED"));
    }

    /// Collects every log line, at every level and from every crate, so the
    /// canary test sees what an operator's log would.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn github_canary_secrets_never_reach_errors_or_logs() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Other test threads may have cached "nobody listens" for these
        // callsites before this thread's subscriber existed; recompute.
        tracing::callsite::rebuild_interest_cache();

        // Long enough that a busy machine does not turn the 500 (which must be
        // retried and logged) into a timeout; the 2 s delay still times out.
        let f = fixture_with(Duration::from_millis(1000), "").await;
        let mut errors = Vec::new();
        let mut tokens = Vec::new();
        // Success, then every failure path that holds a token or a JWT.
        tokens.push(f.client.mint(&f.request(), now()).await.unwrap().token);
        for fault in [
            Fault::GrantExtraPermission,
            Fault::WrongRepository,
            Fault::AllRepositories,
            Fault::ExpiredToken,
            Fault::OmitPermissions,
            Fault::TokenStatus {
                status: 500,
                times: 2,
            },
            Fault::TokenStatus {
                status: 403,
                times: 1,
            },
            Fault::MalformedJson,
            Fault::Delay(Duration::from_secs(2)),
            Fault::OversizedBody,
        ] {
            f.standin.set_fault(fault);
            errors.push(f.client.mint(&f.request(), now()).await.unwrap_err());
        }
        // A failed revocation logs a warning.
        f.standin.set_fault(Fault::GrantExtraPermissionUnrevocable);
        errors.push(f.client.mint(&f.request(), now()).await.unwrap_err());
        f.standin.set_fault(Fault::None);
        for t in &tokens {
            f.client.revoke(t, now()).await.unwrap();
            errors.push(f.client.revoke(t, now()).await.unwrap_err());
        }

        let (_, pem) = app_key();
        let mut canaries: Vec<String> = f
            .standin
            .requests()
            .into_iter()
            .filter_map(|r| r.bearer)
            .collect();
        canaries.extend(f.standin.issued_tokens().into_iter().map(|t| t.token));
        canaries.extend(tokens.iter().map(|t| t.expose_secret().to_owned()));
        canaries.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned),
        );
        assert!(canaries.len() > 20);

        let mut text = String::from_utf8(lock(&captured.0).clone()).unwrap();
        assert!(text.contains("retrying once"), "the capture works: {text}");
        for e in &errors {
            let mut source: Option<&dyn std::error::Error> = Some(e);
            while let Some(s) = source {
                text.push_str(&format!("{s}\n{s:?}\n"));
                source = s.source();
            }
        }
        for canary in &canaries {
            assert!(!text.contains(canary.as_str()), "leaked: {canary}");
        }
    }

    #[test]
    fn rate_limit_headers_are_parsed_in_one_place() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_rate_limit_headers(&h), RateLimitHeaders::default());
        h.insert("x-ratelimit-remaining", HeaderValue::from_static(" 0 "));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1763880000"));
        h.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(
            parse_rate_limit_headers(&h),
            RateLimitHeaders {
                remaining: Some(0),
                reset: Some(1_763_880_000),
                retry_after: Some(30),
            }
        );
        // Unparsable values (an HTTP-date retry-after, a negative count) are ignored.
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("-1"));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let seen = parse_rate_limit_headers(&h);
        assert_eq!((seen.remaining, seen.retry_after), (None, None));
    }

    #[test]
    fn rate_limit_state_blocks_only_while_github_limits() {
        const SEC: u64 = 1_000_000_000;
        let t0 = 1_763_880_000 * SEC;
        let fresh = || RateLimitState {
            remaining: AtomicU64::new(REMAINING_UNKNOWN),
            blocked_until: AtomicU64::new(0),
        };
        let seen = |remaining, reset, retry_after| RateLimitHeaders {
            remaining,
            reset,
            retry_after,
        };
        // Calls left: no block, remaining tracked.
        let s = fresh();
        s.observe(200, seen(Some(17), Some(1_763_883_600), None), t0);
        assert_eq!(s.remaining.load(Ordering::Relaxed), 17);
        assert_eq!(s.throttled_for(t0), None);
        // Exhausted: blocked until the reset, then free again.
        s.observe(403, seen(Some(0), Some(1_763_880_030), None), t0);
        assert_eq!(s.throttled_for(t0), Some(Duration::from_secs(30)));
        assert_eq!(s.throttled_for(t0 + 29 * SEC), Some(Duration::from_secs(1)));
        assert_eq!(s.throttled_for(t0 + 30 * SEC), None);
        // A late answer to an older call never shortens a block.
        let s = fresh();
        s.observe(403, seen(None, None, Some(50)), t0);
        s.observe(200, seen(Some(10), None, None), t0);
        s.observe(403, seen(None, None, Some(5)), t0);
        assert_eq!(s.throttled_for(t0), Some(Duration::from_secs(50)));
        // Exhausted with no usable reset (absent, or past by our clock): a minute.
        for reset in [None, Some(1_763_879_000)] {
            let s = fresh();
            s.observe(200, seen(Some(0), reset, None), t0);
            assert_eq!(s.throttled_for(t0), Some(DEFAULT_THROTTLE), "{reset:?}");
        }
        // A bare 429: a minute. A bare 403 is a permission problem, not a limit.
        let s = fresh();
        s.observe(403, seen(None, None, None), t0);
        assert_eq!(s.throttled_for(t0), None);
        s.observe(429, seen(None, None, None), t0);
        assert_eq!(s.throttled_for(t0), Some(DEFAULT_THROTTLE));
        // A far-off reset is cut to an hour.
        let s = fresh();
        s.observe(403, seen(Some(0), Some(u64::MAX), Some(u64::MAX)), t0);
        assert_eq!(s.throttled_for(t0), Some(MAX_THROTTLE));
    }

    #[tokio::test]
    async fn github_rate_limit_headers_stop_further_calls_until_reset() {
        let f = fixture().await;
        assert_eq!(f.client.rate_limit_remaining(), None);
        let now = now();
        f.client.mint(&f.request(), now).await.unwrap();
        // The stand-in counts down from 5000, one per call.
        assert_eq!(f.client.rate_limit_remaining(), Some(4998));
        assert_eq!(f.client.throttled_for(now), None);

        f.standin.set_fault(Fault::RateLimited {
            reset_in: Duration::from_secs(120),
            retry_after: None,
        });
        let err = f.client.mint(&f.request(), now).await.unwrap_err();
        assert!(
            matches!(err, GithubError::RateLimited { status: 403, .. }),
            "{err}"
        );
        assert_eq!(f.client.rate_limit_remaining(), Some(0));
        let wait = f.client.throttled_for(now).unwrap();
        assert!(
            (Duration::from_secs(115)..=Duration::from_secs(121)).contains(&wait),
            "{wait:?}"
        );
        let calls = f.standin.call_count();

        // While GitHub limits the App, no call is made, even with the fault gone.
        f.standin.set_fault(Fault::None);
        let err = f.client.mint(&f.request(), now).await.unwrap_err();
        assert!(matches!(err, GithubError::Throttled { .. }), "{err}");
        assert!(err.to_string().contains("no call was made"), "{err}");
        assert_eq!(f.standin.call_count(), calls);

        // Revocation is never held back.
        let minted_before = f.standin.issued_tokens();
        f.client
            .revoke(&InstallationToken::new(minted_before[0].token.clone()), now)
            .await
            .unwrap();
        assert_eq!(f.standin.call_count(), calls + 1);

        // After the reset, calls flow again.
        let later = now + time::Duration::seconds(125);
        f.client.mint(&f.request(), later).await.unwrap();
        assert!(f.client.rate_limit_remaining().is_some_and(|r| r > 0));
    }

    #[tokio::test]
    async fn github_retry_after_header_is_honoured() {
        let f = fixture().await;
        f.standin.set_fault(Fault::RateLimited {
            reset_in: Duration::from_secs(1),
            retry_after: Some(Duration::from_secs(300)),
        });
        let now = now();
        let err = f.client.mint(&f.request(), now).await.unwrap_err();
        assert!(
            matches!(err, GithubError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(300)),
            "{err}"
        );
        let wait = f.client.throttled_for(now).unwrap();
        assert!(wait > Duration::from_secs(290), "{wait:?}");
    }

    #[tokio::test]
    async fn github_concurrent_calls_are_capped() {
        let f = fixture().await;
        let (key, _) = app_key();
        let client = GithubClient::new(GithubSettings {
            api_url: f.standin.url(),
            app_id: APP_ID.into(),
            key: key.clone().into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_concurrent_requests: 1,
            max_queue_wait: Duration::from_millis(100),
        })
        .unwrap();
        f.standin
            .set_fault(Fault::Delay(Duration::from_millis(600)));
        let first = {
            let client = client.clone();
            let permissions = f.permissions.clone();
            tokio::spawn(async move {
                let req = MintRequest {
                    owner: "acme",
                    repo: "widgets",
                    repository_id: None,
                    permissions: &permissions,
                };
                client.mint(&req, now()).await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let err = client.mint(&f.request(), now()).await.unwrap_err();
        assert!(matches!(err, GithubError::Busy { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_millis(500));
        first.await.unwrap().unwrap();
        // The busy mint never reached GitHub: only the first mint's two calls did.
        assert_eq!(f.standin.call_count(), 2);
    }
}
