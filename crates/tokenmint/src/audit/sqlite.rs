//! The audit writer's own connection to a SQLite file: small batches commit in place on the task holding the writer, the rest on a blocking thread.
//!
//! Everything else (opening the store, its schema, reads, checkpoints, jti
//! claims) goes through sqlx's pool in [`super::store`]. sqlx runs each
//! SQLite connection on a worker thread of its own and hands every statement
//! over to it, so a commit through it cost two thread wake-ups (there and
//! back) and woke a second tokio worker on the way back: at one client these
//! hand-overs were about a third of tokenmint's CPU per exchange. This
//! connection is synchronous (rusqlite) and owned by the writer.
//!
//! A small batch commits **in place**: on the task holding the writer (the
//! writer task, or an idle append's own, see `writer`), with no wait for
//! a lock (`busy_timeout = 0`). With the WAL and `synchronous = NORMAL` such
//! a commit only appends a few pages to the WAL file, with no `fsync`, so it
//! holds the tokio worker for tens of microseconds. Anything that could take
//! longer goes to tokio's blocking threads, bounded by the store timeout:
//!
//! - a batch of more than [`IN_PLACE_MAX_ROWS`] rows;
//! - the first commit (it opens the connection) and the one after a failure
//!   (it reopens it);
//! - a commit that found the write lock taken (another connection writing,
//!   say a jti claim), which there waits for it;
//! - the first commit after a complete catch-up checkpoint ([`FileWriter::catch_up`]):
//!   it starts the WAL over, which syncs its header and may cut the file
//!   back to its size limit;
//! - every commit, if the file is not in WAL mode (each commit then syncs).
//!
//! The writer's catch-up checkpoint also runs on this connection, on a
//! blocking thread (it syncs). Closing the connection happens on one too: the
//! last connection to close checkpoints the WAL.

use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::PreparedRecord;
use super::store::{Checkpointed, NewRow, WAL_SIZE_LIMIT_BYTES};

/// The largest batch committed in place. Batches are larger only under load,
/// where a blocking thread's hand-over is shared by many rows; a large
/// batch in place would hold a tokio worker for longer than it should.
pub(crate) const IN_PLACE_MAX_ROWS: usize = 8;

/// One row; the SQL is the same as the pool's (`store::insert_sql(1)`).
const INSERT: &str = "INSERT INTO audit_log (chain_id, seq, time_us, broker, decision, record, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    /// SQLite refused (table gone, disk full, read-only file, lock held past the timeout, ...).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The connection was inside a transaction before or after the commit
    /// (a rollback that failed): its rows may not be committed, so it is
    /// reported as a failure and the connection closed.
    #[error("the audit writer's SQLite connection was left inside a transaction; it is reopened")]
    InTransaction,
    /// The blocking thread did not answer in time; the commit may still land.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The blocking thread stopped without an answer (it panicked, or the
    /// runtime is shutting down).
    #[error("the commit thread stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

impl CommitError {
    /// Another writer already holds one of the batch's `(chain_id, seq)` keys.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(
            self,
            CommitError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation
                    && (e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
        )
    }
}

/// The writer's connection to one SQLite file, opened on first use and
/// reopened after a failure.
#[derive(Debug)]
pub(crate) struct FileWriter {
    /// The database file (created, with its schema, when the store was opened).
    path: PathBuf,
    /// `None` before the first commit and after a failed one.
    conn: Option<Connection>,
    /// The open file is in WAL mode, so a small commit may run in place.
    wal: bool,
    /// The next commit starts the WAL over: it runs on a blocking thread.
    restart: bool,
    /// Commits handed to a blocking thread so far.
    handed_over: u64,
}

