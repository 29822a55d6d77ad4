//! Tests of the audit log against real stores: SQLite always, PostgreSQL when `TOKENMINT_TEST_DATABASE_URL` is set.
//!
//! Each scenario is one async function taking a [`TestDb`]; the `scenario!`
//! macro runs it once per backend. PostgreSQL tests isolate themselves in a
//! fresh schema (selected through the URL's `options=-csearch_path=...`).

use super::record::tests::sample;
use super::*;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use std::time::{Duration, Instant};
use time::macros::datetime;

/// A store for one test.
struct TestDb {
    /// URL the code under test opens.
    url: String,
    /// Which backend, for the few tamper steps whose SQL differs.
    postgres: bool,
    /// Keeps the SQLite file alive.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: admin pool and schema name, for cleanup.
    pg: Option<(AnyPool, String)>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            postgres: false,
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var("TOKENMINT_TEST_DATABASE_URL") else {
            eprintln!("skipping PostgreSQL audit test: set TOKENMINT_TEST_DATABASE_URL=postgres://... to run it");
            return None;
        };
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap();
        let schema = format!("tm_audit_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options=-csearch_path%3D{schema}"),
            postgres: true,
            _dir: None,
            pg: Some((admin, schema)),
        })
    }

    /// A separate pool on the same store, playing the attacker or the failing disk.
    async fn raw(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap()
    }

    async fn open(&self) -> AuditLog {
        AuditLog::open(&self.url, DEFAULT_CHAIN).await.unwrap()
    }

    /// [`TestDb::open`] with no background checkpoint within the test.
    async fn open_without_checkpoints(&self) -> AuditLog {
        let options = AuditOptions {
            checkpoint_interval: Duration::from_secs(3600),
            ..AuditOptions::default()
        };
        AuditLog::open_with(&self.url, DEFAULT_CHAIN, options)
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        if let Some((admin, schema)) = &self.pg {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(admin)
                .await
                .unwrap();
        }
    }
}

macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::$name(&db).await;
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(db) = super::TestDb::postgres().await {
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            }
        }
    };
}

/// Record `i` of a test: one second apart, alternating brokers and decisions.
fn rec(i: u32, broker: &str, decision: Decision) -> AuditRecord {
    let mut r = sample(broker, decision);
    r.time = datetime!(2025-03-01 00:00:00 UTC) + time::Duration::seconds(i64::from(i));
    r.request_id = format!("req-{i}");
    r
}

async fn append_n(log: &AuditLog, n: u32) -> Vec<AuditReceipt> {
    let mut out = Vec::new();
    for i in 1..=n {
        let d = if i % 2 == 0 {
            Decision::Deny
        } else {
            Decision::Allow
        };
        out.push(log.append(rec(i, "deploy", d)).await.unwrap());
    }
    out
}

fn kinds(report: &VerifyReport) -> Vec<(u64, ProblemKind)> {
    report.problems.iter().map(|p| (p.seq, p.kind)).collect()
}

// ---------------------------------------------------------------------------

scenario!(append_and_verify_clean);
async fn append_and_verify_clean(db: &TestDb) {
    let log = db.open().await;
    log.ping().await.unwrap();
    let receipts = append_n(&log, 10).await;
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );

    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        report.chains,
        vec![ChainSummary {
            chain_id: "main".into(),
            rows: 10,
            head_seq: 10,
            head_hash: receipts[9].hash.clone(),
            pruned_through: 0,
        }]
    );

    // Row 1 hangs off the genesis hash, and each hash is as documented.
    let raw = db.raw().await;
    let rows = sqlx::query(
        "SELECT seq, prev_hash, hash, record FROM audit_log WHERE chain_id = 'main' ORDER BY seq",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    let mut prev = GENESIS_HASH.to_owned();
    for row in rows {
        let seq: i64 = row.get("seq");
        let json: String = row.get("record");
        assert_eq!(row.get::<String, _>("prev_hash"), prev);
        let hash = chain::row_hash(&prev, "main", seq as u64, &json);
        assert_eq!(row.get::<String, _>("hash"), hash);
        prev = hash;
    }
}

scenario!(edited_record_json_is_named);
async fn edited_record_json_is_named(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 5).await;
    let raw = db.raw().await;
    let row = sqlx::query("SELECT record FROM audit_log WHERE chain_id = 'main' AND seq = 3")
        .fetch_one(&raw)
        .await
        .unwrap();
    let json: String = row.get(0);
    let edited = json.replace("\"latency_us\":1234", "\"latency_us\":1");
    assert_ne!(json, edited);
    sqlx::query("UPDATE audit_log SET record = $1 WHERE chain_id = 'main' AND seq = 3")
        .bind(edited)
        .execute(&raw)
        .await
        .unwrap();

    let report = log.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(3, ProblemKind::Edited)],
        "{:?}",
        report.problems
    );
    assert!(
        report.problems[0]
            .message
            .starts_with("row main#3 was edited"),
        "{}",
        report.problems[0]
    );
}

scenario!(edited_broker_column_is_named);
async fn edited_broker_column_is_named(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 5).await;
    let raw = db.raw().await;
    sqlx::query("UPDATE audit_log SET broker = 'innocent' WHERE chain_id = 'main' AND seq = 2")
        .execute(&raw)
        .await
        .unwrap();

    let report = log.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(2, ProblemKind::ColumnMismatch)],
        "{:?}",
        report.problems
    );
    let msg = &report.problems[0].message;
    assert!(
        msg.contains("row main#2 was edited") && msg.contains("column broker"),
        "{msg}"
    );

    // `list` reads the hashed JSON: the edited column neither renames the record nor lets it match.
    let all = log.list(&ListFilter::default()).await.unwrap();
    assert!(all.iter().all(|r| r.record.broker == "deploy"));
    let innocent = ListFilter {
        broker: Some("innocent".into()),
        ..ListFilter::default()
    };
    assert!(log.list(&innocent).await.unwrap().is_empty());
}

scenario!(edited_decision_and_time_columns_are_named);
async fn edited_decision_and_time_columns_are_named(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 4).await;
    let raw = db.raw().await;
    sqlx::query("UPDATE audit_log SET decision = 'allow' WHERE chain_id = 'main' AND seq = 2")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET time_us = time_us + 1 WHERE chain_id = 'main' AND seq = 4")
        .execute(&raw)
        .await
        .unwrap();
    let report = log.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![
            (2, ProblemKind::ColumnMismatch),
            (4, ProblemKind::ColumnMismatch)
        ],
        "{:?}",
        report.problems
    );
    assert!(report.problems[0].message.contains("column decision"));
    assert!(report.problems[1].message.contains("column time_us"));
}

scenario!(deleted_middle_row_is_named);
async fn deleted_middle_row_is_named(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 20).await;
    let raw = db.raw().await;
    // Row 8 sits across the tests' 7-row verify page boundary.
    sqlx::query("DELETE FROM audit_log WHERE chain_id = 'main' AND seq = 8")
        .execute(&raw)
        .await
        .unwrap();
    let report = log.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(8, ProblemKind::Missing), (9, ProblemKind::BrokenLink)],
        "{:?}",
        report.problems
    );
    assert_eq!(
        report.problems[0].message,
        "row main#8 is missing (deleted)"
    );
    assert!(report.problems[1]
        .message
        .starts_with("row main#9 does not follow main#7"));
    assert_eq!(report.chains[0].rows, 19);
}

