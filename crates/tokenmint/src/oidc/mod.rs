//! OIDC token verification: JOSE parsing, issuer selection, discovery, the JWKS cache, signature and claim checks.
//!
//! # Check order
//!
//! [`Verifier::verify`] runs these steps, in this order, and stops at the
//! first failure:
//!
//! 1. **size**: at most 16 KiB, before any parsing;
//! 2. **structure**: three canonical base64url parts, duplicate-free JSON
//!    objects, header rules (`alg` implemented and never `none`/`HS*`, no
//!    `crit`, no `cty`, `typ` absent or `JWT`; `jku`/`x5u`/`jwk`/`x5c` ignored);
//! 3. **issuer lookup**: the unverified `iss` must equal a configured issuer
//!    URL byte for byte. No network I/O happens before this step succeeds;
//! 4. **algorithm**: the header `alg` must be in that issuer's `algorithms`;
//! 5. **key lookup**: by `kid` in the issuer's cached JWKS (may fetch; see
//!    [Keys](#keys));
//! 6. **signature**: the JWK must agree with `alg` (`kty`, its `alg`, its
//!    `use`), then the signature must verify;
//! 7. **required claims**: `iss`, `sub`, `aud`, `exp`, `iat` present and
//!    well-typed, `nbf` well-typed if present;
//! 8. **time**, against the caller's `now`: not expired, not before `nbf`,
//!    `iat` not in the future, not older than `max_token_age`, `exp - iat`
//!    within `max_token_lifetime` (leeway applies to the first three);
//! 9. **audience**: `aud` (string or array) contains an accepted audience.
//!
//! The broker's trust policy is evaluated afterwards, by [`crate::exchange`].
//!
//! # Keys
//!
//! Each issuer has its own key cache:
//!
//! - **source**: `jwks_url` if configured, else the `jwks_uri` of
//!   `{url}/.well-known/openid-configuration`, whose `issuer` must equal `url`
//!   and whose `jwks_uri` must be `https://` (`http://` only on a loopback
//!   host). Fetches time out ([`FETCH_CONNECT_TIMEOUT`],
//!   [`FETCH_TOTAL_TIMEOUT`]), refuse bodies over 256 KiB (by
//!   `Content-Length` or as read), and follow at most 3 redirects, all within
//!   the same origin;
//! - **freshness**: `Cache-Control: max-age`, clamped to
//!   [`MIN_FRESHNESS`]..=[`MAX_FRESHNESS`] ([`MIN_FRESHNESS`] when absent);
//! - **fresh keys** with the token's `kid` are used without I/O;
//! - **stale keys** with the token's `kid` are used at once, and a refresh
//!   starts in the background (not if one is already in flight);
//! - **no keys, or no such `kid`**: the request waits for a fetch;
//! - **single flight and rate limit**: one fetch at a time per issuer, shared
//!   by every request that waits for it; a new attempt starts at most once per
//!   [`MIN_REFETCH_INTERVAL`] while keys are cached, once per
//!   [`COLD_RETRY_INTERVAL`] while none are. The interval is measured on the
//!   requests' `now`: a `now` earlier than the last attempt counts as "not
//!   elapsed" (and never moves the last attempt back), unless the clock went
//!   backwards by more than the interval;
//! - **cancellation**: a fetch runs in its own task, which holds the
//!   single-flight lock; a request that goes away (client disconnect, timeout)
//!   does not cancel it, so the attempt it used up is not wasted;
//! - **failures**: a failed refresh (down, slow, garbage, too large, no usable
//!   key) keeps the cached keys in service and rediscovers next time; with no
//!   keys cached the request fails with [`VerifyError::KeysUnavailable`].

mod algorithm;
mod cache;
mod claims;
mod fetch;
pub mod jose;
mod jwks;
#[doc(hidden)]
pub mod testing;

pub use algorithm::{Algorithm, AlgorithmError};
pub use cache::{
    KeyLookupError, COLD_RETRY_INTERVAL, MAX_FRESHNESS, MIN_FRESHNESS, MIN_REFETCH_INTERVAL,
};
#[cfg(test)]
pub(crate) use claims::claims_for_tests;
pub use claims::{claim_text, VerifiedClaims};
pub use fetch::FetchError;
pub use jose::JoseError;
pub use jwks::{JwksError, KeyUseError};

