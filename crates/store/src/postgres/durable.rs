//! Durability after the counter's lock: the writer commits without waiting
//! for the WAL flush, and this task answers its requests and publishes
//! their events once the flush is done.
//!
//! Every transaction that hands out seqs holds the counter's row lock until
//! it commits (`publish`), and a synchronous commit holds it through the
//! commit's WAL flush: on three nodes that flush was about half of every
//! hold, and the writers queued for the lock one flush after the other
//! (`docs/benchmarks.md`, "The counter under three nodes"). The writer's
//! session therefore runs with `synchronous_commit = off`: its commit writes
//! the commit record, becomes visible and lets go of the lock, with no
//! flush. Commits still become visible in seq order (the lock is released
//! after visibility), so the order the streams rely on is unchanged.
//!
//! It does so only under load. While requests come one at a time, the
//! writer's commits wait for their flush as before (one round trip, no
//! flush statement after it, and nobody waits for the lock meanwhile);
//! once they queue behind one another the session switches (`Pace` in
//! `publish`), and back after eight lone batches in a row.
//!
//! Nothing is acknowledged before it is durable. The writer hands each
//! commit's answers and events to [`durable_loop`] (and phase 1 the
//! receipts it replays for repeated idempotency keys, whose first send may
//! be another node's commit, visible and not yet flushed). It takes every
//! commit waiting and makes the WAL durable past all of them with one
//! *barrier*: a transactional logical message committed synchronously on a
//! connection of its own, whose flush covers every record before it, and
//! so every commit that returned before it was sent. None is needed when
//! the last commit waiting waited for its own flush, which covered the
//! writer's commits before it. Only then does it publish the events, move
//! the node's last seq on and wake the delivery workers, and answer the
//! requests. The writer meanwhile writes its next batch, so one node also
//! overlaps a batch's flush with the next batch's statement, and the flushes
//! of several writers (nodes) are grouped by PostgreSQL into one.
//!
//! If the barrier fails (the database went away), the commits it covered
//! may or may not have survived: their requests get the error (503, a
//! retry with the same idempotency key is safe) and their events are not
//! published; a stream that misses them finds them in the store, if they
//! are there, when the sequencer gives up on the gap.
//!
//! A crash of PostgreSQL can lose commits that were visible but not yet
//! flushed, and a reader may have seen their seqs. So that no seq is ever
//! handed out twice, every transaction that moves the counter also makes
//! sure of a row in the unlogged table `seq_guard`, which PostgreSQL empties
//! in crash recovery (and on a restored backup or a promoted standby), never
//! on a clean restart: the first transaction that finds it empty moves the
//! counter on by [`SEQ_JUMP`] as well, past any seq that can have been lost.
//!
//! What a crash of PostgreSQL can still do that it could not before: a
//! commit that was visible but not yet flushed is gone afterwards, though
//! others may have acted on it in that moment (another node listed it in an
//! inbox, a delivery worker claimed one of its jobs and sent the email). Its
//! sender was never answered and sends again: the user may get it twice.
//! What was acknowledged is never lost.

use super::publish::Written;
use crate::{Result, StoreError, StoreEvent};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// How far the counter moves on after PostgreSQL lost unflushed commits
/// (`seq_guard` found empty). Commits are flushed within a batch or two of
/// committing (and PostgreSQL's WAL writer flushes every `wal_writer_delay`,
/// at most 10 s, regardless), so far fewer seqs than this can ever be lost;
/// at one jump per crash, seqs stay exact in a JavaScript number for
/// millions of crashes.
pub(crate) const SEQ_JUMP: i64 = 1_000_000_000;

/// Whether what a [`Committed`] answers is durable already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// A commit that waited for its flush (the writer's requests came one
    /// at a time). The writer commits one after another, so it made every
    /// earlier commit of the writer durable too.
    Flushed,
    /// A commit that did not wait.
    Unflushed,
    /// Nothing written: receipts read from the database (repeated
    /// idempotency keys), which may name another node's commit, visible and
    /// not yet flushed. A later commit of this node that waited for its
    /// flush does not cover it (it may have been flushed before the read).
    Read,
}

/// One commit of the writer, waiting to be durable.
pub(crate) struct Committed {
    pub durability: Durability,
    /// The highest seq it handed out.
    pub last_seq: i64,
    /// It queued jobs (the delivery workers are woken).
    pub jobs_added: bool,
    /// Its events, published once it is durable.
    pub events: Vec<StoreEvent>,
    /// Its requests' answers.
    pub answers: Vec<Written>,
}