scenario!(swapped_rows_are_named);
async fn swapped_rows_are_named(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 5).await;
    let raw = db.raw().await;
    for sql in [
        "UPDATE audit_log SET seq = 1000 WHERE chain_id = 'main' AND seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE chain_id = 'main' AND seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE chain_id = 'main' AND seq = 1000",
    ] {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    let report = log.verify().await.unwrap();
    let k = kinds(&report);
    assert!(k.contains(&(2, ProblemKind::Edited)), "{k:?}");
    assert!(k.contains(&(3, ProblemKind::Edited)), "{k:?}");
    assert!(k.contains(&(2, ProblemKind::BrokenLink)), "{k:?}");
    assert!(k.contains(&(3, ProblemKind::BrokenLink)), "{k:?}");
    assert!(k.iter().all(|(seq, _)| (2..=4).contains(seq)), "{k:?}");
    assert!(report
        .problems
        .iter()
        .any(|p| p.message.starts_with("row main#3 does not follow main#2")));
}

scenario!(truncated_tail_is_reported_by_this_process);
async fn truncated_tail_is_reported_by_this_process(db: &TestDb) {
    let log = db.open().await;
    let receipts = append_n(&log, 5).await;
    let raw = db.raw().await;
    sqlx::query("DELETE FROM audit_log WHERE chain_id = 'main' AND seq >= 4")
        .execute(&raw)
        .await
        .unwrap();
    let report = log.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(4, ProblemKind::Truncated)],
        "{:?}",
        report.problems
    );
    assert!(report.problems[0]
        .message
        .starts_with("rows main#4..main#5 are missing from the end"));
    // A fresh process cannot tell; it relies on the anchored head instead.
    let fresh = db.open().await;
    let report = fresh.verify().await.unwrap();
    assert!(report.is_clean());
    assert_eq!(report.chains[0].head_seq, 3);
    assert_ne!(report.chains[0].head_hash, receipts[4].hash);
}

scenario!(concurrent_appends_form_one_chain);
async fn concurrent_appends_form_one_chain(db: &TestDb) {
    let log = db.open().await;
    let mut tasks = Vec::new();
    for t in 0..50u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..10u32 {
                let broker = format!("b{}", t % 5);
                receipts.push(
                    log.append(rec(t * 10 + i, &broker, Decision::Deny))
                        .await
                        .unwrap(),
                );
            }
            receipts
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap().into_iter().map(|r| r.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 500);
    assert_eq!(report.chains[0].head_seq, 500);
}

scenario!(reopening_continues_the_chain);
async fn reopening_continues_the_chain(db: &TestDb) {
    let first = db.open().await;
    let before = append_n(&first, 3).await;
    drop(first);
    let second = db.open().await;
    let next = second
        .append(rec(4, "deploy", Decision::Allow))
        .await
        .unwrap();
    assert_eq!(next.seq, 4);
    let report = second.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].head_hash, next.hash);
    assert_ne!(next.hash, before[2].hash);

    // Another chain in the same store is independent and also verified.
    let other = AuditLog::open(&db.url, "eu-1").await.unwrap();
    assert_eq!(
        other
            .append(rec(5, "deploy", Decision::Deny))
            .await
            .unwrap()
            .seq,
        1
    );
    let report = other.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let ids: Vec<_> = report
        .chains
        .iter()
        .map(|c| (c.chain_id.as_str(), c.rows))
        .collect();
    assert_eq!(ids, vec![("eu-1", 1), ("main", 4)]);
}

scenario!(two_writers_on_one_chain_do_not_fork_it);
async fn two_writers_on_one_chain_do_not_fork_it(db: &TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    // Each writer's head is stale every time: it must reload and retry.
    for i in 0..6 {
        let log = if i % 2 == 0 { &a } else { &b };
        let receipt = log.append(rec(i, "deploy", Decision::Deny)).await.unwrap();
        assert_eq!(receipt.seq, u64::from(i) + 1);
    }
    let report = a.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 6);
}

scenario!(list_filters_and_reads_the_hashed_json);
async fn list_filters_and_reads_the_hashed_json(db: &TestDb) {
    let log = db.open().await;
    let mut originals = Vec::new();
    for i in 1..=12u32 {
        let broker = if i % 3 == 0 { "release" } else { "deploy" };
        let decision = match i % 4 {
            0 => Decision::Allow,
            1 | 2 => Decision::Deny,
            _ => Decision::Error,
        };
        let r = rec(i, broker, decision);
        log.append(r.clone()).await.unwrap();
        originals.push(r);
    }
    let all = log.list(&ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 12);
    // Newest first; records come back exactly as appended (times were already UTC, whole seconds).
    assert_eq!(all[0].record, originals[11]);
    assert_eq!(all[11].record, originals[0]);
    assert_eq!((all[0].chain_id.as_str(), all[0].seq), ("main", 12));

    let release = ListFilter {
        broker: Some("release".into()),
        ..ListFilter::default()
    };
    let got: Vec<_> = log
        .list(&release)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(got, vec![12, 9, 6, 3]);

    let allow = ListFilter {
        decision: Some(Decision::Allow),
        ..ListFilter::default()
    };
    let got = log.list(&allow).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![12, 8, 4]
    );
    assert!(got.iter().all(|r| r.record.grant.is_some()));

    let since = ListFilter {
        since: Some(datetime!(2025-03-01 02:00:10 +02:00)),
        ..ListFilter::default()
    };
    let got: Vec<_> = log
        .list(&since)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(got, vec![12, 11, 10]);

    let combined = ListFilter {
        broker: Some("deploy".into()),
        decision: Some(Decision::Deny),
        since: Some(datetime!(2025-03-01 00:00:02 UTC)),
        limit: Some(2),
    };
    let got: Vec<_> = log
        .list(&combined)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(got, vec![10, 5]);

    // The record comes from the hashed JSON, not the plain columns.
    let raw = db.raw().await;
    sqlx::query("UPDATE audit_log SET broker = 'release' WHERE chain_id = 'main' AND seq = 1")
        .execute(&raw)
        .await
        .unwrap();
    let all = log.list(&ListFilter::default()).await.unwrap();
    assert_eq!(all[11].record.broker, "deploy");
}

/// Makes every write fail, and undoes it.
async fn break_store(db: &TestDb, raw: &AnyPool) {
    let sql = if db.postgres {
        // A cached PostgreSQL statement keeps working across a rename, so fail the insert instead.
        "ALTER TABLE audit_log ADD CONSTRAINT tm_test_broken CHECK (seq < 0) NOT VALID"
    } else {
        "ALTER TABLE audit_log RENAME TO audit_log_away"
    };
    sqlx::query(sql).execute(raw).await.unwrap();
}

async fn restore_store(db: &TestDb, raw: &AnyPool) {
    let sql = if db.postgres {
        "ALTER TABLE audit_log DROP CONSTRAINT tm_test_broken"
    } else {
        "ALTER TABLE audit_log_away RENAME TO audit_log"
    };
    sqlx::query(sql).execute(raw).await.unwrap();
}

scenario!(store_failure_fails_appends_and_recovers);
async fn store_failure_fails_appends_and_recovers(db: &TestDb) {
    let options = AuditOptions {
        append_timeout: Duration::from_secs(2),
        ..AuditOptions::default()
    };
    let log = AuditLog::open_with(&db.url, DEFAULT_CHAIN, options)
        .await
        .unwrap();
    let mut acked = append_n(&log, 3).await;
    let raw = db.raw().await;

    break_store(db, &raw).await;
    let started = Instant::now();
    let results = futures_join(&log, 10, 100).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(results.iter().all(Result::is_err), "{results:?}");
    let err = results.into_iter().find_map(Result::err).unwrap();
    assert!(matches!(err, AuditError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("append record"), "{err}");
    if !db.postgres {
        // The table is gone; PostgreSQL's blocked inserts still leave it readable.
        assert!(log.ping().await.is_err());
    }

    restore_store(db, &raw).await;
    log.ping().await.unwrap();
    acked.push(
        log.append(rec(200, "deploy", Decision::Allow))
            .await
            .unwrap(),
    );
    assert_eq!(acked.last().unwrap().seq, 4);
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 4);
    assert_acked_rows_are_stored(&raw, &acked).await;
}

