//! Replay protection for single-use issuers: each (issuer, jti) may be claimed once, decided by the store's unique key.
//!
//! Used jtis live in table `used_jti` of the audit store, next to the audit
//! log, so every replica sharing the store shares them. A claim is one
//! `INSERT … ON CONFLICT` relying on `PRIMARY KEY (issuer, jti)`: of any
//! number of concurrent claims of one jti, on any number of replicas, exactly
//! one gets [`JtiClaim::Fresh`]. The key is the issuer and the `jti` claim,
//! never the token's bytes (an ECDSA signature has a second valid form, so
//! one token can be presented as two different strings).
//!
//! A row is kept until the `expires_at` given at claim time (the exchange
//! passes the token's `exp` plus the issuer's leeway, after which the token
//! no longer verifies anyway). Expired rows are pruned in the background, at
//! most once per [`PRUNE_INTERVAL`] per [`AuditLog`], in bounded batches; an
//! expired row that is still there is taken over by a new claim, so results
//! never depend on when pruning last ran.

use super::record::unix_micros_saturating;
use super::{store, AuditError, AuditLog};
use sqlx::AnyPool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Least time between two background prunes started by one [`AuditLog`].
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Rows one prune statement deletes at most.
const PRUNE_BATCH: u32 = 1000;

/// Statements one prune runs at most; whatever is left waits for the next prune.
const PRUNE_MAX_BATCHES: u32 = 100;

/// The outcome of [`AuditLog::claim_jti`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JtiClaim {
    /// This call claimed the jti: the token may be exchanged.
    Fresh,
    /// The jti was claimed before and its claim has not expired: a replay.
    Replayed,
}

impl AuditLog {
    /// Claims `jti` of `issuer` until `expires_at`, as of `now`.
    ///
    /// Returns [`JtiClaim::Replayed`] if an unexpired claim exists (made by
    /// this or any other process sharing the store). Fails with
    /// [`AuditError::Unavailable`] or [`AuditError::Timeout`] if the store
    /// cannot answer; callers must then refuse the exchange (fail closed).
    /// May start a background prune of expired claims (see the module docs).
    ///
    /// `issuer` and `jti` are stored as given; callers bound their size.
    pub async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<JtiClaim, AuditError> {
        let now_us = unix_micros_saturating(now);
        let expires_us = unix_micros_saturating(expires_at);
        let claim = store::claim_jti(&self.inner.pool, issuer, jti, expires_us, now_us);
        let fresh = super::error::bounded(
            "claim jti",
            &self.inner.url,
            self.inner.options.append_timeout,
            claim,
        )
        .await?;
        self.maybe_prune(now_us);
        Ok(if fresh {
            JtiClaim::Fresh
        } else {
            JtiClaim::Replayed
        })
    }

    /// Deletes claims that expired before `now`, in bounded batches, and
    /// returns how many were deleted. [`AuditLog::claim_jti`] runs this in the
    /// background by itself; call it directly only for maintenance or tests.
    pub async fn prune_jtis(&self, now: OffsetDateTime) -> Result<u64, AuditError> {
        prune(
            &self.inner.pool,
            &self.inner.url,
            self.inner.options.append_timeout,
            unix_micros_saturating(now),
        )
        .await
    }

    /// Starts a background prune if none was started in the last [`PRUNE_INTERVAL`].
    fn maybe_prune(&self, now_us: i64) {
        let next = &self.inner.next_prune_us;
        let due = next.load(Ordering::Relaxed);
        if now_us < due {
            return;
        }
        let interval_us = i64::try_from(PRUNE_INTERVAL.as_micros()).unwrap_or(i64::MAX);
        let following = now_us.saturating_add(interval_us);
        // Only the caller that moves the deadline starts a prune.
        if next
            .compare_exchange(due, following, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            match prune(
                &inner.pool,
                &inner.url,
                inner.options.append_timeout,
                now_us,
            )
            .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "pruned expired used-jti rows"),
                // Harmless: the rows stay until the next prune, and stale rows
                // never block a claim.
                Err(e) => tracing::warn!(error = %e, "pruning expired used-jti rows failed"),
            }
        });
    }
}

/// Deletes expired claims, [`PRUNE_BATCH`] rows per statement, until a batch
/// comes back short or [`PRUNE_MAX_BATCHES`] ran.
async fn prune(
    pool: &AnyPool,
    url: &str,
    query_timeout: Duration,
    now_us: i64,
) -> Result<u64, AuditError> {
    let mut total = 0;
    for _ in 0..PRUNE_MAX_BATCHES {
        let batch = store::prune_jtis(pool, now_us, PRUNE_BATCH);
        let deleted = super::error::bounded("prune used jtis", url, query_timeout, batch).await?;
        total += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            break;
        }
    }
    Ok(total)
}
