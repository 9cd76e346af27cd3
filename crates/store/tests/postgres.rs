//! What the PostgreSQL backend promises under concurrency, which the HTTP
//! tests cannot show: seqs without gaps, visible in seq order while many
//! tasks on two nodes (two `PgStore`s on one database) send at once; job
//! claims that never hand one job to two workers; two nodes racing on one
//! idempotency key.
//!
//! They run when `BELFRY_TEST_POSTGRES_URL` is set (scripts/test and CI
//! set it), each in a schema of its own; without it each test passes
//! at once, saying so.

use belfry_core::{Clock, Millis, NewNotification, SystemClock, UserId, UserPatch};
use belfry_store::{PgOptions, PgStore, SendContext, Store, StoreError, StoreEvent};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const VAR: &str = "BELFRY_TEST_POSTGRES_URL";

/// A schema of its own for one test; `drop_schema` removes it.
struct Db {
    url: String,
    schema: String,
}

impl Db {
    fn new() -> Option<Db> {
        let url = std::env::var(VAR).ok().filter(|u| !u.trim().is_empty());
        let Some(url) = url else {
            eprintln!("skipped: set {VAR}=postgres://… to run the PostgreSQL store tests");
            return None;
        };
        static N: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "belfry_test_{}_{}_s{}",
            SystemClock.now().0 / 1000,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Some(Db { url, schema })
    }

    fn options(&self) -> PgOptions {
        let mut o = PgOptions::new(self.url.clone());
        o.schema = Some(self.schema.clone());
        o.pool_size = 8;
        // Two resolvers (one is the default): groups resolved side by side.
        o.resolvers = 2;
        o
    }

    /// A node: its own pool and writer on the shared schema.
    async fn node(&self) -> Arc<PgStore> {
        Arc::new(PgStore::open(self.options()).await.expect("open PgStore"))
    }

    async fn drop_schema(self, nodes: &[Arc<PgStore>]) {
        for n in nodes {
            n.close().await;
        }
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
        let _ = c.close().await;
    }
}

fn ctx(key: &str) -> SendContext {
    SendContext {
        key_id: key.to_string(),
        now: SystemClock.now(),
    }
}

fn note(users: &[&str], title: &str, idempotency_key: Option<&str>) -> NewNotification {
    let mut body = json!({"to": {"users": users}, "title": title});
    if let Some(k) = idempotency_key {
        body["idempotency_key"] = json!(k);
    }
    let request: belfry_core::SendRequest = serde_json::from_value(body).unwrap();
    request
        .validate(SystemClock.now())
        .expect("a valid request")
}

