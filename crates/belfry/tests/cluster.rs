//! Several Belfry nodes on one PostgreSQL database and one NATS server:
//! cross-node delivery, broadcasts across nodes, exactly-once jobs, a node
//! killed with SIGKILL, and concurrent commits on several nodes with resume.
//!
//! Needs BELFRY_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test)
//! and BELFRY_TEST_NATS_URL (e.g. nats://127.0.0.1:4222); without them the
//! tests say so and pass, except in CI (CI=true), where they fail.

mod common;
use common::{Sink, metric, until};

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_belfry");
const KEY: &str = "bfy_sk_cluster-test-key-0123456789abcdefghijklmn";

/// The services, or None (and a message) to skip. scripts/test runs these
/// tests again in its PostgreSQL section; there, in CI, NATS is required.
fn services() -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("BELFRY_TEST_POSTGRES_URL"), var("BELFRY_TEST_NATS_URL")) {
        (Some(pg), Some(nats)) => Some((pg, nats)),
        (Some(_), None) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI requires NATS for the multi-node tests: set BELFRY_TEST_NATS_URL")
        }
        _ => {
            eprintln!(
                "skipping the multi-node tests: set BELFRY_TEST_POSTGRES_URL and BELFRY_TEST_NATS_URL to run them"
            );
            None
        }
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of its own for one test, dropped at the end.
struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    fn create(base: &str) -> Database {
        let name = unique("belfry_cluster");
        let status = Command::new("psql")
            .arg(base)
            .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .expect("psql creates the test database");
        assert!(status.success());
        let (prefix, _) = base
            .rsplit_once('/')
            .expect("a database URL ends with /<name>");
        Database {
            admin_url: base.to_string(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .status();
    }
}

struct Node {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(db: &str, nats: &str, subject: &str, extra: &[(&str, String)]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        db,
        "--nats",
        nats,
        "--nats-subject",
        subject,
    ])
    .arg("--data-dir")
    .arg(dir.path())
    .env("BELFRY_ADMIN_KEY", KEY)
    .env("BELFRY_LOG", "warn,belfry=info")
    .env("NO_COLOR", "1")
    .env_remove("BELFRY_CONFIG")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // Owned by a Node at once, so that it is killed whatever happens.
    let mut node = Node {
        child: cmd.spawn().expect("start a node"),
        url: String::new(),
        _dir: dir,
    };
    let mut lines = BufReader::new(node.child.stderr.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the node logs until it listens")
            .unwrap();
        if let Some(rest) = line.split("Belfry listening on ").nth(1) {
            node.url = rest.split_whitespace().next().unwrap().to_string();
            std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
            return node;
        }
    }
}

struct Cluster {
    _db: Database,
    nodes: Vec<Node>,
    db_url: String,
    nats: String,
    subject: String,
    client: reqwest::Client,
}

impl Cluster {
    fn start(n: usize, extra: &[(&str, String)]) -> Option<Cluster> {
        Cluster::start_each((0..n).map(|_| extra.to_vec()).collect())
    }

    /// One node per entry, each with its own extra environment.
    fn start_each(envs: Vec<Vec<(&str, String)>>) -> Option<Cluster> {
        let (pg, nats) = services()?;
        let db = Database::create(&pg);
        let subject = format!("belfry.test.{}", unique("c"));
        // The first node migrates the database; the others find it ready.
        let nodes = envs
            .iter()
            .map(|env| node(&db.url, &nats, &subject, env))
            .collect();
        Some(Cluster {
            db_url: db.url.clone(),
            _db: db,
            nodes,
            nats,
            subject,
            client: reqwest::Client::new(),
        })
    }

    fn url(&self, node: usize) -> &str {
        &self.nodes[node].url
    }

    async fn call(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url(node)))
            .bearer_auth(KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn send(&self, node: usize, body: Value) -> Value {
        let (s, r) = self
            .call(node, reqwest::Method::POST, "/v1/notifications", Some(body))
            .await;
        assert_eq!(s, 202, "send on node {node}: {r}");
        r
    }

    async fn token(&self, node: usize, user: &str) -> String {
        let (s, r) = self
            .call(
                node,
                reqwest::Method::POST,
                &format!("/v1/users/{user}/tokens"),
                Some(json!({"ttl_seconds": 3600})),
            )
            .await;
        assert_eq!(s, 201, "{r}");
        r["token"].as_str().unwrap().to_string()
    }
}

