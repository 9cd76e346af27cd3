//! `email`: N notifications on the email channel to N users; the rate at
//! which Belfry's workers hand them to a local SMTP server. The server here
//! is a minimal SMTP sink inside the tool (a real SMTP conversation over
//! TCP), fast enough not to be the bottleneck.

use crate::report::{Report, Row};
use crate::scenarios::Progress;
use crate::server::{Target, own_cpu_time};
use anyhow::bail;
use clap::Args as ClapArgs;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Emails to send (one per user).
    #[arg(long, default_value_t = 2_000)]
    pub emails: usize,
    /// Workers of the started server (BELFRY_WORKERS).
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
}

/// Accepts SMTP connections and counts the messages received.
pub(crate) async fn sink(listener: tokio::net::TcpListener, received: Arc<AtomicU64>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            if write.write_all(b"220 bench-sink ESMTP\r\n").await.is_err() {
                return;
            }
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if in_data {
                    if line == "." {
                        in_data = false;
                        received.fetch_add(1, Ordering::Relaxed);
                        b"250 2.0.0 queued\r\n"
                    } else {
                        continue;
                    }
                } else {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    match verb.as_str() {
                        "EHLO" => b"250-bench-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 OK\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 end with .\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                            return;
                        }
                        _ => b"502 5.5.2 not implemented\r\n",
                    }
                };
                if write.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    if !a.target.urls.is_empty() {
        bail!("the email scenario starts its own server (it must point it at its SMTP sink)");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let smtp = format!("smtp://{}", listener.local_addr()?);
    let received = Arc::new(AtomicU64::new(0));
    let sink_task = tokio::spawn(sink(listener, received.clone()));

    let (dir, temp) = a.target.prepare_data_dir()?;
    a.target.seed_users(&dir, a.emails)?;
    let workers = a.workers.to_string();
    let server = a.target.start(
        Some((dir, temp)),
        &[
            ("BELFRY_SMTP_URL", smtp.as_str()),
            ("BELFRY_WORKERS", workers.as_str()),
        ],
    )?;
    let client = server.client();
    let total = a.emails;
    let cpu_server0 = server.cpu_time();
    let cpu_client0 = own_cpu_time();
    let start = Instant::now();
    for chunk_start in (0..total).step_by(500) {
        let items: Vec<serde_json::Value> = (chunk_start..(chunk_start + 500).min(total))
            .map(|i| {
                json!({"to": {"users": [format!("user-{}", i + 1)]}, "channels": ["email"],
                            "title": format!("Your weekly report #{i}"),
                            "body": "Seven tickets were closed this week; two are waiting for you.",
                            "url": "https://desk.example.com/reports/weekly"})
            })
            .collect();
        let r = client
            .post(format!("{}/v1/notifications/batch", server.url))
            .bearer_auth(&server.admin_key)
            .json(&json!({"notifications": items}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!(
                "batch: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
    }
    let accepted = start.elapsed();
    let progress = Progress::start("email received".into(), total as u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = 0;
    while (received.load(Ordering::Relaxed) as usize) < total {
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} emails arrived in 10 minutes",
                received.load(Ordering::Relaxed)
            );
        }
        let now = received.load(Ordering::Relaxed);
        progress.add(now - last);
        last = now;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    drop(progress);
    let cpu_server = server
        .cpu_time()
        .zip(cpu_server0)
        .map(|(x, y)| x.saturating_sub(y));
    let cpu_client = own_cpu_time().saturating_sub(cpu_client0);
    sink_task.abort();
    let mut rows = vec![
        Row::value(
            "emails sent per second (accept to last SMTP DATA)",
            total as f64 / elapsed.as_secs_f64(),
            "emails/s",
        ),
        Row::value(
            "time to accept all (batch endpoint)",
            accepted.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value(
            "time until the last email was received",
            elapsed.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value(
            "client CPU (tool and SMTP sink)",
            cpu_client.as_secs_f64() * 1000.0,
            "ms",
        ),
    ];
    if let Some(cpu) = cpu_server {
        rows.push(Row::value("server CPU", cpu.as_secs_f64() * 1000.0, "ms"));
    }
    Ok(Report {
        scenario: "email".into(),
        parameters: json!({"emails": total, "workers": a.workers}),
        rows,
        notes: vec![],
        lines: Vec::new(),
    })
}
