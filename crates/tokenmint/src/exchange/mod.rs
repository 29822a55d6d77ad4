//! The one function that runs an exchange: check the request, verify the token, authorize against the broker, mint, audit.
//!
//! # Steps of [`Service::exchange`]
//!
//! 1. The request shape: a well-formed octo-sts query, broker name syntax, an empty body, a well-formed
//!    `Authorization: Bearer` header (400), or no token at all (401).
//! 2. The token, by [`crate::oidc::Verifier`] (401; 503 when the issuer's
//!    keys are unreachable and none are cached).
//!    Then the per-subject rate limit ([`crate::limits`]), keyed by the
//!    verified (issuer, `sub`) (429 `rate_limited`).
//! 3. The broker: it must exist, be the repository an octo-sts request
//!    named (`scope`/`scopes`, see [`crate::octo_sts`]), accept the token's
//!    issuer, and its trust policy must allow the claims. Unknown brokers,
//!    scope mismatches and policy denials are indistinguishable to the
//!    caller (403). Then the broker's rate limit
//!    (429 `rate_limited`): only requests its policy allows draw on it, so
//!    outsiders cannot use up a broker's budget. Both limits come before
//!    step 4, so a rate-limited request does not use up a single-use token,
//!    and before minting, so it costs GitHub nothing. So does the check that
//!    GitHub is not rate-limiting the App (503 `upstream_rate_limited`).
//! 4. Replay protection, for issuers with `single_use = true`: the token's
//!    `jti` is claimed in the audit store ([`AuditLog::claim_jti`]). A token
//!    without a usable `jti`, or whose `jti` was already claimed, is refused
//!    (401 `invalid_token`, audited as `replayed jti`); a store that cannot
//!    answer refuses the exchange (503). The claim comes after the policy, so
//!    a denied request (a mistyped broker name, say) does not use the token
//!    up, and before minting, so no second token can be minted for it. A
//!    claimed jti stays used even if minting then fails: retry with a fresh
//!    OIDC token.
//! 5. Minting, with the broker's fixed repository and permissions (502 when
//!    GitHub refuses or fails; 503 `upstream_busy` when every GitHub call
//!    slot stays taken for the queue wait; 503 `upstream_rate_limited` when
//!    GitHub answers with a rate limit, and from then on, without calling
//!    GitHub, until its rate-limit headers say the window is over).
//! 6. The audit row. Every outcome writes one; if an *allow* row cannot be
//!    written, the minted token is revoked and the caller gets 503: no token
//!    leaves without its audit record.

use crate::audit::{
    AuditClaims, AuditError, AuditGrant, AuditLog, AuditRecord, Decision as AuditDecision, JtiClaim,
};
use crate::clock::Clock;
use crate::config::{is_valid_name, Broker, BrokerPolicy, Config};
use crate::github::{
    GithubClient, GithubError, GithubSettings, InstallationToken, MintRequest, Permissions,
};
use crate::iam::{IamDecision, WebIdentityRequest};
use crate::limits::{retry_after_secs, ticks, Limited, Limiter, Scope};
use crate::metrics::{Metrics, Outcome, Sources as MetricSources};
use crate::octo_sts::OctoStsError;
use crate::oidc::{claim_text, Rejection, VerifiedClaims, Verifier, VerifyError};
use crate::policy::Decision;
use crate::text::printable;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::Instrument as _;

