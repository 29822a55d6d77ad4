//! The single writer: owns the chain head, group-commits queued records, answers each caller.
//!
//! The [`Writer`] sits behind an async mutex. The writer task ([`WriterTask`])
//! takes queued records and commits them in batches. An append made while no
//! other is in progress, on a SQLite file, takes the mutex and commits its
//! own record on the caller's task instead ([`Writer::commit_one`]): at low
//! load this saves two task wake-ups per exchange, and with them a wake-up of
//! a second tokio worker. Under load, appends overlap and queue up, and the
//! writer task commits them together.
//!
//! Invariants:
//!
//! - Only the holder of the writer's mutex assigns `seq` and `prev_hash` for
//!   its chain in this process.
//! - A caller gets `Ok` only after the transaction holding its row committed.
//! - A failed batch answers every caller in it with an error, leaves the head
//!   unknown, and the head is reloaded from the database before the next
//!   batch: so the writer recovers by itself once the store is back, and
//!   never continues from a head that might not have been written.
//! - On PostgreSQL each batch is one transaction that takes the chain's
//!   advisory lock and reads the head under it, so writers in several
//!   processes (replicas sharing a chain) append in turn and never race.
//! - On a SQLite file the writer commits on a connection of its own
//!   ([`super::sqlite`]), small batches in place on the task holding it.
//! - On SQLite, if another process appended to the same chain, the
//!   insert hits the UNIQUE(chain_id, seq) key; the writer reloads the head
//!   and retries the batch a few times before giving up. The key also backs
//!   up the lock: a fork is impossible either way.

use prometheus_client::metrics::histogram::Histogram;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use super::chain::{row_hash, Head};
use super::error::AuditError;
use super::record::PreparedRecord;
use super::sqlite::{CommitError, FileWriter};
use super::store;
use super::AuditReceipt;

/// Attempts per batch when another writer took our sequence numbers.
const MAX_CONFLICT_ATTEMPTS: u32 = 3;

/// A background checkpoint repeats its pass until the WAL grew by at most
/// this many frames (4 KiB pages) during the last one: what the writer's
/// catch-up then has to copy. See [`Checkpoint`].
const CATCH_UP_FRAMES: u64 = 64;

/// Most background passes per checkpoint, should the writer outpace them.
const MAX_CHECKPOINT_PASSES: u32 = 4;

/// One queued append.
#[derive(Debug)]
pub(crate) struct Job {
    /// The record, serialized.
    pub(crate) record: PreparedRecord,
    /// Where the outcome goes. A caller that gave up has dropped the receiver;
    /// its record is still written, since the decision did happen (when the
    /// caller commits it itself, see [`Writer::ready_for_caller`]).
    pub(crate) reply: oneshot::Sender<Result<AuditReceipt, AuditError>>,
}

/// The highest head this process has committed or loaded, shared with
/// `verify` so it can notice rows removed from the end of the chain.
pub(crate) type HighWater = Arc<Mutex<Head>>;

/// The writer's state; see the module docs.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The store.
    pub(crate) pool: AnyPool,
    /// The chain this writer extends.
    pub(crate) chain_id: String,
    /// For error messages.
    pub(crate) url: String,
    /// The last committed row; `None` after a failure until reloaded.
    pub(crate) head: Option<Head>,
    /// See [`HighWater`].
    pub(crate) high_water: HighWater,
    /// Most records per transaction.
    pub(crate) max_batch: usize,
    /// Longest a head reload or a batch commit may take.
    pub(crate) store_timeout: Duration,
    /// Time each batch commit took (failed ones included), for metrics.
    pub(crate) commit_latency: Histogram,
    /// Where batches are committed.
    pub(crate) commits: Commits,
    /// The pooled connection a PostgreSQL or in-memory SQLite batch runs
    /// on, given back after it (closed instead if the batch failed).
    pub(crate) conn: Option<PoolConnection<Any>>,
    /// SQLite files: the background WAL checkpoint (see [`Checkpoint`]).
    pub(crate) checkpoint: Option<Checkpoint>,
    /// Appends committed on their caller's task so far, for tests.
    pub(crate) in_caller: u64,
    /// Rows in the last batch: more than one means appends are overlapping
    /// (load), and the writer task should keep batching them.
    pub(crate) last_batch: usize,
}

