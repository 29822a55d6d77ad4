//! Exchange rate limits: a small GCRA (token bucket) with time as a parameter, one lock-free bucket per broker and a bounded map of buckets per verified subject.
//!
//! # The algorithm
//!
//! GCRA (the generic cell rate algorithm) is a token bucket stored as one
//! number per key, the *theoretical arrival time* (TAT): the instant at which
//! the bucket would be full again. A request at `now` is allowed when
//! `now >= max(TAT, now) - tolerance`, and then moves TAT on by one emission
//! interval (`1 / rate`). `tolerance = (burst - 1) / rate`, so a full bucket
//! admits `burst` requests at once and then one per emission interval. A
//! refused request changes nothing, so hammering does not extend the wait.
//!
//! # Why hand-written, not `governor`
//!
//! `governor` reads time through its own `Clock` trait (`quanta` by default),
//! while tokenmint reads the clock only at the edge and passes `now` down; and
//! its keyed store (`dashmap`) has no bound on the number of keys, only a
//! `retain_recent` sweep the caller must schedule. Bounding memory and taking
//! `now` as a plain value would mean wrapping most of it. The GCRA itself is
//! `Quota::check`, a dozen lines.
//!
//! # What is limited
//!
//! - **Per broker** ([`Limiter::check_broker`]): one bucket per configured
//!   broker, an `AtomicU64` updated with compare-and-swap (no lock). Checked
//!   only for requests the broker's policy allows, so callers without a valid
//!   token for a broker cannot use up its budget.
//! - **Per subject** ([`Limiter::check_subject`]): one bucket per verified
//!   (issuer, `sub`) pair. Keys come only from verified tokens. The map holds
//!   at most `max_subjects` buckets; a full bucket (TAT <= now) is the same as
//!   no bucket, so when the map is at its cap the full ones are swept out. If
//!   every bucket is still in use, a *new* subject is refused (fail closed)
//!   until one frees up; known subjects are unaffected. Keys are 64-bit keyed
//!   SipHash digests of (issuer, `sub`) with a per-process random key, so a
//!   check allocates nothing and an attacker cannot aim for collisions (an
//!   accidental one would only make two subjects share a bucket).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

const NANOS_PER_SECOND: f64 = 1e9;
/// Lowest accepted rate: one request per 1000 s.
pub const MIN_RATE_PER_SECOND: f64 = 0.001;
/// Highest accepted rate.
pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;
/// Highest accepted burst.
pub const MAX_BURST: u32 = 1_000_000;

/// Why a quota is not acceptable. `Display` completes "… is not a valid limit: ".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// The rate is zero, negative or not a number.
    #[error("rate_per_second must be a positive number (at least {MIN_RATE_PER_SECOND}); a zero rate would refuse everything after the first burst")]
    Rate,
    /// The rate is above [`MAX_RATE_PER_SECOND`].
    #[error("rate_per_second must be at most {MAX_RATE_PER_SECOND}")]
    RateTooHigh,
    /// The burst is zero.
    #[error("burst must be at least 1; a zero burst would refuse every request")]
    ZeroBurst,
    /// The burst is above [`MAX_BURST`].
    #[error("burst must be at most {MAX_BURST}")]
    BurstTooHigh,
}

/// A validated rate and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Nanoseconds between two requests at the sustained rate (`1 / rate`).
    emission_ns: u64,
    /// How far ahead of `now` the TAT may run: `(burst - 1) * emission`.
    tolerance_ns: u64,
    /// The configured burst, for messages.
    burst: u32,
}