/// A minimal SSE reader: notification events as (seq, data), and other events.
struct Stream {
    rx: tokio::sync::mpsc::UnboundedReceiver<Option<(String, Option<i64>, Value)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stream(base: &str, token: &str, after: Option<i64>) -> Stream {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/v1/me/stream"))
        .bearer_auth(token);
    if let Some(a) = after {
        req = req.header("last-event-id", a.to_string());
    }
    let r = req.send().await.expect("SSE");
    assert_eq!(r.status().as_u16(), 200);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        use futures::StreamExt;
        let mut body = r.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut event = String::new();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).ok();
                    }
                }
                if let Some(d) = data {
                    let _ = tx.send(Some((event, id, d)));
                }
            }
        }
        let _ = tx.send(None);
    });
    Stream { rx, task }
}

impl Stream {
    async fn next(&mut self) -> Option<(String, Option<i64>, Value)> {
        tokio::time::timeout(Duration::from_secs(15), self.rx.recv())
            .await
            .expect("an event within 15 s")
            .flatten()
    }

    async fn notification(&mut self) -> (i64, Value) {
        loop {
            let (event, id, data) = self.next().await.expect("the stream is open");
            if event == "notification" {
                return (id.unwrap(), data);
            }
        }
    }

    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let (event, _, data) = self.next().await.expect("the stream is open");
            if event == kind {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn a_notification_sent_through_any_node_reaches_streams_on_every_node() {
    let Some(c) = Cluster::start(3, &[]) else {
        return;
    };
    for (i, user) in ["ana", "bo", "cy"].iter().enumerate() {
        let (s, _) = c
            .call(
                i,
                reqwest::Method::PUT,
                &format!("/v1/users/{user}"),
                Some(json!({"groups": ["support"]})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let mut ana_on_b = stream(c.url(1), &c.token(0, "ana").await, None).await;
    let mut bo_on_c = stream(c.url(2), &c.token(0, "bo").await, None).await;
    let mut cy_on_a = stream(c.url(0), &c.token(0, "cy").await, None).await;
    ana_on_b.next_of("counts").await;

    // Direct, through node A, to Ana whose stream is on node B.
    let r = c
        .send(0, json!({"to": {"users": ["ana"]}, "title": "for ana"}))
        .await;
    let (seq, data) = ana_on_b.notification().await;
    assert_eq!(data["title"], "for ana");
    assert_eq!(Some(seq), r["seq"].as_i64());
    assert_eq!(
        ana_on_b.next_of("counts").await,
        json!({"unread": 1, "unseen": 1, "seq": r["seq"]})
    );

    // A broadcast through node C reaches clients on all three nodes.
    c.send(
        2,
        json!({"to": {"groups": ["support"]}, "title": "to everyone in support"}),
    )
    .await;
    for s in [&mut ana_on_b, &mut bo_on_c, &mut cy_on_a] {
        assert_eq!(s.notification().await.1["title"], "to everyone in support");
    }

    // State made through node C arrives on Ana's stream on node B.
    let ana = c.token(2, "ana").await;
    let id = r["id"].as_str().unwrap();
    let resp = c
        .client
        .post(format!("{}/v1/me/notifications/{id}/read", c.url(2)))
        .bearer_auth(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(ana_on_b.next_of("state").await["ids"], json!([id]));

    // Every node reads the same inbox.
    for n in 0..3 {
        let (_, counts) = c
            .call(n, reqwest::Method::GET, "/v1/users/ana/counts", None)
            .await;
        assert_eq!(counts["unread"], 1, "node {n}");
        assert_eq!(counts["unseen"], 1, "node {n}");
    }

    // Every node published (its user) and received the others' messages;
    // its own came back and were taken as sent, not decoded again.
    for n in 0..3 {
        for from in ["self", "other"] {
            let name = format!("belfry_bus_messages_received_total{{from=\"{from}\"}}");
            let count = metric(c.url(n), &name).await;
            assert!(count > 0.0, "node {n}: {name} {count}");
        }
    }
}

#[tokio::test]
async fn concurrent_commits_on_three_nodes_reach_a_resuming_client_in_order_without_gap() {
    let Some(c) = Cluster::start(3, &[]) else {
        return;
    };
    c.call(0, reqwest::Method::PUT, "/v1/users/ana", Some(json!({})))
        .await;
    let token = c.token(0, "ana").await;
    let per_node = 40;
    // Three producers, one per node, all sending to Ana at once.
    let producers: Vec<_> = (0..3)
        .map(|n| {
            let url = format!("{}/v1/notifications", c.url(n));
            let client = c.client.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..per_node {
                    let r: Value = client
                        .post(&url)
                        .bearer_auth(KEY)
                        .json(&json!({"to": {"users": ["ana"]}, "title": format!("node {n} #{i}")}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    ids.push((
                        r["seq"].as_i64().unwrap(),
                        r["id"].as_str().unwrap().to_string(),
                    ));
                }
                ids
            })
        })
        .collect();
    // The client hops between nodes, resuming each time with its cursor.
    let mut received: Vec<(i64, String)> = Vec::new();
    let mut hop = 0;
    let mut s = stream(c.url(0), &token, Some(0)).await;
    while received.len() < 3 * per_node {
        let (seq, data) = s.notification().await;
        if let Some((last, _)) = received.last() {
            assert!(
                seq > *last,
                "in order and never repeated: {seq} after {last}"
            );
        }
        received.push((seq, data["id"].as_str().unwrap().to_string()));
        if received.len().is_multiple_of(17) {
            hop += 1;
            drop(s);
            s = stream(c.url(hop % 3), &token, received.last().map(|r| r.0)).await;
        }
    }
    let mut sent: Vec<(i64, String)> = Vec::new();
    for p in producers {
        sent.extend(p.await.unwrap());
    }
    sent.sort();
    assert_eq!(
        received, sent,
        "every notification of every node, once, in seq order"
    );
    // Seqs are gap-free: nothing else was sent.
    assert!(
        sent.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "gap-free seqs"
    );
}

#[tokio::test]
async fn jobs_run_exactly_once_and_a_killed_node_loses_nothing() {
    let sink = Sink::start("accept");
    // Node A's SMTP server accepts connections and never answers: the jobs
    // node A claims hang there until it is killed.
    let stalled = Sink::start("stall");
    let env = |sink: &Sink| {
        vec![
            ("BELFRY_SMTP_URL", format!("smtp://127.0.0.1:{}", sink.port)),
            ("BELFRY_JOB_LEASE_SECS", "3".to_string()),
        ]
    };
    let Some(mut c) = Cluster::start_each(vec![env(&stalled), env(&sink), env(&sink)]) else {
        return;
    };
    c.call(0, reqwest::Method::PUT, "/v1/users/ana", Some(json!({})))
        .await;
    let token = c.token(0, "ana").await;

    // Emails sent through all three nodes, every node running workers.
    let mut expected = Vec::new();
    for i in 0..30 {
        let address = format!("guest{i:02}@example.org");
        c.send(
            i % 3,
            json!({"to": {"emails": [address.clone()]}, "title": format!("Mail {i}")}),
        )
        .await;
        expected.push(address);
    }

    // Ana's stream lives on node A, which will be killed.
    let mut s = stream(c.url(0), &token, None).await;
    let mut received = Vec::new();
    for i in 0..5 {
        let r = c
            .send(
                1,
                json!({"to": {"users": ["ana"]}, "title": format!("before {i}")}),
            )
            .await;
        let (seq, _) = s.notification().await;
        assert_eq!(Some(seq), r["seq"].as_i64());
        received.push(seq);
    }
    let mut killed = c.nodes.remove(0);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    drop(killed);
    drop(s);
    // Meanwhile the others go on.
    for i in 0..5 {
        c.send(
            1,
            json!({"to": {"users": ["ana"]}, "title": format!("while down {i}")}),
        )
        .await;
    }
    // The client reconnects to another node with its cursor.
    let mut s = stream(c.url(0), &token, received.last().copied()).await;
    for i in 0..5 {
        let (seq, data) = s.notification().await;
        assert_eq!(data["title"], format!("while down {i}"));
        assert_eq!(seq, received.last().unwrap() + 1);
        received.push(seq);
    }

    // Every email is sent once, whichever nodes ran the jobs: the killed
    // node's leases ran out and the others took its jobs.
    until("every email sent", async || {
        sink.recipients().len() >= expected.len()
    })
    .await;
    until("no job left", async || {
        metric(c.url(0), "belfry_jobs_queued").await == 0.0
            && metric(c.url(0), "belfry_jobs_running").await == 0.0
    })
    .await;
    assert_eq!(sink.recipients(), expected, "each email exactly once");

    // A node that joins later (same database, same NATS) serves everything.
    let late = node(&c.db_url, &c.nats, &c.subject, &env(&sink));
    let (_, counts) = {
        let r = c
            .client
            .get(format!("{}/v1/users/ana/counts", late.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(counts["unread"], 10);
}

#[tokio::test]
async fn a_revocation_on_one_node_ends_the_tokens_and_streams_on_every_node() {
    let Some(c) = Cluster::start(2, &[]) else {
        return;
    };
    let (s, _) = c
        .call(0, reqwest::Method::PUT, "/v1/users/ana", Some(json!({})))
        .await;
    assert_eq!(s, 200);
    let old = c.token(0, "ana").await;
    let mut on_b = stream(c.url(1), &old, None).await;
    on_b.next_of("counts").await;
    let counts = |node: usize, token: String| {
        let url = format!("{}/v1/me/counts", c.url(node));
        let client = c.client.clone();
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(counts(1, old.clone()).await, 200);

    // Revoked through node A: node B hears of it over NATS, ends the stream
    // and refuses the token (without asking the database per request).
    let (s, _) = c
        .call(0, reqwest::Method::DELETE, "/v1/users/ana/tokens", None)
        .await;
    assert_eq!(s, 204);
    while let Some((event, _, _)) = on_b.next().await {
        assert_ne!(event, "notification");
    }
    assert_eq!(counts(1, old.clone()).await, 401);
    assert_eq!(counts(0, old).await, 401);
    // A token issued afterwards by either node works on both.
    for issuer in 0..2 {
        let fresh = c.token(issuer, "ana").await;
        for n in 0..2 {
            assert_eq!(
                counts(n, fresh.clone()).await,
                200,
                "issued by {issuer} on {n}"
            );
        }
    }
}

/// A nats-server of the test's own, on a free port, that it may stop and
/// start again (the machine's NATS is never touched).
struct OwnNats {
    child: Option<Child>,
    port: u16,
}

impl OwnNats {
    /// None when `nats-server` is not installed (then the test is skipped,
    /// except in CI).
    fn start(port: u16) -> Option<OwnNats> {
        let mut n = OwnNats { child: None, port };
        n.run()?;
        Some(n)
    }

    fn run(&mut self) -> Option<()> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI requires nats-server for the NATS restart test: {e}")
            }
            Err(e) => {
                eprintln!("skipping: nats-server cannot be started ({e})");
                return None;
            }
        };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NATS restarted while notifications are sent through every node: a node
/// that missed commits ends its streams, and a client resuming from its
/// cursor (as the widget does) catches up from the store, so on every node
/// it receives every notification once, in seq order, without a gap, and
/// the counts each node serves it once it caught up are the store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_during_sends_leaves_no_gap_on_any_node() {
    let Some((pg, _)) = services() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(mut nats) = OwnNats::start(port) else {
        return;
    };
    let db = Database::create(&pg);
    let nats_url = format!("nats://127.0.0.1:{port}");
    let subject = format!("belfry.test.{}", unique("restart"));
    let nodes = (0..3)
        .map(|_| node(&db.url, &nats_url, &subject, &[]))
        .collect();
    let c = Cluster {
        db_url: db.url.clone(),
        _db: db,
        nodes,
        nats: nats_url,
        subject,
        client: reqwest::Client::new(),
    };
    c.call(0, reqwest::Method::PUT, "/v1/users/ana", Some(json!({})))
        .await;
    let token = c.token(0, "ana").await;
    let mut streams = Vec::new();
    for n in 0..3 {
        streams.push(stream(c.url(n), &token, Some(0)).await);
    }

    // Sends through every node in turn, before, during and after the restart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let urls: Vec<String> = (0..3)
            .map(|n| format!("{}/v1/notifications", c.url(n)))
            .collect();
        let client = c.client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .post(&urls[i % 3])
                    .bearer_auth(KEY)
                    .json(&json!({"to": {"users": ["ana"]}, "title": format!("#{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 202, "sends do not need NATS");
                let r: Value = r.json().await.unwrap();
                seqs.push(r["seq"].as_i64().unwrap());
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seqs
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.run().expect("nats-server starts again");
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    let mut sent = producer.await.unwrap();
    sent.sort_unstable();
    assert!(sent.len() > 50, "{} sends", sent.len());
    assert_eq!(sent, (1..=sent.len() as i64).collect::<Vec<_>>());
    let last = *sent.last().unwrap();
    let mut resumed = 0;
    for (n, mut s) in streams.into_iter().enumerate() {
        let mut received: Vec<i64> = Vec::new();
        // The counts the node last told this client.
        let mut unread = None;
        while received.last() != Some(&last) {
            match s.next().await {
                Some((event, Some(seq), _)) if event == "notification" => received.push(seq),
                Some((event, _, data)) if event == "counts" => unread = data["unread"].as_i64(),
                Some(_) => {}
                // The node ended the stream (it missed commits while NATS
                // was away): the client resumes from its cursor, as the
                // widget does.
                None => {
                    resumed += 1;
                    s = stream(
                        c.url(n),
                        &token,
                        Some(received.last().copied().unwrap_or(0)),
                    )
                    .await;
                }
            }
        }
        assert_eq!(
            received, sent,
            "node {n}: every notification once, in order, without a gap"
        );
        // Counts that follow the last notification have 2 s to arrive; after
        // that the node's last word must be right (the store's count), not a
        // value cached before it missed commits.
        while let Ok(Some(Some((event, _, data)))) =
            tokio::time::timeout(Duration::from_secs(2), s.rx.recv()).await
        {
            if event == "counts" {
                unread = data["unread"].as_i64();
            }
        }
        assert_eq!(
            unread,
            Some(sent.len() as i64),
            "node {n}: the counts it serves once the client caught up"
        );
    }
    eprintln!("streams resumed after the restart: {resumed}");
}
