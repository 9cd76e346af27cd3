//! Overload and database trouble over HTTP: a locked SQLite database and a
//! full write queue, a PostgreSQL that stops answering or whose pool is
//! exhausted. Each is a 503 problem document with `Retry-After`, answered
//! within a bound (never a hang, never a 500 with the database's text),
//! `/readyz` says so, and everything works again once the trouble is over
//! (also after a 20 s outage under a sustained send load, losing nothing
//! that was acknowledged).

use crate::helpers::*;
use belfry_store::{PgOptions, PgStore, SharedStore, SqliteOptions, SqliteStore};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Checks a 503: its code (one of `codes`), `Retry-After`, and that no
/// database text leaks.
async fn assert_unavailable(r: Response, codes: &[&str]) -> Value {
    if r.status() != StatusCode::SERVICE_UNAVAILABLE {
        panic!("{}: {}", r.status(), r.text().await.unwrap());
    }
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: Value = r.json().await.unwrap();
    let code = p["code"].as_str().unwrap();
    assert!(codes.contains(&code), "{p}");
    let text = p.to_string().to_lowercase();
    for leak in [
        "sqlite",
        "sqlx",
        "postgres",
        "pool",
        "connection refused",
        "locked",
    ] {
        assert!(!text.contains(leak), "database text in {p}");
    }
    p
}

async fn readyz(app: &TestApp) -> Response {
    app.client.get(app.url("/readyz")).send().await.unwrap()
}

#[tokio::test]
async fn a_locked_sqlite_database_and_a_full_write_queue_are_503() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("belfry.db");
    let mut options = SqliteOptions::new(&path);
    options.write_queue = 1;
    options.busy_timeout = Duration::from_secs(3);
    let store: SharedStore = Arc::new(SqliteStore::open(options).unwrap());
    let config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    let app = spawn_app_on(config, dir, TestDb::Sqlite(path.clone()), store).await;
    app.users(&["ana"]).await;

    // Another process takes the write lock and keeps it.
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let requests: Vec<_> = (0..12)
        .map(|i| {
            let request = app
                .client
                .put(app.url(&format!("/v1/groups/g{i}")))
                .bearer_auth(&app.admin_key)
                .json(&json!({"name": "G"}))
                .send();
            async move {
                let r = request.await.unwrap();
                (r, started.elapsed())
            }
        })
        .collect();
    let mut shed = 0;
    let mut busy = 0;
    for (r, took) in futures::future::join_all(requests).await {
        let p = assert_unavailable(r, &["overloaded", "database_busy"]).await;
        if p["code"] == "overloaded" {
            // Shed at once, not after the lock's 3 s.
            assert!(took < Duration::from_secs(2), "{took:?}");
            shed += 1;
        } else {
            busy += 1;
        }
    }
    assert!(shed >= 1 && busy >= 1, "shed {shed}, busy {busy}");
    // Reading works meanwhile (WAL); readiness does not: the writer is stuck.
    let r = app.admin(Method::GET, "/v1/users/ana", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_unavailable(
        readyz(&app).await,
        &["database_busy", "overloaded", "database_unavailable"],
    )
    .await;

    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(readyz(&app).await.status(), StatusCode::OK);
    let r = app
        .admin(Method::PUT, "/v1/groups/after", Some(json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A TCP proxy in front of PostgreSQL that the test can cut: while it is
/// down, open connections are dropped and new ones closed at once, as
/// when the database host goes away.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = cut2.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced.
fn via(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let target = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    (format!("{scheme}://{user}127.0.0.1:{port}/{path}"), target)
}

#[tokio::test]
async fn a_postgresql_that_stops_answering_is_503_and_readyz_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(&dir).await;
    let TestDb::Postgres(schema) = &db else {
        eprintln!("skipped: set BELFRY_TEST_POSTGRES_URL to run this test on PostgreSQL");
        return;
    };
    let (_, target) = via(&schema.url, 0);
    let proxy = Proxy::start(target).await;
    let (url, _) = via(&schema.url, proxy.port);
    let mut options = PgOptions::new(url);
    options.schema = Some(schema.name.clone());
    options.pool_size = 4;
    options.acquire_timeout = Duration::from_secs(1);
    let pg = Arc::new(PgStore::open(options).await.unwrap());
    let config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    let app = spawn_app_on(config, dir, db.clone(), pg.clone()).await;
    app.users(&["ana"]).await;

    // The database goes away: answers within the acquire timeout, 503.
    proxy.down();
    let started = Instant::now();
    let r = app.admin(Method::GET, "/v1/users/ana", None).await;
    assert_unavailable(r, &["database_unavailable"]).await;
    let r = app
        .send(json!({"to": {"users": ["ana"]}, "title": "x"}))
        .await;
    assert_unavailable(r, &["database_unavailable"]).await;
    assert_unavailable(readyz(&app).await, &["database_unavailable"]).await;
    assert!(started.elapsed() < Duration::from_secs(10), "never a hang");

    // It is back: so are we.
    proxy.restore();
    assert_eq!(readyz(&app).await.status(), StatusCode::OK);
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "back"}))
        .await;

    // Every pooled connection taken (by long work elsewhere): requests
    // give up after the acquire timeout.
    let mut held = Vec::new();
    while let Ok(Ok(c)) =
        tokio::time::timeout(Duration::from_millis(1500), pg.pool().acquire()).await
    {
        held.push(c);
    }
    assert!(!held.is_empty());
    let r = app.admin(Method::GET, "/v1/users/ana", None).await;
    assert_unavailable(r, &["database_unavailable"]).await;
    assert_unavailable(readyz(&app).await, &["database_unavailable"]).await;
    drop(held);
    assert_eq!(readyz(&app).await.status(), StatusCode::OK);
}