scenario!(stuck_store_times_out_and_recovers);
async fn stuck_store_times_out_and_recovers(db: &TestDb) {
    let options = AuditOptions {
        append_timeout: Duration::from_millis(800),
        ..AuditOptions::default()
    };
    let log = AuditLog::open_with(&db.url, DEFAULT_CHAIN, options)
        .await
        .unwrap();
    let mut acked = append_n(&log, 3).await;
    let raw = db.raw().await;

    // Another connection holds the write lock.
    let mut locker = raw.acquire().await.unwrap();
    let lock: &[&str] = if db.postgres {
        &["BEGIN", "LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE"]
    } else {
        &["BEGIN IMMEDIATE"]
    };
    for sql in lock {
        sqlx::query(sql).execute(&mut *locker).await.unwrap();
    }
    let started = Instant::now();
    let results = futures_join(&log, 5, 300).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(AuditError::Timeout { .. }))),
        "{results:?}"
    );

    sqlx::query("ROLLBACK").execute(&mut *locker).await.unwrap();
    drop(locker);

    // Timed-out records may or may not have landed; either way the chain is whole.
    let deadline = Instant::now() + Duration::from_secs(10);
    let receipt = loop {
        match log.append(rec(400, "deploy", Decision::Allow)).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("still recovering: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    };
    acked.push(receipt);
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_acked_rows_are_stored(&raw, &acked).await;
}

/// Runs `n` appends at once and returns their results.
async fn futures_join(log: &AuditLog, n: u32, first: u32) -> Vec<Result<AuditReceipt, AuditError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(rec(first + i, "deploy", Decision::Deny)).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Every acknowledged append is in the store, at its seq, with its hash.
async fn assert_acked_rows_are_stored(raw: &AnyPool, acked: &[AuditReceipt]) {
    for r in acked {
        let row = sqlx::query("SELECT hash FROM audit_log WHERE chain_id = 'main' AND seq = $1")
            .bind(r.seq as i64)
            .fetch_one(raw)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>(0), r.hash);
    }
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
    assert!(path.exists());
    let raw = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
    let version: i64 = sqlx::query("SELECT version FROM audit_schema")
        .fetch_one(&raw)
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, store::SCHEMA_VERSION);
    // synchronous=NORMAL (1) on the writer's connections.
    let sync: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&log.inner.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(sync, 1);
    log.append(rec(1, "deploy", Decision::Deny)).await.unwrap();
}

/// Set for the child process of `acked_rows_survive_kill_9`.
const CRASH_CHILD_URL: &str = "TOKENMINT_AUDIT_CRASH_CHILD_URL";

/// Child side of `acked_rows_survive_kill_9`: appends from several tasks and
/// prints `ACK seq hash` after each acknowledged append, until killed. Does
/// nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_child() {
    let Ok(url) = std::env::var(CRASH_CHILD_URL) else {
        return;
    };
    let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                use std::io::Write;
                for i in 0..5000u32 {
                    let r = log
                        .append(rec(t * 5000 + i, "deploy", Decision::Allow))
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "ACK {} {}", r.seq, r.hash)
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn acked_rows_survive_kill_9() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "audit::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_URL, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (seq, hash) = rest.split_once(' ').unwrap();
            acked.push(AuditReceipt {
                seq: seq.parse().unwrap(),
                hash: hash.to_owned(),
            });
            if acked.len() >= 400 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush, no clean shutdown.
    child.wait().unwrap();
    assert!(
        acked.len() >= 400,
        "child acknowledged only {} appends",
        acked.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
        let report = log.verify().await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert!(report.chains[0].head_seq >= 400);
        let raw = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        acked.sort_by_key(|r| r.seq);
        assert_acked_rows_are_stored(&raw, &acked).await;
        // And the chain goes on from where the killed process stopped.
        let next = log
            .append(rec(99_999, "deploy", Decision::Deny))
            .await
            .unwrap();
        assert_eq!(next.seq, report.chains[0].head_seq + 1);
    });
}

async fn read_only_handle_verifies_and_lists(db: &TestDb) {
    let log = db.open().await;
    let receipts = append_n(&log, 9).await;
    let reader = AuditLog::open_read_only(&db.url).await.unwrap();
    let report = reader.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        report.chains,
        vec![ChainSummary {
            chain_id: "main".into(),
            rows: 9,
            head_seq: 9,
            head_hash: receipts[8].hash.clone(),
            pruned_through: 0,
        }]
    );
    let denies = reader
        .list(&ListFilter {
            decision: Some(Decision::Deny),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        denies.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![8, 6, 4, 2]
    );

    // Tampering is seen through the read-only handle too.
    let raw = db.raw().await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(&raw)
        .await
        .unwrap();
    let report = reader.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(5, ProblemKind::Missing), (6, ProblemKind::BrokenLink)]
    );

    // The read-only handle cannot write, even directly.
    assert!(sqlx::query("DELETE FROM audit_log")
        .execute(&reader.pool)
        .await
        .is_err());
    assert_eq!(reader.list(&ListFilter::default()).await.unwrap().len(), 8);
}

scenario!(read_only_handle_verifies_and_lists);

async fn read_only_refuses_a_store_without_audit_table(db: &TestDb) {
    // The database exists (the URL connects) but tokenmint never set it up.
    let raw = if db.postgres {
        db.raw().await
    } else {
        AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}?mode=rwc", db.url))
            .await
            .unwrap()
    };
    sqlx::query("CREATE TABLE unrelated (x BIGINT)")
        .execute(&raw)
        .await
        .unwrap();
    let err = AuditLog::open_read_only(&db.url).await.unwrap_err();
    assert!(matches!(err, AuditError::NotInitialized { .. }), "{err:?}");
    assert!(err.to_string().contains("audit_log"), "{err}");
    // ... and opening read-only did not create it.
    let err = AuditLog::open_read_only(&db.url).await.unwrap_err();
    assert!(matches!(err, AuditError::NotInitialized { .. }), "{err:?}");
}

scenario!(read_only_refuses_a_store_without_audit_table);

#[tokio::test]
async fn read_only_open_of_a_missing_sqlite_file_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.db");
    let url = format!("sqlite://{}", path.display());
    let err = AuditLog::open_read_only(&url).await.unwrap_err();
    assert!(matches!(err, AuditError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("audit store {url} does not exist"))
            && msg.contains("check [audit] database"),
        "{msg}"
    );
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Even with an explicit mode=rwc in the URL.
    let err = AuditLog::open_read_only(&format!("{url}?mode=rwc"))
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::Missing { .. }), "{err:?}");
    assert!(!path.exists());
}

