//! Prometheus metrics behind `GET /metrics`: one registry built at start from the config, every per-broker and per-issuer series created up front, the hot path only bumping atomics.
//!
//! What is exposed (OpenMetrics text; counters get the `_total` suffix):
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `tokenmint_exchanges_total` | counter | `broker`, `outcome` |
//! | `tokenmint_exchange_duration_seconds` | histogram | `class` |
//! | `tokenmint_jwks_fetches_total` | counter | `issuer`, `result` |
//! | `tokenmint_jwks_keys` | gauge | `issuer` |
//! | `tokenmint_jwks_last_success_timestamp_seconds` | gauge | `issuer` |
//! | `tokenmint_jwks_fresh_until_timestamp_seconds` | gauge | `issuer` |
//! | `tokenmint_github_calls_total` | counter | `endpoint`, `status` |
//! | `tokenmint_github_rate_limit_remaining` | gauge | none |
//! | `tokenmint_audit_write_duration_seconds` | histogram | none |
//!
//! Label values come only from the configuration (broker and issuer names)
//! or from fixed sets: a broker name a caller made up is counted as
//! [`UNKNOWN_BROKER`], so callers cannot grow the series. No claim, token or
//! header value ever becomes a label.

use crate::github::Call;
use crate::oidc::{CacheSnapshot, KeyCache};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric as _, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `broker` label for requests naming no configured broker.
pub const UNKNOWN_BROKER: &str = "unknown";

/// Exchange latency buckets, in seconds: 0.5 ms to 10 s.
const EXCHANGE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Audit commit latency buckets, in seconds: 0.1 ms to 5 s.
const AUDIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How an exchange ended, as the `outcome` label: a fixed set, one value
/// per kind of [`crate::exchange::ExchangeError`] plus `allowed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A token was returned.
    Allowed,
    /// Malformed request (400).
    InvalidRequest,
    /// No bearer token (401).
    MissingToken,
    /// The token failed verification (401).
    InvalidToken,
    /// The issuer's keys could not be fetched and none were cached (503).
    KeysUnavailable,
    /// Unknown broker, wrong issuer or trust policy denial (403).
    Denied,
    /// Single-use issuer: replayed or missing `jti` (401).
    Replayed,
    /// GitHub refused or failed (502).
    UpstreamError,
    /// The audit store could not record the decision (503).
    AuditUnavailable,
    /// A per-broker or per-subject rate limit (429).
    RateLimited,
    /// Every GitHub call slot stayed taken (503).
    UpstreamBusy,
    /// GitHub is rate-limiting the App (503).
    UpstreamRateLimited,
    /// Shed: `[server] max_in_flight` exchanges were already running (503).
    Overloaded,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 13] = [
        Outcome::Allowed,
        Outcome::InvalidRequest,
        Outcome::MissingToken,
        Outcome::InvalidToken,
        Outcome::KeysUnavailable,
        Outcome::Denied,
        Outcome::Replayed,
        Outcome::UpstreamError,
        Outcome::AuditUnavailable,
        Outcome::RateLimited,
        Outcome::UpstreamBusy,
        Outcome::UpstreamRateLimited,
        Outcome::Overloaded,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::MissingToken => "missing_token",
            Outcome::InvalidToken => "invalid_token",
            Outcome::KeysUnavailable => "keys_unavailable",
            Outcome::Denied => "denied",
            Outcome::Replayed => "replayed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::AuditUnavailable => "audit_unavailable",
            Outcome::RateLimited => "rate_limited",
            Outcome::UpstreamBusy => "upstream_busy",
            Outcome::UpstreamRateLimited => "upstream_rate_limited",
            Outcome::Overloaded => "overloaded",
        }
    }

    /// The latency histogram's `class` label: `allowed`, `refused` (the
    /// caller's fault) or `failed` (ours, or a dependency's).
    pub fn class(self) -> &'static str {
        CLASSES[self.class_index()]
    }

    /// Index into [`CLASSES`].
    fn class_index(self) -> usize {
        match self {
            Outcome::Allowed => 0,
            Outcome::InvalidRequest
            | Outcome::MissingToken
            | Outcome::InvalidToken
            | Outcome::Denied
            | Outcome::Replayed
            | Outcome::RateLimited => 1,
            Outcome::KeysUnavailable
            | Outcome::UpstreamError
            | Outcome::AuditUnavailable
            | Outcome::UpstreamBusy
            | Outcome::UpstreamRateLimited
            | Outcome::Overloaded => 2,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const CLASSES: [&str; 3] = ["allowed", "refused", "failed"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    broker: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

/// One broker's exchange counters, indexed by [`Outcome::index`]. The
/// counters share their atomics with the registry's family.
#[derive(Debug, Clone)]
struct BrokerSeries([Counter; Outcome::ALL.len()]);

/// How a GitHub call ended, as the `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CallResult {
    /// GitHub answered with this HTTP status.
    Status(u16),
    /// No answer within the request timeout.
    Timeout,
    /// No answer: connection refused or reset, TLS failure, and the like.
    Error,
}

impl EncodeLabelValue for CallResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self {
            CallResult::Status(code) => write!(encoder, "{code}"),
            CallResult::Timeout => encoder.write_str("timeout"),
            CallResult::Error => encoder.write_str("error"),
        }
    }
}