/// Where the writer commits its batches.
#[derive(Debug)]
pub(crate) enum Commits {
    /// PostgreSQL: each batch reads the head under the chain's advisory lock
    /// ([`store::append_serialised`]), so processes sharing a chain take
    /// turns instead of racing. Each batch takes a pooled connection: a kept
    /// one can go stale (a server restart, a proxy's idle timeout), and the
    /// pool's liveness ping on acquire replaces it before a batch fails on it.
    Postgres,
    /// An in-memory SQLite store: its pool's one connection, which every
    /// reader needs too, taken for each batch. The cached head, and the retry below.
    SqliteMemory,
    /// A SQLite file: the writer's own connection ([`FileWriter`]), kept
    /// across batches. The cached head, and the retry below.
    SqliteFile(FileWriter),
}

/// Why a batch was not committed.
#[derive(Debug)]
enum Failure {
    /// The store refused; `conflict` when another writer already holds one
    /// of the batch's sequence numbers.
    Failed {
        source: Arc<dyn std::error::Error + Send + Sync>,
        conflict: bool,
    },
    /// No answer in time: the batch may still be committed.
    TimedOut,
}

impl Failure {
    fn from_sqlx(source: sqlx::Error) -> Self {
        let conflict = matches!(&source, sqlx::Error::Database(db) if db.is_unique_violation());
        Failure::Failed {
            source: Arc::new(source),
            conflict,
        }
    }

    fn from_commit(error: CommitError) -> Self {
        match error {
            CommitError::TimedOut(_) => Failure::TimedOut,
            error => Failure::Failed {
                conflict: error.is_conflict(),
                source: Arc::new(error),
            },
        }
    }
}

/// SQLite's WAL checkpoints, mostly off the commit path. The store's
/// connections never checkpoint on commit (`wal_autocheckpoint = 0`, set in
/// [`store`] and [`super::sqlite`]); instead, at most once per interval,
/// before a batch, the writer starts a `PASSIVE` checkpoint on a pooled
/// connection (its own worker thread) and goes on committing. That
/// checkpoint copies committed frames into the database file and never
/// waits for, or blocks, the writer.
///
/// That alone would let the WAL file grow for as long as appends keep
/// coming: SQLite starts the WAL over only for a write transaction that finds
/// every frame already copied, and the background checkpoint never copies
/// the frames committed while it ran. So once it has finished, the writer
/// runs a short catch-up checkpoint on its own connection between two
/// batches, and the next batch starts the WAL over.
///
/// The catch-up does hold up every exchange waiting on a commit, and its
/// cost is that of the frames committed since the last background pass (it
/// syncs them, copies them and syncs the database file). So the background
/// task repeats its pass while the previous one left more than
/// [`CATCH_UP_FRAMES`] new frames behind, each pass shorter than the last:
/// a single pass of 20–50 ms at 2,000 one-row commits a second left the
/// catch-up 4–12 ms of work; after the repeated passes it takes 0.6–7 ms,
/// most of it the two `fsync`s. And the writer skips the catch-up unless the
/// background task's last pass copied everything it found: after a failed
/// pass, or one that a reader's older snapshot held back, the catch-up
/// would have a backlog of unknown size to copy while exchanges wait. The
/// next round tries again.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    every: Duration,
    last: Instant,
    /// Set while the background checkpoint runs.
    running: Arc<AtomicBool>,
    /// Set by the background checkpoint when it has finished: whether its
    /// last pass copied every frame it found (see [`checkpoint_passes`]).
    complete: Arc<AtomicBool>,
    /// A background checkpoint was started and not yet followed up.
    pub(crate) catch_up: bool,
}