impl Quota {
    /// `rate_per_second` sustained, `burst` at once from a full bucket.
    pub fn new(rate_per_second: f64, burst: u32) -> Result<Self, LimitError> {
        if !(rate_per_second.is_finite() && rate_per_second >= MIN_RATE_PER_SECOND) {
            return Err(LimitError::Rate);
        }
        if rate_per_second > MAX_RATE_PER_SECOND {
            return Err(LimitError::RateTooHigh);
        }
        if burst == 0 {
            return Err(LimitError::ZeroBurst);
        }
        if burst > MAX_BURST {
            return Err(LimitError::BurstTooHigh);
        }
        // Bounded by the checks above: 1_000 ..= 1e12 ns.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let emission_ns = (NANOS_PER_SECOND / rate_per_second).round() as u64;
        Ok(Self {
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(u64::from(burst - 1)),
            burst,
        })
    }

    /// The burst a full bucket admits.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The sustained rate.
    pub fn rate_per_second(&self) -> f64 {
        // Exact enough for messages and docs; u64 -> f64 loses nothing here.
        #[allow(clippy::cast_precision_loss)]
        let emission = self.emission_ns as f64;
        NANOS_PER_SECOND / emission
    }

    /// The GCRA step: given a bucket's TAT and `now` (both in [`ticks`]),
    /// the new TAT if the request is allowed, or how long (ns) until it would be.
    fn check(&self, tat: u64, now: u64) -> Result<u64, u64> {
        let tat = tat.max(now);
        let allow_at = tat.saturating_sub(self.tolerance_ns);
        if now < allow_at {
            return Err(allow_at - now);
        }
        Ok(tat.saturating_add(self.emission_ns))
    }
}

/// `now` as the limiter's time value: nanoseconds since the Unix epoch
/// (0 before it). Read at the edge and passed down like every other `now`.
pub fn ticks(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp_nanos()).unwrap_or(0)
}

/// A wait as a `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The broker's bucket is empty.
    Broker,
    /// The subject's bucket is empty.
    Subject,
    /// The subject table is at its cap with every bucket in use, and this
    /// subject has none yet.
    SubjectTableFull,
}

/// A refusal: which limit, and how long until a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused.
    pub scope: Scope,
    /// How long until the bucket admits one more request.
    pub retry_after: Duration,
}

/// Per-broker and per-subject limits, built once from the configuration.
#[derive(Debug)]
pub struct Limiter {
    /// One bucket per broker name; a name not listed is not limited here
    /// (it is not a configured broker, so it never reaches minting).
    brokers: HashMap<String, Bucket>,
    /// Buckets per verified (issuer, sub).
    subjects: SubjectTable,
}

#[derive(Debug)]
struct Bucket {
    quota: Quota,
    /// The TAT, updated by compare-and-swap.
    tat: AtomicU64,
}

#[derive(Debug)]
struct SubjectTable {
    quota: Quota,
    /// At most this many buckets are kept.
    cap: usize,
    /// Keys the (issuer, sub) digests; random per process.
    hasher: RandomState,
    state: Mutex<SubjectState>,
}

#[derive(Debug, Default)]
struct SubjectState {
    /// Digest of (issuer, sub) -> TAT.
    tats: HashMap<u64, u64>,
    /// No bucket can be full before this tick, so sweeping earlier frees nothing.
    next_sweep: u64,
}

impl Limiter {
    /// A limiter with one bucket per `(broker name, quota)`, and subject
    /// buckets of `per_subject`, at most `max_subjects` of them.
    pub fn new<'a>(
        brokers: impl IntoIterator<Item = (&'a str, Quota)>,
        per_subject: Quota,
        max_subjects: usize,
    ) -> Self {
        Self {
            brokers: brokers
                .into_iter()
                .map(|(name, quota)| {
                    (
                        name.to_owned(),
                        Bucket {
                            quota,
                            tat: AtomicU64::new(0),
                        },
                    )
                })
                .collect(),
            subjects: SubjectTable {
                quota: per_subject,
                cap: max_subjects.max(1),
                hasher: RandomState::new(),
                state: Mutex::new(SubjectState::default()),
            },
        }
    }

