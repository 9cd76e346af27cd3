//! The SQLite write-ahead log stays bounded under a steady stream of
//! commits while readers read in a loop, on a real database file: the
//! writer restarts the log once it passes `restart_bytes`, and the file is
//! truncated back to `journal_size_limit`.

use belfry_core::{
    Clock, InboxQuery, Millis, NewNotification, SendRequest, SystemClock, UserId, UserPatch,
};
use belfry_store::{SendContext, SqliteOptions, SqliteStore, Store, WalOptions};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn note(user: &str, i: usize) -> NewNotification {
    let request: SendRequest = serde_json::from_value(json!({
        "to": {"users": [user]},
        "title": format!("Ticket #{i} was updated"),
        "body": "x".repeat(200),
        "category": "assignment",
        "entity": {"type": "ticket", "id": format!("{i}")},
    }))
    .unwrap();
    request
        .validate(SystemClock.now())
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wal_stays_under_its_bound_while_writes_and_reads_go_on() {
    const RESTART_BYTES: u64 = 256 * 1024;
    const LIMIT: u64 = 512 * 1024;
    // A commit of this test writes a handful of pages; one batch past the
    // restart threshold can add some more before the restart.
    const BOUND: u64 = 2 * 1024 * 1024;
    const SENDS: usize = 3000;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("belfry.db");
    let mut options = SqliteOptions::new(&path);
    options.fsync_every_commit = false;
    options.wal = WalOptions {
        restart_bytes: RESTART_BYTES,
        journal_size_limit: LIMIT,
        checkpoint_interval: Duration::from_millis(20),
        restart_wait: Duration::from_millis(50),
    };
    let store = Arc::new(SqliteStore::open(options).unwrap());
    let users: Vec<UserId> = (0..4)
        .map(|i| UserId::parse(&format!("u{i}")).unwrap())
        .collect();
    for u in &users {
        store
            .put_user(u, UserPatch::default(), Millis(0))
            .await
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Readers: inbox pages, counts and stream replays, back to back.
    let mut readers = Vec::new();
    for r in 0..3 {
        let store = store.clone();
        let stop = stop.clone();
        let user = users[r % users.len()].clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let now = SystemClock.now();
                store
                    .list_inbox(&user, InboxQuery::default(), now)
                    .await
                    .unwrap();
                store.counts(&user, now).await.unwrap();
                store.replay(&user, 0, 50, now).await.unwrap();
                reads += 1;
            }
            reads
        }));
    }
    // The WAL file's size, sampled while the writes go on.
    let sampler = {
        let stop = stop.clone();
        let wal = dir.path().join("belfry.db-wal");
        tokio::spawn(async move {
            let mut largest = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                largest = largest.max(size);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            largest
        })
    };

    // The writer: one notification per commit, the costliest case for the
    // log (every commit rewrites whole pages).
    let ctx = SendContext {
        key_id: "k".into(),
        now: SystemClock.now(),
    };
    for i in 0..SENDS {
        let user = format!("u{}", i % users.len());
        store.send(ctx.clone(), vec![note(&user, i)]).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let largest = sampler.await.unwrap();
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }

    let state = store.wal_state();
    let restarts = state.restarts.load(Ordering::Relaxed);
    assert!(reads > 0, "the readers read nothing");
    assert!(
        largest <= BOUND,
        "the WAL reached {largest} bytes (bound {BOUND}) over {SENDS} commits with {restarts} restarts ({} busy)",
        state.restarts_busy.load(Ordering::Relaxed)
    );
    assert!(store.wal_bytes() <= BOUND);
    assert!(restarts > 0, "the writer never restarted the log");
    // Everything sent is there.
    let total: i64 = {
        let mut n = 0;
        for u in &users {
            n += store.counts(u, SystemClock.now()).await.unwrap().unread;
        }
        n
    };
    assert_eq!(total, SENDS as i64);
}
