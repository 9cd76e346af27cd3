//! A waker for one source of a task's wake-ups, so that the task polls
//! that source only when it woke the task.
//!
//! A WebSocket's task is woken for every frame a fan-out queues for it,
//! and a `select!` polls every branch on every wake-up: the socket's read
//! side too, through tungstenite, hyper's upgraded connection and tokio's
//! readiness (about 4-5 % of the server's samples in a 10,000-client
//! fan-out, for a client that says nothing). With its own [`Flag`] the read side is
//! polled when it was never polled, when its last poll found a message
//! (there may be more), or when the socket woke it.

use futures::task::AtomicWaker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// The wake-up flag of one source, and the task it wakes.
#[derive(Debug)]
pub struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Flag {
    /// A flag that is up: the source is polled the first time.
    pub fn new() -> Arc<Flag> {
        Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        })
    }

    /// Polls the source with this flag's waker if the flag is up, lowering
    /// it; a source that is ready keeps the flag up (it may have more).
    pub fn poll<T>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        source: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if !self.woken.load(Ordering::Acquire) || !self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        // Registered before the source is polled: a wake-up from it during
        // or after the poll reaches the task that polls now.
        self.task.register(cx.waker());
        let waker = Waker::from(self.clone());
        let ready = source(&mut Context::from_waker(&waker));
        if ready.is_ready() {
            self.woken.store(true, Ordering::Release);
        }
        ready
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts how often the task was woken.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A source that is never ready and keeps the last waker it was given.
    #[derive(Default)]
    struct Source {
        polls: usize,
        saved: Option<Waker>,
    }
    impl Source {
        fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            self.polls += 1;
            self.saved = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn a_source_is_polled_first_then_only_after_it_woke_the_task_or_was_ready() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task);
        let flag = Flag::new();
        let mut src = Source::default();
        // Up at first: polled; then down until the source wakes it.
        assert!(flag.poll(&mut cx, |cx| src.poll(cx)).is_pending());
        assert!(flag.poll(&mut cx, |cx| src.poll(cx)).is_pending());
        assert_eq!(src.polls, 1);
        // The source's waker wakes the task and raises the flag.
        src.saved.take().unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(flag.poll(&mut cx, |cx| src.poll(cx)).is_pending());
        assert_eq!(src.polls, 2);
        // A ready source keeps the flag up: polled again next time.
        src.saved.take().unwrap().wake();
        assert_eq!(flag.poll(&mut cx, |_| Poll::Ready(7)), Poll::Ready(7));
        assert!(flag.poll(&mut cx, |cx| src.poll(cx)).is_pending());
        assert_eq!(src.polls, 3);
        assert!(flag.poll(&mut cx, |cx| src.poll(cx)).is_pending());
        assert_eq!(src.polls, 3);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
