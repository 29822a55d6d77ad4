//! Retention: deletes each chain's rows older than a cutoff, only from a store that verifies, and records an anchor so that what remains still verifies.
//!
//! A chain's rows are deleted oldest first, in steps of [`PRUNE_STEP_ROWS`],
//! and never its last row, which writers continue from. Before each step the
//! chain's anchor (`audit_anchor`) moves forward to the last row about to go,
//! with that row's hash; `verify`, when pruning is allowed
//! ([`AuditOptions::allow_prune`](super::AuditOptions::allow_prune)), walks
//! the chain from the anchor, and the first remaining row must link to it.
//! Removing the anchor makes the pruned rows show as missing again, and
//! editing it breaks the first link. Without `allow_prune`, `verify` ignores
//! anchors, so one forged by a database writer hides nothing.
//!
//! What pruning gives up: a hash chain cannot prove that the rows before an
//! anchor were ever there. Keep the anchors each prune reports with the chain
//! heads you already record outside the database.

use serde::Serialize;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

use super::chain::GENESIS_HASH;
use super::error::{bounded, AuditError};
use super::record::unix_micros;
use super::store::{self, Prunable};
use super::verify::{self, VerifyReport};

/// Rows deleted per statement, so that a writer serving exchanges on the
/// same SQLite file waits for at most one short delete. Tests use small
/// steps so that every test prunes in several.
const PRUNE_STEP_ROWS: u64 = if cfg!(test) { 3 } else { 1000 };

/// What errors say was being done.
const ACTION: &str = "prune audit chains";

/// What a prune did to one chain, or with `dry_run` would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunedChain {
    /// The chain.
    pub chain_id: String,
    /// Rows deleted (with `dry_run`: that would be deleted).
    pub rows: u64,
    /// The chain's anchor afterwards: its rows start after this `seq` (0 if
    /// it was never pruned).
    pub pruned_through: u64,
    /// The anchor's hash: the hash of row `pruned_through`, which the first
    /// remaining row links to ([`GENESIS_HASH`] if never pruned). With
    /// `dry_run`, the current anchor's.
    pub anchor_hash: String,
}

/// The outcome of [`AuditLog::prune`](super::AuditLog::prune).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneOutcome {
    /// The store does not verify, so nothing was deleted: pruning would
    /// destroy the evidence. The report names the problems.
    Refused(VerifyReport),
    /// Every chain, in chain order, including those with nothing to prune.
    Pruned(Vec<PrunedChain>),
}

/// Deletes, in every chain of the store at `url`, the rows recorded before
/// `before` (see the module docs). `now` is recorded with each anchor.
pub(crate) async fn prune(
    url: &str,
    before: OffsetDateTime,
    now: OffsetDateTime,
    dry_run: bool,
    query_timeout: Duration,
) -> Result<PruneOutcome, AuditError> {
    // The store must exist: opening it for writing would create an empty one.
    let read_only = store::parse_url_read_only(url)?;
    let pool = connect(
        &read_only,
        query_timeout,
        store::connect_read_only(&read_only),
    )
    .await?;
    if dry_run {
        let outcome = prune_pool(&pool, &read_only, before, now, dry_run, query_timeout).await;
        pool.close().await;
        return outcome;
    }
    pool.close().await;
    // Writable, with the schema applied: a store an older build made gains
    // the anchor table here.
    let url = store::parse_url(url)?;
    let pool = connect(&url, query_timeout, store::connect(&url)).await?;
    let outcome = prune_pool(&pool, &url, before, now, dry_run, query_timeout).await;
    pool.close().await;
    outcome
}

/// `connecting`, within the time [`AuditLog::open`](super::AuditLog::open) allows.
async fn connect(
    url: &store::StoreUrl,
    query_timeout: Duration,
    connecting: impl std::future::Future<Output = Result<AnyPool, AuditError>>,
) -> Result<AnyPool, AuditError> {
    let limit = query_timeout.max(Duration::from_secs(10));
    tokio::time::timeout(limit, connecting)
        .await
        .map_err(|_| AuditError::Timeout {
            action: "connect",
            url: url.redacted.clone(),
            after: limit,
        })?
}

