//! `connections`: K idle streams; the server's resident memory per
//! connection and the time to open them all.

use crate::clients::{self, Shared, Transport};
use crate::report::{Report, Row};
use crate::server::{Target, users_with_tokens};
use clap::Args as ClapArgs;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Idle streams to hold (one user each).
    #[arg(long, default_value_t = 1_000)]
    pub clients: usize,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    let server = a.target.start(None, &[])?;
    let client = server.client();
    eprintln!("[connections] creating {} users …", a.clients);
    let tokens = users_with_tokens(&server, &client, "idle", a.clients, None, 32).await?;
    // Let the allocator settle after the setup traffic.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_bytes();
    let shared = Arc::new(Shared::default());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    eprintln!(
        "[connections] connecting {} {:?} clients …",
        a.clients, a.transport
    );
    let start = Instant::now();
    let tasks = clients::connect_all(a.transport, &server, &tokens, &shared, &tx).await?;
    let connect = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_bytes();
    for t in &tasks {
        t.abort();
    }
    let mut rows = vec![Row::value(
        "time to connect all",
        connect.as_secs_f64() * 1000.0,
        "ms",
    )];
    if let (Some(b), Some(a2)) = (before, after) {
        rows.push(Row::value(
            "server RSS before",
            b as f64 / 1_048_576.0,
            "MiB",
        ));
        rows.push(Row::value(
            "server RSS with all connected",
            a2 as f64 / 1_048_576.0,
            "MiB",
        ));
        rows.push(Row::value(
            "server memory per connection",
            (a2.saturating_sub(b)) as f64 / a.clients as f64 / 1024.0,
            "KiB",
        ));
    }
    Ok(Report {
        scenario: "connections".into(),
        parameters: json!({"clients": a.clients, "transport": format!("{:?}", a.transport)}),
        rows,
        notes: vec![],
        lines: Vec::new(),
    })
}