#[tokio::test]
async fn read_only_open_works_after_the_writer_closed_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let url = format!("sqlite://{}", path.display());
    let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
    append_n(&log, 3).await;
    let pool = log.inner.pool.clone();
    drop(log);
    // Closing the last connection checkpoints and removes -wal and -shm.
    pool.close().await;
    let reader = AuditLog::open_read_only(&url).await.unwrap();
    assert!(reader.verify().await.unwrap().is_clean());
    assert_eq!(reader.list(&ListFilter::default()).await.unwrap().len(), 3);
    assert!(format!("{reader:?}").contains("a.db"));
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let log = AuditLog::open("sqlite::memory:", DEFAULT_CHAIN)
        .await
        .unwrap();
    append_n(&log, 3).await;
    assert!(log.verify().await.unwrap().is_clean());
    assert_eq!(log.list(&ListFilter::default()).await.unwrap().len(), 3);
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    drop(AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap());
    let raw = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_schema SET version = 99")
        .execute(&raw)
        .await
        .unwrap();
    let err = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap_err();
    assert!(
        matches!(err, AuditError::SchemaTooNew { found: 99, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn open_errors_say_what_to_do_and_hide_passwords() {
    let err = AuditLog::open("sqlite:///nonexistent-dir/x/audit.db", DEFAULT_CHAIN)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Open {
                action: "connect",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("[audit] database setting"),
        "{err}"
    );

    let err = AuditLog::open("postgres://tm:supersecret@127.0.0.1:1/audit", DEFAULT_CHAIN)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("supersecret"), "{text}");
    assert!(text.contains("tm:***@127.0.0.1"), "{text}");

    let err = AuditLog::open("sqlite::memory:", "bad chain")
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::BadChainId { .. }), "{err:?}");
    let err = AuditLog::open("redis://x", DEFAULT_CHAIN)
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::BadUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn debug_shows_no_password() {
    let log = AuditLog::open("sqlite::memory:", DEFAULT_CHAIN)
        .await
        .unwrap();
    let text = format!("{log:?}");
    assert!(
        text.contains("sqlite::memory:") && text.contains("main"),
        "{text}"
    );
}

scenario!(a_batch_larger_than_one_statement_is_one_transaction);
async fn a_batch_larger_than_one_statement_is_one_transaction(db: &TestDb) {
    use super::store::{insert_batch, NewRow};
    let log = db.open().await; // creates the schema
    let prepared: Vec<_> = (0..600u32)
        .map(|i| super::record::prepare(rec(i, "b", Decision::Deny)).unwrap())
        .collect();
    let hashes: Vec<String> = (0..600).map(|i| format!("{i:064x}")).collect();
    let rows: Vec<NewRow<'_>> = prepared
        .iter()
        .enumerate()
        .map(|(i, record)| NewRow {
            seq: i as u64 + 1,
            prev_hash: &hashes[i],
            hash: &hashes[i],
            record,
        })
        .collect();
    let raw = db.raw().await;
    let mut conn = raw.acquire().await.unwrap();
    insert_batch(&mut conn, "bulk", &rows).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE chain_id = 'bulk'")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(count, 600);
    // All or nothing: a batch whose last chunk collides commits none of it.
    let clash: Vec<NewRow<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| NewRow {
            seq: if i == 599 { 600 } else { 1000 + i as u64 },
            ..*r
        })
        .collect();
    assert!(insert_batch(&mut conn, "bulk", &clash).await.is_err());
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE chain_id = 'bulk'")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(
        count, 600,
        "a failed multi-statement batch must leave nothing behind"
    );
    drop(log);
}

// ------------------------------------------------------------ used jtis

/// `2025-03-01 00:00:00 UTC` plus `s` seconds.
fn at(s: i64) -> OffsetDateTime {
    datetime!(2025-03-01 00:00:00 UTC) + time::Duration::seconds(s)
}

async fn used_jti_count(raw: &AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM used_jti")
        .fetch_one(raw)
        .await
        .unwrap()
}

scenario!(a_jti_is_claimed_once);
async fn a_jti_is_claimed_once(db: &TestDb) {
    let log = db.open().await;
    let iss = "https://token.actions.githubusercontent.com";
    let claim = |issuer: &'static str, jti: &'static str, now: i64| {
        let log = log.clone();
        async move { log.claim_jti(issuer, jti, at(360), at(now)).await.unwrap() }
    };
    assert_eq!(claim(iss, "j-1", 0).await, JtiClaim::Fresh);
    assert_eq!(claim(iss, "j-1", 1).await, JtiClaim::Replayed);
    assert_eq!(claim(iss, "j-1", 359).await, JtiClaim::Replayed);
    // Keyed on (issuer, jti): another jti, or the same jti from another issuer, is fresh.
    assert_eq!(claim(iss, "j-2", 1).await, JtiClaim::Fresh);
    assert_eq!(
        claim("https://gitlab.example", "j-1", 1).await,
        JtiClaim::Fresh
    );
    // A second handle (another replica) sees the same claims.
    let other = AuditLog::open(&db.url, "replica-2").await.unwrap();
    assert_eq!(
        other.claim_jti(iss, "j-1", at(360), at(2)).await.unwrap(),
        JtiClaim::Replayed
    );
    // Once the claim has expired (its token can no longer verify), a stale
    // row, pruned or not, never blocks: the outcome does not depend on pruning.
    assert_eq!(claim(iss, "j-1", 361).await, JtiClaim::Fresh);
    let raw = db.raw().await;
    assert_eq!(used_jti_count(&raw).await, 3);
}

