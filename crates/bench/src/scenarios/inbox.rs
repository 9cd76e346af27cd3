//! `inbox`: a database pre-filled with many users, direct notifications
//! (skewed towards busy users, some stacked, most read) and broadcasts; then
//! the latency of `GET /v1/me/counts` and of the first inbox page for
//! typical users and for the busiest one, and the time to accept a
//! broadcast to everyone.

use crate::report::{Report, Row, Samples};
use crate::scenarios::Progress;
use crate::server::Target;
use anyhow::{Context as _, bail};
use clap::Args as ClapArgs;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Users in the generated database.
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    /// Direct notifications in the generated database.
    #[arg(long, default_value_t = 5_000)]
    pub direct: u64,
    /// Broadcasts in the generated database.
    #[arg(long, default_value_t = 200)]
    pub broadcasts: u64,
    #[arg(long, default_value_t = 20)]
    pub groups: u64,
    /// Requests per measured operation.
    #[arg(long, default_value_t = 2_000)]
    pub samples: usize,
    /// Broadcasts to everyone to send and time.
    #[arg(long, default_value_t = 200)]
    pub accept: usize,
    /// Distinct typical users to sample.
    #[arg(long, default_value_t = 200)]
    pub sample_users: u64,
}

fn seed(binary: &std::path::Path, db: &std::path::Path, a: &Args) -> anyhow::Result<Value> {
    let summary_path = db.with_extension("fixture.json");
    if db.exists() {
        let text = std::fs::read_to_string(&summary_path).with_context(|| {
            format!(
                "{} exists without {}; use a fresh --data-dir",
                db.display(),
                summary_path.display()
            )
        })?;
        eprintln!("[inbox] reusing {}", db.display());
        return Ok(serde_json::from_str(&text)?);
    }
    eprintln!(
        "[inbox] generating {} users, {} direct notifications, {} broadcasts …",
        a.users, a.direct, a.broadcasts
    );
    let out = Command::new(binary)
        .args(["dev", "seed", "--db"])
        .arg(db)
        .args([
            "--users",
            &a.users.to_string(),
            "--direct",
            &a.direct.to_string(),
            "--broadcasts",
            &a.broadcasts.to_string(),
            "--groups",
            &a.groups.to_string(),
        ])
        .env("BELFRY_LOG", "warn")
        .output()
        .context("running belfry dev seed")?;
    if !out.status.success() {
        bail!(
            "belfry dev seed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    std::fs::write(&summary_path, &text)?;
    let v: Value = serde_json::from_str(text.trim())?;
    eprintln!(
        "[inbox] generated in {:.1} s",
        v["seconds"].as_f64().unwrap_or(0.0)
    );
    Ok(v)
}

/// Times `n` sequential GETs of `path`, rotating through `tokens`.
async fn time_gets(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    tokens: &[String],
    n: usize,
    label: &str,
) -> anyhow::Result<Samples> {
    let progress = Progress::start(format!("inbox {label}"), n as u64);
    let mut samples = Samples::with_capacity(n);
    for i in 0..n {
        let token = &tokens[i % tokens.len()];
        let start = Instant::now();
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await?;
        let status = r.status();
        let _ = r.bytes().await?;
        samples.push(start.elapsed());
        if !status.is_success() {
            bail!("GET {path}: {status}");
        }
        progress.add(1);
    }
    Ok(samples)
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    let mut notes = Vec::new();
    let (server, fixture) = if !a.target.urls.is_empty() {
        (a.target.start(None, &[])?, None)
    } else {
        let (dir, temp) = a.target.prepare_data_dir()?;
        let fixture = seed(&a.target.binary, &dir.join("belfry.db"), &a)?;
        (a.target.start(Some((dir, temp)), &[])?, Some(fixture))
    };
    let client = server.client();
    let users = fixture
        .as_ref()
        .and_then(|f| f["users"].as_u64())
        .unwrap_or(a.users);
    let busiest = fixture
        .as_ref()
        .and_then(|f| f["busiest_user"].as_str().map(String::from))
        .unwrap_or_else(|| "user-1".into());
    if let Some(f) = &fixture {
        notes.push(format!(
            "fixture: {} users, {} direct, {} broadcasts; busiest user {} has {} direct notifications",
            f["users"], f["direct"], f["broadcasts"], f["busiest_user"], f["busiest_count"]
        ));
    }

    // Typical users spread over the whole id range (deterministic choice).
    let mut typical = Vec::new();
    let step = (users / a.sample_users.max(1)).max(1);
    let mut u = 1 + step / 2;
    while u <= users && (typical.len() as u64) < a.sample_users {
        typical.push(server.token(&client, &format!("user-{u}")).await?);
        u += step;
    }
    let heavy = vec![server.token(&client, &busiest).await?];

    // Warm up connections and caches.
    time_gets(
        &client,
        &server.url,
        "/v1/me/counts",
        &typical,
        200.min(a.samples),
        "warm-up",
    )
    .await?;

    let mut rows = Vec::new();
    let counts = time_gets(
        &client,
        &server.url,
        "/v1/me/counts",
        &typical,
        a.samples,
        "counts",
    )
    .await?;
    rows.push(counts.summary("GET /v1/me/counts (typical users)"));
    let page = time_gets(
        &client,
        &server.url,
        "/v1/me/notifications",
        &typical,
        a.samples,
        "first page",
    )
    .await?;
    rows.push(page.summary("GET /v1/me/notifications first page (typical)"));
    let heavy_n = (a.samples / 4).max(1);
    let counts = time_gets(
        &client,
        &server.url,
        "/v1/me/counts",
        &heavy,
        heavy_n,
        "counts busiest",
    )
    .await?;
    rows.push(counts.summary("GET /v1/me/counts (busiest user)"));
    let page = time_gets(
        &client,
        &server.url,
        "/v1/me/notifications",
        &heavy,
        heavy_n,
        "page busiest",
    )
    .await?;
    rows.push(page.summary("GET /v1/me/notifications first page (busiest)"));

    // Accepting broadcasts to everyone: one row each, whatever the audience size.
    let progress = Progress::start("inbox accept".into(), a.accept as u64);
    let mut accept = Samples::with_capacity(a.accept);
    for i in 0..a.accept {
        let start = Instant::now();
        let r = client
            .post(format!("{}/v1/notifications", server.url))
            .bearer_auth(&server.admin_key)
            .json(
                &json!({"to": {"all": true}, "title": format!("Benchmark announcement {i}"),
                          "body": "The office is closed on Monday.", "category": "announcement"}),
            )
            .send()
            .await?;
        let status = r.status();
        let _ = r.bytes().await?;
        accept.push(start.elapsed());
        if status.as_u16() != 202 {
            bail!("broadcast: {status}");
        }
        progress.add(1);
    }
    drop(progress);
    rows.push(accept.summary("POST /v1/notifications to all (202)"));

    // For comparison: a send to one user on the same database.
    let mut single = Samples::with_capacity(a.accept);
    for i in 0..a.accept {
        let start = Instant::now();
        let r = client
            .post(format!("{}/v1/notifications", server.url))
            .bearer_auth(&server.admin_key)
            .json(&json!({"to": {"users": [format!("user-{}", 1 + (i as u64 * 7919) % users)]},
                          "title": "Ticket assigned to you", "body": "Printer on floor 3 is jammed."}))
            .send()
            .await?;
        let status = r.status();
        let _ = r.bytes().await?;
        single.push(start.elapsed());
        if status.as_u16() != 202 {
            bail!("single send: {status}");
        }
    }
    rows.push(single.summary("POST /v1/notifications to one user (202)"));
    if let Some(rss) = server.rss_bytes() {
        rows.push(Row::value(
            "server resident memory",
            rss as f64 / 1_048_576.0,
            "MiB",
        ));
    }
    Ok(Report {
        scenario: "inbox".into(),
        parameters: json!({"users": users, "direct": a.direct, "broadcasts": a.broadcasts,
                           "groups": a.groups, "samples": a.samples, "accept": a.accept,
                           "sequential": true}),
        rows,
        notes,
        lines: Vec::new(),
    })
}
