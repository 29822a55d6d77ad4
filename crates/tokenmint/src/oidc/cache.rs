//! The per-issuer key cache: discovery, JWKS fetches, Cache-Control freshness, single-flight refetch and its rate limit.

use super::fetch::{FetchError, Fetcher};
use super::jwks::{Jwk, JwksError, KeySet};
use crate::config::{check_url_scheme, IssuerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// An unknown `kid` triggers at most one refetch per this interval per issuer.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// With no keys cached at all, a failed fetch is retried after this long.
pub const COLD_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Cache-Control max-age is clamped to this range.
pub const MIN_FRESHNESS: Duration = Duration::from_secs(300);
/// Upper clamp for Cache-Control max-age.
pub const MAX_FRESHNESS: Duration = Duration::from_secs(86_400);

/// Why a key could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    /// The issuer's key set has no such `kid` (after at most one refetch).
    #[error("issuer has no key with kid {0:?}")]
    UnknownKid(String),
    /// The token has no `kid` and the issuer has several keys.
    #[error("token has no kid and the issuer publishes several keys")]
    NoKid,
    /// No keys are cached and fetching them failed.
    #[error("issuer keys are unavailable: {0}")]
    Unavailable(String),
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("discovery document: {0}")]
    Discovery(String),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fresh_until: Option<OffsetDateTime>,
    last_attempt: Option<OffsetDateTime>,
    /// Found by discovery; cleared when a JWKS fetch fails so the next
    /// attempt rediscovers.
    discovered_jwks_uri: Option<Url>,
    last_error: Option<String>,
}

/// Counters exposed for metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    /// JWKS fetch attempts.
    pub(crate) jwks_fetches: AtomicU64,
    /// JWKS fetch attempts that failed.
    pub(crate) jwks_failures: AtomicU64,
}

/// One issuer's keys.
#[derive(Debug)]
pub(crate) struct KeyCache {
    issuer: Arc<IssuerConfig>,
    fetcher: Fetcher,
    state: RwLock<State>,
    /// Held while fetching, so concurrent misses share one fetch.
    fetch_lock: tokio::sync::Mutex<()>,
    pub(crate) stats: CacheStats,
}

