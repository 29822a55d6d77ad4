//! The per-issuer key cache: discovery, JWKS fetches, Cache-Control freshness, single-flight refetch in its own task, stale-while-revalidate, and the refetch rate limit.

use super::fetch::{FetchError, Fetcher};
use super::jwks::{Jwk, JwksError, KeySet};
use crate::config::{check_url_scheme, IssuerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use tracing::Instrument as _;
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
    /// When the keys in `keys` were fetched (for the key-set age metric).
    fetched_at: Option<OffsetDateTime>,
}

/// Counters exposed for metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    /// JWKS fetch attempts.
    pub(crate) jwks_fetches: AtomicU64,
    /// JWKS fetch attempts that failed.
    pub(crate) jwks_failures: AtomicU64,
    /// JWKS fetch attempts that installed keys.
    pub(crate) jwks_successes: AtomicU64,
}

/// One issuer's cache state, read without I/O (for metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSnapshot {
    /// Keys cached.
    pub(crate) keys: usize,
    /// When the cached key set was fetched.
    pub(crate) fetched_at: Option<OffsetDateTime>,
    /// Until when it is fresh.
    pub(crate) fresh_until: Option<OffsetDateTime>,
    /// Fetch attempts that installed keys.
    pub(crate) successes: u64,
    /// Fetch attempts that failed.
    pub(crate) failures: u64,
}

/// One issuer's keys. Shared (`Arc`) so that fetches can run in their own
/// tasks, independent of the requests that asked for them.
#[derive(Debug)]
pub(crate) struct KeyCache {
    issuer: Arc<IssuerConfig>,
    fetcher: Fetcher,
    state: RwLock<State>,
    /// Held for the whole of a fetch, by the task running it (not by the
    /// request that started it), so concurrent misses share one fetch and a
    /// dropped request cannot cancel it.
    fetch_lock: Arc<tokio::sync::Mutex<()>>,
    pub(crate) stats: CacheStats,
}

/// What the cache holds for a `kid`, without I/O.
enum Cached {
    /// Found, and the key set is fresh.
    Fresh(Arc<Jwk>),
    /// Found, but the key set is stale.
    Stale(Arc<Jwk>),
    /// No keys, or no such key.
    Miss,
}