impl FileWriter {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: None,
            wal: false,
            restart: false,
            handed_over: 0,
        }
    }

    /// Runs a `PASSIVE` checkpoint on this connection, on a blocking thread,
    /// within `limit` (the writer's catch-up: see `writer::Checkpoint`). If it
    /// copied the whole WAL, the next commit starts the WAL over, and so is
    /// made on a blocking thread too.
    pub(crate) async fn catch_up(&mut self, limit: Duration) -> Result<Checkpointed, CommitError> {
        let done = self
            .off_the_runtime(limit, |conn| {
                Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", (), |row| {
                    Ok(Checkpointed {
                        busy: row.get::<_, i64>(0)? != 0,
                        log: row.get(1)?,
                        copied: row.get(2)?,
                    })
                })?)
            })
            .await?;
        self.restart = self.restart || done.complete();
        Ok(done)
    }

    /// Commits `rows` atomically: all of them, or none. In place when the
    /// batch is small and the connection is open and the write lock free;
    /// otherwise on a blocking thread, within `limit` (see the module docs).
    /// After an error the connection is closed and the next commit reopens it.
    pub(crate) async fn commit(
        &mut self,
        chain_id: &str,
        rows: &[NewRow<'_>],
        limit: Duration,
    ) -> Result<(), CommitError> {
        if rows.len() <= IN_PLACE_MAX_ROWS && self.wal && !self.restart {
            if let Some(conn) = self.conn.as_mut() {
                match insert(conn, chain_id, rows) {
                    Ok(()) => return Ok(()),
                    // Another connection is writing: wait for it, off the runtime.
                    Err(CommitError::Sqlite(e)) if is_busy(&e) => {}
                    Err(e) => {
                        self.close();
                        return Err(e);
                    }
                }
            }
        }
        self.handed_over += 1;
        self.restart = false;
        let chain_id = chain_id.to_owned();
        let rows: Vec<OwnedRow> = rows.iter().map(OwnedRow::from).collect();
        self.off_the_runtime(limit, move |conn| {
            let borrowed: Vec<NewRow<'_>> = rows.iter().map(OwnedRow::borrow).collect();
            insert(conn, &chain_id, &borrowed)
        })
        .await
    }

    /// Runs `work` on the connection (opening it first if need be) on a
    /// blocking thread, waiting for the write lock there, and answers within
    /// `limit`. The connection comes back if `work` succeeded; after an
    /// error it is closed on that thread, and after a timeout the thread
    /// keeps it until it is done.
    async fn off_the_runtime<T: Send + 'static>(
        &mut self,
        limit: Duration,
        work: impl FnOnce(&mut Connection) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        let conn = self.conn.take();
        let path = self.path.clone();
        let wal = self.wal;
        let task = tokio::task::spawn_blocking(move || {
            let (mut conn, wal) = match conn {
                Some(conn) => (conn, wal),
                None => open(&path)?,
            };
            // Wait for the write lock. The caller's answer comes from its
            // own timer, at `limit`; this thread gives up a little later.
            conn.busy_timeout(limit.saturating_mul(2).min(MAX_LOCK_WAIT))?;
            let out = work(&mut conn)?;
            conn.busy_timeout(Duration::ZERO)?;
            Ok::<_, CommitError>((conn, wal, out))
        });
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(Ok((conn, wal, out)))) => {
                // Not in WAL mode: `store::connect` warned when it opened the store.
                self.wal = wal;
                self.conn = Some(conn);
                Ok(out)
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(CommitError::TimedOut(limit)),
        }
    }

    /// Closes the connection on a blocking thread: if it is the last one
    /// open on the file, SQLite checkpoints the WAL as it closes.
    fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(tokio::task::spawn_blocking(move || drop(conn)));
        }
    }
}

/// Longest a blocking commit waits for the write lock (rusqlite's
/// `busy_timeout` takes at most `i32::MAX` ms).
const MAX_LOCK_WAIT: Duration = Duration::from_secs(3600);

/// Opens `path` for writing, never creating it, with the settings of the
/// pool's read-write connections (`store::open_pool`), and says whether the
/// file is in WAL mode (set, persistently, when the store was opened; a file
/// system without the shared memory WAL needs refuses it).
fn open(path: &Path) -> Result<(Connection, bool), rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES as i64)?;
    conn.busy_timeout(Duration::ZERO)?;
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    Ok((conn, mode.eq_ignore_ascii_case("wal")))
}

/// Inserts `rows` in one transaction (a single row needs none: one statement
/// is atomic on its own).
fn insert(conn: &mut Connection, chain_id: &str, rows: &[NewRow<'_>]) -> Result<(), CommitError> {
    // A connection left inside a transaction would take these rows into it
    // and return Ok without committing them.
    if !conn.is_autocommit() {
        return Err(CommitError::InTransaction);
    }
    if let [row] = rows {
        insert_row(conn, chain_id, row)?;
    } else {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for row in rows {
            insert_row(&tx, chain_id, row)?;
        }
        tx.commit()?;
    }
    if !conn.is_autocommit() {
        return Err(CommitError::InTransaction);
    }
    Ok(())
}

fn insert_row(conn: &Connection, chain_id: &str, row: &NewRow<'_>) -> Result<(), rusqlite::Error> {
    let seq =
        i64::try_from(row.seq).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(INSERT)?.execute((
        chain_id,
        seq,
        row.record.time_us,
        row.record.broker.as_str(),
        row.record.decision.as_str(),
        row.record.json.as_str(),
        row.prev_hash,
        row.hash,
    ))?;
    Ok(())
}

/// The write lock is taken (`SQLITE_BUSY`; `SQLITE_LOCKED` cannot happen
/// without shared cache).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DatabaseBusy)
}