/// What the task does once commits are durable (the store's shared state;
/// a recorder in tests).
pub(crate) trait Publish {
    fn durable(&self, last_seq: i64, jobs_added: bool, events: Vec<StoreEvent>);
}

/// Makes every commit that returned before it was called durable.
pub(crate) trait Barrier {
    fn flush(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// Hands a commit on to be answered and published once it is durable.
pub(crate) async fn hand_on(durable: &mpsc::Sender<Committed>, c: Committed) {
    if let Err(mpsc::error::SendError(c)) = durable.send(c).await {
        // The store is closing: the task is gone.
        for w in c.answers {
            w.finish(&Err(StoreError::Closed));
        }
    }
}

/// How many commits one barrier covers at most.
const MAX_COVER: usize = 256;

/// Runs until the writer (the channel's sender) is gone.
pub(crate) async fn durable_loop(
    mut rx: mpsc::Receiver<Committed>,
    mut barrier: impl Barrier,
    publish: impl Publish,
) {
    let mut waiting = Vec::new();
    while let Some(c) = rx.recv().await {
        waiting.push(c);
        while waiting.len() < MAX_COVER {
            match rx.try_recv() {
                Ok(c) => waiting.push(c),
                Err(_) => break,
            }
        }
        // Every commit waiting is durable already when the last one waited
        // for its flush, unless one of them answers a read.
        let covered = waiting
            .last()
            .is_some_and(|c| c.durability == Durability::Flushed)
            && waiting.iter().all(|c| c.durability != Durability::Read);
        let flushed = if covered {
            Ok(())
        } else {
            barrier.flush().await
        };
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "the WAL flush after the writer's commits failed");
            metrics::counter!("belfry_pg_flush_failures_total").increment(1);
        }
        for c in waiting.drain(..) {
            if flushed.is_ok() {
                publish.durable(c.last_seq, c.jobs_added, c.events);
            }
            for w in c.answers {
                w.finish(&flushed);
            }
        }
    }
}

/// The barrier on PostgreSQL: a logical message in a transaction of its
/// own, committed with the server's `synchronous_commit` (the writer's
/// session turns it off, this one does not). A transaction that only takes
/// an id writes a commit record but does not wait for it to be flushed; one
/// that wrote a record does. `pg_logical_emit_message` may be called by any
/// role and works at every `wal_level`; logical decoding clients see the
/// prefix `belfry` and an empty message.
pub(crate) struct PgBarrier {
    connect: PgConnectOptions,
    /// How long a connection and a flush may take (the pool's acquire
    /// timeout): a database that does not answer fails the requests with
    /// 503 rather than holding them.
    timeout: Duration,
    /// Its own connection, outside the pool (it does not queue behind the
    /// requests it answers); a new one after a failure.
    conn: Option<PgConnection>,
}

impl PgBarrier {
    pub(crate) fn new(connect: PgConnectOptions, timeout: Duration) -> PgBarrier {
        PgBarrier {
            connect,
            timeout,
            conn: None,
        }
    }

