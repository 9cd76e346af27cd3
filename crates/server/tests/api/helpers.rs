//! The test harness: a real Belfry on a random port over a fresh database
//! (a SQLite file, or with `BELFRY_TEST_POSTGRES_URL` set a new schema in
//! that PostgreSQL database), with a clock the tests move, and typed helpers
//! for the API.

use belfry_core::{Clock, ManualClock, SystemClock};
use belfry_server::{Application, Config};
use belfry_store::{PgOptions, PgStore, SharedStore, SqliteOptions, SqliteStore};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    /// The server's store.
    pub store: SharedStore,
    pub hub: Arc<belfry_server::realtime::Hub>,
    pub engine: Arc<belfry_delivery::Engine>,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub clock: Arc<ManualClock>,
    pub dir: Arc<TempDir>,
    /// The database this server runs on.
    pub db: TestDb,
    config: Config,
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let db = TestDb::fresh(&dir).await;
    start(config, dir, db, clock, None).await
}

/// The variable that makes the tests run on PostgreSQL.
pub const POSTGRES_URL_VAR: &str = "BELFRY_TEST_POSTGRES_URL";

/// The database of one test.
#[derive(Clone)]
pub enum TestDb {
    Sqlite(std::path::PathBuf),
    /// A schema of its own in the PostgreSQL database; dropped (best effort)
    /// when the last handle goes.
    Postgres(Arc<PgSchema>),
}

/// A uniquely named schema for one test.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Best effort, on a thread of its own (Drop cannot await): the
        // server may still hold connections; a schema left behind is
        // dropped by a later run (see `sweep_old_schemas`).
        let url = self.url.clone();
        let name = self.name.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql("SET lock_timeout = '5s'")
                        .execute(&mut c)
                        .await;
                    let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                        .execute(&mut c)
                        .await;
                    let _ = c.close().await;
                }
            });
        });
    }
}

/// Drops test schemas left behind by runs that ended more than an hour ago.
async fn sweep_old_schemas(url: &str) {
    use sqlx::Connection;
    let Ok(mut c) = sqlx::PgConnection::connect(url).await else {
        return;
    };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'belfry\\_test\\_%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap_or_default();
    let hour_ago = SystemClock.now().0 / 1000 - 3600;
    for name in names {
        let created: Option<i64> = name
            .strip_prefix("belfry_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse().ok());
        if created.is_some_and(|c| c < hour_ago) {
            let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(&mut c)
                .await;
        }
    }
    let _ = c.close().await;
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    /// A new, empty database for one test.
    pub async fn fresh(dir: &TempDir) -> TestDb {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => {
                static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
                SWEPT.get_or_init(|| sweep_old_schemas(&url)).await;
                static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!(
                    "belfry_test_{}_{}_{n}",
                    SystemClock.now().0 / 1000,
                    std::process::id()
                );
                TestDb::Postgres(Arc::new(PgSchema { url, name }))
            }
            _ => TestDb::Sqlite(dir.path().join("belfry.db")),
        }
    }

    /// Opens (migrating, and creating the schema) a store on this database.
    pub async fn open(&self) -> SharedStore {
        match self {
            TestDb::Sqlite(path) => {
                Arc::new(SqliteStore::open(SqliteOptions::new(path)).expect("open the store"))
            }
            TestDb::Postgres(schema) => {
                let mut options = PgOptions::new(schema.url.clone());
                options.schema = Some(schema.name.clone());
                options.pool_size = 8;
                Arc::new(
                    PgStore::open(options)
                        .await
                        .expect("open the PostgreSQL store"),
                )
            }
        }
    }
}

/// A server on a store the test opened itself (with options of its own);
/// `db` is where that store is (for `restart` and `key_with_scope`).
pub async fn spawn_app_on(config: Config, dir: TempDir, db: TestDb, store: SharedStore) -> TestApp {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    start_on(config, Arc::new(dir), db, clock, None, store).await
}

async fn start(
    config: Config,
    dir: Arc<TempDir>,
    db: TestDb,
    clock: Arc<ManualClock>,
    admin_key: Option<String>,
) -> TestApp {
    let store = db.open().await;
    start_on(config, dir, db, clock, admin_key, store).await
}

async fn start_on(
    config: Config,
    dir: Arc<TempDir>,
    db: TestDb,
    clock: Arc<ManualClock>,
    admin_key: Option<String>,
    store: SharedStore,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build(config.clone(), store.clone(), clock.clone(), listener)
        .await
        .expect("build the app");
    let admin_key = admin_key
        .or(app.generated_admin_key.clone())
        .expect("a fresh database generates an admin key");
    let base = format!("http://{}", app.local_addr());
    let hub = app.hub();
    let engine = app.engine();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(token).await.expect("serve");
    });
    TestApp {
        base,
        store,
        hub,
        engine,
        client: reqwest::Client::new(),
        admin_key,
        clock,
        dir,
        db,
        config,
        shutdown,
        handle,
    }
}