impl EncodeLabelValue for Call {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        write!(encoder, "{self}")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GithubCallLabels {
    endpoint: Call,
    status: CallResult,
}

/// The GitHub client's counters. The client owns them (so it records
/// without knowing about the registry); [`Metrics::new`] registers them.
#[derive(Debug, Clone)]
pub(crate) struct GithubMetrics {
    calls: Family<GithubCallLabels, Counter>,
    /// `x-ratelimit-remaining` of the latest response carrying it; -1 until then.
    rate_limit_remaining: Arc<AtomicI64>,
}

impl Default for GithubMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            rate_limit_remaining: Arc::new(AtomicI64::new(-1)),
        }
    }
}

impl GithubMetrics {
    /// Counts one call (each attempt, retries included).
    pub(crate) fn record_call(&self, endpoint: Call, result: CallResult) {
        self.calls
            .get_or_create(&GithubCallLabels {
                endpoint,
                status: result,
            })
            .inc();
    }

    /// Records GitHub's latest `x-ratelimit-remaining`.
    pub(crate) fn set_rate_limit_remaining(&self, remaining: u64) {
        let value = i64::try_from(remaining).unwrap_or(i64::MAX);
        self.rate_limit_remaining.store(value, Ordering::Relaxed);
    }
}

/// A new audit write-latency histogram (one per audit log).
pub(crate) fn audit_write_histogram() -> Histogram {
    Histogram::new(AUDIT_BUCKETS)
}

/// Reads the state that lives elsewhere (issuer key caches, GitHub's rate
/// limit) at scrape time, so nothing on the request path has to copy it.
#[derive(Debug)]
struct StateCollector {
    caches: Vec<(String, Arc<KeyCache>)>,
    rate_limit_remaining: Arc<AtomicI64>,
}

/// Reads one gauge's value from an issuer's cache snapshot (`None`: omit it).
type SnapshotValue = fn(&CacheSnapshot) -> Option<i64>;

fn unix_seconds(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(OffsetDateTime::unix_timestamp)
}

impl prometheus_client::collector::Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<(&str, CacheSnapshot)> = self
            .caches
            .iter()
            .map(|(name, cache)| (name.as_str(), cache.metrics_snapshot()))
            .collect();

        let mut fetches = encoder.encode_descriptor(
            "tokenmint_jwks_fetches",
            "JWKS fetch attempts per issuer, by result (success, failure).",
            None,
            MetricType::Counter,
        )?;
        for (issuer, s) in &snapshots {
            for (result, n) in [("success", s.successes), ("failure", s.failures)] {
                let labels = [("issuer", *issuer), ("result", result)];
                ConstCounter::new(n).encode(fetches.encode_family(&labels)?)?;
            }
        }

        let gauges: [(&str, &str, SnapshotValue); 3] = [
            (
                "tokenmint_jwks_keys",
                "Keys in the cached key set per issuer (0 until a fetch succeeds).",
                |s| Some(i64::try_from(s.keys).unwrap_or(i64::MAX)),
            ),
            (
                "tokenmint_jwks_last_success_timestamp_seconds",
                "Unix time the cached key set was fetched (absent until one was); its age is time() minus this.",
                |s| unix_seconds(s.fetched_at),
            ),
            (
                "tokenmint_jwks_fresh_until_timestamp_seconds",
                "Unix time until which the cached key set is fresh (absent until one was fetched).",
                |s| unix_seconds(s.fresh_until),
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (issuer, s) in &snapshots {
                if let Some(v) = value(s) {
                    let labels = [("issuer", *issuer)];
                    ConstGauge::new(v).encode(metric.encode_family(&labels)?)?;
                }
            }
        }

        let remaining = self.rate_limit_remaining.load(Ordering::Relaxed);
        let metric = encoder.encode_descriptor(
            "tokenmint_github_rate_limit_remaining",
            "GitHub's x-ratelimit-remaining from its latest response carrying it (absent until one did).",
            None,
            MetricType::Gauge,
        )?;
        if remaining >= 0 {
            ConstGauge::new(remaining).encode(metric)?;
        }
        Ok(())
    }
}

