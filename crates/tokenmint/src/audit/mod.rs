//! The tamper-evident audit log: every exchange decision, hash-chained, in SQLite or PostgreSQL.
//!
//! # What is stored
//!
//! One row per [`AuditRecord`] in table `audit_log`. The row holds the
//! record's canonical JSON (`record`), its position (`chain_id`, `seq`), the
//! hash chain (`prev_hash`, `hash`) and plain copies of `time` (as `time_us`,
//! Unix microseconds), `broker` and `decision` for filtering. [`AuditLog::list`]
//! returns records parsed from the hashed JSON, never from the plain columns;
//! [`AuditLog::verify`] checks that the columns agree with it.
//!
//! No field of a record can hold a credential: a granted token is recorded
//! only as its SHA-256 ([`token_sha256`]).
//!
//! # The hash chain
//!
//! Rows form one chain per `chain_id` (default [`DEFAULT_CHAIN`]): `seq` runs
//! 1, 2, 3, … without gaps, and each row's `hash` is
//!
//! ```text
//! hex(SHA-256(prev_hash "\n" chain_id "\n" seq "\n" record_json))
//! ```
//!
//! with `prev_hash` the previous row's hash, or 64 `0`s ([`GENESIS_HASH`]) for
//! row 1. The exact preimage is in the `chain` submodule. Editing a row's
//! record, editing only a plain column, deleting a row in the middle or
//! moving rows are all detected by [`AuditLog::verify`], which names the rows.
//!
//! # What a hash chain cannot show
//!
//! - **Removing rows from the end** of a chain leaves a shorter, valid chain.
//!   `verify` reports each chain's `head_seq` and `head_hash`: record them
//!   outside the database (a ticket, another system's log) and a later verify
//!   whose chain no longer reaches that head shows the truncation. Within one
//!   running process, `verify` also reports rows that this process saw
//!   committed and that are now gone or different.
//! - **Rewriting a whole chain** from some row on, with freshly computed
//!   hashes, is likewise only detectable against an anchored head hash.
//! - The chain is tamper-*evident*, not tamper-*proof*: anyone who can write
//!   the database can destroy it; verification tells you that it happened.
//!
//! # Writing
//!
//! [`AuditLog::append`] hands the record to one writer task per [`AuditLog`]
//! that owns the chain head. The writer takes whatever is queued (up to a
//! batch limit), chains it, and inserts it in one transaction (group commit).
//! On a SQLite file, an append made while no other is in progress and nothing
//! is queued commits its record on the caller's task instead, holding the
//! same writer (see the `writer` submodule): idle, that saves two task hand-overs.
//! A caller gets `Ok` only after that transaction committed. A failed commit
//! answers every caller in its batch with an error and makes the writer reload
//! the head from the database before the next batch, so it recovers by itself
//! when the store comes back. Every append has a time limit
//! ([`AuditOptions::append_timeout`]); on [`AuditError::Timeout`] the record's
//! fate is unknown (it may still be committed later).
//!
//! Several processes may share a chain. On PostgreSQL each batch's
//! transaction takes a per-chain advisory lock and reads the head under it,
//! so their appends are serialised and never race. On SQLite (and as a
//! backstop everywhere) the UNIQUE(chain_id, seq) key stops them from forking
//! it, and a writer that loses a race reloads the head and retries. Giving
//! each process its own chain id avoids waiting for the lock.
//!
//! # Used jtis
//!
//! The same store holds table `used_jti`: the `jti`s of single-use issuers'
//! tokens that were already exchanged, keyed on (issuer, jti) and kept until
//! the token's `exp` plus leeway. [`AuditLog::claim_jti`] claims one with a
//! single `INSERT` whose primary key settles races between replicas; see the
//! `replay` submodule.
//!
//! # Reading without writing
//!
//! [`AuditLog::open_read_only`] gives an [`AuditReader`] for `verify` and
//! `list` that never creates, migrates or writes the store: a missing SQLite
//! file is [`AuditError::Missing`] rather than a fresh, empty (and so
//! "clean") log. Inspection tools should use it.
//!
//! # Durability
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL`: a committed append
//! survives the process being killed, but the last commits before a power
//! failure may be lost. Use PostgreSQL (or `synchronous=FULL`) where that
//! matters. Commits never checkpoint the WAL (`wal_autocheckpoint = 0`): the
//! writer starts background checkpoints instead, each followed by a short
//! catch-up between two batches (see `writer::Checkpoint`).

mod chain;
mod error;
mod prune;
mod record;
mod replay;
mod sqlite;
mod store;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::GENESIS_HASH;
pub use error::AuditError;
pub use prune::{PruneOutcome, PrunedChain};
pub use record::{token_sha256, AuditClaims, AuditGrant, AuditRecord, Decision};
pub use replay::{JtiClaim, PRUNE_INTERVAL};
pub use verify::{ChainSummary, Problem, ProblemKind, VerifyReport};

use serde::Serialize;
use sqlx::AnyPool;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use store::StoreUrl;
use writer::{HighWater, Job, Writer, WriterTask};

/// The chain id used when the configuration names none.
pub const DEFAULT_CHAIN: &str = "main";

/// Rows [`AuditLog::list`] returns when the filter sets no limit.
pub const DEFAULT_LIST_LIMIT: u32 = 100;

/// Most rows [`AuditLog::list`] returns, whatever the filter asks.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// Tuning for [`AuditLog::open_with`]. The defaults suit a server.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Longest an append waits (queueing plus commit) before failing with
    /// [`AuditError::Timeout`]. Also bounds each store round trip of the writer,
    /// `ping`, `verify` pages and `list`. Default 5 s.
    pub append_timeout: Duration,
    /// Appends that may wait for the writer; when full, `append` waits
    /// (within its timeout). Default 4096.
    pub queue_capacity: usize,
    /// Most records committed in one transaction. Default 256.
    pub max_batch: usize,
    /// SQLite: how often the writer has committed rows copied from the
    /// write-ahead log into the database file, by a checkpoint on another
    /// connection in the background. Commits themselves never checkpoint
    /// (`wal_autocheckpoint = 0`), so most of a checkpoint's disk work does
    /// not stall the exchanges waiting on a commit; only a short catch-up
    /// between two commits, which lets the WAL start over, does (see
    /// `writer::Checkpoint`). Default 1 s.
    pub checkpoint_interval: Duration,
    /// Whether `verify` walks a pruned chain from its prune anchor
    /// (`[audit] allow_prune`, see [`AuditLog::prune`]). Off (the default),
    /// anchors are ignored and pruned rows show as missing: an anchor forged
    /// by someone who can write to the database then hides nothing.
    pub allow_prune: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            append_timeout: Duration::from_secs(5),
            queue_capacity: 4096,
            max_batch: 256,
            checkpoint_interval: Duration::from_secs(1),
            allow_prune: false,
        }
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReceipt {
    /// Its sequence number in the chain.
    pub seq: u64,
    /// Its row hash (lowercase hex).
    pub hash: String,
}

/// A record read back from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    /// The chain it belongs to.
    pub chain_id: String,
    /// Its position in the chain.
    pub seq: u64,
    /// Its stored row hash.
    pub hash: String,
    /// The record, parsed from the hashed JSON.
    pub record: AuditRecord,
}

/// Which records [`AuditLog::list`] returns. All conditions must hold; the
/// default matches everything (up to [`DEFAULT_LIST_LIMIT`] rows).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this broker.
    pub broker: Option<String>,
    /// Only this decision.
    pub decision: Option<Decision>,
    /// Only records with `time` at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// At most this many rows (default [`DEFAULT_LIST_LIMIT`], capped at [`MAX_LIST_LIMIT`]).
    pub limit: Option<u32>,
}

/// Handle to the audit log. Cheap to clone: clones share one store and one
/// writer. The writer stops once every clone is dropped and its queue drained.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// Readers (`list`, `verify`, `ping`) use it directly; the writer has a clone.
    pool: AnyPool,
    /// The chain this handle appends to.
    chain_id: String,
    /// The URL for messages, password redacted.
    url: String,
    /// Which database the store is.
    backend: store::Backend,
    /// Feeds the writer task.
    jobs: mpsc::Sender<Job>,
    /// The writer, shared with the writer task; an idle append takes it to
    /// commit its own record (see `AuditLog::commit_in_caller`).
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// The writer allows an append to commit on the caller's task.
    commits_in_caller: bool,
    /// Appends in progress on this handle and its clones.
    appending: AtomicUsize,
    /// Highest head seen by the writer, for truncation checks in `verify`.
    high_water: HighWater,
    /// Time limits.
    options: AuditOptions,
    /// Unix microseconds before which no new background prune of used jtis starts.
    next_prune_us: AtomicI64,
    /// The writer's batch commit latency (shared with it), for metrics.
    commit_latency: prometheus_client::metrics::histogram::Histogram,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("url", &self.inner.url)
            .field("chain_id", &self.inner.chain_id)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the store at `url` (`sqlite://path/to/file.db`, created if
    /// missing, or `postgres://...`), applies the schema, loads the head of
    /// `chain_id` and starts the writer, with default [`AuditOptions`].
    pub async fn open(url: &str, chain_id: &str) -> Result<AuditLog, AuditError> {
        Self::open_with(url, chain_id, AuditOptions::default()).await
    }

    /// [`AuditLog::open`] with explicit options. Must run inside a Tokio runtime.
    pub async fn open_with(
        url: &str,
        chain_id: &str,
        options: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        // 1. Check the inputs before touching anything.
        chain::validate_chain_id(chain_id)?;
        let url: StoreUrl = store::parse_url(url)?;
        // 2. Connect and bring the schema up to date.
        let pool = tokio::time::timeout(
            options.append_timeout.max(Duration::from_secs(10)),
            store::connect(&url),
        )
        .await
        .map_err(|_| AuditError::Timeout {
            action: "connect",
            url: url.redacted.clone(),
            after: options.append_timeout.max(Duration::from_secs(10)),
        })??;
        // 3. Continue the chain from its last row.
        let head = store::load_head(&pool, chain_id)
            .await
            .map_err(|source| AuditError::Open {
                url: url.redacted.clone(),
                action: "read chain head",
                source,
            })?;
        tracing::info!(store = %url.redacted, chain_id, head_seq = head.seq, head_hash = %head.hash, "audit log open");
        // 4. Start the writer.
        let high_water = Arc::new(Mutex::new(head.clone()));
        let sqlite_file = url.backend == store::Backend::Sqlite && !url.memory;
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let commit_latency = crate::metrics::audit_write_histogram();
        let writer = Writer {
            pool: pool.clone(),
            chain_id: chain_id.to_owned(),
            url: url.redacted.clone(),
            head: Some(head),
            high_water: Arc::clone(&high_water),
            max_batch: options.max_batch.max(1),
            store_timeout: options.append_timeout,
            commit_latency: commit_latency.clone(),
            commits: match (url.backend, url.file()) {
                (store::Backend::Postgres, _) => writer::Commits::Postgres,
                (store::Backend::Sqlite, Some(file)) => {
                    writer::Commits::SqliteFile(sqlite::FileWriter::new(file.to_owned()))
                }
                (store::Backend::Sqlite, None) => writer::Commits::SqliteMemory,
            },
            checkpoint: sqlite_file.then(|| writer::Checkpoint::new(options.checkpoint_interval)),
            conn: None,
            in_caller: 0,
            last_batch: 0,
        };
        let commits_in_caller = writer.commits_in_caller();
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let task = WriterTask {
            jobs: rx,
            writer: Arc::clone(&writer),
        };
        tokio::spawn(task.run());
        Ok(AuditLog {
            inner: Arc::new(Inner {
                pool,
                chain_id: chain_id.to_owned(),
                url: url.redacted,
                backend: url.backend,
                jobs: tx,
                writer,
                commits_in_caller,
                appending: AtomicUsize::new(0),
                high_water,
                options,
                next_prune_us: AtomicI64::new(i64::MIN),
                commit_latency,
            }),
        })
    }

    /// Deletes, in every chain of the existing store at `url`, the rows
    /// recorded before `before`, keeping each chain's last row and an anchor
    /// (the last deleted row's `seq` and hash) so that the rest still
    /// verifies with [`AuditOptions::allow_prune`]. Refuses, deleting
    /// nothing, when the store does not verify. With `dry_run`, only counts,
    /// and opens the store read-only. Safe while `tokenmint serve` writes to
    /// the store, and while another prune runs: rows go in small steps,
    /// writers only ever need a chain's last row, and anchors only move
    /// forward. `now` is recorded with each anchor. The caller decides
    /// whether pruning is allowed (the CLI requires `[audit] allow_prune`).
    pub async fn prune(
        url: &str,
        before: OffsetDateTime,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> Result<PruneOutcome, AuditError> {
        let timeout = AuditOptions::default().append_timeout;
        prune::prune(url, before, now, dry_run, timeout).await
    }

    /// Opens an existing store at `url` for reading only, with default
    /// [`AuditOptions`]: for `verify` and `list` without a writer.
    ///
    /// Nothing is created, migrated or written. A SQLite file is opened with
    /// `mode=ro`, and a missing one fails with [`AuditError::Missing`] (so a
    /// deleted store is reported, not silently replaced by an empty one). A
    /// database without the `audit_log` table fails with
    /// [`AuditError::NotInitialized`]. PostgreSQL sessions are read-only.
    pub async fn open_read_only(url: &str) -> Result<AuditReader, AuditError> {
        Self::open_read_only_with(url, AuditOptions::default()).await
    }

    /// [`AuditLog::open_read_only`] with explicit options; only
    /// [`AuditOptions::append_timeout`] applies (it bounds each query).
    pub async fn open_read_only_with(
        url: &str,
        options: AuditOptions,
    ) -> Result<AuditReader, AuditError> {
        let url: StoreUrl = store::parse_url_read_only(url)?;
        let limit = options.append_timeout.max(Duration::from_secs(10));
        let pool = tokio::time::timeout(limit, store::connect_read_only(&url))
            .await
            .map_err(|_| AuditError::Timeout {
                action: "connect",
                url: url.redacted.clone(),
                after: limit,
            })??;
        Ok(AuditReader {
            pool,
            url: url.redacted,
            backend: url.backend,
            options,
        })
    }

    /// The writer's batch commit latency histogram (shared), for metrics.
    pub(crate) fn commit_latency(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.inner.commit_latency.clone()
    }

    /// The chain this handle appends to.
    pub fn chain_id(&self) -> &str {
        &self.inner.chain_id
    }

    /// Appends `record` and returns once it is committed.
    ///
    /// Before hashing, `time` is converted to UTC with microsecond precision
    /// and caller-influenced text is capped (see [`AuditRecord`]). Fails with
    /// [`AuditError::InvalidRecord`] if `grant.token_sha256` is not a SHA-256
    /// hex digest, [`AuditError::Unavailable`] if the commit failed (nothing
    /// was written), or [`AuditError::Timeout`] after
    /// [`AuditOptions::append_timeout`] (the record may still be written).
    pub async fn append(&self, record: AuditRecord) -> Result<AuditReceipt, AuditError> {
        let record = record::prepare(record)?;
        let (reply, answer) = oneshot::channel();
        let job = Job { record, reply };
        let stopped = || AuditError::WriterStopped {
            url: self.inner.url.clone(),
        };
        let appending = Appending::enter(&self.inner.appending);
        let wait = async {
            if let Some(job) = self.commit_in_caller(job, appending.alone).await {
                self.inner.jobs.send(job).await.map_err(|_| stopped())?;
            }
            answer.await.map_err(|_| stopped())?
        };
        let limit = self.inner.options.append_timeout;
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or_else(|_| Err(self.timeout("append record")))
    }

    /// Checks that the store answers and holds the audit table, and that the
    /// writer is running; for readiness probes.
    pub async fn ping(&self) -> Result<(), AuditError> {
        if self.inner.jobs.is_closed() {
            return Err(AuditError::WriterStopped {
                url: self.inner.url.clone(),
            });
        }
        let check = store::ping(&self.inner.pool, &self.inner.chain_id);
        error::bounded(
            "ping",
            &self.inner.url,
            self.inner.options.append_timeout,
            check,
        )
        .await
    }

    /// Verifies every chain in the store, a page of rows at a time, and names
    /// each row that was edited, deleted or moved. Problems are reported in
    /// the result; `Err` means the store could not be read.
    ///
    /// See the module docs for what a hash chain cannot detect, and anchor
    /// the reported head hashes outside the database.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let known = self
            .inner
            .high_water
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let source = verify::Source {
            pool: &self.inner.pool,
            backend: self.inner.backend,
            url: &self.inner.url,
            query_timeout: self.inner.options.append_timeout,
            allow_prune: self.inner.options.allow_prune,
        };
        verify::verify(&source, Some((&self.inner.chain_id, known))).await
    }

    /// Records matching `filter`, newest first (by `time`, then chain and
    /// `seq`), parsed from the hashed JSON. Rows are selected by the plain
    /// columns and then re-checked against the JSON, so a row whose columns
    /// were edited is left out here and reported by [`AuditLog::verify`].
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredRecord>, AuditError> {
        list_records(
            &self.inner.pool,
            &self.inner.url,
            self.inner.options.append_timeout,
            filter,
        )
        .await
    }

    /// Commits `job` on this task when no other append is in progress, the
    /// writer is free, nothing is queued for it and it can take the record
    /// without waiting first ([`Writer::ready_for_caller`]); gives the job
    /// back otherwise, for the writer task. Idle, an exchange then wakes no other
    /// task to have its record written. Under load appends overlap, and the
    /// writer task batches them.
    async fn commit_in_caller(&self, job: Job, alone: bool) -> Option<Job> {
        if !(alone && self.inner.commits_in_caller) {
            return Some(job);
        }
        let Ok(mut writer) = self.inner.writer.try_lock() else {
            return Some(job);
        };
        // Queued records were appended first: the writer task commits them,
        // and this one after them.
        if self.inner.jobs.capacity() < self.inner.jobs.max_capacity() || !writer.ready_for_caller()
        {
            return Some(job);
        }
        writer.commit_one(job).await;
        // An in-place commit never yields. While the background checkpoint
        // runs, yield once, so that on a single-threaded runtime (the
        // Lambda's) a run of appends cannot starve it, and the WAL is still
        // started over.
        let checkpointing = writer.checkpoint_running();
        drop(writer);
        if checkpointing {
            tokio::task::yield_now().await;
        }
        None
    }

    fn timeout(&self, action: &'static str) -> AuditError {
        AuditError::Timeout {
            action,
            url: self.inner.url.clone(),
            after: self.inner.options.append_timeout,
        }
    }
}

