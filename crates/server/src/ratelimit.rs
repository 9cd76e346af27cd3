//! The per-key request rate (`BELFRY_RATE_LIMIT`, P6): each secret key may
//! make `rate` requests per second, with bursts of up to `rate` requests,
//! on each node (GCRA: one "theoretical arrival time" per key, no timers).
//! With several nodes behind a load balancer a key gets up to `rate` per
//! node; the limit protects each node, not a global quota.

use belfry_core::Millis;
use std::collections::HashMap;
use std::sync::Mutex;

/// Keys idle for this long are forgotten (their state says nothing then).
const FORGET_MS: i64 = 60_000;

pub struct KeyLimiter {
    /// Milliseconds between requests at the sustained rate.
    interval_ms: f64,
    /// How far ahead of now a key's arrival time may run (the burst).
    burst_ms: f64,
    state: Mutex<HashMap<String, f64>>,
}

impl KeyLimiter {
    /// None when `rate` is 0 (no limit).
    pub fn new(rate: u32) -> Option<KeyLimiter> {
        (rate > 0).then(|| {
            let interval_ms = 1000.0 / f64::from(rate);
            KeyLimiter {
                interval_ms,
                burst_ms: 1000.0 - interval_ms,
                state: Mutex::new(HashMap::new()),
            }
        })
    }

    /// Ok when the key may make a request at `now`; otherwise the seconds
    /// to wait (for `Retry-After`, at least 1).
    pub fn check(&self, key: &str, now: Millis) -> Result<(), u32> {
        let now = now.0 as f64;
        let mut state = self.state.lock().expect("not poisoned");
        if state.len() > 10_000 {
            state.retain(|_, tat| *tat + FORGET_MS as f64 > now);
        }
        let tat = state.get(key).copied().unwrap_or(now).max(now);
        if tat - now > self.burst_ms {
            let wait_ms = tat - now - self.burst_ms;
            return Err(((wait_ms / 1000.0).ceil() as u32).max(1));
        }
        state.insert(key.to_string(), tat + self.interval_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_rate_then_one_per_interval() {
        let l = KeyLimiter::new(5).unwrap();
        let t = |ms: i64| Millis(1_000_000 + ms);
        for _ in 0..5 {
            assert_eq!(l.check("k", t(0)), Ok(()));
        }
        assert_eq!(l.check("k", t(0)), Err(1));
        assert_eq!(l.check("other", t(0)), Ok(()), "per key");
        assert_eq!(l.check("k", t(199)), Err(1));
        assert_eq!(l.check("k", t(200)), Ok(()));
        assert_eq!(l.check("k", t(200)), Err(1));
        // After a second of rest the whole burst is back.
        for _ in 0..5 {
            assert_eq!(l.check("k", t(1400)), Ok(()));
        }
        assert!(KeyLimiter::new(0).is_none());
    }

    #[test]
    fn retry_after_counts_whole_seconds() {
        let l = KeyLimiter::new(1).unwrap();
        assert_eq!(l.check("k", Millis(0)), Ok(()));
        assert_eq!(l.check("k", Millis(1)), Err(1));
        assert_eq!(l.check("k", Millis(1000)), Ok(()));
    }
}
