//! Time as Belfry stores it (milliseconds since the Unix epoch) and the clock
//! abstraction, so that tests can move time instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// Parses an RFC 3339 timestamp (`2026-11-21T09:00:00Z`, offsets allowed).
    pub fn parse_rfc3339(value: &str) -> Result<Millis, String> {
        let ts: jiff::Timestamp = value.trim().parse().map_err(|_| {
            format!("'{value}' is not an RFC 3339 time; write e.g. 2026-11-21T09:00:00Z")
        })?;
        Ok(Millis(ts.as_millisecond()))
    }

    /// RFC 3339 in UTC with millisecond precision.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => format!("{ts:.3}"),
            Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
        }
    }

    pub fn plus_secs(self, secs: i64) -> Millis {
        Millis(self.0.saturating_add(secs.saturating_mul(1000)))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis(jiff::Timestamp::now().as_millisecond())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self(AtomicI64::new(start.0))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    pub fn set(&self, to: Millis) {
        self.0.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let m = Millis::parse_rfc3339("2026-11-21T09:00:00.250+01:00").unwrap();
        assert_eq!(m.to_rfc3339(), "2026-11-21T08:00:00.250Z");
        assert!(Millis::parse_rfc3339("tomorrow").is_err());
        assert!(Millis::parse_rfc3339("2026-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Millis(1000));
        assert_eq!(c.now(), Millis(1000));
        c.advance_secs(2);
        assert_eq!(c.now(), Millis(3000));
    }
}
