//! Configuration: the TOML file, parsed in one fallible step into validated types that the rest of tokenmint accepts.
//!
//! Nothing outside this module sees raw configuration. Every rejection names
//! the file, the entry and the fix.

use crate::github::Permissions;
use crate::iam::{Effect, IamDecision, IamPolicy, Principal, PrincipalKind, WebIdentityRequest};
use crate::keys::RsaSigningKey;
use crate::limits::Quota;
use crate::oidc::Algorithm;
use crate::policy::{ConditionOutcome, TrustPolicy};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has unknown keys or wrong types.
    #[error("{path}: {message}")]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An entry is well-formed TOML but not acceptable.
    #[error("{path}: {entry}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The entry, e.g. `[[broker]] "widgets-read"`.
        entry: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

// ---------------------------------------------------------------- raw shapes

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    audit: RawAudit,
    github: Option<RawGithub>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    issuer: Vec<RawIssuer>,
    #[serde(default)]
    broker: Vec<RawBroker>,
    #[serde(default)]
    role: Vec<sts::RawRole>,
    sts: Option<sts::RawSts>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    #[serde(default)]
    explain_denials: bool,
    /// Serve `GET /metrics`; on unless set to false.
    metrics: Option<bool>,
    /// Most exchanges running at once; more are shed with 503.
    max_in_flight: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    database: Option<String>,
    chain: Option<String>,
    allow_prune: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    api_url: Option<String>,
    app_id: String,
    private_key_file: Option<PathBuf>,
    private_key_env: Option<String>,
    private_key_ssm: Option<String>,
    kms_key_id: Option<String>,
    max_concurrent_requests: Option<usize>,
    max_queue_wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    per_broker: Option<RawQuota>,
    per_subject: Option<RawQuota>,
    max_subjects: Option<usize>,
}

/// A rate limit; a missing field takes the default's value.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    rate_per_second: Option<f64>,
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    url: String,
    audiences: Vec<String>,
    algorithms: Option<Vec<String>>,
    jwks_url: Option<String>,
    max_token_age_seconds: Option<u64>,
    max_token_lifetime_seconds: Option<u64>,
    leeway_seconds: Option<u64>,
    #[serde(default)]
    single_use: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    name: String,
    issuer: String,
    repository: String,
    permissions: BTreeMap<String, String>,
    repository_id: Option<String>,
    claims: Option<toml::Table>,
    trust_policy_file: Option<PathBuf>,
    rate_limit: Option<RawQuota>,
}

// ---------------------------------------------------------- validated shapes

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[audit]`.
    pub audit: AuditConfig,
    /// `[github]`: always present when any `[[broker]]` is configured
    /// (brokers mint GitHub App installation tokens). A config that only
    /// serves the STS-compatible endpoint (`[[role]]`s, no broker) may leave
    /// it out.
    pub github: Option<GithubConfig>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[[issuer]]` entries, in file order.
    pub issuers: Vec<Arc<IssuerConfig>>,
    /// `[[broker]]` entries by name.
    pub brokers: BTreeMap<String, Arc<Broker>>,
    /// `[[role]]` entries and `[sts]`: the AWS STS-compatible endpoint,
    /// which exists only when at least one role is configured.
    pub sts: StsConfig,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Whether 403 bodies say which condition failed. For development only:
    /// in production the precise reason goes to the audit log, not the caller.
    pub explain_denials: bool,
    /// Whether `GET /metrics` is served (default true). It exposes counts,
    /// latencies, broker and issuer names; never claims or tokens.
    pub metrics: bool,
    /// Most exchanges running at once (default [`DEFAULT_MAX_IN_FLIGHT`]).
    /// Beyond it, requests are shed at once with 503 `overloaded` and
    /// `Retry-After`, before the token is read, so overload costs little.
    pub max_in_flight: usize,
}

/// Default `[server] max_in_flight`: well above what the 2-core benchmark
/// machine completes per 100 ms, so shedding starts only when queueing would
/// otherwise grow without bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Largest `[server] max_in_flight` accepted.
pub const MAX_MAX_IN_FLIGHT: usize = 65_536;

