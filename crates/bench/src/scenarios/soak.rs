//! `soak`: a steady load for a long time, reported per interval, to show
//! that disk, memory and latency stay bounded: users with open streams get a
//! steady rate of notifications (send-to-receipt latency per interval), a
//! read load of inbox pages and counts runs beside it, extra streams connect
//! and disconnect, and one client connects a WebSocket and never reads.
//! Each interval prints a line: latency percentiles of the sends made in it,
//! reads, errors, the server's resident memory and (when the tool knows the
//! data directory) the sizes of the SQLite database and its WAL.

use crate::clients::{self, Receipt, Shared, Transport};
use crate::report::{Report, Row, Samples};
use crate::server::{Target, users_with_tokens};
use clap::Args as ClapArgs;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Users, each with one open stream, who receive the notifications.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Notifications per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Inbox reads per second (a page and the counts, alternating).
    #[arg(long, default_value_t = 100)]
    pub reads: u64,
    /// Extra streams that connect, stay a few seconds and disconnect, per minute.
    #[arg(long, default_value_t = 60)]
    pub churn: u64,
    /// Also hold a WebSocket that never reads (the server must cut it off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub slow_reader: bool,
    /// Seconds to run for.
    #[arg(long, default_value_t = 1800)]
    pub seconds: u64,
    /// Seconds per reported line.
    #[arg(long, default_value_t = 60)]
    pub interval: u64,
    /// The server's SQLite database (for its size and its WAL's); known
    /// without it when the tool starts the server itself.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Notifications to put into the users' inboxes (in batches, unread)
    /// before the timed run: starts the run where a long one would be
    /// after `prefill / rate` seconds.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
}

/// What one interval collected.
#[derive(Default)]
struct Bucket {
    latency: Samples,
    reads: Samples,
    sent: u64,
    errors: u64,
}

fn file_mb(path: &Option<PathBuf>, suffix: &str) -> Option<f64> {
    let p = path.as_ref()?;
    let mut name = p.as_os_str().to_owned();
    name.push(suffix);
    let len = std::fs::metadata(PathBuf::from(name))
        .map(|m| m.len())
        .ok()?;
    Some(len as f64 / (1024.0 * 1024.0))
}

