//! The SQL side: store URLs (and their redaction), connecting, the schema, and every query.
//!
//! One code path serves SQLite and PostgreSQL through `sqlx::AnyPool`. The SQL
//! uses only what both accept: `$n` placeholders, `BIGINT`/`TEXT` columns,
//! `CREATE ... IF NOT EXISTS` and `ON CONFLICT DO NOTHING`. Times are stored
//! as Unix microseconds (`time_us`), so ordering never depends on a collation.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Row};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::chain::Head;
use super::error::AuditError;
use super::record::{Decision, PreparedRecord};

/// Schema version this build writes and understands.
///
/// 1: `audit_log`. 2: adds `used_jti` (replay protection). Each version only
/// adds tables and indexes with `IF NOT EXISTS`, so opening a store read-write
/// upgrades it in place; a store at a newer version is refused.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// How long to wait for a pooled connection before calling the store unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// SQLite's wait for a competing writer's lock, in milliseconds, on the
/// pool's connections (the audit writer's own sets its own: `audit::sqlite`).
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5000;

/// SQLite (`journal_size_limit`): when the writer starts the WAL over, a WAL
/// file larger than this is cut back to it. The WAL normally holds about a
/// second of rows (see `writer::Checkpoint`), but it grows for as long as a
/// reader holds an older snapshot, and without a limit the file would keep
/// its largest size for good.
pub(crate) const WAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

