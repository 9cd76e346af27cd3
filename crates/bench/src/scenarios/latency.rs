//! `latency`: users with open streams; a steady rate of single-user
//! notifications to them; the time from sending each request to its receipt
//! on the stream.

use crate::clients::{self, CountsMode, Receipt, Shared, Transport};
use crate::report::{Report, Row, Samples};
use crate::scenarios::Progress;
use crate::server::{Target, own_cpu_time, users_with_tokens};
use clap::Args as ClapArgs;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Users, each with one open stream.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Notifications per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// `derived` (the widget's way): a new entry is one frame; `each`: a
    /// notification and a counts frame.
    #[arg(long, value_enum, default_value = "derived")]
    pub counts: CountsMode,
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    let server = a.target.start(None, &[])?;
    let client = server.client();
    eprintln!("[latency] creating {} users …", a.users);
    let tokens = users_with_tokens(&server, &client, "lat", a.users, None, 32).await?;
    let shared = Arc::new(Shared {
        derived: a.counts == CountsMode::Derived,
        ..Shared::default()
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Receipt>();
    let tasks = clients::connect_all(a.transport, &server, &tokens, &shared, &tx).await?;

    let total = (a.rate * a.seconds) as usize;
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = Arc::new(Progress::start("latency sends".into(), total as u64));
    let cpu_server_before = server.cpu_time();
    let cpu_client_before = own_cpu_time();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        // Sends go round-robin to the nodes, so most cross nodes.
        let url = format!("{}/v1/notifications", server.node(i + 1));
        let key = server.admin_key.clone();
        let user = format!("lat-{}", i % a.users);
        let sent_at = sent_at.clone();
        let errors = errors.clone();
        let progress = progress.clone();
        inflight.spawn(async move {
            sent_at.lock().expect("sent_at")[i] = Some(Instant::now());
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"to": {"users": [user]}, "title": format!("Latency probe #{i}")}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 202 => {
                    let _ = r.bytes().await;
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            progress.add(1);
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    let send_time = start.elapsed();
    clients::wait_until(Duration::from_secs(10), || {
        shared.notifications.load(Ordering::Relaxed) as usize >= total
    })
    .await;
    let cpu_server = server
        .cpu_time()
        .zip(cpu_server_before)
        .map(|(a, b)| a.saturating_sub(b));
    let cpu_client = own_cpu_time().saturating_sub(cpu_client_before);
    drop(tx);
    let sent = sent_at.lock().expect("sent_at").clone();
    let mut latency = Samples::with_capacity(total);
    let mut received = 0usize;
    while let Ok(r) = rx.try_recv() {
        if let Some(Some(t0)) = r.tag.and_then(|t| sent.get(t as usize)) {
            latency.push(r.at.saturating_duration_since(*t0));
            received += 1;
        }
    }
    for t in tasks {
        t.abort();
    }
    let mut rows = vec![
        latency.summary("send to receipt on the stream"),
        Row::value(
            "achieved rate",
            total as f64 / send_time.as_secs_f64(),
            "notifications/s",
        ),
        Row::value("received", received as f64, "notifications"),
        Row::value("client CPU", cpu_client.as_secs_f64() * 1000.0, "ms"),
    ];
    let mut notes = Vec::new();
    if let Some(cpu) = cpu_server {
        rows.push(Row::value("server CPU", cpu.as_secs_f64() * 1000.0, "ms"));
        if cpu_client > cpu {
            notes.push("the client used more CPU than the server".into());
        }
    }
    let failed = errors.load(Ordering::Relaxed);
    if failed > 0 || received < total {
        notes.push(format!(
            "{failed} sends failed; {} of {total} received",
            received
        ));
    }
    Ok(Report {
        scenario: "latency".into(),
        parameters: json!({"users": a.users, "rate": a.rate, "seconds": a.seconds, "transport": format!("{:?}", a.transport), "counts": format!("{:?}", a.counts)}),
        rows,
        notes,
        lines: Vec::new(),
    })
}