impl TestApp {
    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(self) -> TestApp {
        self.shutdown.cancel();
        self.handle.await.expect("server task");
        start(
            self.config,
            self.dir,
            self.db,
            self.clock,
            Some(self.admin_key),
        )
        .await
    }

    /// Another node on the same database, clock and admin key (a second
    /// server process in production; here a second server in this one, with
    /// its own store: its own pool and writer).
    pub async fn another_node(&self) -> TestApp {
        start(
            self.config.clone(),
            self.dir.clone(),
            self.db.clone(),
            self.clock.clone(),
            Some(self.admin_key.clone()),
        )
        .await
    }

    /// Opens an SSE stream; `Last-Event-ID` when `after` is given.
    pub async fn sse(&self, token: &str, after: Option<i64>) -> SseClient {
        let mut req = self
            .client
            .get(self.url("/v1/me/stream"))
            .bearer_auth(token);
        if let Some(a) = after {
            req = req.header("last-event-id", a.to_string());
        }
        let r = req.send().await.expect("SSE request");
        assert_eq!(r.status(), StatusCode::OK, "SSE: {}", r.status());
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        SseClient::new(r)
    }

    /// Opens a WebSocket; `?after=` when given.
    pub async fn ws(&self, token: &str, after: Option<i64>) -> WsClient {
        self.ws_with(token, after, "").await
    }

    /// Opens a WebSocket with more query parameters (`&counts=derived`).
    pub async fn ws_with(&self, token: &str, after: Option<i64>, more: &str) -> WsClient {
        let mut url = format!(
            "{}/v1/me/ws?token={token}{more}",
            self.base.replace("http://", "ws://")
        );
        if let Some(a) = after {
            url.push_str(&format!("&after={a}"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket");
        WsClient { socket }
    }

    /// Runs every job due at the test clock's now; returns how many ran.
    pub async fn run_due_jobs(&self) -> usize {
        self.engine.run_due().await
    }

    /// The body of an unauthenticated GET of `path` (metrics, assets).
    pub async fn text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with a bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call(method, path, &self.admin_key, body).await
    }

    pub async fn put_user(&self, id: &str, body: Value) -> Value {
        let r = self
            .admin(Method::PUT, &format!("/v1/users/{id}"), Some(body))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "PUT user {id}");
        r.json().await.unwrap()
    }

    /// Creates users with no other attributes.
    pub async fn users(&self, ids: &[&str]) {
        for id in ids {
            self.put_user(id, json!({})).await;
        }
    }

    pub async fn send(&self, body: Value) -> Response {
        self.admin(Method::POST, "/v1/notifications", Some(body))
            .await
    }

    /// Sends and expects 202; returns the receipt.
    pub async fn send_ok(&self, body: Value) -> Value {
        let r = self.send(body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "send failed: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Sends a simple notification to one user; returns its id.
    pub async fn notify(&self, user: &str, title: &str) -> String {
        let r = self
            .send_ok(json!({"to": {"users": [user]}, "title": title}))
            .await;
        r["id"].as_str().unwrap().to_string()
    }

    pub async fn token(&self, user: &str) -> String {
        let r = self
            .admin(
                Method::POST,
                &format!("/v1/users/{user}/tokens"),
                Some(json!({"ttl_seconds": 30 * 24 * 3600})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn me(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        self.call(method, &format!("/v1/me{path}"), token, body)
            .await
    }

    /// The inbox page for `query` (e.g. "?filter=unread").
    pub async fn inbox(&self, token: &str, query: &str) -> Value {
        let r = self
            .me(Method::GET, &format!("/notifications{query}"), token, None)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Titles of the inbox page, newest first.
    pub async fn titles(&self, token: &str, query: &str) -> Vec<String> {
        self.inbox(token, query).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_string())
            .collect()
    }

    /// (unread, unseen)
    pub async fn counts(&self, token: &str) -> (i64, i64) {
        let r = self.me(Method::GET, "/counts", token, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        (v["unread"].as_i64().unwrap(), v["unseen"].as_i64().unwrap())
    }

    /// The user opened the drawer: `POST /v1/me/notifications/seen-all`.
    pub async fn seen_all(&self, token: &str) {
        self.me_post(
            token,
            "/notifications/seen-all",
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    /// POSTs to /v1/me{path} and asserts the status.
    pub async fn me_post(
        &self,
        token: &str,
        path: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> Value {
        let r = self.me(Method::POST, path, token, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, expect, "POST /v1/me{path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new key with the given scope, created through the store's CLI path.
    pub async fn key_with_scope(&self, scope: belfry_store::Scope) -> String {
        let store = self.db.open().await;
        let (secret, record) = belfry_server::auth::generate_key("test", vec![scope]);
        store
            .create_api_key(record, self.clock.now())
            .await
            .unwrap();
        secret
    }
}

/// Reads a problem document and checks its status and code.
pub async fn assert_problem(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], code, "problem: {v}");
    assert_eq!(v["status"], status.as_u16());
    assert!(!v["detail"].as_str().unwrap().is_empty());
    v
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<i64>,
    /// `notification`, `counts`, `state`, or `heartbeat` for a comment line.
    pub event: String,
    pub data: Value,
}

/// A minimal SSE client over a streaming HTTP response.
pub struct SseClient {
    rx: tokio::sync::mpsc::UnboundedReceiver<Option<SseEvent>>,
    task: JoinHandle<()>,
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse_sse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = String::from("message");
    let mut data = String::new();
    let mut comment = false;
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            comment = c.trim() == "heartbeat";
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().expect("numeric id"));
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    if comment {
        return Some(SseEvent {
            id: None,
            event: "heartbeat".into(),
            data: Value::Null,
        });
    }
    if data.is_empty() {
        return None; // e.g. the retry: line
    }
    Some(SseEvent {
        id,
        event,
        data: serde_json::from_str(&data).expect("JSON data"),
    })
}

impl SseClient {
    fn new(response: Response) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            let mut body = response.bytes_stream();
            let mut buf = String::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(e) = parse_sse_block(&block) {
                        let _ = tx.send(Some(e));
                    }
                }
            }
            let _ = tx.send(None);
        });
        SseClient { rx, task }
    }

    /// The next event (heartbeats included); None once the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.rx.recv())
            .await
            .expect("an SSE event within 10 s")
            .flatten()
    }

    /// The next event of this kind, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> SseEvent {
        loop {
            let e = self.next().await.expect("the stream is open");
            if e.event == kind {
                return e;
            }
        }
    }

    /// Waits for the next notification.
    pub async fn notification(&mut self) -> SseEvent {
        self.next_of("notification").await
    }
}

/// A WebSocket client.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Closes from the client's side with a close frame, and waits for the
    /// server's answer to it.
    pub async fn close(mut self) {
        use futures::StreamExt;
        self.socket.close(None).await.expect("close frame sent");
        let answered = async { while let Some(Ok(_)) = self.socket.next().await {} };
        tokio::time::timeout(std::time::Duration::from_secs(10), answered)
            .await
            .expect("the server answers a close frame");
    }

    /// The next JSON message; None when the server closed (with its close frame code).
    pub async fn next(&mut self) -> Result<Value, Option<u16>> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), self.socket.next())
                .await
                .expect("a WebSocket message within 10 s");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).expect("JSON")),
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// The next JSON message if one comes within `wait`.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<Value> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match tokio::time::timeout(wait, self.socket.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("JSON"));
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
                Ok(other) => panic!("the socket ended: {other:?}"),
            }
        }
    }

    /// Skips messages until the server closes; its close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), self.socket.next())
                .await
                .expect("a WebSocket message within 10 s");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the socket failed instead of closing: {e}"),
                None => panic!("the socket ended without a close frame"),
            }
        }
    }

    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next().await.expect("the socket is open");
            if m["type"] == kind {
                return m;
            }
        }
    }

    /// Waits until a counts message says `expected` (earlier ones may be
    /// superseded values of a recount that raced with a change); fields
    /// that `expected` leaves out (e.g. `seq`) are not compared.
    pub async fn counts_settle(&mut self, expected: Value) {
        loop {
            let data = self.next_of("counts").await["data"].take();
            let fields = expected.as_object().expect("an object");
            if fields.iter().all(|(k, v)| &data[k] == v) {
                return;
            }
        }
    }
}