/// `[audit]`.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// sqlx URL of the store; a relative SQLite path is resolved against the
    /// config file's directory.
    pub database: String,
    /// The hash chain this process appends to (default `main`). Replicas that
    /// share a PostgreSQL store should each use their own chain.
    pub chain: String,
    /// `tokenmint audit prune` may delete old rows, and `audit verify` walks
    /// pruned chains from their anchors (default false: anchors are ignored,
    /// so pruned or forged-pruned rows show as missing).
    pub allow_prune: bool,
}

/// `[github]`.
#[derive(Clone)]
pub struct GithubConfig {
    /// REST API base, e.g. `https://api.github.com` or `https://HOST/api/v3`.
    pub api_url: Url,
    /// App ID or client ID: the App JWT's `iss`.
    pub app_id: String,
    /// Where the App's key is: loaded and parsed, or where to fetch or use it.
    pub key: AppKeySource,
    /// GitHub calls in flight at once, across all exchanges.
    pub max_concurrent_requests: usize,
    /// How long an exchange waits for a free call slot before it is refused (503).
    pub max_queue_wait: Duration,
}

/// `[limits]`: exchange rate limits (see [`crate::limits`]).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// The default per-broker limit; a broker's `rate_limit` overrides it
    /// (the resolved value is [`Broker::rate_limit`]).
    pub per_broker: Quota,
    /// The limit per verified (issuer, `sub`).
    pub per_subject: Quota,
    /// At most this many subject buckets are kept in memory.
    pub max_subjects: usize,
}

/// Where the App's private key comes from (`private_key_file`,
/// `private_key_env`, `private_key_ssm` or `kms_key_id`).
#[derive(Debug, Clone)]
pub enum AppKeySource {
    /// A PEM from a file or an environment variable, already parsed.
    Pem(RsaSigningKey),
    /// A SecureString parameter, read (with decryption) when the service starts and re-read as it rotates ([`crate::github::SsmAppKey`]).
    Ssm {
        /// The literal parameter name.
        parameter: String,
        /// Region and credentials from the standard AWS variables.
        aws: Box<crate::aws::AwsEnv>,
    },
    /// An asymmetric KMS key that signs every App JWT; the key never leaves KMS.
    Kms(Box<crate::aws::kms::KmsSigner>),
}

impl fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubConfig")
            .field("api_url", &self.api_url.as_str())
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_queue_wait", &self.max_queue_wait)
            .finish()
    }
}

/// One `[[issuer]]`: an OIDC provider whose tokens tokenmint accepts.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Name brokers refer to.
    pub name: String,
    /// Exactly the `iss` its tokens carry (compared byte for byte).
    pub url: String,
    /// Audiences accepted; the token's `aud` must contain one. Never empty.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted. Never empty; never `none` or `HS*`.
    pub algorithms: Vec<Algorithm>,
    /// Where to fetch keys; `None` means discovery.
    pub jwks_url: Option<Url>,
    /// `now - iat` must not exceed this.
    pub max_token_age: Duration,
    /// `exp - iat` must not exceed this.
    pub max_token_lifetime: Duration,
    /// Clock skew allowed for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Each token's `jti` may be exchanged once; tokens without one are
    /// refused. Used jtis are kept in the audit store until `exp` + `leeway`.
    pub single_use: bool,
}

/// One `[[broker]]`: a deploy-time scope and the trust policy guarding it.
#[derive(Debug, Clone)]
pub struct Broker {
    /// `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// The `[[issuer]]` name whose tokens may use this broker.
    pub issuer: String,
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// Pins the repository by id; minting then uses `repository_ids`.
    pub repository_id: Option<u64>,
    /// The fixed permission set.
    pub permissions: Permissions,
    /// Who may use it.
    pub policy: BrokerPolicy,
    /// Its rate limit: its own `rate_limit`, else `[limits] per_broker`.
    pub rate_limit: Quota,
}

