//! The benchmark scenarios.

pub mod ceiling;
pub mod connections;
pub mod digest;
pub mod email;
pub mod events;
pub mod fanout;
pub mod inbox;
pub mod ingest;
pub mod latency;
pub mod soak;
pub mod webpush;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Prints a progress line every second until dropped.
pub struct Progress {
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(label: String, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("[{label}] {}/{total}", counter.load(Ordering::Relaxed));
            }
        });
        Progress { done, task }
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// The counter, for tasks that outlive a borrow of `self`.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}
