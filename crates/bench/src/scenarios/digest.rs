//! `digest`: the daily email digest of N users at the same minute. Each user
//! chooses digest mode for mentions and a digest time two minutes ahead
//! (in their zone); each gets `per-user` mentions (in-app plus email, so every email
//! is digested); then the tool waits for the digest time and measures how
//! fast the digests reach a local SMTP sink, and what a send costs while
//! they run (a probe sends one in-app notification every 10 ms from a
//! minute before the digest time until the last digest arrived).

use crate::report::{Report, Row, Samples};
use crate::scenarios::Progress;
use crate::scenarios::email::sink;
use crate::server::{Target, own_cpu_time};
use anyhow::bail;
use clap::Args as ClapArgs;
use futures::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Users with a digest at the same minute.
    #[arg(long, default_value_t = 2_000)]
    pub users: usize,
    /// Unread mentions of each user (a digest lists five and counts all).
    #[arg(long, default_value_t = 6)]
    pub per_user: usize,
    /// Workers of the started server (BELFRY_WORKERS).
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
}

/// Latencies of a send (202) while the probe runs, split at `split`.
struct Probe {
    before: Samples,
    during: Samples,
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    if !a.target.urls.is_empty() {
        bail!("the digest scenario starts its own server (it must point it at its SMTP sink)");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let smtp = format!("smtp://{}", listener.local_addr()?);
    let received = Arc::new(AtomicU64::new(0));
    let sink_task = tokio::spawn(sink(listener, received.clone()));

    let (dir, temp) = a.target.prepare_data_dir()?;
    // One more user than digests: the probe's.
    let seeded = a.users + 1;
    a.target.seed_users(&dir, seeded)?;
    let workers = a.workers.to_string();
    let server = a.target.start(
        Some((dir, temp)),
        &[
            ("BELFRY_SMTP_URL", smtp.as_str()),
            ("BELFRY_WORKERS", workers.as_str()),
            ("BELFRY_RECIPIENT_RATE_LIMIT", "0"),
        ],
    )?;
    let client = server.client();

    // The digest minute: the start of the minute two minutes from now.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let digest_s = (now_ms / 60_000 + 2) * 60;
    // `belfry dev seed` puts its users in Europe/Berlin.
    let local = jiff::Timestamp::from_second(digest_s as i64)?
        .to_zoned(jiff::tz::TimeZone::get("Europe/Berlin")?);
    let time = format!("{:02}:{:02}", local.hour(), local.minute());
    let digest_at = Instant::now() + Duration::from_millis(digest_s * 1000 - now_ms);
    eprintln!("digest time {time} (Europe/Berlin) for {} users", a.users);

    let setup = Instant::now();
    let prefs = futures::stream::iter(1..=a.users)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/v1/users/user-{i}/preferences", server.url);
            let key = server.admin_key.clone();
            let time = time.clone();
            async move {
                let r = client
                    .put(url)
                    .bearer_auth(key)
                    .json(&json!({"categories": {"mention": {"email": "digest"}},
                                  "digest": {"time": time}}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!(
                        "preferences: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    prefs.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let total = a.users * a.per_user;
    let mut pending: Vec<serde_json::Value> = Vec::with_capacity(500);
    for n in 0..total {
        let user = n % a.users + 1;
        pending.push(json!({"to": {"users": [format!("user-{user}")]}, "channels": ["in_app", "email"],
                            "category": "mention", "title": format!("You were mentioned on ticket #{n}"),
                            "body": "Can you have a look before the customer calls back?",
                            "url": format!("/tickets/{n}")}));
        if pending.len() == 500 || n + 1 == total {
            let r = client
                .post(format!("{}/v1/notifications/batch", server.url))
                .bearer_auth(&server.admin_key)
                .json(&json!({"notifications": std::mem::take(&mut pending)}))
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
    }
    eprintln!(
        "set up in {:.1} s; {} emails so far",
        setup.elapsed().as_secs_f64(),
        received.load(Ordering::Relaxed)
    );
    if Instant::now() + Duration::from_secs(30) > digest_at {
        bail!("setting up took too long for the digest time {time}; use fewer --users");
    }

    // The probe: from a minute before the digest time until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let lead = Duration::from_secs(60).min(digest_at.saturating_duration_since(Instant::now()));
    tokio::time::sleep_until((digest_at - lead).into()).await;
    let probe = {
        let client = client.clone();
        let url = format!("{}/v1/notifications", server.url);
        let key = server.admin_key.clone();
        let stop = stop.clone();
        let probe_user = format!("user-{seeded}");
        tokio::spawn(async move {
            let mut p = Probe {
                before: Samples::with_capacity(6_000),
                during: Samples::with_capacity(6_000),
            };
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let started = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"to": {"users": [probe_user]}, "title": format!("probe {n}")}))
                    .send()
                    .await;
                let took = started.elapsed();
                if !r.is_ok_and(|r| r.status().as_u16() == 202) {
                    continue;
                }
                if started < digest_at {
                    p.before.push(took);
                } else {
                    p.during.push(took);
                }
            }
            p
        })
    };

    tokio::time::sleep_until(digest_at.into()).await;
    let early = received.load(Ordering::Relaxed);
    if early > 0 {
        bail!("{early} digests arrived before the digest time {time}");
    }
    let cpu_server0 = server.cpu_time();
    let cpu_client0 = own_cpu_time();
    let progress = Progress::start("digests received".into(), a.users as u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = 0;
    while (received.load(Ordering::Relaxed) as usize) < a.users {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} digests arrived in 10 minutes",
                received.load(Ordering::Relaxed),
                a.users
            );
        }
        let now = received.load(Ordering::Relaxed);
        progress.add(now - last);
        last = now;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = digest_at.elapsed();
    drop(progress);
    stop.store(true, Ordering::Relaxed);
    let probe = probe.await?;
    let cpu_server = server
        .cpu_time()
        .zip(cpu_server0)
        .map(|(x, y)| x.saturating_sub(y));
    let cpu_client = own_cpu_time().saturating_sub(cpu_client0);
    sink_task.abort();
    // A few more may arrive (none should: one digest per user).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let extra = received.load(Ordering::Relaxed) as usize - a.users;
    let mut rows = vec![
        Row::value(
            "digests sent per second (digest time to last SMTP DATA)",
            a.users as f64 / elapsed.as_secs_f64(),
            "digests/s",
        ),
        Row::value(
            "time from the digest time to the last digest",
            elapsed.as_secs_f64() * 1000.0,
            "ms",
        ),
        probe.before.summary("send (202) in the minute before"),
        probe.during.summary("send (202) while the digests run"),
        Row::value(
            "client CPU while the digests run (tool, probe, SMTP sink)",
            cpu_client.as_secs_f64() * 1000.0,
            "ms",
        ),
        Row::value("digests beyond one per user", extra as f64, "emails"),
    ];
    if let Some(cpu) = cpu_server {
        rows.push(Row::value(
            "server CPU while the digests run",
            cpu.as_secs_f64() * 1000.0,
            "ms",
        ));
    }
    Ok(Report {
        scenario: "digest".into(),
        parameters: json!({"users": a.users, "per_user": a.per_user, "workers": a.workers}),
        rows,
        notes: vec![format!(
            "the job runs at the start of the minute (poll interval up to 1 s); {} sends probed during the digests",
            probe.during.len()
        )],
        lines: Vec::new(),
    })
}