/// A row's values, owned, for a blocking thread.
#[derive(Debug)]
struct OwnedRow {
    seq: u64,
    prev_hash: String,
    hash: String,
    record: PreparedRecord,
}

impl OwnedRow {
    fn from(row: &NewRow<'_>) -> Self {
        Self {
            seq: row.seq,
            prev_hash: row.prev_hash.to_owned(),
            hash: row.hash.to_owned(),
            record: row.record.clone(),
        }
    }

    fn borrow(&self) -> NewRow<'_> {
        NewRow {
            seq: self.seq,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            record: &self.record,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::audit::record::{prepare, tests::sample, Decision};
    use crate::audit::AuditLog;
    use std::time::Instant;

    /// A SQLite store with the schema (made by opening it), and its path.
    struct Store {
        path: PathBuf,
        _log: AuditLog,
        _dir: tempfile::TempDir,
    }

    async fn store() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(&format!("sqlite://{}", path.display()), "main")
            .await
            .unwrap();
        Store {
            path,
            _log: log,
            _dir: dir,
        }
    }

    /// A store, a writer on it that has committed row 1 (opening its
    /// connection, on a blocking thread), and `n` records to write next.
    async fn started(n: usize) -> (Store, FileWriter, Vec<PreparedRecord>) {
        let store = store().await;
        let mut file = FileWriter::new(store.path.clone());
        let first = records(1);
        file.commit("main", &rows(&first, 1), LIMIT).await.unwrap();
        assert_eq!(file.handed_over, 1);
        (store, file, records(n))
    }

    fn records(n: usize) -> Vec<PreparedRecord> {
        (0..n)
            .map(|_| prepare(sample("b", Decision::Deny)).unwrap())
            .collect()
    }

