//! The verifier: walks every chain page by page and names each row that was edited, deleted or moved.

use serde::Serialize;
use sqlx::AnyPool;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::chain::{row_hash, Head, GENESIS_HASH};
use super::error::AuditError;
use super::record::{unix_micros, AuditRecord};
use super::store::{self, Anchor, Backend, RawRow};

/// Rows read per query, so verification never holds the whole table.
/// Tests use small pages so that every test crosses page boundaries.
const PAGE_ROWS: u32 = if cfg!(test) { 7 } else { 1000 };

/// Most problems kept in a report; the rest are only counted.
const MAX_PROBLEMS: usize = 1000;

/// What [`AuditLog::verify`](super::AuditLog::verify) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Every chain in the store, sorted by id.
    pub chains: Vec<ChainSummary>,
    /// What is wrong, in chain and row order (at most 1000; see `problems_omitted`).
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub problems_omitted: u64,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }
}

/// One chain's extent. Record `head_seq` and `head_hash` somewhere the
/// database's operators cannot write (a ticket, another system's log): a
/// hash chain alone cannot show that rows were removed from its end, but a
/// later verify whose chain no longer contains that head hash can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// The chain id.
    pub chain_id: String,
    /// Rows present.
    pub rows: u64,
    /// Sequence number of the last row (0 if none).
    pub head_seq: u64,
    /// Stored hash of the last row ([`GENESIS_HASH`] if none).
    pub head_hash: String,
    /// The last row `tokenmint audit prune` deleted (0 if the chain was never
    /// pruned, or pruning is not allowed): the rows present start after it,
    /// and the first links to its recorded hash.
    pub pruned_through: u64,
}

/// One thing wrong with one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The chain.
    pub chain_id: String,
    /// The row (for [`ProblemKind::Missing`] and [`ProblemKind::Truncated`], the first missing one).
    pub seq: u64,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// For the operator, naming the row, e.g. `row main#17 was edited ...`.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of damage the verifier tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The row's contents do not match its stored hash.
    Edited,
    /// A plain column (`time_us`, `broker`, `decision`) disagrees with the hashed record.
    ColumnMismatch,
    /// Sequence numbers are missing before this row.
    Missing,
    /// The row's `prev_hash` is not the hash of the row before it.
    BrokenLink,
    /// The hashed record is not a readable audit record.
    Unreadable,
    /// Rows this process saw committed are gone from the end of the chain.
    Truncated,
    /// A row this process saw committed now has a different hash.
    Rewritten,
}

/// Collects problems up to the cap.
#[derive(Debug, Default)]
struct Problems {
    kept: Vec<Problem>,
    omitted: u64,
}

impl Problems {
    fn push(&mut self, chain_id: &str, seq: u64, kind: ProblemKind, message: String) {
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(Problem {
                chain_id: chain_id.to_owned(),
                seq,
                kind,
                message,
            });
        } else {
            self.omitted += 1;
        }
    }
}

/// Where and how long verification may wait for each query.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    /// The store.
    pub(crate) pool: &'a AnyPool,
    /// Which database it is.
    pub(crate) backend: Backend,
    /// For messages, redacted.
    pub(crate) url: &'a str,
    /// Longest one query may take.
    pub(crate) query_timeout: Duration,
    /// Walk pruned chains from their anchors (`[audit] allow_prune`). Off,
    /// anchors are ignored and pruned rows show as missing, so an anchor
    /// forged by someone who can write to the database hides nothing.
    pub(crate) allow_prune: bool,
}

impl Source<'_> {
    /// Runs one query within the time limit, mapping failures to audit errors.
    async fn run<T>(
        &self,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, AuditError> {
        super::error::bounded("verify audit chains", self.url, self.query_timeout, query).await
    }
}