impl KeyCache {
    pub(crate) fn new(issuer: Arc<IssuerConfig>, fetcher: Fetcher) -> Self {
        Self {
            issuer,
            fetcher,
            state: RwLock::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            stats: CacheStats::default(),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// A fresh cached key for `kid`, without I/O.
    fn cached(&self, kid: Option<&str>, now: OffsetDateTime) -> Option<Arc<Jwk>> {
        self.read(|s| {
            let fresh = s.fresh_until.is_some_and(|t| now < t);
            if fresh {
                s.keys.as_ref().and_then(|k| k.find(kid))
            } else {
                None
            }
        })
    }

    /// Finds the key for `kid`, fetching when the cache is empty, stale, or
    /// lacks the kid — at most once per [`MIN_REFETCH_INTERVAL`] while keys
    /// are cached. A failed refresh keeps the cached keys in service.
    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Arc<Jwk>, KeyLookupError> {
        if let Some(k) = self.cached(kid, now) {
            return Ok(k);
        }
        let _flight = self.fetch_lock.lock().await;
        // Another request may have refreshed while we waited.
        if let Some(k) = self.cached(kid, now) {
            return Ok(k);
        }
        let may_fetch = self.read(|s| {
            let interval = if s.keys.is_some() {
                MIN_REFETCH_INTERVAL
            } else {
                COLD_RETRY_INTERVAL
            };
            match s.last_attempt {
                None => true,
                // A clock that went backwards must not block refreshes forever.
                Some(t) => now < t || now - t >= interval,
            }
        });
        if may_fetch {
            self.refresh(now).await;
        }
        self.read(|s| match &s.keys {
            Some(keys) => keys.find(kid).ok_or_else(|| match kid {
                Some(kid) => KeyLookupError::UnknownKid(kid.to_owned()),
                None => KeyLookupError::NoKid,
            }),
            None => Err(KeyLookupError::Unavailable(
                s.last_error
                    .clone()
                    .unwrap_or_else(|| "not fetched yet".to_owned()),
            )),
        })
    }

    async fn refresh(&self, now: OffsetDateTime) {
        self.write(|s| s.last_attempt = Some(now));
        self.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok((keys, freshness)) => {
                tracing::info!(issuer = %self.issuer.name, keys = keys.len(), freshness_s = freshness.as_secs(), "fetched issuer keys");
                self.write(|s| {
                    s.keys = Some(Arc::new(keys));
                    s.fresh_until = Some(now + freshness);
                    s.last_error = None;
                });
            }
            Err(e) => {
                self.stats.jwks_failures.fetch_add(1, Ordering::Relaxed);
                let cached = self.read(|s| s.keys.is_some());
                tracing::warn!(issuer = %self.issuer.name, error = %e, serving_cached_keys = cached, "issuer key refresh failed");
                self.write(|s| {
                    s.last_error = Some(e.to_string());
                    s.discovered_jwks_uri = None;
                });
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), RefreshError> {
        let jwks_uri = match (
            &self.issuer.jwks_url,
            self.read(|s| s.discovered_jwks_uri.clone()),
        ) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url,
            (None, None) => {
                let url = self.discover().await?;
                self.write(|s| s.discovered_jwks_uri = Some(url.clone()));
                url
            }
        };
        let fetched = self.fetcher.get(&jwks_uri).await?;
        let keys = KeySet::parse(&fetched.body)?;
        Ok((keys, freshness(fetched.cache_control.as_deref())))
    }

    async fn discover(&self) -> Result<Url, RefreshError> {
        let base = self.issuer.url.trim_end_matches('/');
        let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(|e| RefreshError::Discovery(e.to_string()))?;
        let fetched = self.fetcher.get(&url).await?;
        #[derive(serde::Deserialize)]
        struct Doc {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Doc = serde_json::from_slice(&fetched.body).map_err(|_| {
            RefreshError::Discovery(format!(
                "{url} is not an OpenID configuration with issuer and jwks_uri"
            ))
        })?;
        if doc.issuer != self.issuer.url {
            return Err(RefreshError::Discovery(format!(
                "{url} names issuer {:?}, not the configured {:?}",
                doc.issuer, self.issuer.url
            )));
        }
        let jwks = Url::parse(&doc.jwks_uri)
            .map_err(|e| RefreshError::Discovery(format!("jwks_uri {:?}: {e}", doc.jwks_uri)))?;
        check_url_scheme(&jwks).map_err(|m| RefreshError::Discovery(format!("jwks_uri: {m}")))?;
        Ok(jwks)
    }

    /// Whether keys are cached, and until when they are fresh.
    pub(crate) fn snapshot(&self) -> (usize, Option<OffsetDateTime>) {
        self.read(|s| (s.keys.as_ref().map_or(0, |k| k.len()), s.fresh_until))
    }
}

/// How long a JWKS response stays fresh: `max-age`, clamped to
/// [`MIN_FRESHNESS`]..=[`MAX_FRESHNESS`]; the minimum when absent.
pub(crate) fn freshness(cache_control: Option<&str>) -> Duration {
    let max_age = cache_control.and_then(|cc| {
        cc.split(',').find_map(|d| {
            let (name, value) = d.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
    });
    max_age
        .map(Duration::from_secs)
        .unwrap_or(MIN_FRESHNESS)
        .clamp(MIN_FRESHNESS, MAX_FRESHNESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_clamps() {
        assert_eq!(freshness(None), MIN_FRESHNESS);
        assert_eq!(freshness(Some("no-store")), MIN_FRESHNESS);
        assert_eq!(freshness(Some("max-age=10")), MIN_FRESHNESS);
        assert_eq!(
            freshness(Some("public, max-age=3600")),
            Duration::from_secs(3600)
        );
        assert_eq!(
            freshness(Some("Max-Age=\"7200\", must-revalidate")),
            Duration::from_secs(7200)
        );
        assert_eq!(freshness(Some("max-age=999999999")), MAX_FRESHNESS);
        assert_eq!(freshness(Some("max-age=abc")), MIN_FRESHNESS);
    }
}
