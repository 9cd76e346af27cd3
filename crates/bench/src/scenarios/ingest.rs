//! `ingest`: N notifications to distinct users over keep-alive HTTP
//! connections at concurrency C, one per request and through the batch
//! endpoint: accepted per second and the latency of the 202.

use crate::http1;
use crate::report::{Report, Row, Samples};
use crate::scenarios::Progress;
use crate::server::{Target, own_cpu_time};
use anyhow::bail;
use clap::Args as ClapArgs;
use futures::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Notifications per phase (single, then batch).
    #[arg(long, default_value_t = 20_000)]
    pub notifications: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Notifications per batch request.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Give every notification an idempotency key (distinct in each phase
    /// and run), as producers that retry do.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// The HTTP client of the one-per-request phase: `reqwest` (the
    /// default, what the figures before 2026-12-04 used) or `lean`, a
    /// minimal HTTP/1.1 client with the requests serialised before the
    /// clock starts (like `wrk`), which leaves the shared cores to the
    /// server. The batch phase always uses reqwest.
    #[arg(long, value_enum, default_value_t = Client::Reqwest)]
    pub client: Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    Reqwest,
    Lean,
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    // Distinct users, created directly in the database (it is not what is measured).
    let (dir, temp) = a.target.prepare_data_dir()?;
    let users = a.notifications.max(1);
    if a.target.urls.is_empty() {
        a.target.seed_users(&dir, users)?;
    }
    let server = a.target.start(Some((dir, temp)), &[])?;
    let client = server.client();
    if !a.target.urls.is_empty() {
        // A running server (any database): its users are created through the API.
        eprintln!("[ingest] creating {users} users through the API …");
        crate::server::create_users(&server, &client, "user", 1, users, 64).await?;
    }
    let urls: Vec<String> = server
        .urls
        .iter()
        .map(|u| format!("{u}/v1/notifications"))
        .collect();

    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let body = |phase: &str, i: usize| {
        let mut b = json!({"to": {"users": [format!("user-{}", 1 + i % users)]},
               "title": format!("Ticket #{i} assigned to you"),
               "body": "The printer on floor 3 is jammed.", "category": "assignment",
               "url": format!("https://desk.example.com/tickets/{i}")});
        if a.idempotency_keys {
            b["idempotency_key"] = json!(format!("bench-{run}-{phase}-{i}"));
        }
        b
    };

    // One notification per request. The lean client serialises its
    // requests and opens its connections before the clock starts.
    let lean = match a.client {
        Client::Lean => Some(Lean::prepare(&a, &server.urls, &server.admin_key, &body).await?),
        Client::Reqwest => None,
    };
    let progress = Progress::start("ingest single".into(), a.notifications as u64);
    let cpu_s0 = server.cpu_time();
    let cpu_c0 = own_cpu_time();
    let start = Instant::now();
    let results: Vec<anyhow::Result<std::time::Duration>> = match lean {
        None => {
            futures::stream::iter(0..a.notifications)
                .map(|i| {
                    let client = client.clone();
                    let url = urls[i % urls.len()].clone();
                    let key = server.admin_key.clone();
                    let progress = &progress;
                    let b = body("single", i);
                    async move {
                        let t0 = Instant::now();
                        let r = client.post(&url).bearer_auth(&key).json(&b).send().await?;
                        let status = r.status();
                        let _ = r.bytes().await?;
                        if status.as_u16() != 202 {
                            bail!("single send: {status}");
                        }
                        progress.add(1);
                        Ok(t0.elapsed())
                    }
                })
                .buffer_unordered(a.concurrency)
                .collect()
                .await
        }
        Some(lean) => lean.run(&progress).await?,
    };
    let single_time = start.elapsed();
    let cpu_single_server = server
        .cpu_time()
        .zip(cpu_s0)
        .map(|(x, y)| x.saturating_sub(y));
    let cpu_single_client = own_cpu_time().saturating_sub(cpu_c0);
    drop(progress);
    let mut single = Samples::with_capacity(a.notifications);
    for r in results {
        single.push(r?);
    }

    // The batch endpoint.
    let batches = a.notifications.div_ceil(a.batch);
    let progress = Progress::start("ingest batch".into(), batches as u64);
    let start = Instant::now();
    let results: Vec<anyhow::Result<std::time::Duration>> = futures::stream::iter(0..batches)
        .map(|k| {
            let client = client.clone();
            let url = format!("{}/batch", urls[k % urls.len()]);
            let key = server.admin_key.clone();
            let progress = &progress;
            let items: Vec<serde_json::Value> = (k * a.batch
                ..((k + 1) * a.batch).min(a.notifications))
                .map(|i| body("batch", i))
                .collect();
            async move {
                let t0 = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"notifications": items}))
                    .send()
                    .await?;
                let status = r.status();
                let text = r.text().await?;
                if status.as_u16() != 202 {
                    bail!("batch: {status} {text}");
                }
                progress.add(1);
                Ok(t0.elapsed())
            }
        })
        .buffer_unordered(a.concurrency.clamp(1, 4))
        .collect()
        .await;
    let batch_time = start.elapsed();
    drop(progress);
    let mut batch = Samples::with_capacity(batches);
    for r in results {
        batch.push(r?);
    }

    let mut rows = vec![
        Row::value(
            "single: accepted per second",
            a.notifications as f64 / single_time.as_secs_f64(),
            "notifications/s",
        ),
        single.summary("single: POST until 202"),
        Row::value(
            "batch: accepted per second",
            a.notifications as f64 / batch_time.as_secs_f64(),
            "notifications/s",
        ),
        batch.summary(&format!("batch of {}: POST until 202", a.batch)),
        Row::value(
            "client CPU (single phase)",
            cpu_single_client.as_secs_f64() * 1000.0,
            "ms",
        ),
    ];
    let mut notes = Vec::new();
    if let Some(cpu) = cpu_single_server {
        rows.push(Row::value(
            "server CPU (single phase)",
            cpu.as_secs_f64() * 1000.0,
            "ms",
        ));
        if cpu_single_client > cpu {
            notes.push("the client used more CPU than the server in the single phase".into());
        }
    }
    Ok(Report {
        scenario: "ingest".into(),
        parameters: json!({"notifications": a.notifications, "concurrency": a.concurrency, "batch": a.batch, "idempotency_keys": a.idempotency_keys, "client": a.client}),
        rows,
        notes,
        lines: Vec::new(),
    })
}