/// Connect timeout for GitHub API calls.
pub const GITHUB_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Total timeout for one GitHub API call.
pub const GITHUB_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an exchange did not produce a token. [`crate::http`] maps each
/// variant to a status and code; nothing else does.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request itself is malformed (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// No token was presented (401).
    #[error("missing bearer token; send Authorization: Bearer <OIDC token>")]
    MissingToken,
    /// An octo-sts `/sts/exchange` query is malformed (400).
    #[error("{0}")]
    OctoStsQuery(#[from] OctoStsError),
    /// The token failed verification (401), or its issuer's keys are unreachable (503).
    #[error("{0}")]
    InvalidToken(VerifyError),
    /// Unknown broker, wrong issuer, or the trust policy said no (403). The
    /// reason is precise; whether the caller sees it is the HTTP layer's call.
    #[error("{reason}")]
    AccessDenied {
        /// The precise reason, for the audit log.
        reason: String,
    },
    /// GitHub refused or failed (502).
    #[error("{0}")]
    Upstream(#[from] GithubError),
    /// The token's issuer requires single use and the token has no usable
    /// `jti` (401).
    #[error("{reason}")]
    NoJti {
        /// Which issuer, and what is wrong with the `jti`.
        reason: String,
    },
    /// The token's `jti` was already exchanged, and its issuer requires
    /// single use (401).
    #[error("replayed jti {jti:?} from issuer {issuer:?}: a single-use token may be exchanged once; request a fresh OIDC token")]
    Replayed {
        /// The `[[issuer]]` name.
        issuer: String,
        /// The `jti`, made printable.
        jti: String,
    },
    /// The audit store could not record the decision (503).
    #[error("the audit store is unavailable, so no token was issued; retry shortly")]
    AuditUnavailable(#[source] AuditError),
    /// A per-subject or per-broker rate limit refused the request (429).
    #[error("{reason}; retry after {} s", retry_after_secs(*retry_after))]
    RateLimited {
        /// Which limit, for whom.
        reason: String,
        /// When the bucket admits one more request.
        retry_after: Duration,
    },
    /// Every GitHub call slot stayed taken for the queue wait (503).
    #[error("tokenmint is at its limit of concurrent GitHub calls; retry after {} s", retry_after_secs(*retry_after))]
    UpstreamBusy {
        /// A suggested wait.
        retry_after: Duration,
    },
    /// GitHub is rate-limiting the App; it was not called, or it just
    /// refused with a rate limit (503).
    #[error("GitHub is rate-limiting this service's GitHub App; retry after {} s", retry_after_secs(*retry_after))]
    UpstreamRateLimited {
        /// Until GitHub's window ends.
        retry_after: Duration,
    },
    /// `[server] max_in_flight` exchanges are already running; this one was
    /// shed before its token was read, so it has no audit row (503).
    #[error("tokenmint is at its limit of {max_in_flight} exchanges in flight; retry in {} s", OVERLOADED_RETRY_AFTER.as_secs())]
    Overloaded {
        /// The configured cap.
        max_in_flight: usize,
    },
}

/// What a shed request is told to wait.
pub const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long to suggest waiting when every GitHub call slot is taken.
const UPSTREAM_BUSY_RETRY: Duration = Duration::from_secs(1);

impl ExchangeError {
    /// The wait to advertise in `Retry-After`, for errors that have one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. }
            | Self::UpstreamBusy { retry_after }
            | Self::UpstreamRateLimited { retry_after } => Some(*retry_after),
            Self::Overloaded { .. } => Some(OVERLOADED_RETRY_AFTER),
            _ => None,
        }
    }
}

impl ExchangeError {
    /// The `outcome` label this error is counted under in metrics.
    pub fn outcome(&self) -> Outcome {
        match self {
            ExchangeError::InvalidRequest(_) | ExchangeError::OctoStsQuery(_) => {
                Outcome::InvalidRequest
            }
            ExchangeError::MissingToken => Outcome::MissingToken,
            ExchangeError::InvalidToken(VerifyError::KeysUnavailable { .. }) => {
                Outcome::KeysUnavailable
            }
            ExchangeError::InvalidToken(_) => Outcome::InvalidToken,
            ExchangeError::AccessDenied { .. } => Outcome::Denied,
            ExchangeError::NoJti { .. } | ExchangeError::Replayed { .. } => Outcome::Replayed,
            ExchangeError::Upstream(_) => Outcome::UpstreamError,
            ExchangeError::AuditUnavailable(_) => Outcome::AuditUnavailable,
            ExchangeError::RateLimited { .. } => Outcome::RateLimited,
            ExchangeError::UpstreamBusy { .. } => Outcome::UpstreamBusy,
            ExchangeError::UpstreamRateLimited { .. } => Outcome::UpstreamRateLimited,
            ExchangeError::Overloaded { .. } => Outcome::Overloaded,
        }
    }
}

