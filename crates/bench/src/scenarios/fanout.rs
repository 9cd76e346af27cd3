//! `fanout`: K clients hold streams for K users of one group; then M
//! broadcasts to that group, one after another. For each, the time from
//! sending the request to each client's receipt, and to the last client's.

use crate::clients::{self, CountsMode, Receipt, Shared, Transport};
use crate::report::{Report, Row, Samples};
use crate::scenarios::Progress;
use crate::server::{Target, own_cpu_time, users_with_tokens};
use anyhow::bail;
use clap::Args as ClapArgs;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Connected clients (one user each, all in one group).
    #[arg(long, default_value_t = 1_000)]
    pub clients: usize,
    /// Broadcasts to send.
    #[arg(long, default_value_t = 10)]
    pub broadcasts: usize,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// `derived` (the widget's way): a broadcast is one frame per client;
    /// `each`: a notification and a counts frame.
    #[arg(long, value_enum, default_value = "derived")]
    pub counts: CountsMode,
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    let server = a.target.start(None, &[])?;
    let client = server.client();
    let started = Instant::now();
    eprintln!("[fanout] creating {} users …", a.clients);
    let tokens = users_with_tokens(&server, &client, "fan", a.clients, Some("fanout"), 32).await?;
    let setup = started.elapsed();

    let shared = Arc::new(Shared {
        derived: a.counts == CountsMode::Derived,
        ..Shared::default()
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Receipt>();
    eprintln!(
        "[fanout] connecting {} {:?} clients …",
        a.clients, a.transport
    );
    let connect_start = Instant::now();
    let tasks = clients::connect_all(a.transport, &server, &tokens, &shared, &tx).await?;
    let connect_time = connect_start.elapsed();

    let cpu_server_before = server.cpu_time();
    let cpu_client_before = own_cpu_time();
    let progress = Progress::start("fanout broadcasts".into(), a.broadcasts as u64);
    let mut sends: Vec<(i64, Instant)> = Vec::with_capacity(a.broadcasts);
    let mut accepted = Samples::default();
    for i in 0..a.broadcasts {
        let expected = (a.clients * (i + 1)) as u64;
        let t0 = Instant::now();
        let r = client
            .post(format!("{}/v1/notifications", server.node(i)))
            .bearer_auth(&server.admin_key)
            .json(
                &json!({"to": {"groups": ["fanout"]}, "title": format!("Fan-out broadcast #{i}"),
                          "body": "Maintenance window tonight from 22:00 to 23:00."}),
            )
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        accepted.push(t0.elapsed());
        if status.as_u16() != 202 {
            bail!("broadcast: {status} {body}");
        }
        sends.push((body["seq"].as_i64().unwrap_or(0), t0));
        let all = clients::wait_until(Duration::from_secs(30), || {
            shared.notifications.load(Ordering::Relaxed) >= expected
        })
        .await;
        if !all {
            bail!(
                "broadcast {i} reached {} of {} clients within 30 s",
                shared.notifications.load(Ordering::Relaxed) - (expected - a.clients as u64),
                a.clients
            );
        }
        progress.add(1);
    }
    drop(progress);
    let cpu_server = server
        .cpu_time()
        .zip(cpu_server_before)
        .map(|(a, b)| a.saturating_sub(b));
    let cpu_client = own_cpu_time().saturating_sub(cpu_client_before);

    drop(tx);
    let mut per_client = Samples::default();
    let mut last_client = Samples::default();
    let mut last: Vec<Option<Instant>> = vec![None; sends.len()];
    while let Some(r) = rx.recv().await {
        if let Some(k) = sends.iter().position(|(seq, _)| *seq == r.seq) {
            per_client.push(r.at.saturating_duration_since(sends[k].1));
            last[k] = Some(last[k].map_or(r.at, |l| l.max(r.at)));
        }
        if rx.is_empty() && per_client.len() >= a.clients * a.broadcasts {
            break;
        }
    }
    for (k, l) in last.iter().enumerate() {
        if let Some(l) = l {
            last_client.push(l.saturating_duration_since(sends[k].1));
        }
    }
    for t in tasks {
        t.abort();
    }

    let mut rows = vec![
        per_client.summary("receipt after send, every client and broadcast"),
        last_client.summary("last client's receipt after send, per broadcast"),
        accepted.summary("POST broadcast until 202"),
        Row::value(
            "time to connect all clients",
            connect_time.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value("setup (users and tokens)", setup.as_secs_f64(), "s"),
        Row::value(
            "client CPU during broadcasts",
            cpu_client.as_secs_f64() * 1000.0,
            "ms",
        ),
    ];
    let mut notes = Vec::new();
    if let Some(cpu) = cpu_server {
        rows.push(Row::value(
            "server CPU during broadcasts",
            cpu.as_secs_f64() * 1000.0,
            "ms",
        ));
        if cpu_client > cpu {
            notes.push(format!(
                "the client used more CPU ({:.0} ms) than the server ({:.0} ms): on 2 shared cores, latencies include client scheduling",
                cpu_client.as_secs_f64() * 1000.0,
                cpu.as_secs_f64() * 1000.0
            ));
        }
    }
    if shared.failed.load(Ordering::Relaxed) > 0 {
        notes.push(format!(
            "{} client errors",
            shared.failed.load(Ordering::Relaxed)
        ));
    }
    Ok(Report {
        scenario: "fanout".into(),
        parameters: json!({"clients": a.clients, "broadcasts": a.broadcasts, "transport": format!("{:?}", a.transport), "counts": format!("{:?}", a.counts)}),
        rows,
        notes,
        lines: Vec::new(),
    })
}