/// The one-per-request phase with the lean client: its requests, already
/// serialised, and its open connections.
struct Lean {
    requests: Arc<Vec<Vec<u8>>>,
    conns: Vec<http1::Conn>,
}

impl Lean {
    async fn prepare(
        a: &Args,
        urls: &[String],
        admin_key: &str,
        body: &dyn Fn(&str, usize) -> serde_json::Value,
    ) -> anyhow::Result<Lean> {
        let addrs = urls
            .iter()
            .map(|u| http1::socket_addr(u))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let requests = (0..a.notifications)
            .map(|i| {
                let b = serde_json::to_vec(&body("single", i)).expect("JSON");
                http1::post_json(addrs[0], "/v1/notifications", admin_key, &b)
            })
            .collect();
        let mut conns = Vec::with_capacity(a.concurrency);
        // Spread over the nodes of a cluster (the host header names the
        // first; Belfry does not look at it).
        for c in 0..a.concurrency.max(1) {
            conns.push(http1::Conn::connect(addrs[c % addrs.len()]).await?);
        }
        Ok(Lean {
            requests: Arc::new(requests),
            conns,
        })
    }

    /// Every connection takes the next request until none is left.
    async fn run(
        self,
        progress: &Progress,
    ) -> anyhow::Result<Vec<anyhow::Result<std::time::Duration>>> {
        let next = Arc::new(AtomicUsize::new(0));
        let done = progress.counter();
        let tasks: Vec<_> = self
            .conns
            .into_iter()
            .map(|mut conn| {
                let (requests, next, done) = (self.requests.clone(), next.clone(), done.clone());
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = requests.get(i) else {
                            return Ok::<_, anyhow::Error>(took);
                        };
                        let t0 = Instant::now();
                        let status = conn.call(request).await?;
                        if status != 202 {
                            bail!("single send: {status}");
                        }
                        took.push(t0.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut results = Vec::with_capacity(self.requests.len());
        for t in tasks {
            match t.await? {
                Ok(took) => results.extend(took.into_iter().map(Ok)),
                Err(e) => results.push(Err(e)),
            }
        }
        Ok(results)
    }
}