/// What the HTTP layer hands over: the raw request pieces, unparsed.
/// `Debug` redacts the `Authorization` values (they hold bearer tokens).
#[derive(Clone)]
pub struct ExchangeRequest {
    /// A fresh id for this request.
    pub request_id: String,
    /// The broker name from the path, unvalidated.
    pub broker: String,
    /// The raw `Authorization` header values (all of them).
    pub authorization: Vec<Vec<u8>>,
    /// Whether the request carried any body bytes.
    pub body_is_empty: bool,
    /// The peer address, if known.
    pub client_addr: Option<String>,
    /// The `User-Agent`, if any.
    pub user_agent: Option<String>,
    /// For octo-sts's `/sts/exchange` only: the repositories its `scope` and
    /// `scopes` named (each must be the broker's), or why its query is
    /// malformed. `None` for `POST /v1/brokers/{name}/token`.
    pub octo_sts_scopes: Option<Result<Vec<String>, OctoStsError>>,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("request_id", &self.request_id)
            .field("broker", &self.broker)
            .field(
                "authorization",
                &format_args!("[{} value(s) REDACTED]", self.authorization.len()),
            )
            .field("body_is_empty", &self.body_is_empty)
            .field("client_addr", &self.client_addr)
            .field("user_agent", &self.user_agent)
            .field("octo_sts_scopes", &self.octo_sts_scopes)
            .finish()
    }
}

/// A minted credential, ready to return.
#[derive(Debug)]
pub struct Grant {
    /// The installation token. Redacted in `Debug`.
    pub token: InstallationToken,
    /// When GitHub expires it.
    pub expires_at: OffsetDateTime,
    /// `["owner/repo"]`, from the broker's configuration.
    pub repositories: Vec<String>,
    /// The broker's configured permissions.
    pub permissions: Permissions,
    /// The broker's name.
    pub broker: String,
    /// Where the exchange's time went, for the `Server-Timing` header.
    pub timing: Timing,
}

/// How long an allowed exchange took, and how much of that it waited on
/// GitHub and on the audit commit. The rest of `total` is tokenmint's own
/// work (and queueing for a CPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The GitHub calls: the installation lookup (on a cache miss) and the mint.
    pub github: Duration,
    /// Appending the audit row, until its commit.
    pub audit: Duration,
    /// The whole exchange, from its start to the committed audit row.
    pub total: Duration,
}