/// Counts an append in progress for as long as it lives.
struct Appending<'a> {
    count: &'a AtomicUsize,
    /// No other append was in progress when this one started.
    alone: bool,
}

impl<'a> Appending<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::AcqRel);
        Appending {
            count,
            alone: before == 0,
        }
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Read-only handle to an existing audit log, from
/// [`AuditLog::open_read_only`]: `verify` and `list`, no writer. Cheap to
/// clone; clones share one connection pool.
#[derive(Clone)]
pub struct AuditReader {
    pool: AnyPool,
    /// The URL for messages, password redacted.
    url: String,
    /// Which database the store is.
    backend: store::Backend,
    /// Time limits.
    options: AuditOptions,
}

impl fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditReader")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl AuditReader {
    /// Verifies every chain in the store, like [`AuditLog::verify`]. Only
    /// chains that have rows are reported, and without a writer in this
    /// process there is no record of earlier heads to compare against: anchor
    /// the reported head hashes outside the database.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let source = verify::Source {
            pool: &self.pool,
            backend: self.backend,
            url: &self.url,
            query_timeout: self.options.append_timeout,
            allow_prune: self.options.allow_prune,
        };
        verify::verify(&source, None).await
    }

    /// Records matching `filter`, like [`AuditLog::list`].
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredRecord>, AuditError> {
        list_records(&self.pool, &self.url, self.options.append_timeout, filter).await
    }
}