async fn user(store: &PgStore, id: &str) {
    store
        .put_user(&UserId::parse(id).unwrap(), UserPatch::default(), Millis(0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seqs_are_gap_free_and_become_visible_in_order_across_nodes() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    let b = db.node().await;
    for u in ["ana", "ben"] {
        user(&a, u).await;
    }
    let mut events_a = a.events();
    let mut events_b = b.events();

    // A reader that keeps looking at what is committed: every snapshot must
    // be exactly 1..=max, never seq N+1 without seq N.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let pool = a.pool().clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut looks = 0u64;
            let mut max_seen = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let seqs: Vec<i64> = sqlx::query_scalar(
                    "SELECT seq FROM notifications WHERE seq IS NOT NULL ORDER BY seq",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                for (i, s) in seqs.iter().enumerate() {
                    assert_eq!(*s, i as i64 + 1, "a snapshot with a hole: {seqs:?}");
                }
                let max = seqs.last().copied().unwrap_or(0);
                assert!(max >= max_seen, "the committed seqs went backwards");
                max_seen = max;
                looks += 1;
            }
            looks
        })
    };

    // 2 nodes × 12 tasks × 20 sends; every fifth send names an unknown user
    // and fails (it must not leave a hole).
    let mut tasks = Vec::new();
    for t in 0..24 {
        let node = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..20 {
                let to: &[&str] = if i % 5 == 4 {
                    &["ana", "nobody"]
                } else {
                    &["ana", "ben"]
                };
                match node
                    .send(ctx("key_test"), vec![note(to, &format!("t{t} n{i}"), None)])
                    .await
                {
                    Ok(r) => {
                        assert!(r[0].seq.is_some());
                        ok += 1;
                    }
                    Err(StoreError::UnknownUsers(u)) => assert_eq!(u, vec!["nobody"]),
                    Err(e) => panic!("send failed: {e}"),
                }
            }
            ok
        }));
    }
    let mut sent = 0i64;
    for t in tasks {
        sent += t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let looks = reader.await.unwrap();
    assert!(looks > 0);
    assert_eq!(sent, 24 * 16);

    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM notifications WHERE seq IS NOT NULL ORDER BY seq")
            .fetch_all(a.pool())
            .await
            .unwrap();
    assert_eq!(seqs, (1..=sent).collect::<Vec<_>>(), "gap-free");
    let counter: i64 = sqlx::query_scalar("SELECT value FROM seq_counter")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(counter, sent);

    // Each node published its own commits' events, in seq order; together
    // they are every seq once.
    let mut all = Vec::new();
    for rx in [&mut events_a, &mut events_b] {
        let mut last = 0;
        while let Ok(batch) = rx.try_recv() {
            for e in batch.iter() {
                if let StoreEvent::Published(p) = e {
                    assert!(p.seq > last, "events out of order: {} after {last}", p.seq);
                    last = p.seq;
                    all.push(p.seq);
                }
            }
        }
    }
    all.sort_unstable();
    assert_eq!(all, (1..=sent).collect::<Vec<_>>());
    // Each node knows its own commits; asking the database brings it up to
    // what the other committed.
    assert!(a.last_seq() <= sent && b.last_seq() <= sent);
    assert_eq!(a.refresh_last_seq().await.unwrap(), sent);
    assert_eq!(b.refresh_last_seq().await.unwrap(), sent);
    assert_eq!(b.last_seq(), sent);
    db.drop_schema(&[a, b]).await;
}

/// Many sends waiting at once go into one transaction (the bulk path: one
/// statement for the rows of all of them). A send the database refuses there fails
/// alone: the batch is written again send by send, its neighbours are
/// stored, and the seqs stay gap-free. The refusal is real: a CHECK
/// constraint of this test's schema on the notification's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_refused_in_a_batch_fails_alone_and_leaves_no_hole() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    let b = db.node().await;
    for u in ["ana", "ben"] {
        user(&a, u).await;
    }
    sqlx::query(
        "ALTER TABLE notifications ADD CONSTRAINT no_poison CHECK (content NOT LIKE '%poison%')",
    )
    .execute(a.pool())
    .await
    .unwrap();
    // Twice 2 nodes × 16 tasks × 12 sends, fired together so that the
    // writers find many waiting; every seventh is refused by the database.
    // In the first round some stack (the serial path) and some carry
    // idempotency keys (the bulk path's transaction); in the second none
    // does (the bulk path's statement on its own, committed as it ends).
    let (mut seqs, mut refused) = (Vec::new(), 0);
    for keyed in [true, false] {
        let (ok, r) = fire_with_poison(&a, &b, keyed).await;
        seqs.extend(ok);
        refused += r;
    }
    assert_eq!(refused, 2 * (0..32 * 12).filter(|x| x % 7 == 3).count());
    seqs.sort_unstable();
    let sent = seqs.len() as i64;
    assert_eq!(
        seqs,
        (1..=sent).collect::<Vec<_>>(),
        "each receipt its own seq, no hole"
    );
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM notifications WHERE seq IS NOT NULL ORDER BY seq")
            .fetch_all(a.pool())
            .await
            .unwrap();
    assert_eq!(stored, seqs);
    // Nothing of a refused send was left behind: no inbox entry, log line
    // or idempotency key without its notification.
    for sql in [
        "SELECT COUNT(*) FROM inbox i WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.nid = i.nid)",
        "SELECT COUNT(*) FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.nid = d.nid)",
        "SELECT COUNT(*) FROM idempotency k WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.nid = k.nid)",
    ] {
        let orphans: i64 = sqlx::query_scalar(sql).fetch_one(a.pool()).await.unwrap();
        assert_eq!(orphans, 0, "{sql}");
    }
    // Both recipients have one entry per stored send, less the stacked ones.
    let entries: i64 = sqlx::query_scalar("SELECT SUM(stack_count)::bigint FROM inbox")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(entries, 2 * sent);
    db.drop_schema(&[a, b]).await;
}