impl Timing {
    /// The value of a `Server-Timing` header (W3C Server Timing: durations
    /// in milliseconds), e.g. `github;dur=0.812, audit;dur=0.301, total;dur=1.402`.
    pub fn header_value(&self) -> String {
        format!(
            "github;dur={:.3}, audit;dur={:.3}, total;dur={:.3}",
            self.github.as_secs_f64() * 1000.0,
            self.audit.as_secs_f64() * 1000.0,
            self.total.as_secs_f64() * 1000.0
        )
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The audit store did not open.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The GitHub client could not be built.
    #[error(transparent)]
    Github(#[from] GithubError),
    /// The HTTP client for issuers could not be built.
    #[error("build the issuer HTTP client: {0}")]
    Oidc(#[from] crate::oidc::FetchError),
    /// `[github] private_key_ssm` could not be read, or holds no RSA key.
    #[error(transparent)]
    AppKeySsm(#[from] crate::github::SsmKeyError),
}

/// The App's signer for `source`: a PEM already parsed, a SecureString read
/// now (and again as it rotates), or a KMS key.
async fn app_signer(
    source: &crate::config::AppKeySource,
    now: time::OffsetDateTime,
) -> Result<crate::github::AppSigner, StartError> {
    use crate::config::AppKeySource;
    use crate::github::{AppSigner, SsmAppKey, SsmKeyError};
    match source {
        AppKeySource::Pem(key) => Ok(key.clone().into()),
        AppKeySource::Kms(signer) => Ok(AppSigner::Kms(signer.clone())),
        AppKeySource::Ssm { parameter, aws } => {
            let ssm = crate::aws::ssm::SsmClient::new((**aws).clone(), GITHUB_CONNECT_TIMEOUT)
                .map_err(SsmKeyError::Read)?;
            let key = SsmAppKey::load(ssm, parameter.clone(), now).await?;
            Ok(AppSigner::Ssm(Arc::new(key)))
        }
    }
}

/// Everything an exchange needs, built once at start.
#[derive(Debug)]
pub struct Service {
    config: Arc<Config>,
    verifier: Verifier,
    /// `None` only when no broker is configured (an STS-only config).
    github: Option<GithubClient>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    /// The STS-compatible endpoint, when `[[role]]`s are configured.
    sts: Option<crate::sts::Sts>,
    /// Counters and histograms for `GET /metrics`.
    metrics: Metrics,
    limiter: Limiter,
    /// One permit per exchange in flight (`[server] max_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Service {
    /// Opens the audit store and builds the clients for `config`.
    pub async fn start(config: Arc<Config>, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let audit = AuditLog::open(&config.audit.database, &config.audit.chain).await?;
        let github = match &config.github {
            Some(github) => Some(GithubClient::new(GithubSettings {
                api_url: github.api_url.clone(),
                app_id: github.app_id.clone(),
                key: app_signer(&github.key, clock.now()).await?,
                connect_timeout: GITHUB_CONNECT_TIMEOUT,
                request_timeout: GITHUB_REQUEST_TIMEOUT,
                max_concurrent_requests: github.max_concurrent_requests,
                max_queue_wait: github.max_queue_wait,
            })?),
            None => None,
        };
        let verifier = Verifier::new(&config.issuers)?;
        let sts = config.sts.enabled().then(|| match &config.sts.key {
            Some(key) => crate::sts::Sts::new(key),
            None => {
                tracing::warn!("[sts] secret_file is not set: STS credentials are signed with a random key and stop verifying when this process exits");
                crate::sts::Sts::new(&crate::sts::Sts::random_key())
            }
        });
        let metrics = Metrics::new(MetricSources {
            brokers: config.brokers.keys().map(String::as_str).collect(),
            github: github
                .as_ref()
                .map(|github| github.metrics().clone())
                .unwrap_or_default(),
            caches: verifier.caches(),
            audit_write: audit.commit_latency(),
        });
        let in_flight = Arc::new(tokio::sync::Semaphore::new(config.server.max_in_flight));
        let limiter = Limiter::new(
            config
                .brokers
                .values()
                .map(|b| (b.name.as_str(), b.rate_limit)),
            config.limits.per_subject,
            config.limits.max_subjects,
        );
        Ok(Self {
            config,
            verifier,
            github,
            audit,
            clock,
            sts,
            metrics,
            limiter,
            in_flight,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The token verifier (for cache status).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The STS-compatible endpoint, if any `[[role]]` is configured.
    pub fn sts(&self) -> Option<&crate::sts::Sts> {
        self.sts.as_ref()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Admits one exchange under `[server] max_in_flight`: hold the permit
    /// until the exchange (audit row included) is done. When none is free
    /// the request is shed: counted in metrics under `overloaded`, logged at
    /// debug (a warning per shed request would flood the log exactly when
    /// the service is busiest), and not audited, because no token was read.
    pub fn admit(&self, broker: &str) -> Result<tokio::sync::OwnedSemaphorePermit, ExchangeError> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| {
                self.metrics
                    .record_exchange(broker, Outcome::Overloaded, Duration::ZERO);
                tracing::debug!("exchange shed: too many in flight");
                ExchangeError::Overloaded {
                    max_in_flight: self.config.server.max_in_flight,
                }
            })
    }

    /// The GitHub client (for its rate-limit view); `None` when no broker
    /// is configured.
    pub fn github(&self) -> Option<&GithubClient> {
        self.github.as_ref()
    }

    /// The clock requests read `now` from.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Runs one exchange at `now`. Every call writes exactly one audit row.
    /// Log lines emitted meanwhile carry the request id and broker.
    pub async fn exchange(
        &self,
        req: &ExchangeRequest,
        now: OffsetDateTime,
    ) -> Result<Grant, ExchangeError> {
        let span = tracing::info_span!("exchange", request_id = %req.request_id, broker = %printable(&req.broker, 64));
        let started = Instant::now();
        let result = self.exchange_inner(req, now).instrument(span).await;
        let outcome = match &result {
            Ok(_) => Outcome::Allowed,
            Err(e) => e.outcome(),
        };
        self.metrics
            .record_exchange(&req.broker, outcome, started.elapsed());
        result
    }

    async fn exchange_inner(
        &self,
        req: &ExchangeRequest,
        now: OffsetDateTime,
    ) -> Result<Grant, ExchangeError> {
        let started = Instant::now();
        let mut record = AuditRecord {
            time: now,
            request_id: req.request_id.clone(),
            broker: printable(&req.broker, 64),
            decision: AuditDecision::Deny,
            status: 0,
            code: None,
            reason: String::new(),
            issuer: None,
            subject: None,
            audience: Vec::new(),
            claims: AuditClaims::default(),
            client_addr: req.client_addr.clone(),
            user_agent: req.user_agent.as_deref().map(|ua| printable(ua, 256)),
            grant: None,
            latency_us: 0,
        };

        let outcome = self.decide(req, now, &mut record).await;
        match outcome {
            Ok((broker, client, minted, github)) => {
                let token_sha256 = minted.token.sha256_hex();
                record.decision = AuditDecision::Allow;
                record.status = 200;
                record.reason = format!("allowed by broker {:?}", broker.name);
                record.grant = Some(AuditGrant {
                    token_sha256: token_sha256.clone(),
                    expires_at: minted.expires_at,
                    installation_id: minted.installation_id,
                    repositories: minted.repositories.clone(),
                    permissions: minted.permissions.clone(),
                });
                record.latency_us = elapsed_us(started);
                let audit_started = Instant::now();
                if let Err(e) = self.audit.append(record).await {
                    // Fail closed: the token must not outlive a missing record.
                    tracing::error!(error = %e, "audit write failed; revoking the minted token");
                    if let Err(revoke) = client.revoke(&minted.token, now).await {
                        tracing::error!(error = %revoke, "revoking the unaudited token failed; it expires at {}", minted.expires_at);
                    }
                    return Err(ExchangeError::AuditUnavailable(e));
                }
                let audit = audit_started.elapsed();
                tracing::info!(
                    %token_sha256,
                    expires_at = %crate::clock::rfc3339(minted.expires_at),
                    installation_id = minted.installation_id,
                    latency_us = elapsed_us(started),
                    "minted installation token"
                );
                Ok(Grant {
                    token: minted.token,
                    expires_at: minted.expires_at,
                    repositories: vec![broker.full_repository()],
                    permissions: broker.permissions.clone(),
                    broker: broker.name.clone(),
                    timing: Timing {
                        github,
                        audit,
                        total: started.elapsed(),
                    },
                })
            }
            Err(err) => {
                let (status, code) = crate::http::error_status(&err);
                record.decision = if status.is_server_error() {
                    AuditDecision::Error
                } else {
                    AuditDecision::Deny
                };
                record.status = status.as_u16();
                record.code = Some(code.to_owned());
                record.reason = err.to_string();
                record.latency_us = elapsed_us(started);
                tracing::info!(code, status = record.status, reason = %record.reason, "exchange refused");
                if let Err(e) = self.audit.append(record).await {
                    // The caller is refused either way; the missing row is the operator's problem.
                    tracing::error!(error = %e, "audit write failed for a refused request");
                }
                Err(err)
            }
        }
    }

    /// Steps 1–5: the broker, the GitHub client that minted (to revoke the
    /// token with, should its audit row fail), the token, and GitHub's time.
    async fn decide(
        &self,
        req: &ExchangeRequest,
        now: OffsetDateTime,
        record: &mut AuditRecord,
    ) -> Result<
        (
            Arc<Broker>,
            &GithubClient,
            crate::github::MintedToken,
            Duration,
        ),
        ExchangeError,
    > {
        // 1. Request shape.
        let octo_sts_scopes = match &req.octo_sts_scopes {
            None => None,
            Some(Ok(scopes)) => Some(scopes.as_slice()),
            Some(Err(e)) => return Err(e.clone().into()),
        };
        if !is_valid_name(&req.broker) {
            return Err(ExchangeError::InvalidRequest(
                "broker name must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.', '-'".into(),
            ));
        }
        if !req.body_is_empty {
            return Err(ExchangeError::InvalidRequest(
                "the request body must be empty: a broker's scope is fixed by its configuration, not by the caller".into(),
            ));
        }
        let token = bearer_token(&req.authorization)?;

        // 2. Verify.
        let claims = match self.verifier.verify(token, now).await {
            Ok(claims) => claims,
            Err(Rejection { error, signed }) => {
                if let Some((issuer, claims)) = signed {
                    fill_claims(record, &issuer, &claims);
                }
                return Err(ExchangeError::InvalidToken(error));
            }
        };
        fill_claims(record, claims.issuer_name(), claims.as_map());
        let tick = ticks(now);
        self.limiter
            .check_subject(claims.issuer_name(), claims.sub(), tick)
            .map_err(|l| rate_limited(l, &claims, &req.broker))?;

        // 3. Authorize, then the broker's rate limit.
        let broker = self.authorize(&req.broker, octo_sts_scopes, &claims)?;
        self.limiter
            .check_broker(&broker.name, tick)
            .map_err(|l| rate_limited(l, &claims, &broker.name))?;
        // Config load refuses brokers without [github]; fail closed regardless.
        let Some(github) = self.github.as_ref() else {
            return Err(ExchangeError::AccessDenied {
                reason: format!(
                    "broker {:?} cannot mint: no [github] is configured",
                    broker.name
                ),
            });
        };
        // While GitHub is rate-limiting the App, minting would be refused
        // anyway: say so now, before a single-use token is used up.
        if let Some(retry_after) = github.throttled_for(now) {
            return Err(ExchangeError::UpstreamRateLimited { retry_after });
        }

        // 4. Single use: after the policy, before minting.
        self.claim_single_use(&claims, now).await?;

        // 5. Mint.
        let github_started = Instant::now();
        let minted = github
            .mint(
                &MintRequest {
                    owner: &broker.owner,
                    repo: &broker.repo,
                    repository_id: broker.repository_id,
                    permissions: &broker.permissions,
                },
                now,
            )
            .await
            .map_err(|e| upstream_error(github, e, now))?;
        Ok((broker, github, minted, github_started.elapsed()))
    }

    fn authorize(
        &self,
        name: &str,
        octo_sts_scopes: Option<&[String]>,
        claims: &VerifiedClaims,
    ) -> Result<Arc<Broker>, ExchangeError> {
        let broker = self
            .config
            .brokers
            .get(name)
            .ok_or_else(|| ExchangeError::AccessDenied {
                reason: format!("unknown broker {name:?}"),
            })?;
        // octo-sts names the repository too; it must be this broker's, exactly.
        let repository = broker.full_repository();
        if let Some(other) = octo_sts_scopes
            .unwrap_or_default()
            .iter()
            .find(|scope| **scope != repository)
        {
            return Err(ExchangeError::AccessDenied {
                reason: format!(
                    "octo-sts scope {:?} is not broker {name:?}'s repository {repository:?}",
                    printable(other, 256)
                ),
            });
        }
        if broker.issuer != claims.issuer_name() {
            return Err(ExchangeError::AccessDenied {
                reason: format!(
                    "broker {name:?} accepts tokens from issuer {:?}, not {:?}",
                    broker.issuer,
                    claims.issuer_name()
                ),
            });
        }
        let denial = match &broker.policy {
            BrokerPolicy::Claims(policy) => match policy.evaluate(claims) {
                Decision::Allow => None,
                Decision::Deny(denial) => Some(denial.to_string()),
            },
            BrokerPolicy::Iam {
                policy,
                provider,
                account,
                ..
            } => match policy.evaluate(&WebIdentityRequest::from_claims(
                provider,
                account,
                claims.as_map(),
            )) {
                IamDecision::Allow(_) => None,
                IamDecision::Deny(denial) => Some(format!("IAM trust policy: {denial}")),
            },
        };
        match denial {
            None => Ok(broker.clone()),
            Some(reason) => Err(ExchangeError::AccessDenied { reason }),
        }
    }
}

/// Maps a failure of `github` (step 5): load and rate-limit refusals become
/// 503s with a `Retry-After`, everything else stays an upstream error (502).
fn upstream_error(github: &GithubClient, e: GithubError, now: OffsetDateTime) -> ExchangeError {
    match e {
        GithubError::Busy { .. } => ExchangeError::UpstreamBusy {
            retry_after: UPSTREAM_BUSY_RETRY,
        },
        GithubError::Throttled { retry_after } => {
            ExchangeError::UpstreamRateLimited { retry_after }
        }
        GithubError::RateLimited { retry_after, .. } => {
            tracing::warn!(error = %e, "GitHub rate-limited the App; holding off");
            ExchangeError::UpstreamRateLimited {
                retry_after: github
                    .throttled_for(now)
                    .or(retry_after)
                    .unwrap_or(Duration::from_secs(60)),
            }
        }
        other => ExchangeError::Upstream(other),
    }
}

/// A limiter refusal as an exchange error whose reason names the limit.
/// `broker` is a checked broker name (step 1).
fn rate_limited(limited: Limited, claims: &VerifiedClaims, broker: &str) -> ExchangeError {
    let reason = match limited.scope {
        Scope::Subject => format!(
            "rate limit exceeded for subject {:?} of issuer {:?} (per-subject limit)",
            printable(claims.sub(), 256),
            claims.issuer_name()
        ),
        Scope::SubjectTableFull => format!(
            "rate limit exceeded: too many distinct subjects are active at once to track subject {:?} (per-subject limit, max_subjects)",
            printable(claims.sub(), 256)
        ),
        Scope::Broker => format!("rate limit exceeded for broker {broker:?} (per-broker limit)"),
    };
    ExchangeError::RateLimited {
        reason,
        retry_after: limited.retry_after,
    }
}

/// Replay protection (step 4), kept apart from authorization.
impl Service {
    /// Claims the token's `jti` if its issuer has `single_use = true`.
    async fn claim_single_use(
        &self,
        claims: &VerifiedClaims,
        now: OffsetDateTime,
    ) -> Result<(), ExchangeError> {
        let Some(issuer) = self
            .config
            .issuers
            .iter()
            .find(|i| i.name == claims.issuer_name())
            .filter(|i| i.single_use)
        else {
            return Ok(());
        };
        let jti = single_use_jti(claims.get("jti")).map_err(|problem| ExchangeError::NoJti {
            reason: format!(
                "token {problem} but issuer {:?} requires single use",
                issuer.name
            ),
        })?;
        // Remember the jti for as long as the token could still verify:
        // until `exp` plus leeway (the verifier has checked `exp` is an integer).
        let later = |t: OffsetDateTime, d: Duration| {
            time::Duration::try_from(d)
                .ok()
                .and_then(|d| t.checked_add(d))
                .unwrap_or(OffsetDateTime::new_utc(
                    time::Date::MAX,
                    time::Time::MIDNIGHT,
                ))
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok())
            .unwrap_or_else(|| later(now, issuer.max_token_lifetime));
        let keep_until = later(exp.max(now), issuer.leeway);
        match self
            .audit
            .claim_jti(&issuer.url, jti, keep_until, now)
            .await
            .map_err(ExchangeError::AuditUnavailable)?
        {
            JtiClaim::Fresh => Ok(()),
            JtiClaim::Replayed => Err(ExchangeError::Replayed {
                issuer: issuer.name.clone(),
                jti: printable(jti, 128),
            }),
        }
    }
}

/// Longest `jti` a single-use issuer's token may carry (a GitHub jti is a 36-byte UUID).
const MAX_JTI_BYTES: usize = 256;

/// The `jti` a single-use token is tracked by: a non-empty string of at most
/// [`MAX_JTI_BYTES`] bytes without control characters (so it fits an index
/// key and PostgreSQL `TEXT`). `Err` completes "token ... but issuer requires single use".
fn single_use_jti(value: Option<&Value>) -> Result<&str, &'static str> {
    match value {
        None | Some(Value::Null) => Err("has no jti"),
        Some(Value::String(s)) if s.is_empty() => Err("has an empty jti"),
        Some(Value::String(s)) if s.len() > MAX_JTI_BYTES => Err("has a jti longer than 256 bytes"),
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err("has a jti with control characters")
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err("has a jti that is not a string"),
    }
}

/// Extracts the token from exactly one `Authorization: Bearer <token>` header.
fn bearer_token(values: &[Vec<u8>]) -> Result<&str, ExchangeError> {
    let bad =
        |m: &str| ExchangeError::InvalidRequest(format!("malformed Authorization header: {m}"));
    let value = match values {
        [] => return Err(ExchangeError::MissingToken),
        [one] => one,
        _ => return Err(bad("send exactly one Authorization header")),
    };
    let value = std::str::from_utf8(value).map_err(|_| bad("not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| bad("expected \"Bearer <token>\""))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad("expected the Bearer scheme"));
    }
    // RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
    {
        return Err(bad(
            "the token is not a bearer token (one space after Bearer, then base64url text)",
        ));
    }
    Ok(token)
}

/// The claims the audit log keeps, as text.
pub(crate) fn fill_claims(record: &mut AuditRecord, issuer: &str, claims: &Map<String, Value>) {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(claim_text)
            .map(|t| printable(&t, 512))
    };
    record.issuer = Some(issuer.to_owned());
    record.subject = text("sub");
    record.audience = match claims.get("aud") {
        Some(Value::String(s)) => vec![printable(s, 256)],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| printable(s, 256))
            .collect(),
        _ => Vec::new(),
    };
    record.claims = AuditClaims::from_claims(claims);
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> Vec<Vec<u8>> {
        vec![s.as_bytes().to_vec()]
    }

    #[test]
    fn bearer_header_rules() {
        assert!(matches!(
            bearer_token(&[]),
            Err(ExchangeError::MissingToken)
        ));
        assert_eq!(bearer_token(&hv("Bearer a.b.c")).unwrap(), "a.b.c");
        assert_eq!(bearer_token(&hv("bearer a.b.c")).unwrap(), "a.b.c");
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer  a.b.c",
            "Bearer a b",
            "Bearer a\"b",
            "Token a.b.c",
            "Bearer ===",
        ] {
            assert!(
                matches!(
                    bearer_token(&hv(bad)),
                    Err(ExchangeError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
        let two = vec![b"Bearer a".to_vec(), b"Bearer b".to_vec()];
        assert!(matches!(
            bearer_token(&two),
            Err(ExchangeError::InvalidRequest(_))
        ));
        assert!(matches!(
            bearer_token(&[vec![0xff, 0xfe]]),
            Err(ExchangeError::InvalidRequest(_))
        ));
    }

    #[test]
    fn request_debug_redacts_the_bearer_token() {
        let req = ExchangeRequest {
            request_id: "r".into(),
            broker: "b".into(),
            authorization: hv("Bearer eyJhbGciOi.secret.sig"),
            body_is_empty: true,
            client_addr: None,
            user_agent: None,
            octo_sts_scopes: None,
        };
        let debug = format!("{req:?}");
        assert!(
            !debug.contains("eyJ") && !debug.contains("secret"),
            "{debug}"
        );
        assert!(debug.contains("REDACTED"));
    }

    #[test]
    fn single_use_jti_rules() {
        let v = |j: Value| single_use_jti(Some(&j)).map(str::to_owned);
        assert_eq!(v(Value::from("a-b-c")).unwrap(), "a-b-c");
        assert_eq!(v(Value::from("x".repeat(256))).unwrap().len(), 256);
        assert_eq!(single_use_jti(None), Err("has no jti"));
        assert_eq!(v(Value::Null), Err("has no jti"));
        assert_eq!(v(Value::from("")), Err("has an empty jti"));
        assert!(v(Value::from("x".repeat(257))).is_err());
        assert!(v(Value::from("a\u{0}b")).is_err());
        assert!(v(Value::from(42)).is_err());
        assert!(v(serde_json::json!(["a"])).is_err());
    }

    #[test]
    fn server_timing_is_in_milliseconds() {
        let timing = Timing {
            github: Duration::from_micros(812_345),
            audit: Duration::from_micros(301),
            total: Duration::from_micros(1_402_000),
        };
        assert_eq!(
            timing.header_value(),
            "github;dur=812.345, audit;dur=0.301, total;dur=1402.000"
        );
    }
}