/// A real SMTP server process (aiosmtpd, tests/smtp/smtp_sink.py) that
/// writes each accepted message as JSON into a directory.
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    dir: TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// `mode`: accept, tempfail:N, reject or stall.
    pub fn start(mode: &str) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = Self::spawn(dir.path(), mode, 0);
        SmtpSink { child, port, dir }
    }

    /// Runs the server process on `port` (0: any), writing into `dir`.
    fn spawn(dir: &std::path::Path, mode: &str, port: u16) -> (std::process::Child, u16) {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/smtp/smtp_sink.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(["--mode", mode, "--port", &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the SMTP test server (scripts/test installs aiosmtpd)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"))
            .parse()
            .unwrap();
        (child, port)
    }

    /// Stops the server process (an outage): connections are refused, and
    /// those a client keeps open are gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, accepting; messages received
    /// before the outage are kept.
    pub fn restart(&mut self) {
        self.stop();
        let (child, _) = Self::spawn(self.dir.path(), "accept", self.port);
        self.child = child;
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits until `n` messages arrived (fails after 15 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("expected {n} emails, got {}", self.messages().len());
    }
}

/// Posts a push subscription (a browser's or a mobile device's) with a
/// user token; the answer's body, after checking its status.
pub async fn subscribe(app: &TestApp, token: &str, body: Value, expect: StatusCode) -> Value {
    let r = app
        .me(Method::POST, "/push-subscriptions", token, Some(body))
        .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, expect, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// A user's push subscriptions (browsers and devices), as listed.
pub async fn subscriptions(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app
        .me(Method::GET, "/push-subscriptions", token, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["items"].as_array().unwrap().clone()
}