/// Verifies every chain in the store. `own`, for a writing handle, is its
/// chain and the highest head it has seen there, checked against what the
/// store now holds; a read-only handle has none.
pub(crate) async fn verify(
    src: &Source<'_>,
    own: Option<(&str, Head)>,
) -> Result<VerifyReport, AuditError> {
    let mut ids = src.run(store::chain_ids(src.pool)).await?;
    let anchors = src.run(store::anchors(src.pool, src.backend)).await;
    let anchors = if src.allow_prune {
        anchors?
    } else {
        // Only for a hint in messages: whatever is in the table cannot
        // change the outcome, nor stop the report.
        anchors.unwrap_or_default()
    };
    if src.allow_prune {
        // A pruned chain keeps its last row, so an anchor without rows is
        // itself a finding: walk it too.
        ids.extend(anchors.keys().cloned());
    }
    if let Some((own_id, _)) = &own {
        ids.push((*own_id).to_owned());
    }
    ids.sort();
    ids.dedup();
    let mut problems = Problems::default();
    let mut chains = Vec::with_capacity(ids.len());
    for chain_id in ids {
        let known = own
            .as_ref()
            .filter(|(own_id, _)| *own_id == chain_id)
            .map(|(_, head)| head);
        let anchor = anchors.get(&chain_id);
        chains.push(verify_chain(src, &chain_id, anchor, known, &mut problems).await?);
    }
    Ok(VerifyReport {
        chains,
        problems: problems.kept,
        problems_omitted: problems.omitted,
    })
}

/// Walks one chain in `seq` order, one page at a time: from its start, or,
/// if it was pruned and pruning is allowed, from its anchor. Rows still at
/// or below the anchor (a prune stopped between its two statements) are
/// checked too, and must lead to the anchor's hash.
async fn verify_chain(
    src: &Source<'_>,
    chain_id: &str,
    anchor: Option<&Anchor>,
    known: Option<&Head>,
    problems: &mut Problems,
) -> Result<ChainSummary, AuditError> {
    let mut walk = Walk {
        chain_id,
        rows: 0,
        last_seq: 0,
        last_hash: GENESIS_HASH.to_owned(),
        pruned_through: 0,
        below_anchor: None,
        ignored_anchor: None,
        known,
        problems,
    };
    match anchor {
        Some(a) if src.allow_prune => {
            let lowest = src.run(store::page(src.pool, chain_id, 0, 1)).await?;
            walk.start_at(a, lowest.first());
        }
        Some(a) => walk.ignored_anchor = Some(a.seq),
        None => {}
    }
    loop {
        let page = src
            .run(store::page(src.pool, chain_id, walk.last_seq, PAGE_ROWS))
            .await?;
        let full = page.len() == PAGE_ROWS as usize;
        for row in page {
            walk.pass_anchor_before(row.seq);
            if src.allow_prune && walk.below_anchor.is_none() && row.seq > walk.last_seq + 1 {
                // A prune running now may have deleted rows this walk had
                // not reached: if the anchor moved past them, go on from it
                // (it may have moved past this row too, since it was read).
                // Not under the anchor the walk started from: rows left
                // there are deleted all at once, so a gap among them is a
                // finding.
                let anchors = src.run(store::anchors(src.pool, src.backend)).await?;
                if let Some(a) = anchors.get(chain_id) {
                    if a.seq > walk.last_seq {
                        walk.jump_to(a);
                    }
                }
            }
            if row.seq <= walk.last_seq {
                // Pruned while this page was read: the walk went on past it.
                continue;
            }
            walk.check(&row);
        }
        if !full {
            break;
        }
    }
    walk.finish();
    Ok(ChainSummary {
        chain_id: chain_id.to_owned(),
        rows: walk.rows,
        head_seq: walk.last_seq,
        head_hash: walk.last_hash,
        pruned_through: walk.pruned_through,
    })
}