/// Records matching `filter`, newest first, parsed from the hashed JSON; rows
/// whose plain columns disagree with it are left out (and logged).
async fn list_records(
    pool: &AnyPool,
    url: &str,
    query_timeout: Duration,
    filter: &ListFilter,
) -> Result<Vec<StoredRecord>, AuditError> {
    let limit = filter
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .min(MAX_LIST_LIMIT);
    let since_us = filter.since.map(record::unix_micros_saturating);
    let query = store::list(
        pool,
        filter.broker.as_deref(),
        filter.decision,
        since_us,
        limit,
    );
    let rows = error::bounded("list records", url, query_timeout, query).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let record: AuditRecord =
            serde_json::from_str(&row.record).map_err(|e| AuditError::Corrupt {
                url: url.to_owned(),
                chain_id: row.chain_id.clone(),
                seq: row.seq,
                detail: format!("its record is not readable: {e}"),
            })?;
        let matches = filter.broker.as_ref().is_none_or(|b| *b == record.broker)
            && filter.decision.is_none_or(|d| d == record.decision)
            && since_us.is_none_or(|s| record::unix_micros(record.time).is_some_and(|t| t >= s));
        if !matches {
            tracing::warn!(chain_id = %row.chain_id, seq = row.seq, "audit row's columns disagree with its hashed record; run audit verification");
            continue;
        }
        out.push(StoredRecord {
            chain_id: row.chain_id,
            seq: row.seq,
            hash: row.hash,
            record,
        });
    }
    Ok(out)
}
