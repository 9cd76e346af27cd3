//! The unread and unseen counts are a kept counter (plus the few entries
//! that expire, counted when read), not a count of the unread entries. A
//! property test drives random sequences of everything that changes an
//! inbox — sends with and without stacks, expiries and entities,
//! broadcasts, each item operation, mark-all-read, "seen", reading an
//! entity, deleting a notification or a user, and time passing so that
//! entries expire — and after every step compares each user's counts with
//! what their inbox lists (with the counts folded often, or never): the unread items, page by page, and how many of
//! them are not seen. On SQLite always; on PostgreSQL when
//! `BELFRY_TEST_POSTGRES_URL` is set.

use belfry_core::{
    Clock, Counts, Filter, InboxQuery, Millis, NewNotification, SendRequest, SystemClock, UserId,
    UserPatch,
};
use belfry_store::{
    InboxChange, ItemOp, PgOptions, PgStore, SendContext, SqliteOptions, SqliteStore, Store,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const USERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Send {
        to: Vec<usize>,
        stack: Option<u8>,
        expires_secs: Option<u8>,
        entity: Option<u8>,
        actor: Option<usize>,
    },
    Broadcast {
        expires_secs: Option<u8>,
        actor: Option<usize>,
    },
    Item {
        user: usize,
        pick: usize,
        op: u8,
    },
    ReadAll {
        user: usize,
    },
    Seen {
        user: usize,
    },
    ReadEntity {
        user: usize,
        entity: u8,
    },
    DeleteNotification {
        pick: usize,
    },
    DeleteUser {
        user: usize,
    },
    Wait {
        secs: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    prop_oneof![
        6 => (
            proptest::collection::vec(0..USERS, 1..=USERS),
            proptest::option::weighted(0.4, 0..3u8),
            proptest::option::weighted(0.3, 1..4u8),
            proptest::option::weighted(0.4, 0..2u8),
            proptest::option::weighted(0.2, 0..USERS),
        )
            .prop_map(|(to, stack, expires_secs, entity, actor)| Op::Send {
                to,
                stack,
                expires_secs,
                entity,
                actor
            }),
        1 => (
            proptest::option::weighted(0.3, 1..4u8),
            proptest::option::weighted(0.2, 0..USERS),
        )
            .prop_map(|(expires_secs, actor)| Op::Broadcast {
                expires_secs,
                actor
            }),
        5 => (user.clone(), any::<usize>(), 0..6u8)
            .prop_map(|(user, pick, op)| Op::Item { user, pick, op }),
        1 => user.clone().prop_map(|user| Op::ReadAll { user }),
        1 => user.clone().prop_map(|user| Op::Seen { user }),
        1 => (user.clone(), 0..2u8).prop_map(|(user, entity)| Op::ReadEntity { user, entity }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteNotification { pick }),
        1 => user.clone().prop_map(|user| Op::DeleteUser { user }),
        1 => (1..3u8).prop_map(|secs| Op::Wait { secs }),
    ]
}

fn uid(i: usize) -> UserId {
    UserId::parse(&format!("user-{i}")).unwrap()
}

fn request(body: Value, now: Millis) -> NewNotification {
    let request: SendRequest = serde_json::from_value(body).unwrap();
    request.validate(now).expect("a valid request")
}

/// What the user's inbox lists: the unread items (all pages) and how many
/// of them are not seen.
async fn listed<S: Store>(store: &S, user: &UserId, now: Millis) -> Counts {
    let mut counts = Counts::default();
    let mut query = InboxQuery {
        filter: Filter::Unread,
        limit: 100,
        ..InboxQuery::default()
    };
    loop {
        let page = store.list_inbox(user, query.clone(), now).await.unwrap();
        for item in &page.items {
            let item: Value = serde_json::from_str(item).unwrap();
            assert_eq!(item["read"], json!(false), "{item}");
            counts.unread += 1;
            if item["seen"] == json!(false) {
                counts.unseen += 1;
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return counts,
        }
    }
}

/// The ids of every item the user has (archived or not).
async fn item_ids<S: Store>(store: &S, user: &UserId, now: Millis) -> Vec<String> {
    let mut ids = Vec::new();
    for filter in [Filter::All, Filter::Archived] {
        let query = InboxQuery {
            filter,
            limit: 100,
            ..InboxQuery::default()
        };
        let page = store.list_inbox(user, query, now).await.unwrap();
        for item in &page.items {
            let item: Value = serde_json::from_str(item).unwrap();
            ids.push(item["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// Sends one notification; its id.
async fn send_one<S: Store>(store: &S, body: Value, now: Millis) -> Option<String> {
    let ctx = SendContext {
        key_id: "k".into(),
        now,
    };
    let receipts = store.send(ctx, vec![request(body, now)]).await.unwrap();
    receipts.into_iter().next().map(|r| r.id)
}

async fn apply<S: Store>(store: &S, op: &Op, now: &mut Millis, sent: &mut Vec<String>) {
    let expires = |secs: Option<u8>, now: Millis| {
        secs.map(|s| Value::String(now.plus_secs(s.into()).to_rfc3339()))
            .unwrap_or(Value::Null)
    };
    let actor = |a: Option<usize>| {
        a.map(|a| json!({"id": format!("user-{a}")}))
            .unwrap_or(Value::Null)
    };
    match op {
        Op::Send {
            to,
            stack,
            expires_secs,
            entity,
            actor: by,
        } => {
            let users: Vec<String> = to.iter().map(|i| format!("user-{i}")).collect();
            let body = json!({
                "to": {"users": users},
                "title": "Ticket updated",
                "stack_key": stack.map(|s| format!("stack-{s}")),
                "expires_at": expires(*expires_secs, *now),
                "entity": entity.map(|e| json!({"type": "ticket", "id": e.to_string()})),
                "actor": actor(*by),
            });
            sent.extend(send_one(store, body, *now).await);
        }
        Op::Broadcast {
            expires_secs,
            actor: by,
        } => {
            let body = json!({
                "to": {"all": true},
                "title": "Maintenance tonight",
                "expires_at": expires(*expires_secs, *now),
                "actor": actor(*by),
            });
            sent.extend(send_one(store, body, *now).await);
        }
        Op::Item { user, pick, op } => {
            let ids = item_ids(store, &uid(*user), *now).await;
            if ids.is_empty() {
                return;
            }
            let id = ids[pick % ids.len()].clone();
            let op = [
                ItemOp::Read,
                ItemOp::Unread,
                ItemOp::Archive,
                ItemOp::Unarchive,
                ItemOp::Delete,
                ItemOp::Dismiss,
            ][*op as usize];
            store
                .inbox_change(&uid(*user), InboxChange::Item { id, op }, *now)
                .await
                .unwrap();
        }
        Op::ReadAll { user } => {
            store
                .inbox_change(&uid(*user), InboxChange::ReadAll(None), *now)
                .await
                .unwrap();
        }
        Op::Seen { user } => {
            store
                .inbox_change(&uid(*user), InboxChange::SeenAll, *now)
                .await
                .unwrap();
        }
        Op::ReadEntity { user, entity } => {
            let entity =
                serde_json::from_value(json!({"type": "ticket", "id": entity.to_string()}))
                    .unwrap();
            store
                .inbox_change(&uid(*user), InboxChange::ReadEntity(entity), *now)
                .await
                .unwrap();
        }
        Op::DeleteNotification { pick } => {
            if !sent.is_empty() {
                let id = sent.remove(pick % sent.len());
                store.delete_notification(&id, *now).await.unwrap();
            }
        }
        Op::DeleteUser { user } => {
            store.delete_user(&uid(*user), *now).await.unwrap();
            store
                .put_user(&uid(*user), UserPatch::default(), *now)
                .await
                .unwrap();
        }
        Op::Wait { secs } => *now = now.plus_secs((*secs).into()),
    }
}

async fn check<S: Store>(store: &S, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut now = SystemClock.now();
    for i in 0..USERS {
        store
            .put_user(&uid(i), UserPatch::default(), now)
            .await
            .unwrap();
    }
    let mut sent = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        apply(store, op, &mut now, &mut sent).await;
        for i in 0..USERS {
            let counts = store.counts(&uid(i), now).await.unwrap();
            let listed = listed(store, &uid(i), now).await;
            prop_assert_eq!(
                (counts.unread, counts.unseen),
                (listed.unread, listed.unseen),
                "user-{} after step {} ({:?})",
                i,
                step,
                op
            );
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    /// `fold_after` 0 folds on nearly every read, the default (64) never
    /// in sequences this short: both must count the same.
    fn sqlite_counts_are_what_the_inbox_lists(
        ops in proptest::collection::vec(op(), 1..40),
        fold_after in prop_oneof![Just(0i64), Just(1), Just(64)],
    ) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut options = SqliteOptions::new(dir.path().join("belfry.db"));
            options.fsync_every_commit = false;
            options.fold_counts_after = fold_after;
            let store = SqliteStore::open(options).unwrap();
            check(&store, &ops).await
        })?;
    }
}

/// The PostgreSQL to test against, when `BELFRY_TEST_POSTGRES_URL` is set.
fn postgres_url() -> Option<String> {
    let url = std::env::var("BELFRY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    if url.is_none() {
        eprintln!("skipped: set BELFRY_TEST_POSTGRES_URL=postgres://… to run it on PostgreSQL");
    }
    url
}

/// A store in a schema of its own, folding after `fold_after`.
async fn postgres_store(url: &str, fold_after: i64) -> (PgStore, String) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let schema = format!(
        "belfry_counts_{}_{}_{}",
        SystemClock.now().0 / 1000,
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut options = PgOptions::new(url.to_string());
    options.schema = Some(schema.clone());
    options.pool_size = 8;
    options.fold_counts_after = fold_after;
    (PgStore::open(options).await.unwrap(), schema)
}

async fn drop_schema(url: &str, store: &PgStore, schema: &str) {
    store.close().await;
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
}

/// The same on PostgreSQL, each case in a schema of its own (fewer cases:
/// a schema's migrations take a while).
#[test]
fn postgres_counts_are_what_the_inbox_lists() {
    let Some(url) = postgres_url() else { return };
    let strategy = (
        proptest::collection::vec(op(), 1..40),
        prop_oneof![Just(0i64), Just(64)],
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(ops, fold_after)| {
            runtime().block_on(async {
                let (store, schema) = postgres_store(&url, fold_after).await;
                let outcome = check(&store, &ops).await;
                drop_schema(&url, &store, &schema).await;
                outcome
            })
        })
        .unwrap();
}

/// Folds racing changes: while one task reads the counts (each read folds,
/// `fold_after` 0) others mark items read and unread, send new and stacked
/// notifications and open the drawer. Once they stop (and the last folds
/// ran), the counts are what the inbox lists.
async fn concurrent<S: Store + 'static>(store: std::sync::Arc<S>) {
    let now = SystemClock.now();
    let ana = uid(0);
    store
        .put_user(&ana, UserPatch::default(), now)
        .await
        .unwrap();
    let send = move |stack: Option<u32>| {
        let body = json!({
            "to": {"users": ["user-0"]},
            "title": "Ticket updated",
            "stack_key": stack.map(|s| format!("stack-{s}")),
        });
        (
            SendContext {
                key_id: "k".into(),
                now,
            },
            vec![request(body, now)],
        )
    };
    for i in 0..120 {
        let (ctx, batch) = send((i % 3 == 0).then_some(i % 7));
        store.send(ctx, batch).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut tasks = Vec::new();
    {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            while std::time::Instant::now() < deadline {
                store.counts(&uid(0), now).await.unwrap();
            }
        }));
    }
    for worker in 0..3u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while std::time::Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let ids = item_ids(&*store, &uid(0), now).await;
                let id = ids[(n >> 33) as usize % ids.len()].clone();
                let op = [
                    ItemOp::Read,
                    ItemOp::Unread,
                    ItemOp::Archive,
                    ItemOp::Unarchive,
                ][(n >> 20) as usize % 4];
                store
                    .inbox_change(&uid(0), InboxChange::Item { id, op }, now)
                    .await
                    .unwrap();
            }
        }));
    }
    {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u32;
            while std::time::Instant::now() < deadline {
                let (ctx, batch) = send(i.is_multiple_of(2).then_some(i % 5));
                store.send(ctx, batch).await.unwrap();
                if i.is_multiple_of(10) {
                    store
                        .inbox_change(&uid(0), InboxChange::SeenAll, now)
                        .await
                        .unwrap();
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // One more read (and its fold), then the comparison.
    store.counts(&ana, now).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let counts = store.counts(&ana, now).await.unwrap();
    let listed = listed(&*store, &ana, now).await;
    assert!(listed.unread > 0, "{listed:?}");
    assert_eq!(
        (counts.unread, counts.unseen),
        (listed.unread, listed.unseen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_folds_racing_changes_keep_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SqliteOptions::new(dir.path().join("belfry.db"));
    options.fsync_every_commit = false;
    options.fold_counts_after = 0;
    concurrent(std::sync::Arc::new(SqliteStore::open(options).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_folds_racing_changes_keep_the_counts() {
    let Some(url) = postgres_url() else { return };
    let (store, schema) = postgres_store(&url, 0).await;
    let store = std::sync::Arc::new(store);
    concurrent(store.clone()).await;
    drop_schema(&url, &store, &schema).await;
}
