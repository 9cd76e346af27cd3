//! `events`: what rules and templates cost. N plain sends, each to 3
//! users with a title, body and link, against N events (`POST /v1/events`)
//! that one rule turns into the same notification for the same 3 users
//! through a template: accepted per second and the latency of the 202,
//! the phases alternated in rounds so that a busy machine weighs on both.

use crate::report::{Report, Row, Samples};
use crate::scenarios::Progress;
use crate::server::{Server, Target};
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Requests per phase and round (plain sends, then events).
    #[arg(long, default_value_t = 5_000)]
    pub requests: usize,
    /// Rounds: each runs both phases.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

const USERS: usize = 3_000;

fn recipients(i: usize) -> Vec<String> {
    (0..3)
        .map(|k| format!("user-{}", 1 + (i * 3 + k) % USERS))
        .collect()
}

async fn admin(
    server: &Server,
    client: &reqwest::Client,
    path: &str,
    body: Value,
) -> anyhow::Result<()> {
    let r = client
        .put(format!("{}{path}", server.urls[0]))
        .bearer_auth(&server.admin_key)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    if !status.is_success() {
        bail!("PUT {path}: {status} {}", r.text().await?);
    }
    Ok(())
}

/// Runs one phase: `requests` POSTs to `path` with `body(i)`.
#[allow(clippy::too_many_arguments)]
async fn phase(
    server: &Server,
    client: &reqwest::Client,
    label: &str,
    path: &str,
    requests: usize,
    concurrency: usize,
    offset: usize,
    body: impl Fn(usize) -> Value,
) -> anyhow::Result<(Duration, Samples)> {
    let progress = Progress::start(label.to_string(), requests as u64);
    let start = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..requests)
        .map(|i| {
            let url = format!("{}{path}", server.urls[i % server.urls.len()]);
            let b = body(offset + i);
            let progress = &progress;
            async move {
                let t0 = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&server.admin_key)
                    .json(&b)
                    .send()
                    .await?;
                let status = r.status();
                let text = r.text().await?;
                if status.as_u16() != 202 {
                    bail!("{label}: {status} {text}");
                }
                progress.add(1);
                Ok(t0.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = start.elapsed();
    drop(progress);
    let mut samples = Samples::with_capacity(requests);
    for r in results {
        samples.push(r?);
    }
    Ok((took, samples))
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    let (dir, temp) = a.target.prepare_data_dir()?;
    if a.target.urls.is_empty() {
        a.target.seed_users(&dir, USERS)?;
    }
    let server = a.target.start(Some((dir, temp)), &[])?;
    let client = server.client();
    if !a.target.urls.is_empty() {
        eprintln!("[events] creating {USERS} users through the API …");
        crate::server::create_users(&server, &client, "user", 1, USERS, 64).await?;
    }
    admin(
        &server,
        &client,
        "/v1/templates/bench.assigned",
        json!({"default_locale": "en", "locales": {"en": {
            "title": "Ticket #{{ entity.id }} assigned to you",
            "body": "{{ data.summary }}",
            "email_subject": "[Desk] Ticket #{{ entity.id }} was assigned to you"}}}),
    )
    .await
    .context("the template")?;
    admin(
        &server,
        &client,
        "/v1/rules/bench.assigned",
        json!({"event": "bench.assigned", "to": {"users": ["{{ data.assignees }}"]},
               "category": "assignment", "template": "bench.assigned"}),
    )
    .await
    .context("the rule")?;

    let send = |i: usize| {
        json!({"to": {"users": recipients(i)}, "title": format!("Ticket #{i} assigned to you"),
               "body": "The printer on floor 3 is jammed.", "category": "assignment",
               "url": format!("/tickets/{i}")})
    };
    let event = |i: usize| {
        json!({"type": "bench.assigned", "actor": {"id": "agent-0", "name": "Agent"},
               "entity": {"type": "ticket", "id": i.to_string(), "title": format!("#{i}"),
                          "url": format!("/tickets/{i}")},
               "data": {"assignees": recipients(i), "summary": "The printer on floor 3 is jammed."}})
    };

    let (mut sends_time, mut events_time) = (Duration::ZERO, Duration::ZERO);
    let mut sends = Samples::with_capacity(a.requests * a.rounds);
    let mut events = Samples::with_capacity(a.requests * a.rounds);
    let mut per_round = Vec::new();
    for round in 0..a.rounds {
        let offset = round * a.requests;
        let (t, s) = phase(
            &server,
            &client,
            "plain sends",
            "/v1/notifications",
            a.requests,
            a.concurrency,
            offset,
            send,
        )
        .await?;
        let (u, e) = phase(
            &server,
            &client,
            "events",
            "/v1/events",
            a.requests,
            a.concurrency,
            offset,
            event,
        )
        .await?;
        let (sr, er) = (
            a.requests as f64 / t.as_secs_f64(),
            a.requests as f64 / u.as_secs_f64(),
        );
        eprintln!(
            "[events] round {}: plain {sr:.0}/s, events {er:.0}/s",
            round + 1
        );
        per_round.push(json!({"plain_per_s": sr.round(), "events_per_s": er.round()}));
        sends_time += t;
        events_time += u;
        sends.extend(&s);
        events.extend(&e);
    }
    let total = (a.requests * a.rounds) as f64;
    let plain_rate = total / sends_time.as_secs_f64();
    let event_rate = total / events_time.as_secs_f64();
    Ok(Report {
        scenario: "events".into(),
        parameters: json!({"requests": a.requests, "rounds": a.rounds, "concurrency": a.concurrency,
                           "recipients_per_request": 3, "per_round": per_round}),
        rows: vec![
            Row::value(
                "plain sends (3 users each) per second",
                plain_rate,
                "requests/s",
            ),
            sends.summary("plain send: POST until 202"),
            Row::value(
                "events (1 rule, 3 users) per second",
                event_rate,
                "requests/s",
            ),
            events.summary("event: POST until 202"),
            Row::value(
                "cost of an event over a plain send",
                plain_rate / event_rate,
                "×",
            ),
        ],
        notes: Vec::new(),
        lines: Vec::new(),
    })
}