impl Checkpoint {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: Instant::now(),
            running: Arc::new(AtomicBool::new(false)),
            complete: Arc::new(AtomicBool::new(false)),
            catch_up: false,
        }
    }
}

/// The writer task: commits queued appends in batches, on the shared [`Writer`].
#[derive(Debug)]
pub(crate) struct WriterTask {
    /// Queued appends.
    pub(crate) jobs: mpsc::Receiver<Job>,
    /// The writer, shared with the callers that commit their own record.
    pub(crate) writer: Arc<tokio::sync::Mutex<Writer>>,
}

impl WriterTask {
    /// Runs until every sender is dropped and the queue is drained.
    pub(crate) async fn run(mut self) {
        while let Some(first) = self.jobs.recv().await {
            let mut writer = self.writer.lock().await;
            let mut batch = Vec::with_capacity(writer.max_batch.min(64));
            batch.push(first);
            // Let exchanges that are ready to append run first, so that under
            // load their rows share this commit (fewer, larger transactions)
            // without adding a timer's latency when the service is idle.
            if self.jobs.is_empty() {
                tokio::task::yield_now().await;
            }
            while batch.len() < writer.max_batch {
                match self.jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            writer.commit(batch).await;
        }
        tracing::debug!("audit writer stopped: no more senders");
    }
}

impl Writer {
    /// Whether callers may ever commit their own record ([`Writer::commit_one`]):
    /// only on a SQLite file. There a commit's await can be abandoned
    /// safely: a commit on a blocking thread keeps its connection and its
    /// rows until it is done, and the next commit opens another connection;
    /// a row that landed unseen makes the next batch conflict, reload the
    /// head and retry. A PostgreSQL or in-memory batch holds a pooled
    /// connection in [`Writer::conn`] across its awaits, and must not be
    /// abandoned half way.
    pub(crate) fn commits_in_caller(&self) -> bool {
        matches!(self.commits, Commits::SqliteFile(_))
    }

    /// Whether a caller may commit its own record now: where
    /// [`Writer::commits_in_caller`] holds, and nothing has to be awaited
    /// before the record is handed to SQLite (the head is known, no catch-up
    /// checkpoint is due). So a caller that gives up, and drops the commit,
    /// cannot lose its record: either it was never taken from the caller, or
    /// it is being inserted. And only while the service is idle, as the last
    /// batch shows: under load, when the appends waiting on a batch all
    /// finish together, the next one would otherwise find no other append
    /// in progress and commit a row of its own ahead of those arriving with
    /// it, and at 64 clients that made half as many commits again.
    pub(crate) fn ready_for_caller(&self) -> bool {
        self.commits_in_caller()
            && self.last_batch <= 1
            && self.head.is_some()
            && !self.catch_up_due()
    }

    /// Commits one append on the caller's task (see the module docs); the
    /// answer is on the job's reply channel. Only where
    /// [`Writer::ready_for_caller`] holds. A catch-up checkpoint that became
    /// due meanwhile is left to the writer task.
    pub(crate) async fn commit_one(&mut self, job: Job) {
        self.in_caller += 1;
        self.maybe_checkpoint(false).await;
        self.process(vec![job]).await;
    }

    /// Runs a due checkpoint step, then commits `batch` and answers each job.
    async fn commit(&mut self, batch: Vec<Job>) {
        // Before the batch, not after it: if the background checkpoint
        // finished while the writer was idle, this batch is the commit
        // that starts the WAL over, and the catch-up tells the SQLite
        // file writer to make it on a blocking thread (it syncs).
        self.maybe_checkpoint(true).await;
        self.process(batch).await;
    }