    async fn try_flush(&mut self) -> Result<()> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(PgConnection::connect_with(&self.connect).await?),
        };
        sqlx::query("SELECT pg_logical_emit_message(TRUE, 'belfry', '')")
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl Barrier for PgBarrier {
    async fn flush(&mut self) -> Result<()> {
        let result = match tokio::time::timeout(self.timeout, self.try_flush()).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::unavailable(
                crate::Unavailable::Unreachable,
                format!("PostgreSQL did not flush the WAL within {:?}", self.timeout),
            )),
        };
        if result.is_err() {
            // Whatever state it is in, the next flush starts afresh.
            self.conn = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SendReceipt;
    use std::sync::{Arc, Mutex};
    use tokio::sync::{Semaphore, oneshot};

    /// Opens when the test adds a permit; fails when told to.
    struct Gate(Arc<Semaphore>, Arc<Mutex<bool>>);

    impl Barrier for Gate {
        async fn flush(&mut self) -> Result<()> {
            self.0.acquire().await.expect("open").forget();
            if *self.1.lock().unwrap() {
                Err(StoreError::unavailable(
                    crate::Unavailable::Unreachable,
                    "cut",
                ))
            } else {
                Ok(())
            }
        }
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(i64, bool, usize)>>>);

    impl Publish for Recorder {
        fn durable(&self, last_seq: i64, jobs_added: bool, events: Vec<StoreEvent>) {
            self.0
                .lock()
                .unwrap()
                .push((last_seq, jobs_added, events.len()));
        }
    }

    fn commit(
        last_seq: i64,
        own: Result<Vec<SendReceipt>>,
    ) -> (Committed, oneshot::Receiver<Result<Vec<SendReceipt>>>) {
        commit_as(Durability::Unflushed, last_seq, own)
    }

    fn commit_as(
        durability: Durability,
        last_seq: i64,
        own: Result<Vec<SendReceipt>>,
    ) -> (Committed, oneshot::Receiver<Result<Vec<SendReceipt>>>) {
        let (tx, rx) = oneshot::channel();
        let c = Committed {
            durability,
            last_seq,
            jobs_added: last_seq % 2 == 0,
            events: vec![StoreEvent::WebhooksChanged; last_seq as usize],
            answers: vec![Written::Send(tx, own)],
        };
        (c, rx)
    }

    #[tokio::test]
    async fn commits_are_answered_and_published_only_after_the_barrier_in_order() {
        let gate = Arc::new(Semaphore::new(0));
        let fail = Arc::new(Mutex::new(false));
        let recorder = Recorder::default();
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(durable_loop(
            rx,
            Gate(gate.clone(), fail.clone()),
            recorder.clone(),
        ));
        let (c1, mut a1) = commit(1, Ok(vec![]));
        let (c2, mut a2) = commit(2, Err(StoreError::NotFound));
        tx.send(c1).await.unwrap();
        tx.send(c2).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The barrier has not returned: nobody is answered, nothing published.
        assert!(a1.try_recv().is_err());
        assert!(a2.try_recv().is_err());
        assert!(recorder.0.lock().unwrap().is_empty());
        gate.add_permits(1);
        assert!(a1.await.unwrap().is_ok());
        // A request's own error stays its own.
        assert!(matches!(a2.await.unwrap(), Err(StoreError::NotFound)));
        let published = recorder.0.lock().unwrap().clone();
        // Both covered by the one barrier, published in commit order.
        assert_eq!(published, vec![(1, false, 1), (2, true, 2)]);

        // A barrier that fails: the request gets its error, nothing is published.
        *fail.lock().unwrap() = true;
        let (c3, a3) = commit(3, Ok(vec![]));
        tx.send(c3).await.unwrap();
        gate.add_permits(1);
        assert!(matches!(
            a3.await.unwrap(),
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(recorder.0.lock().unwrap().len(), 2);

        // And the next one, once the barrier works again, is published.
        *fail.lock().unwrap() = false;
        let (c4, a4) = commit(4, Ok(vec![]));
        tx.send(c4).await.unwrap();
        gate.add_permits(1);
        assert!(a4.await.unwrap().is_ok());
        assert_eq!(recorder.0.lock().unwrap().last(), Some(&(4, true, 4)));
        drop(tx);
        task.await.unwrap();
    }

    /// A commit that waited for its own flush needs no barrier, and covers
    /// the writer's commits before it; a read (replayed receipts) is never
    /// covered by a commit.
    #[tokio::test]
    async fn a_commit_that_waited_for_its_flush_needs_no_barrier_a_read_does() {
        let gate = Arc::new(Semaphore::new(0));
        let recorder = Recorder::default();
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(durable_loop(
            rx,
            Gate(gate.clone(), Arc::new(Mutex::new(false))),
            recorder.clone(),
        ));
        // An answer that comes (and is Ok) within 5 s.
        async fn answered(rx: oneshot::Receiver<Result<Vec<SendReceipt>>>) -> bool {
            let answer = tokio::time::timeout(Duration::from_secs(5), rx).await;
            answer.expect("answered in time").expect("sent").is_ok()
        }
        // The gate stays shut: were the barrier called, nothing would come.
        let (c1, a1) = commit_as(Durability::Unflushed, 1, Ok(vec![]));
        let (c2, a2) = commit_as(Durability::Flushed, 2, Ok(vec![]));
        tx.send(c1).await.unwrap();
        tx.send(c2).await.unwrap();
        assert!(answered(a1).await);
        assert!(answered(a2).await);
        let (c3, mut a3) = commit_as(Durability::Read, 0, Ok(vec![]));
        let (c4, a4) = commit_as(Durability::Flushed, 4, Ok(vec![]));
        tx.send(c3).await.unwrap();
        tx.send(c4).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(a3.try_recv().is_err(), "a read waits for the barrier");
        gate.add_permits(2);
        assert!(answered(a3).await);
        assert!(answered(a4).await);
        let published: Vec<i64> = recorder.0.lock().unwrap().iter().map(|p| p.0).collect();
        assert_eq!(published, vec![1, 2, 0, 4]);
        drop(tx);
        task.await.unwrap();
    }
}