use crate::config::IssuerConfig;
pub(crate) use cache::{CacheSnapshot, KeyCache};
use fetch::Fetcher;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Connect timeout for discovery and JWKS fetches.
pub const FETCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Total timeout for one discovery or JWKS fetch.
pub const FETCH_TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was refused. Every variant but [`VerifyError::KeysUnavailable`]
/// is the caller's problem (401); that one is ours (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Size, structure or header rules.
    #[error("malformed token: {0}")]
    Malformed(#[from] JoseError),
    /// `iss` missing or not a string.
    #[error("token has no string iss claim")]
    NoIssuer,
    /// `iss` is not a configured issuer.
    #[error("issuer {0:?} is not accepted here")]
    UnknownIssuer(String),
    /// The header `alg` is not allowed for this issuer.
    #[error("algorithm {alg} is not allowed for issuer {issuer:?} (allowed: {allowed})")]
    DisallowedAlgorithm {
        /// The token's alg.
        alg: Algorithm,
        /// Issuer name.
        issuer: String,
        /// Allowed list.
        allowed: String,
    },
    /// No matching key.
    #[error("{0}")]
    Key(KeyLookupError),
    /// The issuer's keys cannot be fetched and none are cached.
    #[error("keys for issuer {issuer:?} are unavailable: {reason}")]
    KeysUnavailable {
        /// Issuer name.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The key does not fit, or the signature is wrong.
    #[error("{0}")]
    Signature(#[from] KeyUseError),
    /// A required claim is missing.
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or shape.
    #[error("claim {claim} is invalid: {problem}")]
    BadClaim {
        /// The claim.
        claim: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// `exp` has passed.
    #[error("token expired at {exp} (unix time); request a fresh one")]
    Expired {
        /// The token's exp.
        exp: i64,
    },
    /// `nbf` is in the future.
    #[error("token is not valid before {nbf} (unix time)")]
    NotYetValid {
        /// The token's nbf.
        nbf: i64,
    },
    /// `iat` is in the future.
    #[error("token was issued in the future (iat {iat}); check clocks")]
    IssuedInFuture {
        /// The token's iat.
        iat: i64,
    },
    /// `now - iat` exceeds the issuer's maximum age.
    #[error("token is {age} s old; the limit is {max} s")]
    TooOld {
        /// Age in seconds.
        age: i64,
        /// Limit in seconds.
        max: u64,
    },
    /// `exp - iat` exceeds the issuer's maximum lifetime.
    #[error("token lifetime {lifetime} s exceeds the limit of {max} s")]
    LifetimeTooLong {
        /// exp - iat.
        lifetime: i64,
        /// Limit.
        max: u64,
    },
    /// No accepted audience.
    #[error("audience {got:?} is not accepted; request the token with audience {expected:?}")]
    AudienceNotAccepted {
        /// What the token has.
        got: Vec<String>,
        /// What the issuer accepts.
        expected: Vec<String>,
    },
}

/// A verification failure, with the claims when the signature was good (so
/// the audit log can say who presented an expired or mis-addressed token).
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub error: VerifyError,
    /// Claims signed by a configured issuer (present only when the signature
    /// verified), and that issuer's name.
    pub signed: Option<(String, Box<Map<String, Value>>)>,
}

impl From<VerifyError> for Rejection {
    fn from(error: VerifyError) -> Self {
        Self {
            error,
            signed: None,
        }
    }
}

struct IssuerEntry {
    config: Arc<IssuerConfig>,
    keys: Arc<KeyCache>,
}

/// Verifies tokens for a fixed set of configured issuers.
pub struct Verifier {
    /// By exact `iss` URL.
    issuers: HashMap<String, IssuerEntry>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Per-issuer cache state, for metrics and health.
#[derive(Debug, Clone)]
pub struct IssuerStatus {
    /// Issuer name.
    pub name: String,
    /// Keys cached.
    pub keys: usize,
    /// Fresh until.
    pub fresh_until: Option<OffsetDateTime>,
    /// JWKS fetch attempts so far.
    pub fetches: u64,
    /// Failed attempts so far.
    pub failures: u64,
}

impl Verifier {
    /// Builds a verifier with the default fetch timeouts.
    pub fn new(issuers: &[Arc<IssuerConfig>]) -> Result<Self, FetchError> {
        Self::with_timeouts(issuers, FETCH_CONNECT_TIMEOUT, FETCH_TOTAL_TIMEOUT)
    }

    /// Builds a verifier with explicit fetch timeouts.
    pub fn with_timeouts(
        issuers: &[Arc<IssuerConfig>],
        connect: Duration,
        total: Duration,
    ) -> Result<Self, FetchError> {
        let fetcher = Fetcher::new(connect, total)?;
        let issuers = issuers
            .iter()
            .map(|c| {
                (
                    c.url.clone(),
                    IssuerEntry {
                        config: c.clone(),
                        keys: Arc::new(KeyCache::new(c.clone(), fetcher.clone())),
                    },
                )
            })
            .collect();
        Ok(Self { issuers })
    }

    /// Cache state per issuer.
    pub fn status(&self) -> Vec<IssuerStatus> {
        let mut out: Vec<_> = self
            .issuers
            .values()
            .map(|e| {
                let (keys, fresh_until) = e.keys.snapshot();
                IssuerStatus {
                    name: e.config.name.clone(),
                    keys,
                    fresh_until,
                    fetches: e.keys.stats.jwks_fetches.load(Ordering::Relaxed),
                    failures: e.keys.stats.jwks_failures.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Each issuer's name and key cache, sorted by name (for metrics).
    pub(crate) fn caches(&self) -> Vec<(String, Arc<KeyCache>)> {
        let mut out: Vec<_> = self
            .issuers
            .values()
            .map(|e| (e.config.name.clone(), Arc::clone(&e.keys)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Verifies `token` at `now`; see the module docs for the check order.
    pub async fn verify(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedClaims, Rejection> {
        // 1–2. Size and structure.
        let jws = jose::parse(token).map_err(VerifyError::from)?;
        // 3. Issuer lookup, by exact match, with no I/O.
        let iss = jws
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(VerifyError::NoIssuer)?;
        let entry = self
            .issuers
            .get(iss)
            .ok_or_else(|| VerifyError::UnknownIssuer(crate::text::truncate(iss, 200)))?;
        let issuer = &entry.config;
        // 4. Algorithm allowed for this issuer.
        if !issuer.algorithms.contains(&jws.alg) {
            return Err(VerifyError::DisallowedAlgorithm {
                alg: jws.alg,
                issuer: issuer.name.clone(),
                allowed: issuer
                    .algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into());
        }
        // 5. Key lookup (the only step that may fetch).
        let key = entry
            .keys
            .key(jws.kid.as_deref(), now)
            .await
            .map_err(|e| match e {
                KeyLookupError::Unavailable(reason) => VerifyError::KeysUnavailable {
                    issuer: issuer.name.clone(),
                    reason,
                },
                other => VerifyError::Key(other),
            })?;
        // 6. Key agrees with the header, and the signature verifies.
        key.verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature)
            .map_err(VerifyError::from)?;
        let claims = jws.claims;
        // From here on the claims are authentic; keep them for the audit log.
        let checked = check_claims(issuer, &claims, now);
        match checked {
            Ok(()) => Ok(VerifiedClaims::new(issuer.name.clone(), claims)),
            Err(error) => Err(Rejection {
                error,
                signed: Some((issuer.name.clone(), Box::new(claims))),
            }),
        }
    }
}

fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(VerifyError::BadClaim {
            claim: name,
            problem: "must be an integer NumericDate",
        }),
        Some(_) => Err(VerifyError::BadClaim {
            claim: name,
            problem: "must be a number",
        }),
    }
}

/// Steps 7–9 on their own: required claims, time and audience, against
/// `issuer`'s settings at `now`, stopping at the first failure.
///
/// This checks no signature, so passing proves nothing about who wrote the
/// claims. [`Verifier::verify`] calls it only after the signature verified;
/// `policy explain` calls it directly to show what a claim set would meet.
pub fn check_claims(
    issuer: &IssuerConfig,
    claims: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    // 7. Required claims and their types.
    match claims.get("sub") {
        None => return Err(VerifyError::MissingClaim("sub")),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => {
            return Err(VerifyError::BadClaim {
                claim: "sub",
                problem: "must be a non-empty string",
            })
        }
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        None => return Err(VerifyError::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or(VerifyError::BadClaim {
                claim: "aud",
                problem: "array members must be strings",
            })?,
        Some(_) => {
            return Err(VerifyError::BadClaim {
                claim: "aud",
                problem: "must be a string or a non-empty array of strings",
            })
        }
    };
    let exp = numeric_date(claims, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
    let iat = numeric_date(claims, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
    let nbf = numeric_date(claims, "nbf")?;

    // 8. Time, against the injected clock.
    let now = now.unix_timestamp();
    let leeway = secs(issuer.leeway);
    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { exp });
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid { nbf });
        }
    }
    if iat > now.saturating_add(leeway) {
        return Err(VerifyError::IssuedInFuture { iat });
    }
    let max_age = issuer.max_token_age.as_secs();
    let age = now.saturating_sub(iat);
    if age > secs(issuer.max_token_age) {
        return Err(VerifyError::TooOld { age, max: max_age });
    }
    let lifetime = exp.saturating_sub(iat);
    if lifetime > secs(issuer.max_token_lifetime) {
        return Err(VerifyError::LifetimeTooLong {
            lifetime,
            max: issuer.max_token_lifetime.as_secs(),
        });
    }

    // 9. Audience.
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|want| want == a))
    {
        return Err(VerifyError::AudienceNotAccepted {
            got: audiences
                .iter()
                .map(|a| crate::text::truncate(a, 200))
                .collect(),
            expected: issuer.audiences.clone(),
        });
    }
    Ok(())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
