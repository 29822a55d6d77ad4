//! The one place that reads the wall clock; everything else takes `now` as a parameter.

use std::fmt;
use time::OffsetDateTime;

/// `at` as RFC 3339 (`2026-11-23T12:00:00Z`), the form every timestamp
/// tokenmint shows takes. Falls back to Unix seconds for a year RFC 3339
/// cannot express.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// A source of the current time, read at the edge (a request handler, a CLI
/// command) and passed down as a plain value, so tests control time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current UTC time.
    fn now(&self) -> OffsetDateTime;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // This is the one sanctioned clock read.
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock fixed at a settable instant, for tests and offline tools.
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<OffsetDateTime>);

impl FixedClock {
    /// A clock that always answers `at` until [`FixedClock::set`] moves it.
    pub fn new(at: OffsetDateTime) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        // A poisoned lock still holds a valid time; keep going with it.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_z() {
        let at = time::macros::datetime!(2026-11-23 12:00:05 UTC);
        assert_eq!(rfc3339(at), "2026-11-23T12:00:05Z");
    }
}
