//! Hardware ceilings, to read Belfry's figures as a fraction of what this
//! machine allows: the raw rate of batched inserts of the rows Belfry writes
//! per notification into SQLite (same schema, same durability), the raw
//! rate at which a minimal tokio WebSocket server pushes one frame to many
//! local connections; and the same rows into PostgreSQL (single-row
//! autocommit, multi-row inserts, COPY). None involves Belfry's code paths.

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
pub struct PostgresArgs {
    /// The PostgreSQL database to measure (a scratch schema is created in
    /// it with Belfry's migrations, and dropped at the end).
    #[arg(long, env = "BELFRY_BENCH_POSTGRES_URL")]
    pub database_url: String,
    /// Notifications per method (a notification row, an inbox row and a
    /// delivery log line each: what Belfry writes for one in-app recipient).
    #[arg(long, default_value_t = 50_000)]
    pub rows: usize,
    /// Notifications per transaction of the multi-row and COPY methods.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Connections of the autocommit method (one transaction per notification).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// The content every ceiling notification carries (as Belfry stores it).
const CEILING_CONTENT: &str = r#"{"title":"Ticket #1 assigned to you","body":"The printer on floor 3 is jammed.","url":"https://desk.example.com/tickets/1","category":"assignment","source":null,"actor":null,"entity":null,"data":null,"actions":[],"stack_key":null,"sticky":false,"expires_at":null}"#;

/// The machine's PostgreSQL ceiling for the rows Belfry writes per
/// notification, three ways: single-row autocommit (a transaction per
/// notification, `--concurrency` connections), multi-row inserts
/// (`INSERT … SELECT FROM UNNEST`, one statement per table and
/// `--batch` notifications per transaction, one connection, as Belfry's
/// writer does) and COPY (the same batches through `COPY … FROM STDIN`).
pub async fn postgres(a: PostgresArgs) -> anyhow::Result<Report> {
    use sqlx::Connection as _;
    let schema = format!(
        "belfry_ceiling_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let mut options = belfry_store::PgOptions::new(a.database_url.clone());
    options.schema = Some(schema.clone());
    belfry_store::postgres::migrate(&options)
        .await
        .context("creating the scratch schema")?;
    let connect = || async {
        let mut c = sqlx::PgConnection::connect(&a.database_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path = \"{schema}\""
        )))
        .execute(&mut c)
        .await?;
        anyhow::Ok(c)
    };
    let mut c = connect().await?;
    // 100,000 users, as the SQLite ceiling spreads its inbox rows.
    sqlx::query(
        "INSERT INTO users (uid, id, created_seq, created_at, updated_at)
         SELECT g, 'u-' || g, 0, 0, 0 FROM generate_series(1, 100000) g",
    )
    .execute(&mut c)
    .await?;
    let mut next: i64 = 0;
    let mut rows = Vec::new();

