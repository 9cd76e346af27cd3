//! `web-push`: N users with one browser push subscription each; first N
//! notifications on the web push channel (one per user, in batches), then
//! one broadcast to everyone on web push. Measures the rate at which
//! Belfry's workers encrypt (RFC 8291, a fresh key agreement per push),
//! sign (VAPID, cached per origin) and POST them to a local push-service
//! stand-in, and what a web-push broadcast to N subscribed users costs.
//! The stand-in here is a minimal HTTP/1.1 server inside the tool that
//! answers 201 to every POST (keep-alive), fast enough not to be the
//! bottleneck; the API tests check the wire format itself.

use crate::report::{Report, Row};
use crate::scenarios::Progress;
use crate::server::{Target, create_users, own_cpu_time};
use anyhow::bail;
use clap::Args as ClapArgs;
use futures::StreamExt as _;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Users, each with one push subscription (and pushes per phase).
    #[arg(long, default_value_t = 2_000)]
    pub users: usize,
    /// Workers of the started server (BELFRY_WORKERS).
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
}

/// A browser's public key and auth secret (the same for every
/// subscription: the encryption's cost does not depend on it).
const P256DH: &str =
    "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY";
const AUTH: &str = "_ordMnz7uTCmrpBTeUV4Bw";

/// Accepts HTTP/1.1 connections and answers every request 201, counting them.
async fn stand_in(listener: tokio::net::TcpListener, received: Arc<AtomicU64>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let _ = socket.set_nodelay(true);
        let received = received.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                // The request line and headers, up to the empty line.
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = l.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                received.fetch_add(1, Ordering::Relaxed);
                if write
                    .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Waits until `received` reaches `start + target` (`start`: the count
/// before the pushes were sent), at most ten minutes.
async fn wait_for(
    received: &AtomicU64,
    start: u64,
    target: u64,
    label: &str,
) -> anyhow::Result<()> {
    let progress = Progress::start(label.into(), target);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = start;
    while received.load(Ordering::Relaxed) < start + target {
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} pushes arrived in 10 minutes",
                received.load(Ordering::Relaxed) - start
            );
        }
        let now = received.load(Ordering::Relaxed);
        progress.add(now - last);
        last = now;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    if !a.target.urls.is_empty() {
        bail!("the web-push scenario starts its own server (it must allow its stand-in's address)");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service = format!("http://{}", listener.local_addr()?);
    let received = Arc::new(AtomicU64::new(0));
    let service_task = tokio::spawn(stand_in(listener, received.clone()));

    let workers = a.workers.to_string();
    let server = a.target.start(
        Some(a.target.prepare_data_dir()?),
        &[
            ("BELFRY_OUTBOUND_ALLOW", "127.0.0.1"),
            ("BELFRY_WORKERS", workers.as_str()),
        ],
    )?;
    let client = server.client();
    let total = a.users;
    create_users(&server, &client, "push", 1, total, 32).await?;
    let subscribed: Vec<anyhow::Result<serde_json::Value>> = futures::stream::iter(1..=total)
        .map(|i| {
            let (server, client, service) = (&server, &client, &service);
            async move {
                server
                    .admin(
                        client,
                        reqwest::Method::POST,
                        &format!("/v1/users/push-{i}/push-subscriptions"),
                        Some(json!({"endpoint": format!("{service}/push/{i}"),
                                    "keys": {"p256dh": P256DH, "auth": AUTH}})),
                    )
                    .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    subscribed.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    // Phase 1: one notification per user.
    let cpu_server0 = server.cpu_time();
    let cpu_client0 = own_cpu_time();
    let start = Instant::now();
    let before = received.load(Ordering::Relaxed);
    for chunk_start in (0..total).step_by(500) {
        let items: Vec<serde_json::Value> = (chunk_start..(chunk_start + 500).min(total))
            .map(|i| {
                json!({"to": {"users": [format!("push-{}", i + 1)]}, "channels": ["web_push"],
                       "title": format!("Ticket #{i} assigned to you"),
                       "body": "Printer on floor 3 is jammed",
                       "url": "https://desk.example.com/tickets/1",
                       "stack_key": format!("ticket:{i}")})
            })
            .collect();
        server
            .admin(
                &client,
                reqwest::Method::POST,
                "/v1/notifications/batch",
                Some(json!({"notifications": items})),
            )
            .await?;
    }
    let accepted = start.elapsed();
    wait_for(&received, before, total as u64, "pushes received").await?;
    let direct = start.elapsed();
    let cpu_direct = server
        .cpu_time()
        .zip(cpu_server0)
        .map(|(x, y)| x.saturating_sub(y));

    // Phase 2: one broadcast to everyone on web push.
    let cpu_server1 = server.cpu_time();
    let start = Instant::now();
    let before = received.load(Ordering::Relaxed);
    server
        .admin(
            &client,
            reqwest::Method::POST,
            "/v1/notifications",
            Some(
                json!({"to": {"all": true}, "channels": ["in_app", "web_push"],
                        "title": "Maintenance on Sunday", "body": "The desk is down 02:00-03:00"}),
            ),
        )
        .await?;
    let broadcast_accepted = start.elapsed();
    wait_for(&received, before, total as u64, "broadcast pushes received").await?;
    let broadcast = start.elapsed();
    let cpu_broadcast = server
        .cpu_time()
        .zip(cpu_server1)
        .map(|(x, y)| x.saturating_sub(y));
    let cpu_client = own_cpu_time().saturating_sub(cpu_client0);
    service_task.abort();

    let mut rows = vec![
        Row::value(
            "web pushes sent per second (one notification per user, accept to last POST)",
            total as f64 / direct.as_secs_f64(),
            "pushes/s",
        ),
        Row::value(
            "time to accept them (batch endpoint)",
            accepted.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value(
            "broadcast to every subscribed user: time to accept",
            broadcast_accepted.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value(
            "broadcast: time until the last push was received",
            broadcast.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value(
            "broadcast: pushes per second",
            total as f64 / broadcast.as_secs_f64(),
            "pushes/s",
        ),
        Row::value(
            "client CPU (tool and stand-in)",
            cpu_client.as_secs_f64() * 1000.0,
            "ms",
        ),
    ];
    if let Some(cpu) = cpu_direct {
        rows.push(Row::value(
            "server CPU per push (one per user)",
            cpu.as_secs_f64() * 1e6 / total as f64,
            "µs",
        ));
    }
    if let Some(cpu) = cpu_broadcast {
        rows.push(Row::value(
            "server CPU per push (broadcast)",
            cpu.as_secs_f64() * 1e6 / total as f64,
            "µs",
        ));
    }
    Ok(Report {
        scenario: "web-push".into(),
        parameters: json!({"users": total, "workers": a.workers}),
        rows,
        notes: vec![],
        lines: Vec::new(),
    })
}