/// PostgreSQL unreachable for 20 s under a sustained send load (four
/// senders back to back): every send is answered within a bound, 202 or a
/// 503 with `Retry-After`; once it is back the node serves again within
/// 5 s without a restart; every acknowledged notification is stored, in
/// the recipient's inbox, and the seqs have no hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_during_a_20_s_postgresql_outage_are_503_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(&dir).await;
    let TestDb::Postgres(schema) = &db else {
        eprintln!("skipped: set BELFRY_TEST_POSTGRES_URL to run this test on PostgreSQL");
        return;
    };
    let (_, target) = via(&schema.url, 0);
    let proxy = Proxy::start(target).await;
    let (url, _) = via(&schema.url, proxy.port);
    let mut options = PgOptions::new(url);
    options.schema = Some(schema.name.clone());
    options.pool_size = 4;
    options.acquire_timeout = Duration::from_secs(1);
    let pg = Arc::new(PgStore::open(options).await.unwrap());
    let config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    let app = Arc::new(spawn_app_on(config, dir, db.clone(), pg.clone()).await);
    app.users(&["ana"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for t in 0..4 {
        let (app, stop) = (app.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0u32);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let started = Instant::now();
                let r = app
                    .send(json!({"to": {"users": ["ana"]}, "title": format!("t{t} n{i}")}))
                    .await;
                assert!(
                    started.elapsed() < Duration::from_secs(8),
                    "a send took {:?}: never a hang",
                    started.elapsed()
                );
                if r.status() == StatusCode::ACCEPTED {
                    let receipt: Value = r.json().await.unwrap();
                    acked.push(receipt["id"].as_str().unwrap().to_string());
                } else {
                    assert_unavailable(r, &["database_unavailable", "overloaded"]).await;
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.down();
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.restore();
    let back = Instant::now();
    // The node serves again, without a restart, within 5 s.
    loop {
        let r = app
            .send(json!({"to": {"users": ["ana"]}, "title": "back"}))
            .await;
        if r.status() == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not serving 5 s after the database came back: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for s in senders {
        let (a, r) = s.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    assert!(refused > 0, "the outage was seen");
    assert!(
        acked.len() > 20,
        "sends before and after it: {}",
        acked.len()
    );

    // Nothing acknowledged is lost: each is stored with a seq and is in
    // ana's inbox; the committed seqs are 1..=max.
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, seq FROM notifications WHERE seq IS NOT NULL ORDER BY seq")
            .fetch_all(pg.pool())
            .await
            .unwrap();
    let ids: std::collections::HashSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    for id in &acked {
        assert!(ids.contains(id.as_str()), "acknowledged {id} is lost");
    }
    let seqs: Vec<i64> = stored.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let entries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM inbox i JOIN users u ON u.uid = i.uid WHERE u.id = 'ana'",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!(entries, stored.len() as i64);
}

#[tokio::test]
async fn a_postgresql_that_refuses_connections_fails_to_open_quickly() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = PgOptions::new(format!("postgres://postgres@127.0.0.1:{closed}/test"));
    options.acquire_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = match PgStore::open(options).await {
        Err(e) => e,
        Ok(_) => panic!("opened a store on a closed port"),
    };
    assert!(
        matches!(
            error,
            belfry_store::StoreError::Unavailable {
                kind: belfry_store::Unavailable::Unreachable,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