    // 1. Single-row autocommit: each notification is its own transaction
    // (its three rows in one statement, one round trip), on `concurrency`
    // connections at once.
    let start = Instant::now();
    let per = a.rows.div_ceil(a.concurrency.max(1));
    let mut tasks = Vec::new();
    for t in 0..a.concurrency.max(1) {
        let mut conn = connect().await?;
        let first = next + (t * per) as i64;
        let count = per.min(a.rows.saturating_sub(t * per));
        tasks.push(tokio::spawn(async move {
            for k in 0..count as i64 {
                let seq = first + k + 1;
                sqlx::query(
                    "WITH n AS (
                        INSERT INTO notifications (nid, id, seq, status, sender, content, audience,
                                                   recipients, created_at, published_at)
                        VALUES ($1, $2, $1, 'published', 'k', $3, '{}', 1, $1, $1)),
                     i AS (INSERT INTO inbox (uid, seq, nid, category) VALUES ($4, $1, $1, 'assignment'))
                     INSERT INTO deliveries (nid, recipient, channel, status, attempt, at)
                     VALUES ($1, 'user:u', 'in_app', 'sent', 1, $1)",
                )
                .bind(seq)
                .bind(format!("01CEILING{seq:017}"))
                .bind(CEILING_CONTENT)
                .bind(1 + seq % 100_000)
                .execute(&mut conn)
                .await?;
            }
            let _ = conn.close().await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    rows.push(Row::value(
        &format!(
            "single-row autocommit ({} connections, a commit per notification)",
            a.concurrency
        ),
        a.rows as f64 / start.elapsed().as_secs_f64(),
        "notifications/s",
    ));
    next += a.rows as i64;

    // 2. Multi-row inserts, a batch per transaction, one statement per table.
    let start = Instant::now();
    let mut done = 0;
    while done < a.rows {
        let n = a.batch.min(a.rows - done);
        let seqs: Vec<i64> = (next + 1..=next + n as i64).collect();
        let ids: Vec<String> = seqs.iter().map(|s| format!("01CEILING{s:017}")).collect();
        let uids: Vec<i64> = seqs.iter().map(|s| 1 + s % 100_000).collect();
        let mut tx = c.begin().await?;
        sqlx::query(
            "WITH n AS (
                INSERT INTO notifications (nid, id, seq, status, sender, content, audience,
                                           recipients, created_at, published_at)
                SELECT s, i, s, 'published', 'k', $3, '{}', 1, s, s
                FROM UNNEST($1::bigint[], $2::text[]) AS x(s, i)),
             i AS (
                INSERT INTO inbox (uid, seq, nid, category)
                SELECT u, s, s, 'assignment' FROM UNNEST($4::bigint[], $1::bigint[]) AS x(u, s))
             INSERT INTO deliveries (nid, recipient, channel, status, attempt, at)
             SELECT s, 'user:u', 'in_app', 'sent', 1, s FROM UNNEST($1::bigint[]) AS x(s)",
        )
        .bind(&seqs)
        .bind(&ids)
        .bind(CEILING_CONTENT)
        .bind(&uids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        next += n as i64;
        done += n;
    }
    rows.push(Row::value(
        &format!(
            "multi-row inserts ({} per transaction, one connection)",
            a.batch
        ),
        a.rows as f64 / start.elapsed().as_secs_f64(),
        "notifications/s",
    ));

    // 3. COPY, the same batches.
    let start = Instant::now();
    let mut done = 0;
    let content = CEILING_CONTENT.replace('\\', "\\\\");
    while done < a.rows {
        let n = a.batch.min(a.rows - done);
        let (mut notes, mut inbox, mut log) = (String::new(), String::new(), String::new());
        for s in next + 1..=next + n as i64 {
            use std::fmt::Write as _;
            writeln!(
                notes,
                "{s}\t01CEILING{s:017}\t{s}\tpublished\tk\t{content}\t{{}}\t1\t{s}\t{s}"
            )?;
            writeln!(inbox, "{}\t{s}\t{s}\tassignment", 1 + s % 100_000)?;
            writeln!(log, "{s}\tuser:u\tin_app\tsent\t1\t{s}")?;
        }
        let mut tx = c.begin().await?;
        for (sql, data) in [
            (
                "COPY notifications (nid, id, seq, status, sender, content, audience, recipients, created_at, published_at) FROM STDIN",
                notes,
            ),
            ("COPY inbox (uid, seq, nid, category) FROM STDIN", inbox),
            (
                "COPY deliveries (nid, recipient, channel, status, attempt, at) FROM STDIN",
                log,
            ),
        ] {
            let mut copy = tx.copy_in_raw(sql).await?;
            copy.send(data.into_bytes()).await?;
            copy.finish().await?;
        }
        tx.commit().await?;
        next += n as i64;
        done += n;
    }
    rows.push(Row::value(
        &format!("COPY ({} per transaction, one connection)", a.batch),
        a.rows as f64 / start.elapsed().as_secs_f64(),
        "notifications/s",
    ));

    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
        .fetch_one(&mut c)
        .await?;
    anyhow::ensure!(stored == next, "stored {stored} inbox rows of {next}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut c)
    .await?;
    let _ = c.close().await;
    Ok(Report {
        scenario: "ceiling-postgres".into(),
        parameters: json!({"rows": a.rows, "batch": a.batch, "concurrency": a.concurrency}),
        rows,
        notes: vec![
            "rows per notification: a notification row, an inbox row, a delivery log line".into(),
        ],
        lines: Vec::new(),
    })
}

#[derive(Debug, Clone, ClapArgs)]
pub struct WsArgs {
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Frames pushed to every client.
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
    /// What each frame holds: `belfry` (the default), the same bytes as
    /// Belfry's notification frame for a fan-out broadcast, so that the
    /// two runs move and parse the same amount; `small`, a 120-byte frame
    /// (what this ceiling pushed before 2026-12-03).
    #[arg(long, value_enum, default_value_t = FrameShape::Belfry)]
    pub frame: FrameShape,
}

/// The frame the minimal server pushes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameShape {
    Belfry,
    Small,
}

impl FrameShape {
    /// Frame `k`: for `Belfry`, every field of an inbox item as Belfry's
    /// WebSocket frame carries it for `fanout`'s broadcast.
    fn frame(self, k: u64) -> String {
        match self {
            FrameShape::Small => format!(
                r#"{{"type":"notification","seq":{k},"data":{{"id":"n{k}","title":"Ceiling #{k}","body":"The same frame for everyone."}}}}"#
            ),
            FrameShape::Belfry => format!(
                concat!(
                    r#"{{"type":"notification","seq":{k},"data":{{"id":"01M8YBQHSV55S7KN98V2Y{k:05}","seq":{k},"#,
                    r#""created_at":"2026-12-03T16:27:48.923Z","read":false,"seen":false,"archived":false,"#,
                    r#""stack_count":1,"dismissed":false,"answered":null,"title":"Fan-out broadcast #{k}","#,
                    r#""body":"Maintenance window tonight from 22:00 to 23:00.","url":null,"category":null,"#,
                    r#""source":null,"actor":null,"entity":null,"data":null,"actions":[],"stack_key":null,"#,
                    r#""sticky":false,"expires_at":null}}}}"#
                ),
                k = k
            ),
        }
    }
}

/// The minimal WebSocket server, run as its own process (a process may hold
/// at most 20,000 sockets here: clients and server cannot share one). It
/// prints `LISTENING <port>`, then pushes frame k to every connection for
/// each line `k` read on stdin.
pub async fn websocket_server(shape: FrameShape) -> anyhow::Result<()> {
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
        let _ = frames.send(shape.frame(k).into());
    }
    Ok(())
}

pub async fn websocket(a: WsArgs) -> anyhow::Result<Report> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("ceiling-ws-server")
        .arg("--frame")
        .arg(
            clap::ValueEnum::to_possible_value(&a.frame)
                .context("a frame shape")?
                .get_name(),
        )
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
    let stat = format!("/proc/{}/stat", server.id().context("server pid")?);
    let cpu_server_before = crate::server::cpu_time_of(&stat);
    let cpu_client_before = crate::server::own_cpu_time();
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
    let cpu_server = crate::server::cpu_time_of(&stat)
        .zip(cpu_server_before)
        .map(|(a, b)| a.saturating_sub(b));
    let cpu_client = crate::server::own_cpu_time().saturating_sub(cpu_client_before);
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
    let mut rows = vec![
        per_client.summary("receipt after push, every client and frame"),
        last_client.summary("last client's receipt after push, per frame"),
        Row::value(
            "frames delivered per second",
            (a.clients * a.frames) as f64 / elapsed.as_secs_f64(),
            "frames/s",
        ),
        Row::value(
            "client CPU during pushes",
            cpu_client.as_secs_f64() * 1000.0,
            "ms",
        ),
    ];
    if let Some(cpu) = cpu_server {
        rows.push(Row::value(
            "server CPU during pushes",
            cpu.as_secs_f64() * 1000.0,
            "ms",
        ));
    }
    Ok(Report {
        scenario: "ceiling-ws".into(),
        parameters: json!({"clients": a.clients, "frames": a.frames, "frame": format!("{:?}", a.frame)}),
        rows,
        notes: vec!["clients and the minimal server (another process) share the machine".into()],
        lines: Vec::new(),
    })
}