    async fn process(&mut self, batch: Vec<Job>) {
        self.last_batch = batch.len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = if matches!(self.commits, Commits::Postgres) {
                self.append_serialised(&batch).await
            } else {
                match self.current_head().await {
                    Ok(head) => self.append_after(head, &batch).await,
                    Err(err) => return answer_all(batch, || err.clone_for_caller()),
                }
            };
            self.commit_latency.observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok((head, hashes)) => {
                    // 4. Only now advance the head and answer Ok.
                    let new_head = Head {
                        seq: head.seq + batch.len() as u64,
                        hash: hashes.last().map_or(head.hash.clone(), |(_, h)| h.clone()),
                    };
                    self.advance(new_head);
                    for (i, (job, (_, hash))) in batch.into_iter().zip(hashes).enumerate() {
                        let receipt = AuditReceipt {
                            seq: head.seq + 1 + i as u64,
                            hash,
                        };
                        // The caller may have given up; the row is committed either way.
                        let _ = job.reply.send(Ok(receipt));
                    }
                    return;
                }
                Err(Failure::Failed { source, conflict }) => {
                    self.head = None;
                    if conflict && attempt < MAX_CONFLICT_ATTEMPTS {
                        tracing::info!(chain_id = %self.chain_id, "another writer extended the audit chain; reloading its head and retrying");
                        continue;
                    }
                    tracing::error!(chain_id = %self.chain_id, store = %self.url, error = %source, rows = batch.len(), "audit batch commit failed; nothing in it was acknowledged");
                    return answer_all(batch, || AuditError::Unavailable {
                        action: "append record",
                        url: self.url.clone(),
                        source: Arc::clone(&source),
                    });
                }
                Err(Failure::TimedOut) => {
                    // The commit may or may not have happened; the reload decides.
                    self.head = None;
                    tracing::error!(chain_id = %self.chain_id, store = %self.url, rows = batch.len(), "audit batch commit timed out; nothing in it was acknowledged");
                    return answer_all(batch, || AuditError::Timeout {
                        action: "append record",
                        url: self.url.clone(),
                        after: self.store_timeout,
                    });
                }
            }
        }
    }

    /// PostgreSQL, 1-3: reads the head under the chain's lock, chains the
    /// batch onto it and commits, in one transaction.
    async fn append_serialised(
        &mut self,
        batch: &[Job],
    ) -> Result<(Head, Vec<(String, String)>), Failure> {
        let records: Vec<&PreparedRecord> = batch.iter().map(|job| &job.record).collect();
        let chain_id = self.chain_id.as_str();
        let (pool, slot) = (&self.pool, &mut self.conn);
        let outcome = tokio::time::timeout(self.store_timeout, async {
            let conn = connection(pool, slot).await?;
            store::append_serialised(conn, chain_id, &records, |head| {
                chain_batch(chain_id, head, batch)
            })
            .await
        })
        .await;
        self.after_statement(matches!(outcome, Ok(Ok(_))));
        match outcome {
            Ok(Ok((head, hashes))) => {
                self.check_not_behind(&head);
                Ok((head, hashes))
            }
            Ok(Err(source)) => Err(Failure::from_sqlx(source)),
            Err(_) => Err(Failure::TimedOut),
        }
    }

    /// SQLite, 2-3: chains the batch onto `head` (where the chain ends) and
    /// commits all of it or nothing.
    async fn append_after(
        &mut self,
        head: Head,
        batch: &[Job],
    ) -> Result<(Head, Vec<(String, String)>), Failure> {
        let hashes = chain_batch(&self.chain_id, &head, batch);
        let rows = store::rows_after(&head, batch.iter().map(|job| &job.record), &hashes);
        let chain_id = self.chain_id.as_str();
        let committed = match &mut self.commits {
            Commits::SqliteFile(file) => file
                .commit(chain_id, &rows, self.store_timeout)
                .await
                .map_err(Failure::from_commit),
            Commits::SqliteMemory | Commits::Postgres => {
                let (pool, slot) = (&self.pool, &mut self.conn);
                let outcome = tokio::time::timeout(self.store_timeout, async {
                    let conn = connection(pool, slot).await?;
                    store::insert_batch(conn, chain_id, &rows).await
                })
                .await;
                self.after_statement(matches!(outcome, Ok(Ok(_))));
                match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(source)) => Err(Failure::from_sqlx(source)),
                    Err(_) => Err(Failure::TimedOut),
                }
            }
        };
        drop(rows);
        committed.map(|()| (head, hashes))
    }

    /// A background checkpoint is running (see [`Checkpoint`]).
    pub(crate) fn checkpoint_running(&self) -> bool {
        self.checkpoint
            .as_ref()
            .is_some_and(|c| c.running.load(Ordering::Acquire))
    }

    /// The background checkpoint has finished and the writer's catch-up is
    /// due (see [`Checkpoint`]).
    fn catch_up_due(&self) -> bool {
        self.checkpoint
            .as_ref()
            .is_some_and(|c| c.catch_up && !c.running.load(Ordering::Acquire))
    }

    /// Runs the catch-up checkpoint once the background one has finished (if
    /// `catch_up`), or starts a background checkpoint if one is due (see
    /// [`Checkpoint`]). Without `catch_up` it never waits.
    async fn maybe_checkpoint(&mut self, catch_up: bool) {
        let Some(checkpoint) = self.checkpoint.as_mut() else {
            return;
        };
        if checkpoint.catch_up {
            if !catch_up || checkpoint.running.load(Ordering::Acquire) {
                return;
            }
            checkpoint.catch_up = false;
            if !checkpoint.complete.load(Ordering::Acquire) {
                // Failed or held back by a reader: no catch-up of unknown
                // size on the commit path. The next round tries again.
                return;
            }
            // Only SQLite files checkpoint.
            let Commits::SqliteFile(file) = &mut self.commits else {
                return;
            };
            // On the writer's connection, while it waits: no commit runs meanwhile.
            match file.catch_up(self.store_timeout).await {
                Ok(done) => {
                    if !done.complete() {
                        tracing::debug!(store = %self.url, ?done, "audit WAL catch-up checkpoint held back by a reader; the WAL starts over after a later one");
                    }
                }
                // The next round retries; meanwhile the WAL only grows.
                Err(CommitError::TimedOut(_)) => {
                    tracing::warn!(store = %self.url, "audit WAL catch-up checkpoint timed out; retrying after the next background checkpoint");
                }
                Err(error) => {
                    tracing::warn!(store = %self.url, %error, "audit WAL catch-up checkpoint failed; retrying after the next background checkpoint");
                }
            }
            return;
        }
        if checkpoint.last.elapsed() < checkpoint.every
            || checkpoint.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        checkpoint.last = Instant::now();
        checkpoint.catch_up = true;
        let pool = self.pool.clone();
        let running = Arc::clone(&checkpoint.running);
        let complete = Arc::clone(&checkpoint.complete);
        let url = self.url.clone();
        let timeout = self.store_timeout;
        tokio::spawn(async move {
            let passes = checkpoint_passes(|| store::checkpoint(&pool));
            let done = match tokio::time::timeout(timeout, passes).await {
                Ok(Ok(done)) => done,
                // The next one retries; meanwhile the WAL only grows.
                Ok(Err(error)) => {
                    tracing::warn!(store = %url, %error, "audit WAL checkpoint failed; retrying after the next batch");
                    false
                }
                Err(_) => {
                    tracing::warn!(store = %url, "audit WAL checkpoint timed out; retrying after the next batch");
                    false
                }
            };
            complete.store(done, Ordering::Release);
            running.store(false, Ordering::Release);
        });
    }

    /// After a statement on [`Writer::conn`]: a failed or abandoned one may
    /// have left the connection mid-transaction or broken, so it is closed
    /// rather than reused; a good one goes back to the pool.
    fn after_statement(&mut self, succeeded: bool) {
        if let Some(mut conn) = self.conn.take() {
            if !succeeded {
                conn.close_on_drop();
            }
        }
    }

    /// The head, reloading it from the database if the last batch failed.
    async fn current_head(&mut self) -> Result<Head, HeadError> {
        if let Some(head) = &self.head {
            return Ok(head.clone());
        }
        let loaded = tokio::time::timeout(
            self.store_timeout,
            store::load_head(&self.pool, &self.chain_id),
        )
        .await;
        match loaded {
            Ok(Ok(head)) => {
                self.check_not_behind(&head);
                self.head = Some(head.clone());
                self.raise_high_water(&head);
                Ok(head)
            }
            Ok(Err(source)) => Err(HeadError::Failed {
                url: self.url.clone(),
                source: Arc::new(source),
            }),
            Err(_) => Err(HeadError::TimedOut {
                url: self.url.clone(),
                after: self.store_timeout,
            }),
        }
    }

    fn advance(&mut self, head: Head) {
        self.raise_high_water(&head);
        self.head = Some(head);
    }

    fn raise_high_water(&self, head: &Head) {
        let mut hw = self.high_water.lock().unwrap_or_else(|e| e.into_inner());
        if head.seq > hw.seq {
            *hw = head.clone();
        }
    }

    /// Rows that this process saw committed can only vanish by tampering or a restore.
    fn check_not_behind(&self, head: &Head) {
        let hw = self.high_water.lock().unwrap_or_else(|e| e.into_inner());
        if head.seq < hw.seq {
            tracing::error!(
                chain_id = %self.chain_id,
                stored_head = head.seq,
                known_head = hw.seq,
                "audit chain {c} ends at #{s}, but this process saw #{k} committed: rows were removed from the end (tampering or a restored backup)",
                c = self.chain_id, s = head.seq, k = hw.seq
            );
        }
    }
}