/// A broker's trust policy: tokenmint's own claim conditions, or an AWS IAM
/// trust-policy document evaluated the way STS evaluates it.
#[derive(Debug, Clone)]
pub enum BrokerPolicy {
    /// `[broker.claims]`.
    Claims(TrustPolicy),
    /// `trust_policy_file = "trust.json"`.
    Iam {
        /// The parsed document.
        policy: IamPolicy,
        /// The file it came from (for messages).
        file: PathBuf,
        /// The issuer URL without its scheme: the provider part of
        /// `arn:aws:iam::ACCOUNT:oidc-provider/HOST/PATH` and of condition keys.
        provider: String,
        /// The account named in the document's matching `Principal.Federated`.
        account: String,
    },
}

impl BrokerPolicy {
    /// Every check of the policy against a raw claim map, for `policy
    /// explain`: each claim condition, or for an IAM document a summary row
    /// plus one row per statement. The policy allows exactly when every row
    /// passed.
    pub fn explain(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<ConditionOutcome> {
        let (policy, provider, account) = match self {
            Self::Claims(p) => return p.explain(claims),
            Self::Iam {
                policy,
                provider,
                account,
                ..
            } => (policy, provider, account),
        };
        let decision = policy.evaluate(&WebIdentityRequest::from_claims(provider, account, claims));
        let allowed = decision.is_allow();
        let mut rows = vec![ConditionOutcome {
            claim: "IAM trust policy".to_owned(),
            actual: Some(match &decision {
                IamDecision::Allow(a) => format!("allowed by {}", a.statement),
                IamDecision::Deny(d) => d.to_string(),
            }),
            expected: "an Allow statement applies and no Deny statement applies".to_owned(),
            passed: allowed,
        }];
        for outcome in decision.outcomes() {
            let applies = outcome.mismatch.is_none();
            let (expected, passed) = match outcome.effect {
                Effect::Allow if allowed => ("may apply (another statement allows)", true),
                Effect::Allow => ("applies", applies),
                Effect::Deny => ("does not apply", !applies),
            };
            rows.push(ConditionOutcome {
                claim: outcome.statement.to_string(),
                actual: Some(outcome.to_string()),
                expected: expected.to_owned(),
                passed,
            });
        }
        rows
    }

    /// The claim conditions, when the broker uses `[broker.claims]`.
    pub fn claims(&self) -> Option<&TrustPolicy> {
        match self {
            Self::Claims(p) => Some(p),
            Self::Iam { .. } => None,
        }
    }
}

impl Broker {
    /// `owner/repo`.
    pub fn full_repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

/// Default issuer limits.
const DEFAULT_MAX_TOKEN_AGE: u64 = 900;
const DEFAULT_MAX_TOKEN_LIFETIME: u64 = 21_600;
const DEFAULT_LEEWAY: u64 = 60;
/// Leeway beyond this defeats expiry; refuse it.
const MAX_LEEWAY: u64 = 300;
/// Default per-broker limit: a sustained 100 exchanges/s, bursts of 2000
/// (every job of a large organisation starting at the top of the hour).
const DEFAULT_BROKER_RATE: f64 = 100.0;
const DEFAULT_BROKER_BURST: u32 = 2000;
/// Default per-subject limit: 10/s sustained, bursts of 300 (a 256-job
/// matrix of one workflow shares one `sub`).
const DEFAULT_SUBJECT_RATE: f64 = 10.0;
const DEFAULT_SUBJECT_BURST: u32 = 300;
/// Default and highest number of subject buckets kept in memory.
const DEFAULT_MAX_SUBJECTS: usize = 100_000;
const MAX_MAX_SUBJECTS: usize = 10_000_000;
/// Default cap on concurrent GitHub calls, and the highest accepted.
pub const DEFAULT_GITHUB_CONCURRENCY: usize = 32;
const MAX_GITHUB_CONCURRENCY: usize = 4096;
/// Default wait for a GitHub call slot, and the longest accepted.
pub const DEFAULT_GITHUB_QUEUE_WAIT_MS: u64 = 2000;
const MAX_GITHUB_QUEUE_WAIT_MS: u64 = 30_000;

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Validates config text. `path` names the file in messages and anchors
    /// relative paths; `env` reads environment variables (a parameter so
    /// tests need not touch the process environment).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let v = Validator { path, base };

