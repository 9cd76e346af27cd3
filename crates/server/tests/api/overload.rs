//! Overload and database trouble over HTTP: a locked SQLite database and a
//! full write queue, a PostgreSQL that stops answering or whose pool is
//! exhausted. Each is a 503 problem document with `Retry-After`, answered
//! within a bound (never a hang, never a 500 with the database's text),
//! `/readyz` says so, and everything works again once the trouble is over.

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
