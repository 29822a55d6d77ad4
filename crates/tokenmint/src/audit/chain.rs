//! The hash chain: the exact preimage of a row's hash, the genesis value and chain ids.
//!
//! # Row hash
//!
//! ```text
//! hash = lowercase_hex( SHA-256( prev_hash "\n" chain_id "\n" seq "\n" record_json ) )
//! ```
//!
//! where, as UTF-8 bytes with no other separators or padding:
//!
//! - `prev_hash` is the previous row's `hash` in the same chain (64 lowercase
//!   hex digits), or [`GENESIS_HASH`] (64 `0`s) for `seq` 1;
//! - `chain_id` is the row's chain id (never contains `\n`; see [`validate_chain_id`]);
//! - `seq` is the row's sequence number in decimal ASCII without leading zeros;
//! - `record_json` is the exact text stored in the `record` column.
//!
//! Only the last part can contain `\n`, so the preimage splits one way only.
//! Binding `chain_id` and `seq` into the hash means a row cannot be moved to
//! another position or chain without its hash changing.

use sha2::{Digest, Sha256};

use super::error::AuditError;

/// `prev_hash` of the first row of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last row of a chain: the writer continues from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Sequence number of the last row; 0 for an empty chain.
    pub(crate) seq: u64,
    /// Hash of the last row; [`GENESIS_HASH`] for an empty chain.
    pub(crate) hash: String,
}

impl Head {
    /// The head of an empty chain.
    pub(crate) fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// Computes a row's hash; see the module docs for the exact preimage.
pub(crate) fn row_hash(prev_hash: &str, chain_id: &str, seq: u64, record_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(chain_id.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(record_json.as_bytes());
    hex::encode(h.finalize())
}

/// Checks that a chain id is 1 to 64 characters from `A-Z a-z 0-9 . _ : -`,
/// which keeps it out of the hash preimage's separators and out of trouble in
/// logs and URLs.
pub(crate) fn validate_chain_id(chain_id: &str) -> Result<(), AuditError> {
    let bad = |reason| {
        Err(AuditError::BadChainId {
            chain_id: chain_id.chars().take(80).collect(),
            reason,
        })
    };
    if chain_id.is_empty() {
        return bad("it is empty");
    }
    if chain_id.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if !chain_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return bad("it contains a character outside the allowed set");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preimage_is_exactly_as_documented() {
        let expected = hex::encode(Sha256::digest(
            format!("{GENESIS_HASH}\nmain\n1\n{{\"a\":1}}").as_bytes(),
        ));
        assert_eq!(row_hash(GENESIS_HASH, "main", 1, "{\"a\":1}"), expected);
        // Each component matters.
        assert_ne!(row_hash(GENESIS_HASH, "main", 2, "{\"a\":1}"), expected);
        assert_ne!(row_hash(GENESIS_HASH, "other", 1, "{\"a\":1}"), expected);
        assert_ne!(row_hash(&"1".repeat(64), "main", 1, "{\"a\":1}"), expected);
        assert_eq!(GENESIS_HASH.len(), 64);
    }

    #[test]
    fn chain_ids() {
        assert!(validate_chain_id("main").is_ok());
        assert!(validate_chain_id("eu-west-1:i-0abc.2_x").is_ok());
        assert!(validate_chain_id("").is_err());
        assert!(validate_chain_id("a\nb").is_err());
        assert!(validate_chain_id("a b").is_err());
        assert!(validate_chain_id(&"a".repeat(65)).is_err());
    }
}