/// The schema, in order. Each statement is idempotent, so opening an existing
/// store is a no-op. `PRIMARY KEY (chain_id, seq)` is the UNIQUE(chain_id, seq)
/// constraint that keeps two writers from forking a chain.
pub(crate) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_schema (
        id BIGINT NOT NULL PRIMARY KEY,
        version BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_log (
        chain_id TEXT NOT NULL,
        seq BIGINT NOT NULL CHECK (seq >= 1),
        time_us BIGINT NOT NULL,
        broker TEXT NOT NULL,
        decision TEXT NOT NULL,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (chain_id, seq)
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time_us)",
    "CREATE INDEX IF NOT EXISTS audit_log_broker_time ON audit_log (broker, time_us)",
    // Version 2: jtis already exchanged for single-use issuers. The primary
    // key is the unique constraint a claim relies on: of concurrent INSERTs of
    // one (issuer, jti), on any number of replicas, exactly one succeeds.
    "CREATE TABLE IF NOT EXISTS used_jti (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_us BIGINT NOT NULL,
        PRIMARY KEY (issuer, jti)
    )",
    "CREATE INDEX IF NOT EXISTS used_jti_expires ON used_jti (expires_us)",
    // Where each pruned chain now starts (`tokenmint audit prune`): `seq` is
    // the last row deleted and `hash` its hash, which the chain's first
    // remaining row links to. Added without a version bump: builds before it
    // never read it, so they can still open a store that has it.
    "CREATE TABLE IF NOT EXISTS audit_anchor (
        chain_id TEXT NOT NULL PRIMARY KEY,
        seq BIGINT NOT NULL CHECK (seq >= 1),
        hash TEXT NOT NULL,
        pruned_at_us BIGINT NOT NULL
    )",
    "INSERT INTO audit_schema (id, version) VALUES (1, 2) ON CONFLICT (id) DO NOTHING",
    // Upgrade a version-1 store (never downgrade a newer one: that is refused later).
    "UPDATE audit_schema SET version = 2 WHERE id = 1 AND version < 2",
];

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres:` / `postgresql:` URLs.
    Postgres,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Created if missing, schema applied, written to.
    ReadWrite,
    /// Must already exist; never created, migrated or written.
    ReadOnly,
}

/// A checked store URL.
#[derive(Debug, Clone)]
pub(crate) struct StoreUrl {
    /// What sqlx connects to (for SQLite files, with `mode=rwc` added so the
    /// file is created, or `mode=ro` for read-only access).
    connect: String,
    /// What errors and logs show: the URL with any password replaced by `***`.
    pub(crate) redacted: String,
    /// Which database.
    pub(crate) backend: Backend,
    /// An in-memory SQLite database: one connection that must never close.
    pub(crate) memory: bool,
    /// The SQLite database file (percent-decoded, as sqlx reads it); `None`
    /// for PostgreSQL and in-memory databases.
    file: Option<PathBuf>,
    /// How the store is opened.
    access: Access,
}

impl StoreUrl {
    /// The SQLite database file; `None` for PostgreSQL and in-memory databases.
    pub(crate) fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }
}

/// Parses and checks a store URL for read-write access.
pub(crate) fn parse_url(url: &str) -> Result<StoreUrl, AuditError> {
    parse_url_for(url, Access::ReadWrite)
}

/// Parses and checks a store URL for read-only access: SQLite files are
/// opened with `mode=ro` (replacing any `mode` the URL names).
pub(crate) fn parse_url_read_only(url: &str) -> Result<StoreUrl, AuditError> {
    parse_url_for(url, Access::ReadOnly)
}

/// Percent-decodes a SQLite file path the way sqlx does; `None` if the
/// result is not UTF-8 or an escape is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_url_for(url: &str, access: Access) -> Result<StoreUrl, AuditError> {
    let url = url.trim();
    let redacted = redact_url(url);
    let bad = |reason: &str| AuditError::BadUrl {
        url: redacted.clone(),
        reason: reason.to_owned(),
    };
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => {
            let (path, query) = match url.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (url, None),
            };
            let file = path
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let memory = file == ":memory:"
                || query.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
            if file.is_empty() && !memory {
                return Err(bad("it names no database file"));
            }
            if access == Access::ReadWrite && !memory {
                // The audit writer opens the file itself (`audit::sqlite`),
                // by its plain path, with SQLite's default VFS and locking:
                // anything that would make the pool open it otherwise would
                // leave the two out of step.
                let unsupported = query.into_iter().flat_map(|q| q.split('&')).find(|kv| {
                    kv.starts_with("vfs=") || kv.starts_with("immutable=") || *kv == "cache=shared"
                });
                if let Some(kv) = unsupported {
                    return Err(bad(&format!(
                        "{kv} is not supported for the audit store; remove it"
                    )));
                }
                if file.starts_with("file:") {
                    return Err(bad(
                        "a file: URI is not supported for the audit store; use sqlite://path/to/file.db",
                    ));
                }
            }
            let has_mode = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("mode=")));
            let connect = match (access, memory, has_mode, query) {
                (_, true, _, _) | (Access::ReadWrite, false, true, _) => url.to_owned(),
                (Access::ReadWrite, false, false, Some(_)) => format!("{url}&mode=rwc"),
                (Access::ReadWrite, false, false, None) => format!("{url}?mode=rwc"),
                (Access::ReadOnly, false, _, _) => {
                    let mut params: Vec<&str> = query
                        .into_iter()
                        .flat_map(|q| q.split('&'))
                        .filter(|kv| !kv.is_empty() && !kv.starts_with("mode="))
                        .collect();
                    params.push("mode=ro");
                    format!("{path}?{}", params.join("&"))
                }
            };
            let file = if memory {
                None
            } else {
                let decoded =
                    percent_decode(file).ok_or_else(|| bad("its file name is not valid"))?;
                Some(PathBuf::from(decoded))
            };
            Ok(StoreUrl {
                connect,
                redacted,
                backend: Backend::Sqlite,
                memory,
                file,
                access,
            })
        }
        Some("postgres") | Some("postgresql") => {
            if url::Url::parse(url).is_err() {
                return Err(bad("it is not a valid URL"));
            }
            Ok(StoreUrl {
                connect: url.to_owned(),
                redacted,
                backend: Backend::Postgres,
                memory: false,
                file: None,
                access,
            })
        }
        _ => Err(bad("only sqlite: and postgres: stores are supported")),
    }
}

/// The URL with its password (in the userinfo or a `password` query
/// parameter) replaced by `***`. A URL that does not parse is shown by its
/// scheme only, since it might hold a password in a form we cannot find.
pub(crate) fn redact_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        // File paths and flags only; nothing secret.
        return url.to_owned();
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        return if scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            format!("{scheme}:<unparseable URL>")
        } else {
            "<unparseable URL>".to_owned()
        };
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = parsed.set_password(Some("***"));
    }
    let secret_key =
        |k: &str| k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
    if parsed.query_pairs().any(|(k, _)| secret_key(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_key(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// The `Open` error for `action` on `url`.
fn open_err(url: &StoreUrl, action: &'static str) -> impl FnOnce(sqlx::Error) -> AuditError {
    let url = url.redacted.clone();
    move |source| AuditError::Open {
        url,
        action,
        source,
    }
}

/// Opens a pool with the per-connection settings for `url`'s backend and access.
async fn open_pool(url: &StoreUrl) -> Result<AnyPool, AuditError> {
    sqlx::any::install_default_drivers();
    let backend = url.backend;
    let access = url.access;
    let mut options = AnyPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .max_connections(if url.memory { 1 } else { 8 })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                match (backend, access) {
                    (Backend::Sqlite, _) => {
                        // Per-connection settings. With WAL, NORMAL still makes a
                        // committed transaction survive a process crash; only a
                        // power loss can take the last commits.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        if access == Access::ReadWrite {
                            // Commits never checkpoint: the audit writer runs
                            // checkpoints in the background (writer::Checkpoint),
                            // so their disk work does not stall a commit.
                            sqlx::query("PRAGMA wal_autocheckpoint = 0")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query(&format!(
                                "PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}"
                            ))
                            .execute(&mut *conn)
                            .await?;
                        }
                        sqlx::query(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
                            .execute(&mut *conn)
                            .await?;
                    }
                    (Backend::Postgres, Access::ReadOnly) => {
                        // Belt and braces: this session cannot write even by mistake.
                        sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                            .execute(&mut *conn)
                            .await?;
                    }
                    (Backend::Postgres, Access::ReadWrite) => {}
                }
                Ok(())
            })
        });
    if backend == Backend::Sqlite {
        // A SQLite connection is a local file handle that does not go stale,
        // so skip the liveness ping on every acquire: each ping is a round
        // trip to the connection's worker thread, once per query. A
        // PostgreSQL connection can die with its server, so it keeps the ping.
        options = options.test_before_acquire(false);
    }
    if url.memory {
        // The database lives only as long as its one connection.
        options = options
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    options
        .connect(&url.connect)
        .await
        .map_err(open_err(url, "connect"))
}

/// Fails with [`AuditError::SchemaTooNew`] if the store's schema is newer than this build.
async fn check_schema_version(pool: &AnyPool, url: &StoreUrl) -> Result<(), AuditError> {
    let row = sqlx::query("SELECT version FROM audit_schema WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(open_err(url, "read schema version"))?;
    let found: i64 = row
        .try_get(0)
        .map_err(open_err(url, "read schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(AuditError::SchemaTooNew {
            url: url.redacted.clone(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Connects to an existing store without creating, migrating or writing
/// anything: a missing SQLite file is [`AuditError::Missing`], a database
/// without the `audit_log` table is [`AuditError::NotInitialized`].
pub(crate) async fn connect_read_only(url: &StoreUrl) -> Result<AnyPool, AuditError> {
    if let Some(file) = &url.file {
        // `mode=ro` would fail too, but with SQLite's vaguer "unable to open".
        if !file.is_file() {
            return Err(AuditError::Missing {
                url: url.redacted.clone(),
            });
        }
    }
    let pool = open_pool(url).await?;
    let found = table_exists(&pool, url.backend, "audit_log")
        .await
        .map_err(open_err(url, "look for the audit_log table"))?;
    if !found {
        pool.close().await;
        return Err(AuditError::NotInitialized {
            url: url.redacted.clone(),
        });
    }
    check_schema_version(&pool, url).await?;
    Ok(pool)
}

/// Whether the store has a table named `name`.
async fn table_exists(pool: &AnyPool, backend: Backend, name: &str) -> Result<bool, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT CAST(CASE WHEN to_regclass($1) IS NULL THEN 0 ELSE 1 END AS BIGINT)"
        }
    };
    let found: i64 = sqlx::query(sql)
        .bind(name)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok(found != 0)
}

/// Connects, applies the schema and checks its version.
pub(crate) async fn connect(url: &StoreUrl) -> Result<AnyPool, AuditError> {
    let open_err = |action: &'static str| open_err(url, action);
    let backend = url.backend;
    let pool = open_pool(url).await?;

    if backend == Backend::Sqlite && !url.memory {
        // WAL is a property of the file; set it once, before anything else writes.
        let row = sqlx::query("PRAGMA journal_mode = WAL")
            .fetch_one(&pool)
            .await
            .map_err(open_err("enable WAL journal"))?;
        let mode: String = row.try_get(0).map_err(open_err("enable WAL journal"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                store = %url.redacted,
                journal_mode = %mode,
                "the audit store's file system does not support SQLite WAL; concurrent readers will block the writer"
            );
        }
    }

    // Two instances starting together can race on CREATE TABLE in PostgreSQL;
    // the loser succeeds on a second try.
    if apply_schema(&pool).await.is_err() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        apply_schema(&pool)
            .await
            .map_err(open_err("create schema"))?;
    }

    check_schema_version(&pool, url).await?;
    Ok(pool)
}

async fn apply_schema(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for stmt in SCHEMA {
        sqlx::query(stmt).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// A sequence number from the database; the schema keeps it >= 1.
fn seq_from_db(seq: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(seq).map_err(|_| sqlx::Error::Protocol(format!("negative sequence number {seq}")))
}

/// A sequence number for the database.
fn seq_to_db(seq: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(seq)
        .map_err(|_| sqlx::Error::Protocol(format!("sequence number {seq} is too large")))
}

/// Reads the last row of `chain_id`, or the genesis head if it has none.
pub(crate) async fn load_head<'e, E>(executor: E, chain_id: &str) -> Result<Head, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT seq, hash FROM audit_log WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(chain_id)
    .fetch_optional(executor)
    .await?;
    match row {
        None => Ok(Head::genesis()),
        Some(row) => Ok(Head {
            seq: seq_from_db(row.try_get("seq")?)?,
            hash: row.try_get("hash")?,
        }),
    }
}

/// One row about to be inserted.
#[derive(Debug)]
pub(crate) struct NewRow<'a> {
    /// Its position in the chain.
    pub(crate) seq: u64,
    /// The hash of the row before it.
    pub(crate) prev_hash: &'a str,
    /// Its own hash.
    pub(crate) hash: &'a str,
    /// The record and its column values.
    pub(crate) record: &'a PreparedRecord,
}

/// The rows for `records`, in order, continuing the chain after `head`;
/// `hashes` holds each row's `(prev_hash, hash)` (`writer::chain_batch`).
pub(crate) fn rows_after<'a>(
    head: &Head,
    records: impl IntoIterator<Item = &'a PreparedRecord>,
    hashes: &'a [(String, String)],
) -> Vec<NewRow<'a>> {
    records
        .into_iter()
        .zip(hashes)
        .enumerate()
        .map(|(i, (record, (prev, hash)))| NewRow {
            seq: head.seq + 1 + i as u64,
            prev_hash: prev,
            hash,
            record,
        })
        .collect()
}

/// Inserts rows atomically: all of them are committed, or none.
pub(crate) async fn insert_batch(
    conn: &mut AnyConnection,
    chain_id: &str,
    rows: &[NewRow<'_>],
) -> Result<(), sqlx::Error> {
    // PostgreSQL and in-memory SQLite (a SQLite file's writer commits with
    // `audit::sqlite`). A single statement is atomic on its own (both wrap
    // it in an implicit transaction), so a batch that fits one INSERT costs
    // one round trip to the driver instead of three (BEGIN, INSERT, COMMIT).
    if rows.len() <= INSERT_CHUNK_ROWS {
        let sql = insert_sql(rows.len());
        return insert_query(&sql, chain_id, rows)?
            .execute(conn)
            .await
            .map(|_| ());
    }
    let mut tx = conn.begin().await?;
    for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
        let sql = insert_sql(chunk.len());
        insert_query(&sql, chain_id, chunk)?
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// What one SQLite `PASSIVE` checkpoint did (`PRAGMA wal_checkpoint`'s row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpointed {
    /// Another checkpoint was running, so this one did nothing.
    pub(crate) busy: bool,
    /// Frames in the WAL when it started; -1 when busy or not in WAL mode.
    pub(crate) log: i64,
    /// Frames copied into the database file by now; -1 likewise.
    pub(crate) copied: i64,
}

impl Checkpointed {
    /// Every frame in the WAL when it started is in the database file: no
    /// reader's snapshot and no other checkpoint held it back.
    pub(crate) fn complete(&self) -> bool {
        !self.busy && self.log >= 0 && self.copied == self.log
    }
}

/// SQLite: copies committed WAL frames into the database file, without
/// waiting for readers or the writer (`PASSIVE`).
pub(crate) async fn checkpoint<'e>(
    on: impl sqlx::Executor<'e, Database = Any>,
) -> Result<Checkpointed, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(on)
        .await?;
    let busy: i64 = row.try_get(0)?;
    Ok(Checkpointed {
        busy: busy != 0,
        log: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

/// First key of the PostgreSQL advisory locks that serialise appends to one
/// chain (the second is `hashtext(chain_id)`): ASCII "tmnt", so tokenmint's
/// locks stay apart from other applications' in the same database.
const CHAIN_LOCK_CLASS: i32 = 0x746d_6e74;

/// PostgreSQL: appends `records` to `chain_id` in one transaction that
/// first takes the chain's advisory lock (released at commit or rollback)
/// and reads the head under it. Writers in any number of processes thus
/// take turns on a chain instead of racing for its next `seq`.
///
/// `chain` turns the head into each record's `(prev_hash, hash)`. Returns
/// the head the rows continue, and those hashes.
pub(crate) async fn append_serialised(
    conn: &mut AnyConnection,
    chain_id: &str,
    records: &[&PreparedRecord],
    chain: impl FnOnce(&Head) -> Vec<(String, String)>,
) -> Result<(Head, Vec<(String, String)>), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // `pg_advisory_xact_lock` returns `void`, which the Any driver cannot
    // decode: select a constant from it instead.
    sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1, hashtext($2))) AS chain_lock")
        .bind(CHAIN_LOCK_CLASS)
        .bind(chain_id)
        .execute(&mut *tx)
        .await?;
    let head = load_head(&mut *tx, chain_id).await?;
    let hashes = chain(&head);
    let rows = rows_after(&head, records.iter().copied(), &hashes);
    for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
        let sql = insert_sql(chunk.len());
        insert_query(&sql, chain_id, chunk)?
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    drop(rows);
    Ok((head, hashes))
}

/// One multi-row INSERT for `rows`.
fn insert_query<'q>(
    sql: &'q str,
    chain_id: &'q str,
    rows: &'q [NewRow<'_>],
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, sqlx::Error> {
    // Only the one-row statement is kept prepared. sqlx caches prepared
    // statements by SQL text (up to 100 per connection), and every batch size
    // is a different text: caching them all held tens of MiB of SQLite
    // bytecode (and PostgreSQL server-side plans) under load. A multi-row
    // statement is prepared once per batch instead, a cost shared by its rows.
    let mut query = sqlx::query(sql).persistent(rows.len() == 1);
    for row in rows {
        query = query
            .bind(chain_id)
            .bind(seq_to_db(row.seq)?)
            .bind(row.record.time_us)
            .bind(row.record.broker.as_str())
            .bind(row.record.decision.as_str())
            .bind(row.record.json.as_str())
            .bind(row.prev_hash)
            .bind(row.hash);
    }
    Ok(query)
}

/// Rows per INSERT statement: 8 parameters each (2048 in all), far below
/// SQLite's (32766) and PostgreSQL's (65535) parameter limits. At least the
/// writer's default batch size, so a batch is normally one statement.
const INSERT_CHUNK_ROWS: usize = 256;

/// `INSERT … VALUES ($1,…,$8), ($9,…,$16), …` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(
        "INSERT INTO audit_log (chain_id, seq, time_us, broker, decision, record, prev_hash, hash) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let b = r * 8;
        let _ = write!(
            sql,
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        );
    }
    sql
}

/// Records `(issuer, jti)` as used until `expires_us`, in one statement.
/// Returns `true` if this call claimed it, `false` if it was already claimed
/// and that claim has not expired.
///
/// The primary key decides races: of concurrent claims (in this process or
/// any other sharing the store) exactly one inserts. A row whose
/// `expires_us` is already before `now_us` is stale (its token can no longer
/// verify) and is taken over, so the outcome never depends on when pruning ran.
pub(crate) async fn claim_jti(
    pool: &AnyPool,
    issuer: &str,
    jti: &str,
    expires_us: i64,
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO used_jti (issuer, jti, expires_us) VALUES ($1, $2, $3)
         ON CONFLICT (issuer, jti) DO UPDATE SET expires_us = excluded.expires_us
         WHERE used_jti.expires_us < $4",
    )
    .bind(issuer)
    .bind(jti)
    .bind(expires_us)
    .bind(now_us)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes up to `limit` used-jti rows that expired before `now_us`;
/// returns how many went. Bounded so one prune never holds locks for long.
pub(crate) async fn prune_jtis(
    pool: &AnyPool,
    now_us: i64,
    limit: u32,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM used_jti WHERE (issuer, jti) IN (
            SELECT issuer, jti FROM used_jti WHERE expires_us < $1 ORDER BY expires_us LIMIT $2
         )",
    )
    .bind(now_us)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Cheap check that the store answers and holds the audit table.
pub(crate) async fn ping(pool: &AnyPool, chain_id: &str) -> Result<(), sqlx::Error> {
    load_head(pool, chain_id).await.map(|_| ())
}

/// Every chain id in the store, sorted.
pub(crate) async fn chain_ids(pool: &AnyPool) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT DISTINCT chain_id FROM audit_log ORDER BY chain_id")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

/// Where a pruned chain now starts: the last row deleted and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// The last pruned row's `seq`; the chain's rows start after it.
    pub(crate) seq: u64,
    /// That row's hash: the first remaining row's `prev_hash`.
    pub(crate) hash: String,
}

/// Every pruned chain's anchor. A store only ever written by builds that
/// could not prune has no `audit_anchor` table, and so no anchors.
pub(crate) async fn anchors(
    pool: &AnyPool,
    backend: Backend,
) -> Result<BTreeMap<String, Anchor>, sqlx::Error> {
    if !table_exists(pool, backend, "audit_anchor").await? {
        return Ok(BTreeMap::new());
    }
    let rows = sqlx::query("SELECT chain_id, seq, hash FROM audit_anchor")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let anchor = Anchor {
                seq: seq_from_db(r.try_get("seq")?)?,
                hash: r.try_get("hash")?,
            };
            Ok((r.try_get("chain_id")?, anchor))
        })
        .collect()
}

/// The last row of `chain_id` a prune may delete: the row before its first
/// row at or after `cutoff_us` (rows of several replicas on one chain need
/// not be in time order: a row recorded before the cutoff stays if an
/// earlier one was recorded after it), at most `max_rows` past `start` (the
/// current anchor's `seq`, 0 if none), and never the chain's last row, which
/// writers continue from. `None` when no row is left to prune. Both queries
/// use the primary key and read at most `max_rows` rows.
pub(crate) async fn prune_through(
    pool: &AnyPool,
    chain_id: &str,
    start: u64,
    cutoff_us: i64,
    max_rows: u64,
) -> Result<Option<u64>, sqlx::Error> {
    let head: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM audit_log WHERE chain_id = $1")
            .bind(chain_id)
            .fetch_one(pool)
            .await?;
    let Some(head) = head else {
        return Ok(None);
    };
    let head = seq_from_db(head)?;
    let limit = start.saturating_add(max_rows).min(head - 1);
    if limit <= start {
        return Ok(None);
    }
    let first_kept: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(seq) FROM audit_log
         WHERE chain_id = $1 AND seq > $2 AND seq <= $3 AND time_us >= $4",
    )
    .bind(chain_id)
    .bind(seq_to_db(start)?)
    .bind(seq_to_db(limit)?)
    .bind(cutoff_us)
    .fetch_one(pool)
    .await?;
    let through = match first_kept {
        Some(seq) => seq_from_db(seq)? - 1,
        None => limit,
    };
    Ok((through > start).then_some(through))
}

/// Moves `chain_id`'s anchor forward from `start` to row `through`, then
/// deletes the rows in between; returns how many, or `None` if row `through`
/// is gone (another prune took it). Each statement is atomic on its own,
/// and the order keeps a crash between them harmless: rows left at or
/// before an anchor must lead to it, and the next prune deletes them. An
/// anchor only ever moves forward, so two prunes running at once cannot
/// undo each other.
pub(crate) async fn prune_to(
    pool: &AnyPool,
    chain_id: &str,
    start: u64,
    through: u64,
    cutoff_us: i64,
    now_us: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let seq = seq_to_db(through)?;
    let row = sqlx::query("SELECT hash FROM audit_log WHERE chain_id = $1 AND seq = $2")
        .bind(chain_id)
        .bind(seq)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let hash: String = row.try_get(0)?;
    sqlx::query(
        "INSERT INTO audit_anchor (chain_id, seq, hash, pruned_at_us) VALUES ($1, $2, $3, $4)
         ON CONFLICT (chain_id) DO UPDATE
         SET seq = excluded.seq, hash = excluded.hash, pruned_at_us = excluded.pruned_at_us
         WHERE audit_anchor.seq < excluded.seq",
    )
    .bind(chain_id)
    .bind(seq)
    .bind(&hash)
    .bind(now_us)
    .execute(pool)
    .await?;
    prunable_rows(pool, Prunable::Delete, chain_id, start, through, cutoff_us)
        .await
        .map(Some)
}

/// What [`prunable_rows`] does with the rows it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prunable {
    /// Count them.
    Count,
    /// Delete them.
    Delete,
}

/// Counts or deletes `chain_id`'s rows with `after < seq <= through`
/// recorded before `cutoff_us`; returns how many.
pub(crate) async fn prunable_rows(
    pool: &AnyPool,
    what: Prunable,
    chain_id: &str,
    after: u64,
    through: u64,
    cutoff_us: i64,
) -> Result<u64, sqlx::Error> {
    const RANGE: &str =
        "FROM audit_log WHERE chain_id = $1 AND seq > $2 AND seq <= $3 AND time_us < $4";
    let sql = match what {
        Prunable::Count => format!("SELECT COUNT(*) {RANGE}"),
        Prunable::Delete => format!("DELETE {RANGE}"),
    };
    let query = sqlx::query(&sql)
        .bind(chain_id)
        .bind(seq_to_db(after)?)
        .bind(seq_to_db(through)?)
        .bind(cutoff_us);
    match what {
        Prunable::Count => {
            let n: i64 = query.fetch_one(pool).await?.try_get(0)?;
            u64::try_from(n).map_err(|_| sqlx::Error::Protocol(format!("negative count {n}")))
        }
        Prunable::Delete => Ok(query.execute(pool).await?.rows_affected()),
    }
}

/// A row exactly as stored, for verification.
#[derive(Debug)]
pub(crate) struct RawRow {
    /// `seq` column.
    pub(crate) seq: u64,
    /// `time_us` column.
    pub(crate) time_us: i64,
    /// `broker` column.
    pub(crate) broker: String,
    /// `decision` column.
    pub(crate) decision: String,
    /// `record` column: the hashed JSON.
    pub(crate) record: String,
    /// `prev_hash` column.
    pub(crate) prev_hash: String,
    /// `hash` column.
    pub(crate) hash: String,
}

/// Up to `limit` rows of `chain_id` with `seq > after`, in `seq` order.
pub(crate) async fn page(
    pool: &AnyPool,
    chain_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<RawRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, time_us, broker, decision, record, prev_hash, hash FROM audit_log
         WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(chain_id)
    .bind(seq_to_db(after)?)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RawRow {
                seq: seq_from_db(r.try_get("seq")?)?,
                time_us: r.try_get("time_us")?,
                broker: r.try_get("broker")?,
                decision: r.try_get("decision")?,
                record: r.try_get("record")?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            })
        })
        .collect()
}

/// A row found by [`list`]: position, hash and the hashed JSON.
#[derive(Debug)]
pub(crate) struct ListedRow {
    /// `chain_id` column.
    pub(crate) chain_id: String,
    /// `seq` column.
    pub(crate) seq: u64,
    /// `hash` column.
    pub(crate) hash: String,
    /// `record` column.
    pub(crate) record: String,
}

/// Rows matching the filter columns, newest first.
pub(crate) async fn list(
    pool: &AnyPool,
    broker: Option<&str>,
    decision: Option<Decision>,
    since_us: Option<i64>,
    limit: u32,
) -> Result<Vec<ListedRow>, sqlx::Error> {
    let mut sql = String::from("SELECT chain_id, seq, hash, record FROM audit_log WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if broker.is_some() {
        sql.push_str(&format!(" AND broker = ${}", next()));
    }
    if decision.is_some() {
        sql.push_str(&format!(" AND decision = ${}", next()));
    }
    if since_us.is_some() {
        sql.push_str(&format!(" AND time_us >= ${}", next()));
    }
    sql.push_str(&format!(
        " ORDER BY time_us DESC, chain_id, seq DESC LIMIT ${}",
        next()
    ));

    let mut q = sqlx::query(&sql);
    if let Some(b) = broker {
        q = q.bind(b);
    }
    if let Some(d) = decision {
        q = q.bind(d.as_str());
    }
    if let Some(s) = since_us {
        q = q.bind(s);
    }
    q = q.bind(i64::from(limit));
    let rows: Vec<AnyRow> = q.fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(ListedRow {
                chain_id: r.try_get("chain_id")?,
                seq: seq_from_db(r.try_get("seq")?)?,
                hash: r.try_get("hash")?,
                record: r.try_get("record")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the one-row INSERT may stay prepared: sqlx caches statements by
    /// SQL text, one text per row count, and keeping them all once held tens
    /// of MiB of SQLite bytecode in a loaded server. (sqlx's `Any` driver
    /// does not report its cache size, so the flag itself is checked.)
    #[test]
    fn only_the_one_row_insert_is_kept_prepared() {
        let prepared: Vec<_> = (0..3)
            .map(|_| {
                crate::audit::record::prepare(crate::audit::record::tests::sample(
                    "b",
                    crate::audit::Decision::Deny,
                ))
                .unwrap()
            })
            .collect();
        let hash = "0".repeat(64);
        let rows: Vec<NewRow<'_>> = prepared
            .iter()
            .enumerate()
            .map(|(i, record)| NewRow {
                seq: i as u64 + 1,
                prev_hash: &hash,
                hash: &hash,
                record,
            })
            .collect();
        for n in 1..=3 {
            let sql = insert_sql(n);
            let query = insert_query(&sql, "main", &rows[..n]).unwrap();
            assert_eq!(sqlx::Execute::persistent(&query), n == 1, "{n} rows");
        }
    }

    #[test]
    fn insert_sql_numbers_parameters_per_row() {
        assert_eq!(
            insert_sql(2),
            "INSERT INTO audit_log (chain_id, seq, time_us, broker, decision, record, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16)"
        );
    }

    #[test]
    fn redacts_passwords() {
        let r = redact_url("postgres://tm:hunter2@db.internal:5432/audit?sslmode=require");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("tm:***@db.internal"), "{r}");
        let r = redact_url("postgres://db/audit?user=tm&password=hunter2");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("user=tm"), "{r}");
        let r = redact_url("postgres://tm:hunter2@[::1/x");
        assert!(!r.contains("hunter2"), "{r}");
        assert_eq!(redact_url("sqlite://var/audit.db"), "sqlite://var/audit.db");
    }

    #[test]
    fn parses_urls() {
        let u = parse_url("sqlite://var/audit.db").unwrap();
        assert_eq!(u.backend, Backend::Sqlite);
        assert_eq!(u.connect, "sqlite://var/audit.db?mode=rwc");
        let u = parse_url("sqlite://var/audit.db?mode=ro").unwrap();
        assert_eq!(u.connect, "sqlite://var/audit.db?mode=ro");
        assert!(parse_url("sqlite::memory:").unwrap().memory);
        let u = parse_url("postgres://tm:pw@h/db").unwrap();
        assert_eq!(u.backend, Backend::Postgres);
        assert!(!u.redacted.contains("pw"));
        let err = parse_url("mysql://tm:secret@h/db").unwrap_err();
        assert!(matches!(err, AuditError::BadUrl { .. }));
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("[audit] database"), "{err}");
        assert!(parse_url("sqlite://").is_err());
    }

    /// The audit writer opens a SQLite file by its plain path with the
    /// default VFS (`audit::sqlite`): a URL that would make the pool open it
    /// otherwise is refused for writing, and still fine for reading.
    #[test]
    fn writable_sqlite_urls_refuse_what_the_writer_would_not_follow() {
        for url in [
            "sqlite://var/audit.db?vfs=unix-dotfile",
            "sqlite://var/audit.db?mode=rwc&immutable=1",
            "sqlite://var/audit.db?cache=shared",
            "sqlite:file:audit.db",
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(err.to_string().contains("not supported"), "{url}: {err}");
            parse_url_read_only(url).unwrap();
        }
        parse_url("sqlite://var/audit.db?cache=private").unwrap();
        parse_url("sqlite::memory:?cache=shared").unwrap();
    }

    #[test]
    fn read_only_urls_force_mode_ro() {
        let u = parse_url_read_only("sqlite://var/audit.db").unwrap();
        assert_eq!(u.connect, "sqlite://var/audit.db?mode=ro");
        assert_eq!(
            u.file.as_deref(),
            Some(std::path::Path::new("var/audit.db"))
        );
        let u = parse_url_read_only("sqlite:///var/a%20b.db?mode=rwc&cache=private").unwrap();
        assert_eq!(u.connect, "sqlite:///var/a%20b.db?cache=private&mode=ro");
        assert_eq!(u.file.as_deref(), Some(std::path::Path::new("/var/a b.db")));
        let u = parse_url_read_only("sqlite::memory:").unwrap();
        assert!(u.memory && u.file.is_none());
        let u = parse_url_read_only("postgres://tm@h/db").unwrap();
        assert_eq!(u.access, Access::ReadOnly);
        assert!(u.file.is_none());
        assert!(parse_url_read_only("sqlite://bad%zz.db").is_err());
    }
}