scenario!(concurrent_claims_of_one_jti_have_one_winner);
async fn concurrent_claims_of_one_jti_have_one_winner(db: &TestDb) {
    // Two handles with their own pools play two replicas.
    let a = db.open().await;
    let b = AuditLog::open(&db.url, "replica-2").await.unwrap();
    for round in 0..3 {
        let jti = format!("race-{round}");
        let mut tasks = Vec::new();
        for i in 0..32 {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            let jti = jti.clone();
            tasks.push(tokio::spawn(async move {
                log.claim_jti("https://issuer.example", &jti, at(600), at(0))
                    .await
                    .unwrap()
            }));
        }
        let mut fresh = 0;
        for t in tasks {
            if t.await.unwrap() == JtiClaim::Fresh {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "round {round}: exactly one claim wins");
    }
}

scenario!(pruning_removes_only_expired_claims);
async fn pruning_removes_only_expired_claims(db: &TestDb) {
    let log = db.open().await;
    let raw = db.raw().await;
    for i in 0..3 {
        let jti = format!("short-{i}");
        let c = log.claim_jti("iss", &jti, at(10), at(0)).await.unwrap();
        assert_eq!(c, JtiClaim::Fresh);
    }
    for i in 0..2 {
        let jti = format!("long-{i}");
        let c = log.claim_jti("iss", &jti, at(100), at(0)).await.unwrap();
        assert_eq!(c, JtiClaim::Fresh);
    }
    // Nothing has expired yet.
    assert_eq!(log.prune_jtis(at(5)).await.unwrap(), 0);
    // Expiry is exclusive: a row expiring exactly now stays.
    assert_eq!(log.prune_jtis(at(10)).await.unwrap(), 0);
    assert_eq!(log.prune_jtis(at(50)).await.unwrap(), 3);
    assert_eq!(used_jti_count(&raw).await, 2);
    let left: Vec<String> = sqlx::query_scalar("SELECT jti FROM used_jti ORDER BY jti")
        .fetch_all(&raw)
        .await
        .unwrap();
    assert_eq!(left, ["long-0", "long-1"]);
    // The survivors still count as used.
    assert_eq!(
        log.claim_jti("iss", "long-0", at(100), at(50))
            .await
            .unwrap(),
        JtiClaim::Replayed
    );
    // More expired rows than one batch holds are all pruned in one call.
    let many = 2500;
    let values: Vec<String> = (0..many)
        .map(|i| format!("('iss', 'bulk-{i}', 1)"))
        .collect();
    sqlx::query(&format!(
        "INSERT INTO used_jti (issuer, jti, expires_us) VALUES {}",
        values.join(", ")
    ))
    .execute(&raw)
    .await
    .unwrap();
    assert_eq!(log.prune_jtis(at(50)).await.unwrap(), many);
    assert_eq!(used_jti_count(&raw).await, 2);
}

scenario!(claims_prune_in_the_background);
async fn claims_prune_in_the_background(db: &TestDb) {
    let log = db.open().await;
    let raw = db.raw().await;
    // The first claim starts a prune (nothing to do yet) and sets the next one a minute out.
    log.claim_jti("iss", "a", at(10), at(0)).await.unwrap();
    log.claim_jti("iss", "b", at(10), at(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        used_jti_count(&raw).await,
        2,
        "no prune within the interval"
    );
    // A claim a minute later prunes the expired rows in the background.
    log.claim_jti("iss", "c", at(200), at(61)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while used_jti_count(&raw).await != 1 {
        assert!(Instant::now() < deadline, "expired rows were never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

scenario!(claims_fail_closed_when_the_store_fails);
async fn claims_fail_closed_when_the_store_fails(db: &TestDb) {
    let options = AuditOptions {
        append_timeout: Duration::from_secs(2),
        ..AuditOptions::default()
    };
    let log = AuditLog::open_with(&db.url, DEFAULT_CHAIN, options)
        .await
        .unwrap();
    let raw = db.raw().await;
    let (brk, fix) = if db.postgres {
        (
            "ALTER TABLE used_jti ADD CONSTRAINT tm_test_broken CHECK (expires_us < 0) NOT VALID",
            "ALTER TABLE used_jti DROP CONSTRAINT tm_test_broken",
        )
    } else {
        (
            "ALTER TABLE used_jti RENAME TO used_jti_away",
            "ALTER TABLE used_jti_away RENAME TO used_jti",
        )
    };
    sqlx::query(brk).execute(&raw).await.unwrap();
    let err = log.claim_jti("iss", "j", at(60), at(0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Unavailable {
                action: "claim jti",
                ..
            }
        ),
        "{err:?}"
    );
    sqlx::query(fix).execute(&raw).await.unwrap();
    assert_eq!(
        log.claim_jti("iss", "j", at(60), at(0)).await.unwrap(),
        JtiClaim::Fresh,
        "the failed claim left nothing behind, and claims recover by themselves"
    );
}

#[tokio::test]
async fn a_version_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
    append_n(&log, 2).await;
    drop(log);
    // Turn it back into what version 1 created.
    let raw = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE used_jti")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_schema SET version = 1")
        .execute(&raw)
        .await
        .unwrap();
    // A read-only handle accepts it as it is, and changes nothing.
    let reader = AuditLog::open_read_only(&url).await.unwrap();
    assert!(reader.verify().await.unwrap().is_clean());
    // Opening it read-write upgrades it and keeps the chain.
    let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT version FROM audit_schema WHERE id = 1")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(version, super::store::SCHEMA_VERSION);
    assert_eq!(version, 2);
    assert_eq!(
        log.claim_jti("iss", "j", at(60), at(0)).await.unwrap(),
        JtiClaim::Fresh
    );
    assert!(log.verify().await.unwrap().is_clean());
    assert_eq!(log.list(&ListFilter::default()).await.unwrap().len(), 2);
}

/// A SQLite file store in a new temporary directory whose writer
/// checkpoints every `every`: the log, its URL, and the paths of the
/// database and its WAL. Bind `_dir` too: the directory is deleted with it.
struct CheckpointingSqlite {
    log: AuditLog,
    url: String,
    db: std::path::PathBuf,
    wal: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn sqlite_checkpointing_every(every: Duration) -> CheckpointingSqlite {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let url = format!("sqlite://{}", db.display());
    let log = AuditLog::open_with(
        &url,
        DEFAULT_CHAIN,
        AuditOptions {
            checkpoint_interval: every,
            ..AuditOptions::default()
        },
    )
    .await
    .unwrap();
    CheckpointingSqlite {
        log,
        url,
        wal: dir.path().join("audit.db-wal"),
        db,
        _dir: dir,
    }
}

/// SQLite commits never checkpoint (a checkpoint inside a commit stalled
/// every exchange waiting on it for 5–10 ms); the writer copies the WAL into
/// the database file in the background instead, within its interval.
#[tokio::test]
async fn sqlite_checkpoints_run_in_the_background_not_in_commits() {
    let CheckpointingSqlite {
        log,
        db: path,
        _dir,
        ..
    } = sqlite_checkpointing_every(Duration::from_millis(200)).await;
    let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(&log.inner.pool)
        .await
        .unwrap();
    assert_eq!(autocheckpoint, 0, "commits must not checkpoint");
    let db_bytes = || std::fs::metadata(&path).unwrap().len();
    let before = db_bytes();
    for i in 0..400 {
        log.append(rec(i, "b", Decision::Deny)).await.unwrap();
    }
    // Past the interval, one more batch starts a checkpoint.
    tokio::time::sleep(Duration::from_millis(250)).await;
    log.append(rec(400, "b", Decision::Deny)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while db_bytes() < before + 200 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        db_bytes() >= before + 200 * 1024,
        "401 rows never reached the database file ({} -> {} bytes): no background checkpoint",
        before,
        db_bytes()
    );
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 401);
}

/// Under a steady stream of appends the WAL file stays small: it is reused
/// from its start after each checkpoint instead of growing for as long as
/// the service runs. A checkpoint alone does not do it: SQLite restarts the
/// WAL only for a write that finds every frame copied, and a background
/// checkpoint never copies the frames committed while it ran.
#[tokio::test]
async fn the_sqlite_wal_is_reused_under_continuous_appends() {
    let CheckpointingSqlite { log, wal, _dir, .. } =
        sqlite_checkpointing_every(Duration::from_millis(20)).await;
    // WAL header bytes 12..16: the checkpoint sequence number, which SQLite
    // increments each time it starts the WAL over.
    let wal_restarts = || {
        let bytes = std::fs::read(&wal).unwrap();
        u32::from_be_bytes(bytes[12..16].try_into().unwrap())
    };
    // One append at a time: every commit is a one-row transaction that
    // writes about four pages (the table and its three indexes), about
    // 16 KiB of WAL: 3,000 put about 50 MB through it. Append at least that
    // many, and on until the WAL has started over twice (a slow disk makes
    // each checkpoint round longer).
    let mut peak = 0;
    let mut appended = 0;
    while (appended < 3_000 || wal_restarts() < 2) && appended < 6_000 {
        for _ in 0..100 {
            log.append(rec(appended, "b", Decision::Deny))
                .await
                .unwrap();
            appended += 1;
        }
        peak = peak.max(std::fs::metadata(&wal).unwrap().len());
    }
    let restarts = wal_restarts();
    assert!(
        restarts >= 2,
        "the WAL was started over {restarts} times in {appended} appends: it only grows"
    );
    assert!(
        peak < 24 << 20,
        "the WAL reached {peak} bytes over {appended} appends, checkpointed every 20 ms"
    );
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, u64::from(appended));
}

/// A reader that holds an old snapshot (a long `audit verify`, say) keeps
/// SQLite from starting the WAL over, so it grows meanwhile. Once the reader
/// is gone, the next start over also gives that space back: the WAL file is
/// cut to the store's limit instead of staying at its largest size.
#[tokio::test]
async fn the_sqlite_wal_shrinks_back_after_a_reader_held_it_open() {
    let CheckpointingSqlite {
        log,
        url,
        wal,
        _dir,
        ..
    } = sqlite_checkpointing_every(Duration::from_millis(20)).await;
    let wal_len = || std::fs::metadata(&wal).unwrap().len();
    let limit = store::WAL_SIZE_LIMIT_BYTES;

    let reader = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mut snapshot = reader.begin().await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut *snapshot)
        .await
        .unwrap();
    let mut i = 0;
    while wal_len() <= limit + (8 << 20) {
        for _ in 0..200 {
            log.append(rec(i, "b", Decision::Deny)).await.unwrap();
            i += 1;
        }
        assert!(i < 50_000, "the WAL never grew past {limit} bytes");
    }
    snapshot.rollback().await.unwrap();
    reader.close().await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while wal_len() > limit && Instant::now() < deadline {
        log.append(rec(i, "b", Decision::Deny)).await.unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        wal_len() <= limit,
        "the WAL stayed at {} bytes after the reader left (limit {limit})",
        wal_len()
    );
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, u64::from(i));
}

/// On a SQLite file the writer commits on a connection of its own, kept
/// across batches (`sqlite::tests`), and needs none from the pool, which
/// readers (`verify`, `list`, `/readyz`) and jti claims use: appends go on
/// while every pooled connection is taken.
#[tokio::test]
async fn the_sqlite_writer_needs_no_pooled_connection() {
    let db = TestDb::sqlite().await;
    // No background checkpoint (it takes a pooled connection) in this test.
    let log = db.open_without_checkpoints().await;
    let pool = log.inner.pool.clone();
    let mut taken = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(200), pool.acquire()).await
    {
        taken.push(conn);
    }
    assert_eq!(taken.len(), 8, "the pool should have been drained");
    for i in 0..10 {
        let appended = tokio::time::timeout(
            Duration::from_secs(2),
            log.append(rec(i, "b", Decision::Deny)),
        )
        .await;
        assert!(
            matches!(appended, Ok(Ok(_))),
            "append {i} with the pool drained: {appended:?}"
        );
    }
    drop(taken);
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 10);
}