/// Fills the soak users' inboxes with `count` notifications, round-robin,
/// in batches of 500 (four requests at a time), as a long run would have.
async fn prefill(
    server: &crate::server::Server,
    client: &reqwest::Client,
    users: usize,
    count: u64,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    const BATCH: u64 = 500;
    let t0 = Instant::now();
    let batches = count.div_ceil(BATCH);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..batches)
        .map(|b| async move {
            let items: Vec<serde_json::Value> = (b * BATCH..((b + 1) * BATCH).min(count))
                .map(|i| {
                    json!({"to": {"users": [format!("soak-{}", i as usize % users)]},
                           "title": format!("Earlier #{i}"), "body": "Printer on floor 3 is jammed",
                           "category": "assignment"})
                })
                .collect();
            let r = client
                .post(format!(
                    "{}/v1/notifications/batch",
                    server.node(b as usize)
                ))
                .bearer_auth(&server.admin_key)
                .json(&json!({ "notifications": items }))
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 202, "prefill batch: {}", r.status());
            Ok(())
        })
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    eprintln!(
        "[soak] prefilled {count} notifications in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(
        a.interval > 0 && a.seconds >= a.interval,
        "--seconds must be at least --interval (> 0)"
    );
    anyhow::ensure!(
        a.rate > 0 && a.users > 0,
        "--rate and --users must be positive"
    );
    let data = if a.target.urls.is_empty() {
        Some(a.target.prepare_data_dir()?)
    } else {
        None
    };
    let db =
        a.db.clone()
            .or_else(|| data.as_ref().map(|(d, _)| d.join("belfry.db")));
    let server = Arc::new(a.target.start(data, &[])?);
    let client = server.client();
    eprintln!("[soak] creating {} users …", a.users);
    let tokens = users_with_tokens(&server, &client, "soak", a.users, None, 32).await?;
    let churn_tokens = users_with_tokens(&server, &client, "soak-churn", 16, None, 16).await?;
    let slow_token = users_with_tokens(&server, &client, "soak-slow", 1, None, 1).await?;
    if a.prefill > 0 {
        prefill(&server, &client, a.users, a.prefill).await?;
    }
    let shared = Arc::new(Shared::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Receipt>();
    let streams = clients::connect_all(Transport::Ws, &server, &tokens, &shared, &tx).await?;

    let intervals = (a.seconds / a.interval) as usize;
    let interval = Duration::from_secs(a.interval);
    let total = (a.rate * a.seconds) as usize;
    let buckets: Arc<Mutex<Vec<Bucket>>> = Arc::new(Mutex::new(
        (0..intervals).map(|_| Bucket::default()).collect(),
    ));
    // When each send left, as nanoseconds after `start` (0: not yet).
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let bucket_of = move |t: Instant| {
        ((t.saturating_duration_since(start).as_secs() / interval.as_secs()) as usize)
            .min(intervals - 1)
    };

    // Receipts: matched to their send, counted in the send's interval.
    let collector = {
        let buckets = buckets.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let Some(i) = r.tag.map(|t| t as usize).filter(|t| *t < total) else {
                    continue;
                };
                let nanos = sent_at[i].load(Ordering::Acquire);
                if nanos == 0 {
                    continue;
                }
                let t0 = start + Duration::from_nanos(nanos);
                let b = bucket_of(t0);
                buckets.lock().expect("buckets")[b]
                    .latency
                    .push(r.at.saturating_duration_since(t0));
            }
        })
    };

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut background = Vec::new();

    // The read load: a first page and the counts, alternating, as the users.
    if a.reads > 0 {
        let client = client.clone();
        let server = server.clone();
        let tokens = tokens.clone();
        let buckets = buckets.clone();
        let stop = stop.clone();
        let every = Duration::from_secs_f64(1.0 / a.reads as f64);
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0usize;
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let path = if n.is_multiple_of(2) {
                    "/v1/me/counts"
                } else {
                    "/v1/me/notifications?limit=20"
                };
                let url = format!("{}{path}", server.node(n));
                let token = tokens[n % tokens.len()].clone();
                let client = client.clone();
                let buckets = buckets.clone();
                inflight.spawn(async move {
                    let t0 = Instant::now();
                    let ok = match client.get(url).bearer_auth(token).send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    let mut b = buckets.lock().expect("buckets");
                    let b = &mut b[bucket_of(t0)];
                    if ok {
                        b.reads.push(t0.elapsed());
                    } else {
                        b.errors += 1;
                    }
                });
                while inflight.try_join_next().is_some() {}
            }
        }));
    }

    // Streams that come and go: each lives a few seconds.
    if a.churn > 0 {
        let server = server.clone();
        let stop = stop.clone();
        let every = Duration::from_secs_f64(60.0 / a.churn as f64);
        background.push(tokio::spawn(async move {
            let churned = Arc::new(Shared::default());
            let (sink, mut drain) = tokio::sync::mpsc::unbounded_channel::<Receipt>();
            tokio::spawn(async move { while drain.recv().await.is_some() {} });
            let mut alive: std::collections::VecDeque<tokio::task::JoinHandle<()>> =
                Default::default();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                n += 1;
                let token = &churn_tokens[n % churn_tokens.len()];
                if let Ok(task) = clients::open(
                    Transport::Ws,
                    server.node(n),
                    token,
                    100_000 + n,
                    churned.clone(),
                    sink.clone(),
                )
                .await
                {
                    alive.push_back(task);
                }
                while alive.len() > 8 {
                    if let Some(t) = alive.pop_front() {
                        t.abort();
                    }
                }
            }
            for t in alive {
                t.abort();
            }
        }));
    }

    // A client that never reads: it gets a notification ten times a second,
    // holds its socket for 30 s at a time and connects again.
    if a.slow_reader {
        let server = server.clone();
        let client = client.clone();
        let stop = stop.clone();
        let token = slow_token[0].clone();
        background.push(tokio::spawn(async move {
            let mut held: Option<Box<dyn std::any::Any + Send>> = None;
            let mut connected_at = Instant::now() - Duration::from_secs(60);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if connected_at.elapsed() > Duration::from_secs(30) {
                    drop(held.take());
                    held = clients::never_reading_ws(server.node(0), &token).await.ok();
                    connected_at = Instant::now();
                }
                n += 1;
                let _ = client
                    .post(format!("{}/v1/notifications", server.node(0)))
                    .bearer_auth(&server.admin_key)
                    .json(&json!({"to": {"users": ["soak-slow-0"]}, "title": format!("For the slow reader ({n})"), "body": "x".repeat(512)}))
                    .send()
                    .await;
            }
        }));
    }

    let header = [
        "| minute | sent/s | send→receipt p50 ms | p99 ms | p99.9 ms | reads | read p99 ms | errors | RSS MB | DB MB | WAL MB |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for h in &header {
        eprintln!("{h}");
    }

    // The reporter: prints interval k once its sends have had time to arrive.
    let reporter = {
        let buckets = buckets.clone();
        let server = server.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let mut lines = Vec::new();
            for k in 0..intervals {
                tokio::time::sleep_until(
                    (start + interval * (k as u32 + 1) + Duration::from_secs(2)).into(),
                )
                .await;
                let (p50, p99, p999, reads, read_p99, sent, errors) = {
                    let b = &buckets.lock().expect("buckets")[k];
                    let s = b.latency.summary("");
                    let r = b.reads.summary("");
                    (
                        s.p50_ms,
                        s.p99_ms,
                        s.p999_ms,
                        b.reads.len(),
                        r.p99_ms,
                        b.sent,
                        b.errors,
                    )
                };
                let rss = server.rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0));
                let line = format!(
                    "| {} | {:.0} | {p50:.2} | {p99:.2} | {p999:.2} | {reads} | {read_p99:.2} | {errors} | {} | {} | {} |",
                    (k as u64 + 1) * interval.as_secs() / 60,
                    sent as f64 / interval.as_secs_f64(),
                    fmt_opt(rss),
                    fmt_opt(file_mb(&db, "")),
                    fmt_opt(file_mb(&db, "-wal")),
                );
                eprintln!("{line}");
                lines.push((line, p99, rss, file_mb(&db, "-wal")));
            }
            lines
        })
    };

    // The sends: round-robin over the users at a steady rate.
    let tick = Duration::from_secs_f64(1.0 / a.rate as f64);
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + tick * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let url = format!("{}/v1/notifications", server.node(i + 1));
        let key = server.admin_key.clone();
        let user = format!("soak-{}", i % a.users);
        let sent_at = sent_at.clone();
        let buckets = buckets.clone();
        inflight.spawn(async move {
            let t0 = Instant::now();
            let nanos = t0.saturating_duration_since(start).as_nanos().max(1) as u64;
            sent_at[i].store(nanos, Ordering::Release);
            let ok = match client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"to": {"users": [user]}, "title": format!("Soak probe #{i}"), "body": "Printer on floor 3 is jammed", "category": "assignment"}))
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 202 => r.bytes().await.is_ok(),
                _ => false,
            };
            let mut b = buckets.lock().expect("buckets");
            let b = &mut b[bucket_of(t0)];
            b.sent += 1;
            if !ok {
                b.errors += 1;
            }
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    let lines = reporter.await?;
    stop.store(true, Ordering::Relaxed);
    for t in background {
        let _ = t.await;
    }
    drop(tx);
    for s in streams {
        s.abort();
    }
    collector.abort();

    let all: Vec<Bucket> = std::mem::take(&mut *buckets.lock().expect("buckets"));
    let mut latency = Samples::with_capacity(total);
    let mut reads = Samples::default();
    let mut errors = 0;
    for b in &all {
        latency.extend(&b.latency);
        reads.extend(&b.reads);
        errors += b.errors;
    }
    let mut rows = vec![
        latency.summary("send to receipt on the stream (all intervals)"),
        reads.summary("inbox reads (all intervals)"),
        Row::value("errors", errors as f64, "requests"),
    ];
    let mut notes = Vec::new();
    let max_wal = lines.iter().filter_map(|l| l.3).fold(0.0, f64::max);
    if lines.iter().any(|l| l.3.is_some()) {
        rows.push(Row::value(
            "largest WAL at an interval's end",
            max_wal,
            "MB",
        ));
    }
    if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
        if first.1 > 0.0 {
            rows.push(Row::value(
                "p99 last interval / first",
                last.1 / first.1,
                "×",
            ));
        }
        let after_warmup = lines.get(5.min(lines.len() - 1)).and_then(|l| l.2);
        if let (Some(base), Some(end)) = (after_warmup, last.2) {
            rows.push(Row::value(
                "RSS at the end / after five intervals",
                end / base,
                "×",
            ));
        }
    }
    let received = latency.len();
    if received < total {
        notes.push(format!(
            "{} of {total} notifications were not received",
            total - received
        ));
    }
    Ok(Report {
        scenario: "soak".into(),
        parameters: json!({"users": a.users, "rate": a.rate, "reads": a.reads, "churn": a.churn, "slow_reader": a.slow_reader, "seconds": a.seconds, "interval": a.interval, "prefill": a.prefill}),
        rows,
        notes,
        lines: header
            .into_iter()
            .chain(lines.into_iter().map(|l| l.0))
            .collect(),
    })
}
