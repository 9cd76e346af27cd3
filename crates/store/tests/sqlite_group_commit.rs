//! Group commit on SQLite: while writes from several callers queue up
//! behind a commit, the next commit waits for the rest of
//! `commit_interval` and takes everything that arrived meanwhile into one
//! transaction; a caller writing one request after another is never
//! delayed. Observed through the store's event batches (one per commit).

use belfry_core::{Clock, Millis, NewNotification, SendRequest, SystemClock, UserId, UserPatch};
use belfry_store::{SendContext, SqliteOptions, SqliteStore, Store, StoreEvent};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn note(i: usize) -> NewNotification {
    let request: SendRequest = serde_json::from_value(json!({
        "to": {"users": ["ana"]},
        "title": format!("Ticket #{i} was updated"),
        "category": "assignment",
    }))
    .unwrap();
    request
        .validate(SystemClock.now())
        .expect("a valid request")
}

async fn store(interval: Duration) -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SqliteOptions::new(dir.path().join("belfry.db"));
    options.fsync_every_commit = false;
    options.commit_interval = interval;
    let store = Arc::new(SqliteStore::open(options).unwrap());
    store
        .put_user(
            &UserId::parse("ana").unwrap(),
            UserPatch::default(),
            Millis(0),
        )
        .await
        .unwrap();
    (dir, store)
}

fn ctx() -> SendContext {
    SendContext {
        key_id: "k".into(),
        now: SystemClock.now(),
    }
}

/// Another connection takes the database's write lock at once and holds
/// it for `hold`: the store's writer waits for it.
fn hold_write_lock(path: std::path::PathBuf, hold: Duration) -> std::thread::JoinHandle<()> {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        c.execute_batch("ROLLBACK").unwrap();
    })
}

/// The ids of the notifications published by each commit received so far.
fn batches(rx: &mut tokio::sync::broadcast::Receiver<Arc<Vec<StoreEvent>>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        let ids: Vec<String> = batch
            .iter()
            .filter_map(|e| match e {
                StoreEvent::Published(p) => Some(p.id.clone()),
                _ => None,
            })
            .collect();
        if !ids.is_empty() {
            out.push(ids);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_queued_behind_a_commit_share_the_next_one() {
    let (dir, store) = store(Duration::from_millis(3000)).await;
    let mut events = store.events();
    let spawn_sends = |range: std::ops::Range<usize>| {
        range
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.send(ctx(), vec![note(i)]).await.unwrap() })
            })
            .collect::<Vec<_>>()
    };

    // Another connection holds the write lock for 800 ms: the writer's
    // first batch (one send) waits for it, and nine more sends queue up
    // behind that commit meanwhile.
    let path = dir.path().join("belfry.db");
    let blocker = hold_write_lock(path, Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sends = spawn_sends(0..1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sends.extend(spawn_sends(1..10));
    // After the first commit, within its interval: ten more.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let late = spawn_sends(10..20);
    let mut ids = Vec::new();
    for t in sends {
        ids.push(t.await.unwrap()[0].id.clone());
    }
    let queued: HashSet<String> = ids[1..].iter().cloned().collect();
    let mut late_ids = HashSet::new();
    for t in late {
        late_ids.insert(t.await.unwrap()[0].id.clone());
    }
    blocker.join().unwrap();

    let commits = batches(&mut events);
    assert_eq!(
        commits.iter().map(Vec::len).sum::<usize>(),
        20,
        "every send was published once: {commits:?}"
    );
    assert_eq!(
        commits[0],
        vec![ids[0].clone()],
        "the first send committed alone"
    );
    assert!(
        commits
            .iter()
            .any(|c| c.iter().any(|id| queued.contains(id))
                && c.iter().any(|id| late_ids.contains(id))),
        "the sends queued behind the first commit waited for the interval and took the later ones along: {:?}",
        commits.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        commits.len(),
        2,
        "{:?}",
        commits.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_caller_writing_in_sequence_is_not_delayed() {
    // With a 2 s interval, waiting for it even once per send would take
    // 8 s or more; each send commits on its own, at once.
    let (_dir, store) = store(Duration::from_secs(2)).await;
    let mut events = store.events();
    let began = Instant::now();
    for i in 0..5 {
        store.send(ctx(), vec![note(i)]).await.unwrap();
    }
    let took = began.elapsed();
    assert_eq!(batches(&mut events).len(), 5, "one commit per send");
    assert!(
        took < Duration::from_millis(1500),
        "five sequential sends took {took:?}: the group-commit interval delayed them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_interval_queued_writes_commit_at_once() {
    // The same start as above with no interval: what queued behind the
    // first commit goes in the next one right away, not with later sends.
    let (dir, store) = store(Duration::ZERO).await;
    let mut events = store.events();
    let path = dir.path().join("belfry.db");
    let blocker = hold_write_lock(path, Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut sends = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        sends.push(tokio::spawn(async move {
            store.send(ctx(), vec![note(i)]).await.unwrap()
        }));
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for t in sends {
        t.await.unwrap();
    }
    blocker.join().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.send(ctx(), vec![note(99)]).await.unwrap();
    let commits = batches(&mut events);
    assert_eq!(commits.iter().map(Vec::len).sum::<usize>(), 11);
    assert_eq!(
        commits.last().map(Vec::len),
        Some(1),
        "the late send committed on its own: {:?}",
        commits.iter().map(Vec::len).collect::<Vec<_>>()
    );
}