/// One round of [`a_send_refused_in_a_batch_fails_alone_and_leaves_no_hole`]:
/// the seqs of the stored sends and how many were refused.
async fn fire_with_poison(a: &Arc<PgStore>, b: &Arc<PgStore>, keyed: bool) -> (Vec<i64>, usize) {
    let mut tasks = Vec::new();
    for t in 0..32 {
        let node = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (Vec::new(), 0);
            for i in 0..12 {
                let poison = (t * 12 + i) % 7 == 3;
                let title = if poison {
                    format!("poison {keyed} t{t} n{i}")
                } else {
                    format!("{keyed} t{t} n{i}")
                };
                let key = (keyed && i % 4 == 1).then(|| format!("k-{t}-{i}"));
                let mut n = note(&["ana", "ben"], &title, key.as_deref());
                if keyed && i % 5 == 2 {
                    n.content.stack_key = Some(format!("stack-{t}"));
                }
                match node.send(ctx("key_test"), vec![n]).await {
                    Ok(r) => {
                        assert!(!poison, "a refused send was stored: {title}");
                        ok.push(r[0].seq.expect("published"));
                    }
                    Err(StoreError::Conflict { .. }) => {
                        assert!(poison, "{title} failed with its neighbour");
                        refused += 1;
                    }
                    Err(e) => panic!("{title}: {e}"),
                }
            }
            (ok, refused)
        }));
    }
    let (mut seqs, mut refused) = (Vec::new(), 0);
    for t in tasks {
        let (ok, r) = t.await.unwrap();
        seqs.extend(ok);
        refused += r;
    }
    (seqs, refused)
}