        let server = v.server(raw.server)?;
        let audit = v.audit(raw.audit)?;
        let github = raw.github.map(|raw| v.github(raw, env)).transpose()?;
        let limits = v.limits(&raw.limits)?;

        if raw.issuer.is_empty() {
            return Err(v.invalid("[[issuer]]", "no issuers are configured; add an [[issuer]] entry (name, url, audiences) for the CI provider whose tokens you accept"));
        }
        let mut issuers = Vec::new();
        let mut issuer_names = BTreeMap::new();
        let mut issuer_urls = HashSet::new();
        for raw in raw.issuer {
            let issuer = v.issuer(raw)?;
            let entry = format!("[[issuer]] {:?}", issuer.name);
            if issuer_names
                .insert(issuer.name.clone(), issuer.url.clone())
                .is_some()
            {
                return Err(v.invalid(
                    &entry,
                    "duplicate issuer name; give each [[issuer]] a unique name",
                ));
            }
            if !issuer_urls.insert(issuer.url.clone()) {
                return Err(v.invalid(
                    &entry,
                    format!(
                        "another issuer already has url {:?}; each issuer URL may appear once",
                        issuer.url
                    ),
                ));
            }
            issuers.push(Arc::new(issuer));
        }

        let mut brokers = BTreeMap::new();
        for raw in raw.broker {
            let broker = v.broker(raw, &issuer_names, &limits)?;
            let entry = format!("[[broker]] {:?}", broker.name);
            if brokers.contains_key(&broker.name) {
                return Err(v.invalid(&entry, "duplicate broker name; give each [[broker]] a unique name (deploy two brokers for two scopes)"));
            }
            brokers.insert(broker.name.clone(), Arc::new(broker));
        }

        let sts = v.sts(raw.role, raw.sts, &issuer_names)?;
        if brokers.is_empty() && !sts.enabled() {
            return Err(v.invalid("[[broker]]", "no brokers are configured; add a [[broker]] entry (name, issuer, repository, permissions, [broker.claims]), or a [[role]] entry to serve only the STS-compatible endpoint"));
        }
        if !brokers.is_empty() && github.is_none() {
            return Err(v.invalid("[github]", "missing: brokers mint GitHub App installation tokens; add a [github] section with app_id and one of private_key_file, private_key_env, private_key_ssm or kms_key_id"));
        }

        Ok(Self {
            source: path.to_owned(),
            server,
            audit,
            github,
            limits,
            issuers,
            brokers,
            sts,
        })
    }
}