impl KeyCache {
    pub(crate) fn new(issuer: Arc<IssuerConfig>, fetcher: Fetcher) -> Self {
        Self {
            issuer,
            fetcher,
            state: RwLock::new(State::default()),
            fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
            stats: CacheStats::default(),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()))
    }

    fn cached(&self, kid: Option<&str>, now: OffsetDateTime) -> Cached {
        self.read(|s| match s.keys.as_ref().and_then(|k| k.find(kid)) {
            None => Cached::Miss,
            Some(k) if s.fresh_until.is_some_and(|t| now < t) => Cached::Fresh(k),
            Some(k) => Cached::Stale(k),
        })
    }

    /// Finds the key for `kid`.
    ///
    /// - Fresh keys with the kid: returned, no I/O.
    /// - Stale keys with the kid: returned at once; a refresh starts in the
    ///   background (unless one is in flight or the rate limit forbids it).
    /// - Otherwise (no keys, or no such kid): waits for a fetch, at most one
    ///   per [`MIN_REFETCH_INTERVAL`] while keys are cached
    ///   ([`COLD_RETRY_INTERVAL`] while none are), shared by concurrent
    ///   requests.
    ///
    /// Fetches run in their own task, which holds the single-flight lock, so
    /// dropping this future never cancels one. A failed refresh keeps the
    /// cached keys in service.
    pub(crate) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Arc<Jwk>, KeyLookupError> {
        match self.cached(kid, now) {
            Cached::Fresh(k) => return Ok(k),
            Cached::Stale(k) => {
                self.refresh_in_background(now);
                return Ok(k);
            }
            Cached::Miss => {}
        }
        let flight = Arc::clone(&self.fetch_lock).lock_owned().await;
        // Another request may have refreshed while we waited.
        match self.cached(kid, now) {
            Cached::Fresh(k) => return Ok(k),
            Cached::Stale(k) => {
                // Not awaited: this request has its key.
                let _detached = self.spawn_refresh(flight, now);
                return Ok(k);
            }
            Cached::Miss => {}
        }
        if let Some(task) = self.spawn_refresh(flight, now) {
            // If this future is dropped here, the task still runs to the end
            // and releases the lock when the state is updated.
            if let Err(e) = task.await {
                tracing::error!(issuer = %self.issuer.name, error = %e, "issuer key refresh task failed");
            }
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

    /// Starts a refresh without waiting for it, unless a fetch is already in
    /// flight (it will refresh the keys) or the rate limit forbids one.
    fn refresh_in_background(self: &Arc<Self>, now: OffsetDateTime) {
        if let Ok(flight) = Arc::clone(&self.fetch_lock).try_lock_owned() {
            let _detached = self.spawn_refresh(flight, now);
        }
    }

    /// With the single-flight lock held (`flight`), spawns a refresh if the
    /// rate limit allows one. The task owns the lock until the state is
    /// updated; otherwise the lock is released on return.
    fn spawn_refresh(
        self: &Arc<Self>,
        flight: tokio::sync::OwnedMutexGuard<()>,
        now: OffsetDateTime,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.read(|s| may_fetch(s, now)) {
            return None;
        }
        let cache = Arc::clone(self);
        let task = async move {
            cache.refresh(now).await;
            drop(flight);
        };
        Some(tokio::spawn(task.instrument(tracing::Span::current())))
    }

    /// Fetches and installs the keys. Call only with the single-flight lock
    /// held and after [`may_fetch`] allowed it.
    async fn refresh(&self, now: OffsetDateTime) {
        self.write(|s| s.last_attempt = Some(next_attempt(s, now)));
        self.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok((keys, freshness)) => {
                tracing::info!(issuer = %self.issuer.name, keys = keys.len(), freshness_s = freshness.as_secs(), "fetched issuer keys");
                self.write(|s| {
                    s.keys = Some(Arc::new(keys));
                    s.fresh_until = Some(now + freshness);
                    s.fetched_at = Some(now);
                    s.last_error = None;
                });
                self.stats.jwks_successes.fetch_add(1, Ordering::Relaxed);
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

    /// The state metrics report; see [`CacheSnapshot`].
    pub(crate) fn metrics_snapshot(&self) -> CacheSnapshot {
        let (keys, fetched_at, fresh_until) = self.read(|s| {
            (
                s.keys.as_ref().map_or(0, |k| k.len()),
                s.fetched_at,
                s.fresh_until,
            )
        });
        CacheSnapshot {
            keys,
            fetched_at,
            fresh_until,
            successes: self.stats.jwks_successes.load(Ordering::Relaxed),
            failures: self.stats.jwks_failures.load(Ordering::Relaxed),
        }
    }
}

/// The minimum time between fetch attempts in this state.
fn refetch_interval(s: &State) -> Duration {
    if s.keys.is_some() {
        MIN_REFETCH_INTERVAL
    } else {
        COLD_RETRY_INTERVAL
    }
}

/// Whether a fetch may start at `now`: never attempted, or the interval has
/// elapsed since the last attempt. A `now` slightly before the last attempt
/// (requests read the clock before queueing for the lock, so they arrive out
/// of order) counts as "not elapsed"; only a clock that jumped backwards by
/// more than the interval allows a fetch, so that it cannot block refreshes
/// for long.
fn may_fetch(s: &State, now: OffsetDateTime) -> bool {
    let interval = refetch_interval(s);
    match s.last_attempt {
        None => true,
        Some(last) => now - last >= interval || last - now > interval,
    }
}

/// The `last_attempt` to record for an attempt at `now`: never earlier than
/// the previous one, unless the clock jumped backwards by more than the
/// interval (see [`may_fetch`]).
fn next_attempt(s: &State, now: OffsetDateTime) -> OffsetDateTime {
    match s.last_attempt {
        Some(last) if last > now && last - now <= refetch_interval(s) => last,
        _ => now,
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

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn rate_limit_ignores_slightly_earlier_clocks() {
        let mut s = State {
            last_attempt: Some(at(100)),
            ..State::default()
        };
        // No keys: the cold interval (5 s) applies.
        assert!(!may_fetch(&s, at(100)));
        assert!(!may_fetch(&s, at(104)));
        assert!(may_fetch(&s, at(105)));
        // A request that read the clock a little earlier is not "elapsed".
        assert!(!may_fetch(&s, at(99)));
        assert!(!may_fetch(&s, at(95)));
        // A real backwards jump (more than the interval) allows a fetch.
        assert!(may_fetch(&s, at(94)));

        // With keys: the refetch interval (30 s) applies.
        s.keys = Some(Arc::new(KeySet::default()));
        assert!(!may_fetch(&s, at(129)));
        assert!(may_fetch(&s, at(130)));
        assert!(!may_fetch(&s, at(99)));
        assert!(!may_fetch(&s, at(70)));
        assert!(may_fetch(&s, at(69)));
    }

    #[test]
    fn last_attempt_never_moves_backwards_for_small_differences() {
        let s = State {
            last_attempt: Some(at(100)),
            ..State::default()
        };
        assert_eq!(next_attempt(&s, at(106)), at(106));
        assert_eq!(next_attempt(&s, at(99)), at(100));
        assert_eq!(next_attempt(&s, at(95)), at(100));
        // A backwards jump of more than the interval resets it.
        assert_eq!(next_attempt(&s, at(94)), at(94));
        assert_eq!(next_attempt(&State::default(), at(7)), at(7));
    }
}