    /// Rows `first..` of chain "main" (the hashes are not checked here).
    fn rows(records: &[PreparedRecord], first: u64) -> Vec<NewRow<'_>> {
        records
            .iter()
            .enumerate()
            .map(|(i, record)| NewRow {
                seq: first + i as u64,
                prev_hash: "prev",
                hash: "hash",
                record,
            })
            .collect()
    }

    fn stored(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM audit_log", (), |row| row.get(0))
            .unwrap()
    }

    const LIMIT: Duration = Duration::from_secs(5);

    /// Takes the write lock on another connection and holds it until the
    /// returned sender is used (or dropped); returns once the lock is taken.
    fn hold_write_lock(path: &Path) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let path = path.to_owned();
        let holder = std::thread::spawn(move || {
            let conn = Connection::open(path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.recv();
            conn.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        (release_tx, holder)
    }

    #[tokio::test]
    async fn small_batches_commit_in_place_on_the_kept_connection() {
        let (store, mut file, recs) = started(IN_PLACE_MAX_ROWS).await;
        assert_eq!(file.handed_over, 1);
        assert!(file.conn.is_some(), "the connection is kept");
        // The next ones run in place.
        file.commit("main", &rows(&recs[..1], 2), LIMIT)
            .await
            .unwrap();
        file.commit("main", &rows(&recs, 3), LIMIT).await.unwrap();
        assert_eq!(
            file.handed_over, 1,
            "a small batch went to a blocking thread"
        );
        assert_eq!(stored(&store.path), 2 + IN_PLACE_MAX_ROWS as i64);
    }

    /// A large batch would hold a tokio worker too long: it goes to a blocking thread.
    #[tokio::test]
    async fn large_batches_commit_on_a_blocking_thread() {
        let (store, mut file, recs) = started(IN_PLACE_MAX_ROWS + 1).await;
        file.commit("main", &rows(&recs, 2), LIMIT).await.unwrap();
        assert_eq!(file.handed_over, 2, "a large batch ran in place");
        assert!(file.conn.is_some(), "the connection comes back");
        assert_eq!(stored(&store.path), 2 + IN_PLACE_MAX_ROWS as i64);
    }

    /// A blocking commit that outlives the limit answers `TimedOut` and
    /// keeps its connection; it may still land, and the next commit opens a
    /// connection of its own.
    #[tokio::test]
    async fn a_late_commit_times_out_and_the_next_one_reopens() {
        let (store, mut file, recs) = started(2).await;
        let (release, holder) = hold_write_lock(&store.path);
        // The caller gives up at 500 ms; the thread waits for the lock until
        // 1 s, and gets it soon after the release below.
        let err = file
            .commit("main", &rows(&recs[1..], 2), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(matches!(err, CommitError::TimedOut(_)), "{err:?}");
        assert!(file.conn.is_none());
        release.send(()).unwrap();
        holder.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stored(&store.path) < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stored(&store.path), 2, "the late commit landed");
        file.commit("main", &rows(&recs[..1], 3), LIMIT)
            .await
            .unwrap();
        assert_eq!(stored(&store.path), 3);
    }

    /// While another connection holds the write lock, the commit waits for
    /// it on a blocking thread, never on the runtime: on a single-threaded
    /// runtime another task keeps running meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn a_taken_write_lock_is_waited_for_off_the_runtime() {
        let (store, mut file, recs) = started(2).await;

        let (release, holder) = hold_write_lock(&store.path);
        // Released by a task on this runtime: if the commit blocked the
        // runtime while waiting, it would wait out its lock timeout and fail.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = release.send(());
        });
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = std::sync::Arc::clone(&ticks);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let started = Instant::now();
        file.commit("main", &rows(&recs[1..], 2), LIMIT)
            .await
            .unwrap();
        let waited = started.elapsed();
        ticker.abort();
        holder.join().unwrap();
        assert!(
            waited >= Duration::from_millis(200),
            "{waited:?}: the lock was not waited for"
        );
        let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            ticks >= 10,
            "only {ticks} ticks in {waited:?}: the commit blocked the runtime"
        );
        assert_eq!(stored(&store.path), 2);
    }

    #[tokio::test]
    async fn a_taken_sequence_number_is_a_conflict_and_other_failures_are_not() {
        let (store, mut file, recs) = started(1).await;
        let err = file
            .commit("main", &rows(&recs, 1), LIMIT)
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{err:?}");
        assert!(file.conn.is_none(), "a failed commit closes the connection");

        Connection::open(&store.path)
            .unwrap()
            .execute_batch("ALTER TABLE audit_log RENAME TO away")
            .unwrap();
        let err = file
            .commit("main", &rows(&recs, 2), LIMIT)
            .await
            .unwrap_err();
        assert!(!err.is_conflict(), "{err:?}");
        assert!(err.to_string().contains("audit_log"), "{err}");
    }

    /// The commit that starts the WAL over syncs it: it goes to a blocking thread.
    #[tokio::test]
    async fn the_commit_after_a_complete_checkpoint_runs_on_a_blocking_thread() {
        let (_store, mut file, recs) = started(1).await;
        let done = file.catch_up(LIMIT).await.unwrap();
        assert!(done.complete(), "{done:?}");
        file.commit("main", &rows(&recs, 2), LIMIT).await.unwrap();
        assert_eq!(file.handed_over, 2, "the restarting commit ran in place");
        file.commit("main", &rows(&recs, 3), LIMIT).await.unwrap();
        assert_eq!(
            file.handed_over, 2,
            "only the one commit after it is handed over"
        );
    }

    /// Outside WAL mode every commit syncs: none runs in place.
    #[tokio::test]
    async fn outside_wal_mode_no_commit_runs_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let conn = Connection::open(&path).unwrap();
        for statement in crate::audit::store::SCHEMA {
            conn.execute_batch(statement).unwrap();
        }
        drop(conn);
        let mut file = FileWriter::new(path.clone());
        let recs = records(1);
        for seq in 1..=3 {
            file.commit("main", &rows(&recs, seq), LIMIT).await.unwrap();
        }
        assert_eq!(file.handed_over, 3);
        assert_eq!(stored(&path), 3);
    }

    /// A connection left inside a transaction would take a row into it and
    /// answer Ok without committing it: that is a failure, and it reopens.
    #[tokio::test]
    async fn a_connection_left_in_a_transaction_fails_the_commit() {
        let (store, mut file, recs) = started(1).await;
        file.conn.as_ref().unwrap().execute_batch("BEGIN").unwrap();
        let err = file
            .commit("main", &rows(&recs, 2), LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, CommitError::InTransaction), "{err:?}");
        assert!(file.conn.is_none(), "the connection is closed");
        assert_eq!(stored(&store.path), 1);
        file.commit("main", &rows(&recs, 2), LIMIT).await.unwrap();
        assert_eq!(stored(&store.path), 2);
    }

    /// A store timeout too long for SQLite's busy timeout does not panic.
    #[tokio::test]
    async fn a_huge_store_timeout_is_clamped() {
        let store = store().await;
        let mut file = FileWriter::new(store.path.clone());
        let recs = records(1);
        file.commit("main", &rows(&recs, 1), Duration::from_secs(u64::MAX / 4))
            .await
            .unwrap();
        assert_eq!(stored(&store.path), 1);
    }
}