/// Phase 1 resolves the requests that wait together (one query per kind
/// of fact for all of them): released at once, 48 requests on one node
/// (two resolver connections) form groups, and each is still answered for
/// itself — a good send with its receipt, an unknown user with its own
/// error, a batch with the index of its first bad item — and only the good
/// ones are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_resolved_together_are_answered_each_for_itself() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    for u in ["ana", "ben", "cy"] {
        user(&a, u).await;
    }
    let start = Arc::new(tokio::sync::Barrier::new(48));
    let mut tasks = Vec::new();
    for t in 0..48usize {
        let (node, start) = (a.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let ghost = format!("ghost-{t}");
            let batch = match t % 4 {
                0 => vec![note(&["ana"], &format!("t{t}"), None)],
                1 => vec![note(&["ben", &ghost], &format!("t{t}"), None)],
                2 => vec![
                    note(&["ana", "ben"], &format!("t{t} a"), None),
                    note(&["cy"], &format!("t{t} b"), None),
                    note(&[&ghost], &format!("t{t} c"), None),
                ],
                _ => vec![
                    note(&["ana", "ben", "cy"], &format!("t{t} a"), None),
                    note(&["cy"], &format!("t{t} b"), None),
                ],
            };
            start.wait().await;
            (t, ghost, node.send(ctx("key_test"), batch).await)
        }));
    }
    let mut expected = std::collections::HashMap::from([("ana", 0i64), ("ben", 0), ("cy", 0)]);
    for task in tasks {
        let (t, ghost, answer) = task.await.unwrap();
        match (t % 4, answer) {
            (0, Ok(r)) => {
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].recipients, Some(1));
                *expected.get_mut("ana").unwrap() += 1;
            }
            (1, Err(StoreError::UnknownUsers(users))) => assert_eq!(users, vec![ghost]),
            (2, Err(StoreError::InItem { index, error })) => {
                assert_eq!(index, 2, "request {t}");
                assert!(
                    matches!(&*error, StoreError::UnknownUsers(u) if *u == vec![ghost.clone()]),
                    "request {t}: {error}"
                );
            }
            (3, Ok(r)) => {
                let recipients: Vec<Option<i64>> = r.iter().map(|r| r.recipients).collect();
                assert_eq!(recipients, vec![Some(3), Some(1)], "request {t}");
                for u in ["ana", "ben", "cy", "cy"] {
                    *expected.get_mut(u).unwrap() += 1;
                }
            }
            (_, other) => panic!("request {t} answered {other:?}"),
        }
    }
    for (u, n) in expected {
        let entries: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbox i JOIN users u ON u.uid = i.uid WHERE u.id = $1",
        )
        .bind(u)
        .fetch_one(a.pool())
        .await
        .unwrap();
        assert_eq!(entries, n, "{u}'s inbox");
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(stored, 12 + 12 * 2, "only the good requests are stored");
    db.drop_schema(&[a]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_never_hand_one_job_to_two_claimers() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    let b = db.node().await;
    let jobs = 600;
    sqlx::query(
        "INSERT INTO jobs (kind, payload, nid, run_at, created_at)
         SELECT 'publish', '{\"kind\":\"publish\"}', NULL, 0, 0 FROM generate_series(1, $1)",
    )
    .bind(jobs)
    .execute(a.pool())
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for t in 0..10 {
        let node = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = node
                    .claim_jobs(Millis(1_000), 60_000, 7, &format!("worker-{t}"))
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break;
                }
                for j in &claimed {
                    assert_eq!(j.attempts, 1, "a job claimed twice");
                }
                mine.extend(claimed.into_iter().map(|j| j.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        per_worker.push(mine.len());
        for id in mine {
            assert!(seen.insert(id), "job {id} handed to two claimers");
        }
    }
    assert_eq!(seen.len(), jobs as usize, "every job claimed once");
    // While leased, nobody gets them; once the lease ran out, they come back.
    assert!(
        a.claim_jobs(Millis(30_000), 60_000, 1000, "late")
            .await
            .unwrap()
            .is_empty()
    );
    let again = b
        .claim_jobs(Millis(61_001), 60_000, 1000, "late")
        .await
        .unwrap();
    assert_eq!(again.len(), jobs as usize);
    assert!(again.iter().all(|j| j.attempts == 2));
    db.drop_schema(&[a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_on_one_idempotency_key_agree() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    let b = db.node().await;
    user(&a, "ana").await;
    for round in 0..25 {
        let key = format!("order-{round}");
        let sends: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .map(|node| {
                let key = key.clone();
                tokio::spawn(async move {
                    node.send(ctx("key_one"), vec![note(&["ana"], "paid", Some(&key))])
                        .await
                        .expect("never an error")
                        .remove(0)
                })
            })
            .collect();
        let mut receipts = Vec::new();
        for s in sends {
            receipts.push(s.await.unwrap());
        }
        let ids: HashSet<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 1, "round {round}: {receipts:?}");
        assert_eq!(
            receipts.iter().filter(|r| !r.replayed).count(),
            1,
            "one send stored it, the others answered its receipt"
        );
        assert!(receipts.iter().all(|r| r.seq == receipts[0].seq));
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(count, 25);
    // Another sending key has its own idempotency space.
    let other = b
        .send(
            ctx("key_two"),
            vec![note(&["ana"], "paid", Some("order-0"))],
        )
        .await
        .unwrap();
    assert!(!other[0].replayed);
    db.drop_schema(&[a, b]).await;
}

#[tokio::test]
async fn migrations_are_explicit_and_idempotent() {
    let Some(db) = Db::new() else { return };
    let mut options = db.options();
    options.migrate = false;
    let refused = PgStore::open(options.clone()).await;
    // The schema does not even exist yet: either way, a clear refusal.
    assert!(refused.is_err());
    let (x, y) = tokio::join!(
        belfry_store::postgres::migrate(&options),
        belfry_store::postgres::migrate(&options)
    );
    // Two nodes migrating at once: one applies them all, the other finds
    // nothing to do.
    let mut applied = [x.unwrap(), y.unwrap()];
    applied.sort_unstable();
    assert_eq!(applied, [0, 16]);
    assert_eq!(belfry_store::postgres::migrate(&options).await.unwrap(), 0);
    let store = Arc::new(PgStore::open(options).await.expect("migrated: opens"));
    store.ping().await.unwrap();
    db.drop_schema(&[store]).await;
}

#[tokio::test]
async fn a_schema_behind_is_refused_with_a_hint() {
    let Some(db) = Db::new() else { return };
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let sql = format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        db.schema
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    let mut options = db.options();
    options.migrate = false;
    let Err(e) = PgStore::open(options).await else {
        panic!("an unmigrated schema must be refused")
    };
    assert!(e.to_string().contains("belfry migrate"), "{e}");
    db.drop_schema(&[]).await;
}

/// Access-token revocations (C9): two nodes see the same rows; a later
/// revocation covers earlier tokens only; a year on they are forgotten.
#[tokio::test]
async fn access_revocations_are_shared_and_forgotten_after_a_year() {
    let Some(db) = Db::new() else { return };
    let (a, b) = (db.node().await, db.node().await);
    use belfry_core::{EmailAddress, EntityRef};
    use belfry_store::{AccessRevocation, AccessTokenRef};
    let token = |id: &str, at: i64| AccessTokenRef {
        id: id.into(),
        email: EmailAddress::parse("a@example.org").unwrap(),
        entity: EntityRef::parse("ticket", "9").unwrap(),
        issued_at: Millis(at),
    };
    let entity = AccessRevocation::Entity(EntityRef::parse("ticket", "9").unwrap());
    a.revoke_access(entity.clone(), Millis(1000)).await.unwrap();
    assert!(b.access_revoked(&token("t1", 1000)).await.unwrap());
    assert!(!b.access_revoked(&token("t2", 1001)).await.unwrap());
    b.revoke_access(entity, Millis(10)).await.unwrap();
    assert!(
        a.access_revoked(&token("t1", 1000)).await.unwrap(),
        "never moves back"
    );
    let later = Millis(1000 + 366 * 24 * 3600 * 1000);
    b.revoke_access(AccessRevocation::Token("t9".into()), later)
        .await
        .unwrap();
    assert!(
        !a.access_revoked(&token("t1", 1000)).await.unwrap(),
        "forgotten"
    );
    assert!(a.access_revoked(&token("t9", 0)).await.unwrap());
    db.drop_schema(&[a, b]).await;
}

/// A node's writer draws notification ids from their sequence in blocks and
/// serves the next batches from its block (one query fewer per batch); a
/// block older than a second is let go, so ids follow creation closely
/// enough for retention and the console, which walk them in order.
#[tokio::test]
async fn notification_ids_come_from_a_block_drawn_ahead_and_let_go_when_old() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    let b = db.node().await;
    user(&a, "ana").await;
    let nid = |store: Arc<PgStore>, title: &'static str| async move {
        let r = store
            .send(ctx("key_one"), vec![note(&["ana"], title, None)])
            .await
            .unwrap()
            .remove(0);
        sqlx::query_scalar::<_, i64>("SELECT nid FROM notifications WHERE id = $1")
            .bind(r.id.as_str())
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let drawn = |store: Arc<PgStore>| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT last_value FROM pg_sequences
             WHERE format('%s.%s', schemaname, sequencename) = pg_get_serial_sequence('notifications', 'nid')",
        )
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    let first = nid(a.clone(), "first").await;
    let after_first = drawn(a.clone()).await;
    assert!(
        after_first >= first + 100,
        "a block was drawn: {first} .. {after_first}"
    );
    // The next sends of the node take the following ids, drawing nothing.
    let second = nid(a.clone(), "second").await;
    let third = nid(a.clone(), "third").await;
    assert_eq!((second, third), (first + 1, first + 2));
    assert_eq!(drawn(a.clone()).await, after_first);
    // Another node draws a block of its own.
    let other = nid(b.clone(), "other").await;
    assert!(other > after_first, "{other} after {after_first}");
    // A second later the rest of a's block is too old: a new one is drawn.
    let before_wait = drawn(a.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let late = nid(a.clone(), "late").await;
    assert!(
        late > before_wait,
        "{late} from a block drawn after {before_wait}"
    );
    db.drop_schema(&[a, b]).await;
}

/// The writer commits without waiting for the WAL flush (it answers once
/// the flush is done), so a crash of the database can lose commits whose
/// seqs a reader saw. Crash recovery empties the unlogged `seq_guard`; the
/// first transaction that finds it empty, on either path, moves the counter
/// on by a billion as well, and puts the row back: no seq is handed out
/// twice. Emptying the table by hand stands in for the crash (the machine's
/// PostgreSQL may not be crashed).
#[tokio::test]
async fn after_the_database_lost_commits_seqs_start_past_any_it_can_have_lost() {
    let Some(db) = Db::new() else { return };
    let a = db.node().await;
    user(&a, "ana").await;
    let persistence: String = sqlx::query_scalar(
        "SELECT relpersistence::text FROM pg_class WHERE oid = 'seq_guard'::regclass",
    )
    .fetch_one(a.pool())
    .await
    .unwrap();
    assert_eq!(persistence, "u", "seq_guard is unlogged");
    let mut events = a.events();
    let send = |stack: Option<&str>| {
        let a = a.clone();
        let mut n = note(&["ana"], "hello", None);
        n.content.stack_key = stack.map(str::to_string);
        async move {
            a.send(ctx("key_one"), vec![n]).await.unwrap()[0]
                .seq
                .unwrap()
        }
    };
    const JUMP: i64 = 1_000_000_000;
    let crash = || async {
        sqlx::query("TRUNCATE seq_guard")
            .execute(a.pool())
            .await
            .unwrap();
    };
    // Migrated with the row in place: no jump.
    assert_eq!(send(None).await, 1);
    // The bulk path.
    crash().await;
    assert_eq!(send(None).await, 2 + JUMP);
    assert_eq!(send(None).await, 3 + JUMP, "one jump per crash");
    // The serial path (a stacked send).
    crash().await;
    assert_eq!(send(Some("s")).await, 4 + 2 * JUMP);
    assert_eq!(send(Some("s")).await, 5 + 2 * JUMP);
    let guard: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM seq_guard")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(guard, 1);
    let counter: i64 = sqlx::query_scalar("SELECT value FROM seq_counter")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(counter, 5 + 2 * JUMP);
    // Each commit's event came, with its seq.
    let mut seen = Vec::new();
    while let Ok(batch) = events.try_recv() {
        for e in batch.iter() {
            if let StoreEvent::Published(p) = e {
                seen.push(p.seq);
            }
        }
    }
    assert_eq!(
        seen,
        vec![1, 2 + JUMP, 3 + JUMP, 4 + 2 * JUMP, 5 + 2 * JUMP]
    );
    db.drop_schema(&[a]).await;
}