/// Runs `pass` (one `PASSIVE` checkpoint) until the WAL grew by at most
/// [`CATCH_UP_FRAMES`] during the previous pass, or [`MAX_CHECKPOINT_PASSES`]
/// times, stopping early when a pass could not copy everything it found (a
/// reader's older snapshot, another checkpoint). Returns whether the last
/// pass copied everything: only then is the writer's catch-up short.
async fn checkpoint_passes<F, Fut>(mut pass: F) -> Result<bool, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<store::Checkpointed, sqlx::Error>>,
{
    let mut last = pass().await?;
    let mut passes = 1;
    while last.complete() && passes < MAX_CHECKPOINT_PASSES {
        let next = pass().await?;
        passes += 1;
        // Fewer frames than before: the writer has started the WAL over.
        let grew = next.log.saturating_sub(last.log);
        last = next;
        if grew <= CATCH_UP_FRAMES as i64 {
            break;
        }
    }
    Ok(last.complete())
}

/// The connection in `slot`, or a new one from `pool` put there.
async fn connection<'a>(
    pool: &AnyPool,
    slot: &'a mut Option<PoolConnection<Any>>,
) -> Result<&'a mut AnyConnection, sqlx::Error> {
    let conn = match slot.take() {
        Some(conn) => conn,
        None => pool.acquire().await?,
    };
    Ok(&mut **slot.insert(conn))
}