/// Appends record `i` (a denial for broker `b`) and answers its `seq`.
async fn appended_seq(log: &AuditLog, i: u32) -> u64 {
    log.append(rec(i, "b", Decision::Deny)).await.unwrap().seq
}

/// Appends the writer committed on their caller's task (see `writer`).
async fn in_caller(log: &AuditLog) -> u64 {
    log.inner.writer.lock().await.in_caller
}

/// Idle, an append to a SQLite file commits on the caller's task: no hop to
/// the writer task and back, which at one client cost two task wake-ups per
/// exchange and a wake-up of a second tokio worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_append_commits_on_the_callers_task() {
    let db = TestDb::sqlite().await;
    let log = db.open().await;
    let receipts = append_n(&log, 3).await;
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(in_caller(&log).await, 3);
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 3);
}

/// An append that overlaps another, or finds the writer busy, goes to the
/// writer task, which batches such appends under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_that_overlap_or_find_the_writer_busy_are_queued() {
    let db = TestDb::sqlite().await;
    let log = db.open().await;
    // Another append in progress.
    let other = Appending::enter(&log.inner.appending);
    log.append(rec(1, "b", Decision::Deny)).await.unwrap();
    drop(other);
    assert_eq!(
        in_caller(&log).await,
        0,
        "an overlapping append was committed in its caller"
    );
    // The writer busy (held here).
    let held = log.inner.writer.lock().await;
    let pending = tokio::spawn({
        let log = log.clone();
        async move { log.append(rec(2, "b", Decision::Deny)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !pending.is_finished(),
        "the append did not wait for the writer"
    );
    drop(held);
    assert_eq!(pending.await.unwrap().unwrap().seq, 2);
    assert_eq!(
        in_caller(&log).await,
        0,
        "the queued append was committed in its caller"
    );
    // Idle again.
    assert_eq!(appended_seq(&log, 3).await, 3);
    assert_eq!(in_caller(&log).await, 1);
    // After a batch of several rows (load), the next append is batched too.
    let held = log.inner.writer.lock().await;
    let pending: Vec<_> = (4..=6)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(rec(i, "b", Decision::Deny)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    for p in pending {
        p.await.unwrap().unwrap();
    }
    assert!(
        log.inner.writer.lock().await.last_batch > 1,
        "the queued appends were not batched"
    );
    assert_eq!(appended_seq(&log, 7).await, 7);
    assert_eq!(
        in_caller(&log).await,
        1,
        "committed in the caller right after a batch"
    );
    // A one-row batch later, the service counts as idle again.
    assert_eq!(appended_seq(&log, 8).await, 8);
    assert_eq!(in_caller(&log).await, 2);
}

/// Only a SQLite file's commit can be abandoned half way safely (see
/// `Writer::commits_in_caller`); other stores always go to the writer task.
async fn only_a_sqlite_file_commits_on_the_callers_task(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 2).await;
    assert_eq!(in_caller(&log).await, if db.postgres { 0 } else { 2 });
    let memory = AuditLog::open("sqlite::memory:", DEFAULT_CHAIN)
        .await
        .unwrap();
    append_n(&memory, 2).await;
    assert_eq!(in_caller(&memory).await, 0);
}
scenario!(only_a_sqlite_file_commits_on_the_callers_task);

/// An idle append commits its own record only if nothing has to be awaited
/// before the record is handed to SQLite: not after a failed batch (the head
/// must be reloaded first), nor when a catch-up checkpoint is due. A caller
/// that gave up could otherwise drop its record unwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_reload_or_a_due_catch_up_is_left_to_the_writer_task() {
    let db = TestDb::sqlite().await;
    let log = db.open().await;
    log.append(rec(1, "b", Decision::Deny)).await.unwrap();
    assert_eq!(in_caller(&log).await, 1);
    log.inner.writer.lock().await.head = None;
    assert_eq!(appended_seq(&log, 2).await, 2);
    assert_eq!(
        in_caller(&log).await,
        1,
        "committed in the caller with the head unknown"
    );
    {
        let mut writer = log.inner.writer.lock().await;
        writer.checkpoint.as_mut().unwrap().catch_up = true;
    }
    assert_eq!(appended_seq(&log, 3).await, 3);
    let writer = log.inner.writer.lock().await;
    assert_eq!(
        writer.in_caller, 1,
        "committed in the caller with a catch-up due"
    );
    assert!(
        !writer.checkpoint.as_ref().unwrap().catch_up,
        "the writer task did not catch up"
    );
}

/// A commit on the caller's task that is dropped half way, here while it
/// waits on a blocking thread for a write lock held elsewhere, still lands
/// once the lock is free, and the writer goes on after it: the next append
/// finds its sequence number taken, reloads the head and continues the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_commit_in_the_caller_still_lands_and_the_chain_goes_on() {
    let db = TestDb::sqlite().await;
    let log = db.open_without_checkpoints().await;
    log.append(rec(1, "b", Decision::Allow)).await.unwrap();
    let blocker = rusqlite::Connection::open(db.url.trim_start_matches("sqlite://")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        log.append(rec(2, "b", Decision::Allow)),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the append should still wait for the lock: {dropped:?}"
    );
    assert_eq!(in_caller(&log).await, 2);
    blocker.execute_batch("ROLLBACK").unwrap();
    let raw = db.raw().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&raw)
            .await
            .unwrap();
        if rows == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the dropped commit never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 3..=5 {
        assert_eq!(
            log.append(rec(i, "b", Decision::Allow)).await.unwrap().seq,
            u64::from(i)
        );
    }
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 5);
}

/// PostgreSQL connections can die between batches (a server restart, a
/// proxy's idle timeout). The writer must not keep one across batches: the
/// pool's liveness ping replaces a dead connection before a batch runs on it,
/// so no exchange is refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_connection_killed_between_batches_fails_no_append() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Name this test's sessions, so only they are killed.
    let (_, schema) = db.pg.as_ref().unwrap();
    let url = format!("{}&application_name={schema}", db.url);
    let log = AuditLog::open(&url, DEFAULT_CHAIN).await.unwrap();
    let mut acked = append_n(&log, 3).await;
    let (admin, _) = db.pg.as_ref().unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(schema.as_str())
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(
        !killed.is_empty(),
        "found none of the log's sessions to kill"
    );
    for i in 10..13 {
        acked.push(log.append(rec(i, "b", Decision::Allow)).await.unwrap());
    }
    assert_eq!(acked.last().unwrap().seq, 6);
    let raw = db.raw().await;
    assert_acked_rows_are_stored(&raw, &acked).await;
    raw.close().await;
    drop(log);
    db.cleanup().await;
}

// ------------------------------------------------------------ retention

/// When prunes in these tests say they ran.
const PRUNED_AT: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

/// Options of a store whose config sets `[audit] allow_prune = true`.
fn pruning() -> AuditOptions {
    AuditOptions {
        allow_prune: true,
        ..AuditOptions::default()
    }
}

impl TestDb {
    /// [`TestDb::open`] with `allow_prune`.
    async fn open_pruning(&self) -> AuditLog {
        AuditLog::open_with(&self.url, DEFAULT_CHAIN, pruning())
            .await
            .unwrap()
    }

    /// A read-only handle with `allow_prune`.
    async fn reader_pruning(&self) -> AuditReader {
        AuditLog::open_read_only_with(&self.url, pruning())
            .await
            .unwrap()
    }
}

