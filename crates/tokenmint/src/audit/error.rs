//! Audit errors: what failed, with the cause kept as a source, and what the operator should do.
//!
//! Store URLs in these messages are always redacted (no passwords).

use std::sync::Arc;
use std::time::Duration;

/// Why an audit operation failed.
///
/// The variants separate configuration mistakes ([`AuditError::BadUrl`],
/// [`AuditError::BadChainId`]), a store that is down or slow
/// ([`AuditError::Unavailable`], [`AuditError::Timeout`]) and data that
/// cannot be trusted ([`AuditError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store URL is malformed or names an unsupported database.
    #[error("audit store URL {url}: {reason}; check the [audit] database setting (sqlite://path/to/file.db or postgres://user@host/db)")]
    BadUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The chain id cannot be used (it is part of every hash preimage).
    #[error(
        "audit chain id {chain_id:?}: {reason}; use 1 to 64 characters from A-Z a-z 0-9 . _ : -"
    )]
    BadChainId {
        /// The rejected id.
        chain_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The store could not be opened or prepared at startup.
    #[error("open audit store {url}: {action} failed; check the [audit] database setting, that the database is reachable, and that tokenmint may create and write it")]
    Open {
        /// The URL, redacted.
        url: String,
        /// The step that failed, e.g. "connect" or "create schema".
        action: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },

    /// A store opened read-only does not exist (read-only opening never creates it).
    #[error("audit store {url} does not exist; check [audit] database (a store that existed and is gone may have been deleted)")]
    Missing {
        /// The URL, redacted.
        url: String,
    },

    /// A store opened read-only holds no audit log (read-only opening never creates the schema).
    #[error("audit store {url} has no audit_log table; check [audit] database (tokenmint serve creates it on first start)")]
    NotInitialized {
        /// The URL, redacted.
        url: String,
    },

    /// The store was written by a newer tokenmint.
    #[error("open audit store {url}: its schema version is {found}, but this tokenmint understands up to {supported}; upgrade tokenmint or point it at another database")]
    SchemaTooNew {
        /// The URL, redacted.
        url: String,
        /// The version found in the store.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// The store failed while in use (down, full, read-only, table gone, ...).
    #[error("{action} in audit store {url}: the database failed; check that it is up and writable (the writer reconnects and resumes by itself)")]
    Unavailable {
        /// What was being done, e.g. "append record".
        action: &'static str,
        /// The URL, redacted.
        url: String,
        /// The database error (sqlx's, or SQLite's from the writer's own
        /// connection), shared by every caller of a failed batch.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// The store did not answer in time. For an append, the outcome is
    /// unknown: the record may still be committed later.
    #[error(
        "{action} in audit store {url}: no answer within {after:?}; the database is slow or down"
    )]
    Timeout {
        /// What was being done.
        action: &'static str,
        /// The URL, redacted.
        url: String,
        /// The time limit that passed.
        after: Duration,
    },

    /// The background writer is gone (the runtime is shutting down).
    #[error("append to audit store {url}: the audit writer has stopped; restart tokenmint")]
    WriterStopped {
        /// The URL, redacted.
        url: String,
    },

    /// A stored row cannot be read back.
    #[error("read audit store {url}: row {chain_id}#{seq} is corrupt ({detail}); run audit verification to see every damaged row")]
    Corrupt {
        /// The URL, redacted.
        url: String,
        /// The row's chain.
        chain_id: String,
        /// The row's sequence number.
        seq: u64,
        /// What is wrong with it.
        detail: String,
    },

    /// The caller handed over a record that must not be stored as it is.
    #[error("audit record for request {request_id:?} refused: {reason}")]
    InvalidRecord {
        /// The record's request id.
        request_id: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The record could not be serialized (a bug; records are plain data).
    #[error("serialize audit record for request {request_id:?}")]
    Encode {
        /// The record's request id.
        request_id: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Runs one store query within `limit`, mapping a driver error to
/// [`AuditError::Unavailable`] and an expired limit to [`AuditError::Timeout`],
/// both naming `action` and the (redacted) store URL.
pub(crate) async fn bounded<T>(
    action: &'static str,
    url: &str,
    limit: Duration,
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, AuditError> {
    match tokio::time::timeout(limit, query).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(AuditError::Unavailable {
            action,
            url: url.to_owned(),
            source: Arc::new(source),
        }),
        Err(_) => Err(AuditError::Timeout {
            action,
            url: url.to_owned(),
            after: limit,
        }),
    }
}