/// `(prev_hash, hash)` for each job, continuing from `head`.
fn chain_batch(chain_id: &str, head: &Head, batch: &[Job]) -> Vec<(String, String)> {
    let mut prev = head.hash.clone();
    batch
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let hash = row_hash(&prev, chain_id, head.seq + 1 + i as u64, &job.record.json);
            (std::mem::replace(&mut prev, hash.clone()), hash)
        })
        .collect()
}

fn answer_all(batch: Vec<Job>, mut err: impl FnMut() -> AuditError) {
    for job in batch {
        let _ = job.reply.send(Err(err()));
    }
}

/// A failed head reload, clonable so every caller in the batch gets one.
#[derive(Debug)]
enum HeadError {
    Failed {
        url: String,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    TimedOut {
        url: String,
        after: Duration,
    },
}

impl HeadError {
    fn clone_for_caller(&self) -> AuditError {
        match self {
            HeadError::Failed { url, source } => AuditError::Unavailable {
                action: "append record (reload chain head)",
                url: url.clone(),
                source: Arc::clone(source),
            },
            HeadError::TimedOut { url, after } => AuditError::Timeout {
                action: "append record (reload chain head)",
                url: url.clone(),
                after: *after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Runs [`checkpoint_passes`] against a WAL whose frame count at the
    /// start of each pass is `logs[i]` and whose passes each copy it all.
    /// Returns the passes run and whether the last copied everything.
    async fn passes_for(logs: &[i64]) -> (usize, bool) {
        let outcomes: Vec<_> = logs
            .iter()
            .map(|&log| store::Checkpointed {
                busy: false,
                log,
                copied: log,
            })
            .collect();
        run_passes(&outcomes).await
    }

    async fn run_passes(outcomes: &[store::Checkpointed]) -> (usize, bool) {
        let mut next = outcomes.iter().copied();
        let mut calls = 0;
        let complete = checkpoint_passes(|| {
            calls += 1;
            let outcome = next.next().expect("more passes than the test allows");
            async move { Ok(outcome) }
        })
        .await
        .unwrap();
        (calls, complete)
    }

    #[tokio::test]
    async fn background_checkpoints_repeat_until_little_is_left_for_the_catch_up() {
        let max = MAX_CHECKPOINT_PASSES as usize;
        let few = CATCH_UP_FRAMES as i64;
        // The WAL grew by 10 frames during the first pass: one more copies them.
        assert_eq!(passes_for(&[1_000, 1_010]).await, (2, true));
        // 300, then 40: the third pass leaves the catch-up what came during it.
        assert_eq!(passes_for(&[1_000, 1_300, 1_340]).await, (3, true));
        assert_eq!(passes_for(&[1_000, 1_000 + few]).await, (2, true));
        assert_eq!(passes_for(&[1_000, 1_001 + few, 1_100]).await, (3, true));
        // The WAL was started over meanwhile: nothing is left to catch up.
        assert_eq!(passes_for(&[1_000, 200]).await, (2, true));
        // A writer that outpaces the passes does not keep them going for ever.
        assert_eq!(
            passes_for(&[1_000, 2_000, 3_000, 4_000, 5_000, 6_000]).await,
            (max, true)
        );
    }

    #[tokio::test]
    async fn a_held_back_or_busy_pass_ends_the_checkpoint_without_a_catch_up() {
        let done = |log| store::Checkpointed {
            busy: false,
            log,
            copied: log,
        };
        // A reader's older snapshot: only part of the WAL could be copied.
        let held = store::Checkpointed {
            busy: false,
            log: 5_000,
            copied: 1_200,
        };
        assert_eq!(run_passes(&[held]).await, (1, false));
        assert_eq!(run_passes(&[done(1_000), held]).await, (2, false));
        // Another checkpoint was running: SQLite reports busy and -1s.
        let busy = store::Checkpointed {
            busy: true,
            log: -1,
            copied: -1,
        };
        assert_eq!(run_passes(&[busy]).await, (1, false));
        assert_eq!(run_passes(&[done(1_000), busy]).await, (2, false));
        assert!(!busy.complete() && !held.complete() && done(7).complete());
    }

    #[tokio::test]
    async fn a_failed_pass_ends_the_checkpoint() {
        let mut calls = 0;
        let result = checkpoint_passes(|| {
            calls += 1;
            let outcome = if calls == 1 {
                Ok(store::Checkpointed {
                    busy: false,
                    log: 1_000,
                    copied: 1_000,
                })
            } else {
                Err(sqlx::Error::PoolTimedOut)
            };
            async move { outcome }
        })
        .await;
        assert!(matches!(result, Err(sqlx::Error::PoolTimedOut)));
        assert_eq!(calls, 2);
    }
}