/// The registry and the pre-created series the exchange path updates.
#[derive(Debug)]
pub struct Metrics {
    /// Everything `render` encodes.
    registry: Registry,
    /// Exchange counters of each configured broker, by name.
    brokers: HashMap<String, BrokerSeries>,
    /// Exchange counters for names that are not a configured broker.
    unknown: BrokerSeries,
    /// Exchange latency by [`Outcome::class`], in [`CLASSES`] order.
    latency: [Histogram; CLASSES.len()],
}

/// What [`Metrics::new`] registers besides its own series.
pub(crate) struct Sources<'a> {
    /// Configured broker names.
    pub(crate) brokers: Vec<&'a str>,
    /// The GitHub client's counters.
    pub(crate) github: GithubMetrics,
    /// The issuer key caches, by issuer name.
    pub(crate) caches: Vec<(String, Arc<KeyCache>)>,
    /// The audit writer's commit latency.
    pub(crate) audit_write: Histogram,
}

impl Metrics {
    /// Builds the registry and creates every broker's series up front.
    pub(crate) fn new(sources: Sources<'_>) -> Self {
        let mut registry = Registry::default();

        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let series = |broker: &str| {
            BrokerSeries(Outcome::ALL.map(|outcome| {
                exchanges
                    .get_or_create(&ExchangeLabels {
                        broker: broker.to_owned(),
                        outcome: outcome.as_str(),
                    })
                    .clone()
            }))
        };
        let brokers = sources
            .brokers
            .iter()
            .map(|name| ((*name).to_owned(), series(name)))
            .collect();
        let unknown = series(UNKNOWN_BROKER);
        registry.register(
            "tokenmint_exchanges",
            "Token exchanges by broker and outcome; names that are not a configured broker count as broker=\"unknown\".",
            exchanges,
        );

        let durations = Family::<ClassLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(EXCHANGE_BUCKETS)
        });
        let latency = CLASSES.map(|class| durations.get_or_create(&ClassLabels { class }).clone());
        registry.register(
            "tokenmint_exchange_duration_seconds",
            "Time to run an exchange, audit write included, by class (allowed, refused, failed).",
            durations,
        );

        registry.register(
            "tokenmint_github_calls",
            "GitHub API calls (each attempt) by endpoint and HTTP status, or timeout or error when none came back.",
            sources.github.calls.clone(),
        );
        registry.register(
            "tokenmint_audit_write_duration_seconds",
            "Time the audit writer took to commit one batch of records.",
            sources.audit_write,
        );
        registry.register_collector(Box::new(StateCollector {
            caches: sources.caches,
            rate_limit_remaining: sources.github.rate_limit_remaining,
        }));

        Self {
            registry,
            brokers,
            unknown,
            latency,
        }
    }

    /// Counts one finished exchange. `broker` is the name the caller sent;
    /// anything not configured is counted as [`UNKNOWN_BROKER`]. No
    /// allocation, no lock besides the histogram's.
    pub fn record_exchange(&self, broker: &str, outcome: Outcome, elapsed: Duration) {
        let series = self.brokers.get(broker).unwrap_or(&self.unknown);
        series.0[outcome.index()].inc();
        self.latency[outcome.class_index()].observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
