//! Hardware ceilings, to read Belfry's figures as a fraction of what this
//! machine allows: the raw rate of batched inserts of the rows Belfry writes
//! per notification into SQLite (same schema, same durability), and the raw
//! rate at which a minimal tokio WebSocket server pushes one frame to many
//! local connections. Neither involves Belfry's code paths.

use crate::clients::{self, Receipt, Shared, Transport};
use crate::report::{Report, Row, Samples};
use anyhow::Context as _;
use clap::Args as ClapArgs;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, ClapArgs)]
pub struct SqliteArgs {
    /// Notifications (a notification row and an inbox row each).
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    /// Rows per transaction (one fsync each).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
}

pub async fn sqlite(a: SqliteArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ceiling.db");
    tokio::task::spawn_blocking(move || -> anyhow::Result<Report> {
        // The real schema, created by the store, then plain prepared inserts.
        drop(belfry_store::SqliteStore::open(belfry_store::SqliteOptions::new(&path))?);
        let mut c = rusqlite::Connection::open(&path)?;
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        c.execute(
            "INSERT INTO users (uid, id, created_seq, created_at, updated_at) VALUES (1, 'u-1', 0, 0, 0)",
            [],
        )?;
        let content = r#"{"title":"Ticket #1 assigned to you","body":"The printer on floor 3 is jammed.","url":"https://desk.example.com/tickets/1","category":"assignment","source":null,"actor":null,"entity":null,"data":null,"actions":[],"stack_key":null,"sticky":false,"expires_at":null}"#;
        let start = Instant::now();
        let mut seq: i64 = 0;
        while (seq as usize) < a.rows {
            let tx = c.transaction()?;
            {
                let mut n = tx.prepare_cached(
                    "INSERT INTO notifications (nid, id, seq, status, sender, content, audience, recipients, created_at, published_at)
                     VALUES (?1, ?2, ?1, 'published', 'k', ?3, '{}', 1, ?1, ?1)",
                )?;
                let mut i = tx.prepare_cached(
                    "INSERT INTO inbox (uid, seq, nid, category) VALUES (?1, ?2, ?2, 'assignment')",
                )?;
                for _ in 0..a.batch.min(a.rows - seq as usize) {
                    seq += 1;
                    n.execute(rusqlite::params![seq, format!("01CEILING{seq:017}"), content])?;
                    i.execute(rusqlite::params![1 + seq % 100_000, seq])?;
                }
            }
            tx.commit()?;
        }
        let elapsed = start.elapsed();
        Ok(Report {
            scenario: "ceiling-sqlite".into(),
            parameters: json!({"rows": a.rows, "batch": a.batch, "synchronous": "FULL"}),
            rows: vec![Row::value(
                "batched inserts (notification + inbox row)",
                a.rows as f64 / elapsed.as_secs_f64(),
                "notifications/s",
            )],
            notes: vec![],
            lines: Vec::new(),
        })
    })
    .await
    .context("the insert thread")?
}

#[derive(Debug, Clone, ClapArgs)]
pub struct WsArgs {
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Frames pushed to every client.
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
}

/// The minimal WebSocket server, run as its own process (a process may hold
/// at most 20,000 sockets here: clients and server cannot share one). It
/// prints `LISTENING <port>`, then pushes frame k to every connection for
/// each line `k` read on stdin.
pub async fn websocket_server() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    let (frames, _) =
        tokio::sync::broadcast::channel::<tokio_tungstenite::tungstenite::Utf8Bytes>(64);
    let accept_frames = frames.clone();
    tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let mut rx = accept_frames.subscribe();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                    return;
                };
                let ready = r#"{"type":"counts","seq":null,"data":{"unread":0,"unseen":0}}"#;
                if ws
                    .send(tokio_tungstenite::tungstenite::Message::text(ready))
                    .await
                    .is_err()
                {
                    return;
                }
                while let Ok(frame) = rx.recv().await {
                    if ws
                        .send(tokio_tungstenite::tungstenite::Message::Text(frame))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let k: u64 = line.trim().parse().unwrap_or(0);
        let frame = format!(
            r#"{{"type":"notification","seq":{k},"data":{{"id":"n{k}","title":"Ceiling #{k}","body":"The same frame for everyone."}}}}"#
        );
        let _ = frames.send(frame.into());
    }
    Ok(())
}

pub async fn websocket(a: WsArgs) -> anyhow::Result<Report> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("ceiling-ws-server")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut control = server.stdin.take().context("server stdin")?;
    let mut out = tokio::io::BufReader::new(server.stdout.take().context("server stdout")?).lines();
    let port = out
        .next_line()
        .await?
        .and_then(|l| l.strip_prefix("LISTENING ").map(String::from))
        .context("the minimal server did not start")?;
    let base = format!("http://127.0.0.1:{port}");
    let shared = Arc::new(Shared::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Receipt>();
    let tasks: Vec<_> = futures::stream::iter(0..a.clients)
        .map(|i| clients::open(Transport::Ws, &base, "t", i, shared.clone(), tx.clone()))
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    clients::wait_until(Duration::from_secs(60), || {
        shared.ready.load(Ordering::Relaxed) as usize >= a.clients
    })
    .await;
    let mut sent_at = Vec::new();
    let start = Instant::now();
    for k in 0..a.frames {
        let expected = (a.clients * (k + 1)) as u64;
        sent_at.push(Instant::now());
        control.write_all(format!("{}\n", k + 1).as_bytes()).await?;
        control.flush().await?;
        clients::wait_until(Duration::from_secs(30), || {
            shared.notifications.load(Ordering::Relaxed) >= expected
        })
        .await;
    }
    let elapsed = start.elapsed();
    drop(tx);
    let mut per_client = Samples::default();
    let mut last = vec![Duration::ZERO; a.frames];
    while let Ok(r) = rx.try_recv() {
        let k = (r.seq - 1) as usize;
        if let Some(t0) = sent_at.get(k) {
            let d = r.at.saturating_duration_since(*t0);
            per_client.push(d);
            last[k] = last[k].max(d);
        }
    }
    let mut last_client = Samples::default();
    for d in last {
        last_client.push(d);
    }
    for t in tasks {
        t.abort();
    }
    drop(control);
    let _ = server.kill().await;
    Ok(Report {
        scenario: "ceiling-ws".into(),
        parameters: json!({"clients": a.clients, "frames": a.frames}),
        rows: vec![
            per_client.summary("receipt after push, every client and frame"),
            last_client.summary("last client's receipt after push, per frame"),
            Row::value(
                "frames delivered per second",
                (a.clients * a.frames) as f64 / elapsed.as_secs_f64(),
                "frames/s",
            ),
        ],
        notes: vec!["clients and the minimal server (another process) share the machine".into()],
        lines: Vec::new(),
    })
}