/// [`verify_chain`] from `anchor`, as if it had been read before a prune
/// moved it: for the test of a walk that meets a moved anchor.
#[cfg(test)]
pub(crate) async fn verify_chain_from(
    src: &Source<'_>,
    chain_id: &str,
    anchor: &Anchor,
) -> Result<(ChainSummary, Vec<Problem>), AuditError> {
    let mut problems = Problems::default();
    let summary = verify_chain(src, chain_id, Some(anchor), None, &mut problems).await?;
    Ok((summary, problems.kept))
}

/// State of a walk along one chain.
struct Walk<'a> {
    chain_id: &'a str,
    rows: u64,
    /// The previous row (0 = the start of the chain).
    last_seq: u64,
    /// Its stored hash (genesis at the start).
    last_hash: String,
    /// The prune anchor's `seq` (0 if none or not allowed).
    pruned_through: u64,
    /// While walking rows left at or below the anchor: the anchor they must
    /// lead to.
    below_anchor: Option<Anchor>,
    /// An anchor ignored because pruning is not allowed, for messages.
    ignored_anchor: Option<u64>,
    /// The highest head this process saw for this chain.
    known: Option<&'a Head>,
    problems: &'a mut Problems,
}

impl Walk<'_> {
    /// Starts a pruned chain's walk: at its anchor, or, if rows at or below
    /// the anchor are left (`lowest`), at the first of them.
    fn start_at(&mut self, anchor: &Anchor, lowest: Option<&RawRow>) {
        self.pruned_through = anchor.seq;
        match lowest {
            Some(row) if row.seq <= anchor.seq => {
                // Its predecessor is gone; the rows from it on must lead to the anchor.
                self.last_seq = row.seq - 1;
                self.last_hash.clone_from(&row.prev_hash);
                self.below_anchor = Some(anchor.clone());
            }
            _ => {
                self.last_seq = anchor.seq;
                self.last_hash.clone_from(&anchor.hash);
            }
        }
    }

    /// Goes on from an anchor a prune moved while this walk ran.
    fn jump_to(&mut self, anchor: &Anchor) {
        self.pruned_through = anchor.seq;
        self.last_seq = anchor.seq;
        self.last_hash.clone_from(&anchor.hash);
    }

    /// Leaves the rows under the anchor if row `seq` is past it.
    fn pass_anchor_before(&mut self, seq: u64) {
        if self.below_anchor.as_ref().is_some_and(|a| seq > a.seq) {
            self.leave_below_anchor();
        }
    }

    /// Past the rows left at or below the anchor: the anchor's own row, if
    /// still there, must have its hash. (Rows under the anchor may vanish
    /// while the walk reads them: a prune running now deletes them.)
    fn leave_below_anchor(&mut self) {
        let Some(anchor) = self.below_anchor.take() else {
            return;
        };
        if self.last_seq == anchor.seq && self.last_hash != anchor.hash {
            let c = self.chain_id;
            self.problems.push(
                c,
                anchor.seq,
                ProblemKind::BrokenLink,
                format!(
                    "row {c}#{} does not have the hash its prune anchor records (the anchor or the rows under it were altered)",
                    anchor.seq
                ),
            );
        }
        self.last_seq = anchor.seq;
        self.last_hash = anchor.hash;
    }

    /// Checks one row against its neighbour and itself, in this order:
    /// 1. no sequence numbers skipped since the previous row;
    /// 2. its stored hash matches its contents (so nothing was edited);
    /// 3. its `prev_hash` is the previous row's hash (so nothing was moved);
    /// 4. the record parses, and the plain columns agree with it;
    /// 5. if this process saw this row committed, the hash is the same.
    fn check(&mut self, row: &RawRow) {
        self.pass_anchor_before(row.seq);
        let c = self.chain_id;
        let n = row.seq;
        self.rows += 1;

        // 1. Gaps.
        let expected = self.last_seq + 1;
        if n > expected {
            let mut msg = if n - expected == 1 {
                format!("row {c}#{expected} is missing (deleted)")
            } else {
                format!("rows {c}#{expected}..{c}#{} are missing (deleted)", n - 1)
            };
            if let Some(anchor) = self.ignored_anchor.filter(|_| expected == 1) {
                msg.push_str(&format!(
                    "; audit_anchor says rows up to {c}#{anchor} were pruned, but [audit] allow_prune is off"
                ));
            }
            self.problems.push(c, expected, ProblemKind::Missing, msg);
        }

        // 2. Contents against the stored hash.
        if row_hash(&row.prev_hash, c, n, &row.record) != row.hash {
            self.problems.push(
                c,
                n,
                ProblemKind::Edited,
                format!("row {c}#{n} was edited: its contents do not match its stored hash (or it was moved here from another position)"),
            );
        }

        // 3. Link to the previous row.
        if row.prev_hash != self.last_hash {
            let prev = if self.last_seq == 0 {
                "the start of the chain".to_owned()
            } else if self.last_seq == self.pruned_through {
                format!("the prune anchor {c}#{} (audit_anchor)", self.last_seq)
            } else {
                format!("{c}#{}", self.last_seq)
            };
            self.problems.push(
                c,
                n,
                ProblemKind::BrokenLink,
                format!("row {c}#{n} does not follow {prev} (rows reordered or deleted, or {prev} was edited and re-hashed)"),
            );
        }

        // 4. The record, and the columns against it.
        match serde_json::from_str::<AuditRecord>(&row.record) {
            Err(e) => self.problems.push(
                c,
                n,
                ProblemKind::Unreadable,
                format!("row {c}#{n} holds a record that cannot be read: {e}"),
            ),
            Ok(record) => {
                let mut mismatch = |column: &str, stored: &str, hashed: &str| {
                    self.problems.push(
                        c,
                        n,
                        ProblemKind::ColumnMismatch,
                        format!("row {c}#{n} was edited: column {column} is {stored:?} but its hashed record says {hashed:?}"),
                    );
                };
                if row.broker != record.broker {
                    mismatch("broker", &row.broker, &record.broker);
                }
                if row.decision != record.decision.as_str() {
                    mismatch("decision", &row.decision, record.decision.as_str());
                }
                if Some(row.time_us) != unix_micros(record.time) {
                    let hashed = unix_micros(record.time)
                        .map_or_else(|| "out of range".to_owned(), |t| t.to_string());
                    mismatch("time_us", &row.time_us.to_string(), &hashed);
                }
            }
        }

        // 5. What this process saw.
        if let Some(known) = self.known {
            if known.seq == n && known.hash != row.hash {
                self.problems.push(
                    c,
                    n,
                    ProblemKind::Rewritten,
                    format!(
                        "row {c}#{n} is not the row this process committed or loaded (hash was {}, is now {}): the chain was rewritten",
                        known.hash, row.hash
                    ),
                );
            }
        }

        self.last_seq = n;
        self.last_hash.clone_from(&row.hash);
    }

    /// After the last row: a pruned chain still has rows, and rows this
    /// process saw are still there.
    fn finish(&mut self) {
        self.leave_below_anchor();
        if self.pruned_through > 0 && self.last_seq <= self.pruned_through {
            let c = self.chain_id;
            let first = self.pruned_through + 1;
            self.problems.push(
                c,
                first,
                ProblemKind::Truncated,
                format!("chain {c} was pruned through #{}, but it has no rows after that (a prune always keeps the last row)", self.pruned_through),
            );
        }
        if let Some(known) = self.known {
            if known.seq > self.last_seq {
                let c = self.chain_id;
                let first = self.last_seq + 1;
                let msg = if first == known.seq {
                    format!("row {c}#{first} is missing from the end of the chain (truncated); this process saw it committed")
                } else {
                    format!(
                        "rows {c}#{first}..{c}#{} are missing from the end of the chain (truncated); this process saw them committed",
                        known.seq
                    )
                };
                self.problems.push(c, first, ProblemKind::Truncated, msg);
            }
        }
    }
}