    /// Takes one request from `broker`'s bucket at `now` (see [`ticks`]).
    pub fn check_broker(&self, broker: &str, now: u64) -> Result<(), Limited> {
        let Some(bucket) = self.brokers.get(broker) else {
            return Ok(());
        };
        let mut current = bucket.tat.load(Ordering::Acquire);
        loop {
            let next = bucket.quota.check(current, now).map_err(|wait| Limited {
                scope: Scope::Broker,
                retry_after: Duration::from_nanos(wait),
            })?;
            match bucket.tat.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes one request from the bucket of (`issuer`, `sub`) at `now`.
    /// Call only with a verified token's issuer and subject.
    pub fn check_subject(&self, issuer: &str, sub: &str, now: u64) -> Result<(), Limited> {
        let table = &self.subjects;
        let key = table.hasher.hash_one((issuer, sub));
        // Every update is a single insert or assignment: a poisoned lock still holds valid TATs.
        let mut state = table.state.lock().unwrap_or_else(|e| e.into_inner());
        let limited = |wait| Limited {
            scope: Scope::Subject,
            retry_after: Duration::from_nanos(wait),
        };
        if let Some(tat) = state.tats.get_mut(&key) {
            *tat = table.quota.check(*tat, now).map_err(limited)?;
            return Ok(());
        }
        if state.tats.len() >= table.cap {
            sweep(&mut state, now);
            if state.tats.len() >= table.cap {
                let wait = state.next_sweep.saturating_sub(now);
                return Err(Limited {
                    scope: Scope::SubjectTableFull,
                    retry_after: Duration::from_nanos(wait),
                });
            }
        }
        let tat = table.quota.check(0, now).map_err(limited)?;
        state.tats.insert(key, tat);
        Ok(())
    }

    /// How many subject buckets are held (for tests and metrics).
    pub fn subject_count(&self) -> usize {
        let state = self
            .subjects
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        state.tats.len()
    }
}

/// Drops every full bucket (TAT <= now: indistinguishable from a new one),
/// unless none can have become full since the last sweep.
fn sweep(state: &mut SubjectState, now: u64) {
    if now < state.next_sweep {
        return;
    }
    state.tats.retain(|_, tat| *tat > now);
    state.next_sweep = state.tats.values().copied().min().unwrap_or(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// An arbitrary start, far from 0 so subtraction bugs show.
    const T0: u64 = 1_700_000_000 * SEC;

    fn one_broker(rate: f64, burst: u32) -> Limiter {
        Limiter::new(
            [("b", Quota::new(rate, burst).unwrap())],
            Quota::new(1.0, 1).unwrap(),
            10,
        )
    }

    #[test]
    fn quota_validation() {
        assert_eq!(Quota::new(0.0, 10), Err(LimitError::Rate));
        assert_eq!(Quota::new(-1.0, 10), Err(LimitError::Rate));
        assert_eq!(Quota::new(f64::NAN, 10), Err(LimitError::Rate));
        assert_eq!(Quota::new(f64::INFINITY, 10), Err(LimitError::Rate));
        assert_eq!(Quota::new(2e6, 10), Err(LimitError::RateTooHigh));
        assert_eq!(Quota::new(1.0, 0), Err(LimitError::ZeroBurst));
        assert_eq!(Quota::new(1.0, 2_000_000), Err(LimitError::BurstTooHigh));
        let q = Quota::new(0.5, 3).unwrap();
        assert_eq!(q.emission_ns, 2 * SEC);
        assert_eq!(q.tolerance_ns, 4 * SEC);
        assert!((q.rate_per_second() - 0.5).abs() < 1e-9);
        assert_eq!(q.burst(), 3);
    }

    #[test]
    fn burst_is_admitted_at_once_then_refused() {
        let l = one_broker(1.0, 5);
        for i in 0..5 {
            assert_eq!(l.check_broker("b", T0), Ok(()), "request {i}");
        }
        let err = l.check_broker("b", T0).unwrap_err();
        assert_eq!(err.scope, Scope::Broker);
        assert_eq!(err.retry_after, Duration::from_secs(1));
        // A refused request costs nothing: the wait does not grow.
        for _ in 0..100 {
            assert_eq!(
                l.check_broker("b", T0).unwrap_err().retry_after,
                Duration::from_secs(1)
            );
        }
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let l = one_broker(2.0, 2); // one every 500 ms
        assert!(l.check_broker("b", T0).is_ok());
        assert!(l.check_broker("b", T0).is_ok());
        let err = l.check_broker("b", T0 + SEC / 4).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(250));
        assert!(l.check_broker("b", T0 + SEC / 2).is_ok());
        assert!(l.check_broker("b", T0 + SEC / 2).is_err());
        // Idle for long: refills to the burst, never beyond it.
        let later = T0 + 3600 * SEC;
        assert!(l.check_broker("b", later).is_ok());
        assert!(l.check_broker("b", later).is_ok());
        assert!(l.check_broker("b", later).is_err());
    }

    #[test]
    fn time_going_backwards_does_not_grant_extra() {
        let l = one_broker(1.0, 1);
        assert!(l.check_broker("b", T0).is_ok());
        assert!(l.check_broker("b", T0 - 10 * SEC).is_err());
        assert!(l.check_broker("b", T0 + SEC).is_ok());
    }

    #[test]
    fn unknown_broker_is_not_limited_here() {
        let l = one_broker(1.0, 1);
        for _ in 0..10 {
            assert!(l.check_broker("not-configured", T0).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(59)), 59);
        assert_eq!(
            retry_after_secs(Duration::from_secs(59) + Duration::from_nanos(1)),
            60
        );
    }

    #[test]
    fn subjects_have_separate_buckets_per_issuer_and_sub() {
        let l = Limiter::new([], Quota::new(1.0, 2).unwrap(), 100);
        assert!(l.check_subject("gh", "alice", T0).is_ok());
        assert!(l.check_subject("gh", "alice", T0).is_ok());
        let err = l.check_subject("gh", "alice", T0).unwrap_err();
        assert_eq!(err.scope, Scope::Subject);
        assert_eq!(err.retry_after, Duration::from_secs(1));
        // Another subject, or the same sub from another issuer, is not limited.
        assert!(l.check_subject("gh", "bob", T0).is_ok());
        assert!(l.check_subject("gitlab", "alice", T0).is_ok());
        // The pair is hashed as a pair: ("gh", "alice") != ("gha", "lice").
        assert!(l.check_subject("gha", "lice", T0).is_ok());
        assert!(l.check_subject("gh", "alice", T0 + SEC).is_ok());
    }

    #[test]
    fn subject_table_is_capped_and_full_buckets_are_evicted() {
        let cap = 4;
        let l = Limiter::new([], Quota::new(1.0, 2).unwrap(), cap);
        for i in 0..cap {
            assert!(l.check_subject("gh", &format!("s{i}"), T0).is_ok());
        }
        assert_eq!(l.subject_count(), cap);
        // At the cap, with every bucket in use, a new subject is refused...
        let err = l.check_subject("gh", "newcomer", T0).unwrap_err();
        assert_eq!(err.scope, Scope::SubjectTableFull);
        assert_eq!(err.retry_after, Duration::from_secs(1));
        assert_eq!(l.subject_count(), cap, "the table never grows past its cap");
        // ...while a known subject still has its own bucket.
        assert!(l.check_subject("gh", "s0", T0).is_ok());
        // Once buckets are full again they are swept out to make room.
        let later = T0 + 10 * SEC;
        assert!(l.check_subject("gh", "newcomer", later).is_ok());
        assert_eq!(l.subject_count(), 1);
        // Many distinct subjects over time: the table stays bounded.
        for i in 0..1000u64 {
            let _ = l.check_subject("gh", &format!("x{i}"), later + i * SEC);
            assert!(l.subject_count() <= cap);
        }
    }

    #[test]
    fn concurrent_broker_checks_admit_exactly_the_burst() {
        let l = std::sync::Arc::new(one_broker(1.0, 100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| l.check_broker("b", T0).is_ok()).count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 100);
    }
}