async fn prune_pool(
    pool: &AnyPool,
    url: &store::StoreUrl,
    before: OffsetDateTime,
    now: OffsetDateTime,
    dry_run: bool,
    query_timeout: Duration,
) -> Result<PruneOutcome, AuditError> {
    let source = verify::Source {
        pool,
        backend: url.backend,
        url: &url.redacted,
        query_timeout,
        allow_prune: true,
    };
    let report = verify::verify(&source, None).await?;
    if !report.is_clean() {
        return Ok(PruneOutcome::Refused(report));
    }
    let redacted = url.redacted.as_str();
    let anchors = bounded(
        ACTION,
        redacted,
        query_timeout,
        store::anchors(pool, url.backend),
    )
    .await?;
    let cutoff_us = unix_micros(before).unwrap_or(i64::MAX);
    let now_us = unix_micros(now).unwrap_or(i64::MAX);
    let mut pruned = Vec::with_capacity(report.chains.len());
    for chain in report.chains {
        let id = chain.chain_id;
        let mut start = chain.pruned_through;
        let mut anchor_hash = anchors
            .get(&id)
            .map_or_else(|| GENESIS_HASH.to_owned(), |a| a.hash.clone());
        let what = if dry_run {
            Prunable::Count
        } else {
            Prunable::Delete
        };
        // Rows an interrupted prune left at or below the anchor: all at once
        // (they verified, and verify reports any gap among them).
        let leftover = store::prunable_rows(pool, what, &id, 0, start, i64::MAX);
        let mut rows = bounded(ACTION, redacted, query_timeout, leftover).await?;
        if dry_run {
            let plan = store::prune_through(pool, &id, start, cutoff_us, u64::MAX);
            let through = bounded(ACTION, redacted, query_timeout, plan).await?;
            // The chain verified, so its rows are contiguous.
            rows += through.map_or(0, |t| t - start);
        } else {
            loop {
                let plan = store::prune_through(pool, &id, start, cutoff_us, PRUNE_STEP_ROWS);
                let Some(through) = bounded(ACTION, redacted, query_timeout, plan).await? else {
                    break;
                };
                let step = store::prune_to(pool, &id, start, through, cutoff_us, now_us);
                if let Some(deleted) = bounded(ACTION, redacted, query_timeout, step).await? {
                    rows += deleted;
                    start = through;
                    continue;
                }
                // Row `through` is gone: another prune took it, and moved
                // the anchor at least that far first.
                let moved = bounded(
                    ACTION,
                    redacted,
                    query_timeout,
                    store::anchors(pool, url.backend),
                )
                .await?
                .remove(&id)
                .filter(|a| a.seq >= through)
                .ok_or_else(|| AuditError::Unavailable {
                    action: ACTION,
                    url: url.redacted.clone(),
                    source: Arc::new(sqlx::Error::Protocol(format!(
                        "row {id}#{through} vanished while pruning; run `tokenmint audit verify`"
                    ))),
                })?;
                start = moved.seq;
            }
            // Report the anchor as stored: another prune may have moved it further.
            let now_anchors = store::anchors(pool, url.backend);
            if let Some(a) = bounded(ACTION, redacted, query_timeout, now_anchors)
                .await?
                .remove(&id)
            {
                start = a.seq;
                anchor_hash = a.hash;
            }
            if rows > 0 {
                tracing::info!(chain_id = %id, rows, pruned_through = start, anchor_hash = %anchor_hash, "pruned audit rows");
            }
        }
        pruned.push(PrunedChain {
            chain_id: id,
            rows,
            pruned_through: start,
            anchor_hash,
        });
    }
    Ok(PruneOutcome::Pruned(pruned))
}
