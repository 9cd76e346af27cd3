//! Why a live stream must stop, and the wake-up that tells its task.
//!
//! A stream's task checks this on every wake-up, that is, for every frame
//! it writes. It is one atomic load and a waker registration; the
//! cancellation tokens it replaces took a mutex on every poll, three per
//! wake-up, one of them (the server's shutdown token) shared by every
//! connection, so that the cores took its cache line from each other
//! during a fan-out (3-4 % of the server's samples with 10,000 WebSockets).

use futures::task::AtomicWaker;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

/// Why a stream stops. A stronger reason replaces a weaker one: a
/// connection asked to end cleanly that is then cut off stops at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// Its token was revoked or expired, or its user deleted: it ends
    /// cleanly (WebSocket close 4001; the SSE response completes).
    Ended = 1,
    /// The server shuts down (WebSocket close 1012).
    ShuttingDown = 2,
    /// The hub cut it off (too slow, too many streams, events missed): it
    /// stops without a word.
    Killed = 3,
}

impl Reason {
    fn from_u8(v: u8) -> Option<Reason> {
        match v {
            1 => Some(Reason::Ended),
            2 => Some(Reason::ShuttingDown),
            3 => Some(Reason::Killed),
            _ => None,
        }
    }
}

/// Set by the hub, watched by one stream task.
#[derive(Debug, Default)]
pub struct Stop {
    reason: AtomicU8,
    waker: AtomicWaker,
}

impl Stop {
    /// Records `reason` unless a stronger one is there, and wakes the task.
    pub fn set(&self, reason: Reason) {
        let before = self.reason.fetch_max(reason as u8, Ordering::AcqRel);
        if before < reason as u8 {
            self.waker.wake();
        }
    }

    /// The reason, once one is set.
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// Ready with the reason once one at least as strong as `least` is
    /// set; otherwise the task is woken when a reason is set.
    fn poll_at_least(&self, least: Reason, cx: &mut Context<'_>) -> Poll<Reason> {
        let strong = |r: Option<Reason>| r.filter(|r| *r >= least);
        if let Some(r) = strong(self.reason()) {
            return Poll::Ready(r);
        }
        self.waker.register(cx.waker());
        // Set between the first look and the registration: its wake-up
        // may have gone to an older waker.
        match strong(self.reason()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Completes with the reason once one is set.
    pub async fn stopped(&self) -> Reason {
        std::future::poll_fn(|cx| self.poll_at_least(Reason::Ended, cx)).await
    }

    /// Completes once the connection is cut off (a write in progress is
    /// abandoned for nothing weaker).
    pub async fn killed(&self) {
        std::future::poll_fn(|cx| self.poll_at_least(Reason::Killed, cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_task_wakes_with_the_reason() {
        let stop = Arc::new(Stop::default());
        assert_eq!(stop.reason(), None);
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "nothing was set yet");
        stop.set(Reason::ShuttingDown);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, Reason::ShuttingDown);
    }

    #[test]
    fn a_stronger_reason_replaces_a_weaker_one_and_never_the_reverse() {
        let stop = Stop::default();
        stop.set(Reason::Ended);
        assert_eq!(stop.reason(), Some(Reason::Ended));
        stop.set(Reason::Killed);
        assert_eq!(stop.reason(), Some(Reason::Killed));
        stop.set(Reason::ShuttingDown);
        stop.set(Reason::Ended);
        assert_eq!(stop.reason(), Some(Reason::Killed));
    }

    #[tokio::test]
    async fn killed_waits_for_the_cut_and_not_for_a_clean_end() {
        let stop = Arc::new(Stop::default());
        stop.set(Reason::Ended);
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.killed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "ended is not killed");
        stop.set(Reason::Killed);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
    }

    #[tokio::test]
    async fn a_reason_set_before_the_wait_is_seen_at_once() {
        let stop = Stop::default();
        stop.set(Reason::Ended);
        assert_eq!(stop.stopped().await, Reason::Ended);
    }
}