struct Validator<'a> {
    path: &'a Path,
    base: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, entry: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            entry: entry.to_owned(),
            message: message.into(),
        }
    }

    fn server(&self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen = listen.parse().map_err(|_| {
            self.invalid(
                "[server] listen",
                format!("{listen:?} is not a socket address; write it as \"127.0.0.1:8080\" or \"[::1]:8080\""),
            )
        })?;
        let max_in_flight = match raw.max_in_flight {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_MAX_IN_FLIGHT).contains(n))
                .ok_or_else(|| {
                    self.invalid(
                        "[server] max_in_flight",
                        format!("{n} is out of range; use 1..={MAX_MAX_IN_FLIGHT} (default {DEFAULT_MAX_IN_FLIGHT})"),
                    )
                })?,
        };
        Ok(ServerConfig {
            listen,
            explain_denials: raw.explain_denials,
            metrics: raw.metrics.unwrap_or(true),
            max_in_flight,
        })
    }

    fn audit(&self, raw: RawAudit) -> Result<AuditConfig, ConfigError> {
        let database = raw
            .database
            .unwrap_or_else(|| "sqlite://tokenmint-audit.db".to_owned());
        let database = if let Some(rest) = database.strip_prefix("sqlite://") {
            let file = rest.split('?').next().unwrap_or(rest);
            if file.is_empty() {
                return Err(self.invalid(
                    "[audit] database",
                    "the SQLite URL has no file; write e.g. \"sqlite://tokenmint-audit.db\"",
                ));
            }
            if Path::new(file).is_relative() {
                let resolved = self.base.join(rest);
                format!("sqlite://{}", resolved.display())
            } else {
                database
            }
        } else if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            database
        } else {
            return Err(self.invalid(
                "[audit] database",
                "unsupported store; use \"sqlite://FILE\" or \"postgres://USER@HOST/DB\"",
            ));
        };
        let chain = raw.chain.unwrap_or_else(|| "main".to_owned());
        if chain.is_empty()
            || chain.len() > 64
            || !chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
        {
            return Err(self.invalid(
                "[audit] chain",
                format!("{chain:?} is not a chain id; use 1 to 64 characters from A-Z, a-z, 0-9, '.', '_', ':', '-' (e.g. the replica's name)"),
            ));
        }
        Ok(AuditConfig {
            database,
            chain,
            allow_prune: raw.allow_prune.unwrap_or(false),
        })
    }

    fn github(
        &self,
        raw: RawGithub,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GithubConfig, ConfigError> {
        let entry = "[github]";
        let api_url = raw.api_url.as_deref().unwrap_or("https://api.github.com");
        let api_url = self.url(&format!("{entry} api_url"), api_url)?;
        let app_id = raw.app_id.trim().to_owned();
        if app_id.is_empty() || app_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.invalid(&format!("{entry} app_id"), "set app_id to the GitHub App's ID (e.g. \"123456\") or client ID (e.g. \"Iv23li...\")"));
        }
        let max_concurrent_requests = raw
            .max_concurrent_requests
            .unwrap_or(DEFAULT_GITHUB_CONCURRENCY);
        if !(1..=MAX_GITHUB_CONCURRENCY).contains(&max_concurrent_requests) {
            return Err(self.invalid(
                &format!("{entry} max_concurrent_requests"),
                format!("{max_concurrent_requests} is out of range; use 1 to {MAX_GITHUB_CONCURRENCY} (default {DEFAULT_GITHUB_CONCURRENCY})"),
            ));
        }
        let max_queue_wait_ms = raw
            .max_queue_wait_ms
            .unwrap_or(DEFAULT_GITHUB_QUEUE_WAIT_MS);
        if !(1..=MAX_GITHUB_QUEUE_WAIT_MS).contains(&max_queue_wait_ms) {
            return Err(self.invalid(
                &format!("{entry} max_queue_wait_ms"),
                format!("{max_queue_wait_ms} is out of range; use 1 to {MAX_GITHUB_QUEUE_WAIT_MS} milliseconds (default {DEFAULT_GITHUB_QUEUE_WAIT_MS})"),
            ));
        }
        let sources = [
            raw.private_key_file.is_some(),
            raw.private_key_env.is_some(),
            raw.private_key_ssm.is_some(),
            raw.kms_key_id.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => return Err(self.invalid(entry, "no App private key; set one of private_key_file (a PEM file), private_key_env (a variable holding the PEM), private_key_ssm (an SSM SecureString) or kms_key_id (a KMS signing key)")),
            1 => {}
            _ => return Err(self.invalid(entry, "set only one of private_key_file, private_key_env, private_key_ssm and kms_key_id")),
        }
        let aws = |field: &str| {
            crate::aws::AwsEnv::from_env(env)
                .map_err(|e| self.invalid(&format!("{entry} {field}"), e.to_string()))
        };
        if let Some(parameter) = raw.private_key_ssm {
            if !crate::aws::is_literal_parameter_name(&parameter) {
                return Err(self.invalid(&format!("{entry} private_key_ssm"), format!("{parameter:?} must be a literal absolute SSM parameter path such as /github-app/private-key-pem (no wildcard, no ARN)")));
            }
            return Ok(GithubConfig {
                api_url,
                app_id,
                key: AppKeySource::Ssm {
                    parameter,
                    aws: Box::new(aws("private_key_ssm")?),
                },
                max_concurrent_requests,
                max_queue_wait: Duration::from_millis(max_queue_wait_ms),
            });
        }
        if let Some(key_id) = raw.kms_key_id {
            if !crate::aws::is_literal_kms_key_id(&key_id) {
                return Err(self.invalid(&format!("{entry} kms_key_id"), format!("{key_id:?} must be a literal KMS key id, key ARN, alias/NAME or alias ARN (no wildcard)")));
            }
            let signer = crate::aws::kms::KmsSigner::new(
                aws("kms_key_id")?,
                key_id,
                std::time::Duration::from_secs(5),
            )
            .map_err(|e| self.invalid(&format!("{entry} kms_key_id"), e.to_string()))?;
            return Ok(GithubConfig {
                api_url,
                app_id,
                key: AppKeySource::Kms(Box::new(signer)),
                max_concurrent_requests,
                max_queue_wait: Duration::from_millis(max_queue_wait_ms),
            });
        }
        let pem = match (raw.private_key_file, raw.private_key_env) {
            (Some(file), _) => {
                let file = self.base.join(file);
                std::fs::read(&file).map_err(|e| {
                    self.invalid(
                        &format!("{entry} private_key_file"),
                        format!(
                            "cannot read {}: {e}; point private_key_file at the App's PEM key",
                            file.display()
                        ),
                    )
                })?
            }
            (None, var) => {
                let var = var.unwrap_or_default();
                env(&var)
                .filter(|v| !v.trim().is_empty())
                .map(String::into_bytes)
                .ok_or_else(|| {
                    self.invalid(
                        &format!("{entry} private_key_env"),
                        format!("environment variable {var} is unset or empty; export the App's PEM key in it"),
                    )
                })?
            }
        };
        let key = AppKeySource::Pem(
            RsaSigningKey::from_pem(&pem)
                .map_err(|e| self.invalid(&format!("{entry} private key"), e.to_string()))?,
        );
        Ok(GithubConfig {
            api_url,
            app_id,
            key,
            max_concurrent_requests,
            max_queue_wait: Duration::from_millis(max_queue_wait_ms),
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<LimitsConfig, ConfigError> {
        let per_broker = self.quota(
            "[limits] per_broker",
            raw.per_broker.unwrap_or_default(),
            (DEFAULT_BROKER_RATE, DEFAULT_BROKER_BURST),
        )?;
        let per_subject = self.quota(
            "[limits] per_subject",
            raw.per_subject.unwrap_or_default(),
            (DEFAULT_SUBJECT_RATE, DEFAULT_SUBJECT_BURST),
        )?;
        let max_subjects = raw.max_subjects.unwrap_or(DEFAULT_MAX_SUBJECTS);
        if !(1..=MAX_MAX_SUBJECTS).contains(&max_subjects) {
            return Err(self.invalid(
                "[limits] max_subjects",
                format!("{max_subjects} is out of range; use 1 to {MAX_MAX_SUBJECTS} (default {DEFAULT_MAX_SUBJECTS})"),
            ));
        }
        Ok(LimitsConfig {
            per_broker,
            per_subject,
            max_subjects,
        })
    }

    /// A rate limit, with `defaults` (rate, burst) for missing fields.
    fn quota(
        &self,
        entry: &str,
        raw: RawQuota,
        defaults: (f64, u32),
    ) -> Result<Quota, ConfigError> {
        let rate = raw.rate_per_second.unwrap_or(defaults.0);
        let burst = raw.burst.unwrap_or(defaults.1);
        Quota::new(rate, burst).map_err(|e| {
            self.invalid(
                entry,
                format!("rate_per_second = {rate}, burst = {burst} is not a valid limit: {e}"),
            )
        })
    }

    fn issuer(&self, raw: RawIssuer) -> Result<IssuerConfig, ConfigError> {
        let entry = format!("[[issuer]] {:?}", raw.name);
        check_name(&raw.name).map_err(|m| self.invalid(&entry, m))?;
        self.url(&format!("{entry} url"), &raw.url)?;
        let jwks_url = raw
            .jwks_url
            .as_deref()
            .map(|u| self.url(&format!("{entry} jwks_url"), u))
            .transpose()?;
        if raw.audiences.is_empty() || raw.audiences.iter().any(|a| a.is_empty()) {
            return Err(self.invalid(&entry, "audiences must list at least one non-empty audience, e.g. [\"tokenmint\"]; the token's aud must contain one of them"));
        }
        let algorithms = match raw.algorithms {
            None => vec![Algorithm::RS256],
            Some(list) if list.is_empty() => {
                return Err(self.invalid(
                    &entry,
                    "algorithms is empty; omit it for [\"RS256\"] or list e.g. [\"RS256\"]",
                ))
            }
            Some(list) => list
                .iter()
                .map(|a| {
                    Algorithm::parse(a)
                        .map_err(|e| self.invalid(&format!("{entry} algorithms"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let leeway = raw.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            return Err(self.invalid(&entry, format!("leeway_seconds = {leeway} is too large; use at most {MAX_LEEWAY} (clock skew, not extra lifetime)")));
        }
        let max_age = raw.max_token_age_seconds.unwrap_or(DEFAULT_MAX_TOKEN_AGE);
        let max_lifetime = raw
            .max_token_lifetime_seconds
            .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME);
        if max_age == 0 || max_lifetime == 0 {
            return Err(self.invalid(
                &entry,
                "max_token_age_seconds and max_token_lifetime_seconds must be positive",
            ));
        }
        Ok(IssuerConfig {
            name: raw.name,
            url: raw.url,
            audiences: raw.audiences,
            algorithms,
            jwks_url,
            max_token_age: Duration::from_secs(max_age),
            max_token_lifetime: Duration::from_secs(max_lifetime),
            leeway: Duration::from_secs(leeway),
            single_use: raw.single_use,
        })
    }

    fn broker(
        &self,
        raw: RawBroker,
        issuers: &BTreeMap<String, String>,
        limits: &LimitsConfig,
    ) -> Result<Broker, ConfigError> {
        let entry = format!("[[broker]] {:?}", raw.name);
        check_name(&raw.name).map_err(|m| self.invalid(&entry, m))?;
        let Some(issuer_url) = issuers.get(&raw.issuer) else {
            let known: Vec<_> = issuers.keys().map(String::as_str).collect();
            return Err(self.invalid(
                &format!("{entry} issuer"),
                format!(
                    "unknown issuer {:?}; use the name of an [[issuer]] entry (known: {known:?})",
                    raw.issuer
                ),
            ));
        };
        let (owner, repo) = parse_repository(&raw.repository)
            .map_err(|m| self.invalid(&format!("{entry} repository"), m))?;
        let repository_id = raw
            .repository_id
            .as_deref()
            .map(|id| {
                id.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    self.invalid(&format!("{entry} repository_id"), format!("{id:?} is not a repository id; write the decimal id as a string, e.g. \"56789\""))
                })
            })
            .transpose()?;
        let permissions = Permissions::parse(
            raw.permissions
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| self.invalid(&format!("{entry} permissions"), e.to_string()))?;
        let policy = match (raw.claims, raw.trust_policy_file) {
            (Some(claims), None) => BrokerPolicy::Claims(
                TrustPolicy::compile(&claims)
                    .map_err(|e| self.invalid(&format!("{entry} [broker.claims]"), e.to_string()))?,
            ),
            (None, Some(file)) => self.iam_policy(&entry, &file, issuer_url)?,
            (Some(_), Some(_)) => {
                return Err(self.invalid(&entry, "set either [broker.claims] or trust_policy_file, not both"))
            }
            (None, None) => {
                return Err(self.invalid(&entry, "no trust policy: add [broker.claims] conditions (deny by default; e.g. repository_id = \"...\") or trust_policy_file = \"trust.json\""))
            }
        };
        let rate_limit = match raw.rate_limit {
            None => limits.per_broker,
            Some(own) => self.quota(
                &format!("{entry} rate_limit"),
                own,
                (
                    limits.per_broker.rate_per_second(),
                    limits.per_broker.burst(),
                ),
            )?,
        };
        Ok(Broker {
            name: raw.name,
            issuer: raw.issuer,
            owner,
            repo,
            repository_id,
            permissions,
            policy,
            rate_limit,
        })
    }

    /// Loads an IAM trust-policy document for a broker whose issuer is
    /// `issuer_url`. Its `Principal.Federated` must name that issuer's OIDC
    /// provider, so a policy written for another provider cannot be reused.
    fn iam_policy(
        &self,
        entry: &str,
        file: &Path,
        issuer_url: &str,
    ) -> Result<BrokerPolicy, ConfigError> {
        let entry = format!("{entry} trust_policy_file");
        let path = self.base.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.invalid(&entry, format!("cannot read {}: {e}", path.display())))?;
        let policy = IamPolicy::parse(&text)
            .map_err(|e| self.invalid(&entry, format!("{}: {e}", path.display())))?;
        let provider = provider_host_path(issuer_url);
        let suffix = format!(":oidc-provider/{provider}");
        let account = policy
            .statements()
            .iter()
            .filter_map(|st| match st.principal() {
                Principal::Listed(ids) => Some(ids),
                Principal::Everyone => None,
            })
            .flatten()
            .filter(|id| id.kind == PrincipalKind::Federated)
            .find_map(|id| {
                let account = id.value.strip_prefix("arn:aws:iam::")?.strip_suffix(suffix.as_str())?;
                (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
            })
            .ok_or_else(|| {
                self.invalid(
                    &entry,
                    format!(
                        "{}: no statement's Principal.Federated names this broker's issuer; use \"arn:aws:iam::ACCOUNT:oidc-provider/{provider}\"",
                        path.display()
                    ),
                )
            })?;
        Ok(BrokerPolicy::Iam {
            policy,
            file: path,
            provider,
            account,
        })
    }

    /// Parses a URL that must be https, or http on a loopback host.
    fn url(&self, entry: &str, text: &str) -> Result<Url, ConfigError> {
        let url = Url::parse(text)
            .map_err(|e| self.invalid(entry, format!("{text:?} is not a URL ({e})")))?;
        check_url_scheme(&url).map_err(|m| self.invalid(entry, m))?;
        Ok(url)
    }
}

/// The IAM OIDC provider name for an issuer URL: the URL without its scheme
/// and trailing `/`, as in `arn:aws:iam::ACCOUNT:oidc-provider/<host/path>`
/// and in condition keys such as `<host/path>:sub`.
pub fn provider_host_path(issuer_url: &str) -> String {
    issuer_url
        .split_once("://")
        .map_or(issuer_url, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned()
}

/// Checks that `url` is https, or http on a loopback host, with no
/// credentials or fragment. Shared by every outbound URL.
pub fn check_url_scheme(url: &Url) -> Result<(), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{url} embeds credentials; remove them"));
    }
    if url.fragment().is_some() {
        return Err(format!("{url} has a fragment; remove it"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!("{url} uses http:// on a non-loopback host; use https:// (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)")),
        other => Err(format!("{url} has scheme {other:?}; use https://")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Broker and issuer names: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_name(name: &str) -> Result<(), String> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err("name must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.', '-'".to_owned())
    }
}

/// One repository path segment: `[A-Za-z0-9_.-]+`, not `.` or `..`.
pub fn is_valid_repo_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_repository(text: &str) -> Result<(String, String), String> {
    let bad = || {
        format!("{text:?} is not one repository; write exactly \"owner/repo\" (letters, digits, '_', '.', '-'; no wildcards)")
    };
    let (owner, repo) = text.split_once('/').ok_or_else(bad)?;
    if !is_valid_repo_segment(owner) || !is_valid_repo_segment(repo) {
        return Err(bad());
    }
    Ok((owner.to_owned(), repo.to_owned()))
}

mod sts;
pub(crate) use sts::is_role_char;
pub use sts::{
    Role, RoleArn, StsConfig, StsKey, DEFAULT_SESSION_DURATION, MAX_SESSION_DURATION,
    MIN_ROLE_MAX_SESSION_DURATION,
};

#[cfg(test)]
mod tests;