fn pruned(chain_id: &str, rows: u64, pruned_through: u64, anchor_hash: &str) -> PrunedChain {
    PrunedChain {
        chain_id: chain_id.into(),
        rows,
        pruned_through,
        anchor_hash: anchor_hash.into(),
    }
}

async fn prune(db: &TestDb, before: OffsetDateTime, dry_run: bool) -> Vec<PrunedChain> {
    match AuditLog::prune(&db.url, before, PRUNED_AT, dry_run)
        .await
        .unwrap()
    {
        PruneOutcome::Pruned(chains) => chains,
        refused => panic!("{refused:?}"),
    }
}

/// Runs `statement` on `raw` with string `binds`, as someone with write
/// access to the database would.
async fn sql(raw: &AnyPool, statement: &str, binds: &[&str]) {
    let mut query = sqlx::query(statement);
    for bind in binds {
        query = query.bind(*bind);
    }
    query.execute(raw).await.unwrap();
}

async fn audit_rows(raw: &AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(raw)
        .await
        .unwrap()
}

scenario!(prune_keeps_what_remains_verifiable_and_writers_going);
async fn prune_keeps_what_remains_verifiable_and_writers_going(db: &TestDb) {
    let log = db.open_pruning().await;
    // Row i is recorded at at(i); a second chain holds two rows from at(1).
    let receipts = append_n(&log, 10).await;
    let other = AuditLog::open_with(&db.url, "other", pruning())
        .await
        .unwrap();
    let others = append_n(&other, 2).await;
    let raw = db.raw().await;

    // A dry run counts rows 1..=7 (and the other chain's first) and deletes nothing.
    assert_eq!(
        prune(db, at(8), true).await,
        vec![
            pruned("main", 7, 0, GENESIS_HASH),
            pruned("other", 1, 0, GENESIS_HASH)
        ]
    );
    assert_eq!(audit_rows(&raw).await, 12);

    // Rows recorded before at(8) go (in steps of 3); the anchor is row 7.
    assert_eq!(
        prune(db, at(8), false).await,
        vec![
            pruned("main", 7, 7, &receipts[6].hash),
            pruned("other", 1, 1, &others[0].hash)
        ]
    );
    assert_eq!(audit_rows(&raw).await, 4);
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        report.chains[0],
        ChainSummary {
            chain_id: "main".into(),
            rows: 3,
            head_seq: 10,
            head_hash: receipts[9].hash.clone(),
            pruned_through: 7,
        }
    );

    // The writer goes on from its head; a reader without it agrees.
    let next = log
        .append(rec(11, "deploy", Decision::Allow))
        .await
        .unwrap();
    assert_eq!(next.seq, 11);
    let reader = db.reader_pruning().await;
    let report = reader.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        (report.chains[0].rows, report.chains[0].pruned_through),
        (4, 7)
    );

    // Nothing older left: nothing changes.
    assert_eq!(
        prune(db, at(8), false).await[0],
        pruned("main", 0, 7, &receipts[6].hash)
    );

    // A cutoff after every row still keeps each chain's last one.
    assert_eq!(
        prune(db, at(100), false).await,
        vec![
            pruned("main", 3, 10, &receipts[9].hash),
            pruned("other", 0, 1, &others[0].hash)
        ]
    );
    let report = reader.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 1);
    assert_eq!(report.chains[0].head_hash, next.hash);
}

scenario!(anchors_count_only_where_pruning_is_allowed);
async fn anchors_count_only_where_pruning_is_allowed(db: &TestDb) {
    let log = db.open().await;
    let receipts = append_n(&log, 8).await;
    let raw = db.raw().await;
    let reader = AuditLog::open_read_only(&db.url).await.unwrap();

    // Someone who can write to the database forges an anchor and edits the
    // rows under it. Without allow_prune the anchor is ignored...
    sql(
        &raw,
        "INSERT INTO audit_anchor (chain_id, seq, hash, pruned_at_us) VALUES ('main', 5, $1, 0)",
        &[&receipts[4].hash],
    )
    .await;
    sql(
        &raw,
        "UPDATE audit_log SET broker = 'other' WHERE chain_id = 'main' AND seq = 3",
        &[],
    )
    .await;
    let report = reader.verify().await.unwrap();
    assert_eq!(kinds(&report), vec![(3, ProblemKind::ColumnMismatch)]);
    assert_eq!(report.chains[0].pruned_through, 0);
    // ...and with it, the rows left under an anchor are still checked.
    let report = db.reader_pruning().await.verify().await.unwrap();
    assert_eq!(kinds(&report), vec![(3, ProblemKind::ColumnMismatch)]);
    assert_eq!(report.chains[0].pruned_through, 5);

    // A row deleted under the anchor does not stop the rows after it from
    // being checked.
    sql(
        &raw,
        "DELETE FROM audit_log WHERE chain_id = 'main' AND seq = 2",
        &[],
    )
    .await;
    let report = db.reader_pruning().await.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![
            (2, ProblemKind::Missing),
            (3, ProblemKind::BrokenLink),
            (3, ProblemKind::ColumnMismatch)
        ]
    );

    // Rows deleted under a forged anchor show as missing without allow_prune,
    // with a hint for an operator who pruned and forgot the setting.
    sql(
        &raw,
        "DELETE FROM audit_log WHERE chain_id = 'main' AND seq <= 5",
        &[],
    )
    .await;
    let report = reader.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(1, ProblemKind::Missing), (6, ProblemKind::BrokenLink)]
    );
    assert!(
        report.problems[0].message.contains(
            "audit_anchor says rows up to main#5 were pruned, but [audit] allow_prune is off"
        ),
        "{}",
        report.problems[0]
    );

    // Without allow_prune, an anchor table that cannot be read does not stop
    // the report either.
    for sql in [
        "DROP TABLE audit_anchor",
        "CREATE TABLE audit_anchor (chain_id TEXT, seq TEXT, hash TEXT)",
        "INSERT INTO audit_anchor VALUES ('main', 'x', 'y')",
    ] {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    let report = reader.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(1, ProblemKind::Missing), (6, ProblemKind::BrokenLink)]
    );
    drop(log);
}

scenario!(tampering_with_a_pruned_chain_is_named);
async fn tampering_with_a_pruned_chain_is_named(db: &TestDb) {
    let log = db.open_pruning().await;
    let receipts = append_n(&log, 8).await;
    assert_eq!(
        prune(db, at(5), false).await[0],
        pruned("main", 4, 4, &receipts[3].hash)
    );
    let raw = db.raw().await;
    let reader = db.reader_pruning().await;

    // An edited anchor breaks the first remaining row's link.
    sql(
        &raw,
        "UPDATE audit_anchor SET hash = 'forged' WHERE chain_id = 'main'",
        &[],
    )
    .await;
    let report = reader.verify().await.unwrap();
    assert_eq!(kinds(&report), vec![(5, ProblemKind::BrokenLink)]);
    assert!(
        report.problems[0]
            .message
            .contains("the prune anchor main#4"),
        "{}",
        report.problems[0]
    );

    // Without the anchor, the pruned rows show as missing again.
    sql(&raw, "DELETE FROM audit_anchor", &[]).await;
    let report = reader.verify().await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![(1, ProblemKind::Missing), (5, ProblemKind::BrokenLink)]
    );

    sql(
        &raw,
        "INSERT INTO audit_anchor (chain_id, seq, hash, pruned_at_us) VALUES ('main', 4, $1, 0)",
        &[&receipts[3].hash],
    )
    .await;
    assert!(reader.verify().await.unwrap().is_clean());

    // An anchor whose chain lost every row (a prune keeps the last) is named.
    sql(&raw, "DELETE FROM audit_log", &[]).await;
    let report = reader.verify().await.unwrap();
    assert_eq!(kinds(&report), vec![(5, ProblemKind::Truncated)]);
    drop(log);
}

scenario!(prune_refuses_a_store_that_does_not_verify);
async fn prune_refuses_a_store_that_does_not_verify(db: &TestDb) {
    let log = db.open().await;
    append_n(&log, 6).await;
    let raw = db.raw().await;
    sql(
        &raw,
        "UPDATE audit_log SET broker = 'other' WHERE chain_id = 'main' AND seq = 2",
        &[],
    )
    .await;
    let outcome = AuditLog::prune(&db.url, at(100), PRUNED_AT, false)
        .await
        .unwrap();
    let PruneOutcome::Refused(report) = outcome else {
        panic!("pruned a tampered store: {outcome:?}");
    };
    assert_eq!(kinds(&report), vec![(2, ProblemKind::ColumnMismatch)]);
    assert_eq!(audit_rows(&raw).await, 6, "nothing may be deleted");
    drop(log);
}

scenario!(rows_out_of_time_order_stay_with_all_after_them);
async fn rows_out_of_time_order_stay_with_all_after_them(db: &TestDb) {
    // Replicas on one chain with clocks apart: times 1, 2, 9, 3, 4.
    let log = db.open_pruning().await;
    let mut receipts = Vec::new();
    for i in [1, 2, 9, 3, 4] {
        receipts.push(log.append(rec(i, "deploy", Decision::Allow)).await.unwrap());
    }
    assert_eq!(
        prune(db, at(5), false).await[0],
        pruned("main", 2, 2, &receipts[1].hash)
    );
    drop(log);
}

scenario!(a_store_without_the_anchor_table_verifies_and_prunes);
async fn a_store_without_the_anchor_table_verifies_and_prunes(db: &TestDb) {
    // As a build from before `audit prune` leaves it.
    let log = db.open().await;
    let receipts = append_n(&log, 3).await;
    let raw = db.raw().await;
    sql(&raw, "DROP TABLE audit_anchor", &[]).await;
    let anchor_table = || async {
        sqlx::query("SELECT COUNT(*) FROM audit_anchor")
            .fetch_one(&raw)
            .await
            .is_ok()
    };
    let reader = db.reader_pruning().await;
    let report = reader.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    // A dry run changes nothing, the schema included.
    assert_eq!(
        prune(db, at(2), true).await[0],
        pruned("main", 1, 0, GENESIS_HASH)
    );
    assert!(!anchor_table().await);
    // Pruning creates the table.
    assert_eq!(
        prune(db, at(2), false).await[0],
        pruned("main", 1, 1, &receipts[0].hash)
    );
    assert!(anchor_table().await);
    assert!(reader.verify().await.unwrap().is_clean());
    drop(log);
}

scenario!(an_interrupted_prune_is_finished_by_the_next);
async fn an_interrupted_prune_is_finished_by_the_next(db: &TestDb) {
    let log = db.open_pruning().await;
    let receipts = append_n(&log, 6).await;
    assert_eq!(
        prune(db, at(3), false).await[0],
        pruned("main", 2, 2, &receipts[1].hash)
    );
    // As a prune stopped between moving the anchor and deleting leaves it.
    let raw = db.raw().await;
    sql(
        &raw,
        "UPDATE audit_anchor SET seq = 4, hash = $1 WHERE chain_id = 'main'",
        &[&receipts[3].hash],
    )
    .await;
    let reader = db.reader_pruning().await;
    let report = reader.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.chains[0].rows, 4, "rows 3 and 4 are checked too");
    // Rows left under the anchor must lead to it.
    sql(
        &raw,
        "UPDATE audit_anchor SET hash = $1 WHERE chain_id = 'main'",
        &[&receipts[2].hash],
    )
    .await;
    let report = reader.verify().await.unwrap();
    assert!(
        kinds(&report).contains(&(4, ProblemKind::BrokenLink)),
        "{:?}",
        report.problems
    );
    sql(
        &raw,
        "UPDATE audit_anchor SET hash = $1 WHERE chain_id = 'main'",
        &[&receipts[3].hash],
    )
    .await;
    // A stale step of another prune (to row 3) deletes its rows but cannot
    // move the anchor back.
    let deleted = store::prune_to(&raw, "main", 2, 3, i64::MAX, 0)
        .await
        .unwrap();
    assert_eq!(deleted, Some(1));
    // A step whose row another prune already deleted does nothing.
    let deleted = store::prune_to(&raw, "main", 2, 3, i64::MAX, 0)
        .await
        .unwrap();
    assert_eq!(deleted, None);
    let anchor: i64 = sqlx::query_scalar("SELECT seq FROM audit_anchor WHERE chain_id = 'main'")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(anchor, 4);
    assert!(reader.verify().await.unwrap().is_clean());
    // The next prune deletes row 4, left under the anchor, whatever its
    // cutoff (here one with nothing new to prune); a dry run counts it first.
    assert_eq!(
        prune(db, at(1), true).await[0],
        pruned("main", 1, 4, &receipts[3].hash)
    );
    assert_eq!(
        prune(db, at(1), false).await[0],
        pruned("main", 1, 4, &receipts[3].hash)
    );
    assert_eq!(audit_rows(&raw).await, 2);
    assert!(reader.verify().await.unwrap().is_clean());
    drop(log);
}

scenario!(appends_and_verifies_go_on_while_a_prune_runs);
async fn appends_and_verifies_go_on_while_a_prune_runs(db: &TestDb) {
    let log = db.open_pruning().await;
    append_n(&log, 60).await;
    let writer = log.clone();
    let appends = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for i in 61..=160 {
            seqs.push(
                writer
                    .append(rec(i, "deploy", Decision::Allow))
                    .await
                    .unwrap()
                    .seq,
            );
        }
        seqs
    });
    let reader = db.reader_pruning().await;
    let verifies = tokio::spawn(async move {
        let mut reports = Vec::new();
        for _ in 0..20 {
            reports.push(reader.verify().await.unwrap());
        }
        reports
    });
    // 49 rows in steps of 3: appends and verifies interleave with the steps.
    let chains = prune(db, at(50), false).await;
    assert_eq!((chains[0].rows, chains[0].pruned_through), (49, 49));
    assert_eq!(appends.await.unwrap(), (61..=160).collect::<Vec<u64>>());
    for report in verifies.await.unwrap() {
        assert!(report.is_clean(), "{:?}", report.problems);
    }
    let report = log.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        (report.chains[0].rows, report.chains[0].head_seq),
        (111, 160)
    );
}

scenario!(a_walk_goes_on_from_an_anchor_a_prune_moved_meanwhile);
async fn a_walk_goes_on_from_an_anchor_a_prune_moved_meanwhile(db: &TestDb) {
    let log = db.open_pruning().await;
    let receipts = append_n(&log, 9).await;
    // The anchor the walk read (row 2), and the prune that then ran (to row 5).
    assert_eq!(prune(db, at(3), false).await[0].pruned_through, 2);
    let stale = store::Anchor {
        seq: 2,
        hash: receipts[1].hash.clone(),
    };
    assert_eq!(prune(db, at(6), false).await[0].pruned_through, 5);
    let raw = db.raw().await;
    let source = verify::Source {
        pool: &raw,
        backend: if db.postgres {
            store::Backend::Postgres
        } else {
            store::Backend::Sqlite
        },
        url: "test",
        query_timeout: Duration::from_secs(5),
        allow_prune: true,
    };
    let (summary, problems) = verify::verify_chain_from(&source, "main", &stale)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!((summary.rows, summary.pruned_through), (4, 5));
    drop(log);
}

#[tokio::test]
async fn prune_of_a_missing_sqlite_file_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.db");
    let url = format!("sqlite://{}", path.display());
    let err = AuditLog::prune(&url, at(0), PRUNED_AT, false)
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::Missing { .. }), "{err:?}");
    assert!(!path.exists());
}
