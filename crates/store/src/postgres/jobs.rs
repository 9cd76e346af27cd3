//! The job queue and the delivery log on PostgreSQL. Any node may claim any job: a claim locks due rows with
//! `FOR UPDATE SKIP LOCKED` (claimers never wait for each other, and never
//! get the same row) and sets a lease in the same statement.

use crate::jobs::{
    DeliveryContext, DeliveryEvent, Job, JobOutcome, JobPayload, JobStats, Recipient,
};
use crate::plan::cancelled_line;
use crate::plan::log::{DeliveryPage, DeliveryQuery, LogPager, Part, Rows};
use crate::plan::send::{expansion, next_page};
use crate::plan::stored::{
    EmailNotificationRow, EmailUserRow, Seen, StoredAudience, content_category,
    delivery_context as delivery_context_of,
};
use crate::{NotificationStatus, Result, StoreError};
use belfry_core::{Channel, Millis};
use sqlx::{PgConnection, PgPool};

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(e.to_string())
}

/// Queues a job (the caller wakes the workers after its commit).
pub(crate) async fn add_job(
    c: &mut PgConnection,
    payload: &JobPayload,
    nid: Option<i64>,
    run_at: Millis,
    now: Millis,
) -> Result<()> {
    let json = serde_json::to_string(payload).map_err(bad)?;
    sqlx::query(
        "INSERT INTO jobs (kind, payload, nid, run_at, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(payload.kind())
    .bind(json)
    .bind(nid)
    .bind(run_at.0)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Queues a user's digest job unless they have one (`jobs.dedup`); with
/// `reschedule`, moves a waiting one to `at`. True when a row changed.
pub(crate) async fn schedule_digest(
    pool: &PgPool,
    user: &belfry_core::UserId,
    at: Millis,
    reschedule: bool,
    now: Millis,
) -> Result<bool> {
    let payload = JobPayload::Digest {
        user: user.clone(),
        since: None,
    };
    let json = serde_json::to_string(&payload).map_err(bad)?;
    let n = sqlx::query(
        "INSERT INTO jobs (kind, payload, nid, run_at, created_at, dedup)
         VALUES ($1, $2, NULL, $3, $4, $5)
         ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO UPDATE SET run_at = excluded.run_at
         WHERE $6 AND (jobs.lease_until IS NULL OR jobs.lease_until <= $4)",
    )
    .bind(payload.kind())
    .bind(json)
    .bind(at.0)
    .bind(now.0)
    .bind(payload.dedup())
    .bind(reschedule)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Appends lines to the delivery log (one statement for all of them).
pub(crate) async fn log_many(
    c: &mut PgConnection,
    nid: i64,
    events: &[DeliveryEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let recipients: Vec<&str> = events.iter().map(|e| e.recipient.as_str()).collect();
    let channels: Vec<&str> = events.iter().map(|e| e.channel.as_str()).collect();
    let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
    let attempts: Vec<i64> = events.iter().map(|e| e.attempt).collect();
    let errors: Vec<Option<&str>> = events.iter().map(|e| e.error.as_deref()).collect();
    let ats: Vec<i64> = events.iter().map(|e| e.at.0).collect();
    let reasons: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.reason.map(|r| r.as_str()))
        .collect();
    let untils: Vec<Option<i64>> = events.iter().map(|e| e.until.map(|u| u.0)).collect();
    // WITH ORDINALITY keeps the given order in the ids (the log's order).
    sqlx::query(
        "INSERT INTO deliveries (nid, recipient, channel, status, attempt, error, at, reason, held_until)
         SELECT $1, r, c, s, a, e, t, re, u
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[],
                     $8::text[], $9::bigint[])
              WITH ORDINALITY AS x(r, c, s, a, e, t, re, u, o)
         ORDER BY o",
    )
    .bind(nid)
    .bind(&recipients)
    .bind(&channels)
    .bind(&statuses)
    .bind(&attempts)
    .bind(&errors)
    .bind(&ats)
    .bind(&reasons)
    .bind(&untils)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn claim(
    pool: &PgPool,
    now: Millis,
    lease_ms: i64,
    limit: usize,
    owner: &str,
) -> Result<Vec<Job>> {
    let rows: Vec<(i64, Option<i64>, String, i64, i64)> = sqlx::query_as(
        "UPDATE jobs SET lease_until = $2, lease_owner = $3, attempts = attempts + 1
         WHERE id IN (
             SELECT id FROM jobs
             WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
             ORDER BY run_at, id
             LIMIT $4
             FOR UPDATE SKIP LOCKED)
         RETURNING id, nid, payload, attempts, run_at",
    )
    .bind(now.0)
    .bind(now.0 + lease_ms)
    .bind(owner)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let mut jobs = rows
        .into_iter()
        .map(|(id, nid, payload, attempts, run_at)| {
            Ok(Job {
                id,
                nid,
                payload: serde_json::from_str(&payload).map_err(bad)?,
                attempts,
                run_at: Millis(run_at),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.run_at, j.id));
    Ok(jobs)
}

/// Records an outcome; true when the workers should look again at once.
/// Records a job's outcome; true when workers should look for jobs at
/// once. `changed` is set when a webhook was disabled by it.
pub(crate) async fn finish(
    c: &mut PgConnection,
    snapshot: &crate::webhooks::Snapshot,
    job: i64,
    outcome: JobOutcome,
    now: Millis,
    changed: &mut bool,
) -> Result<bool> {
    let nid: Option<Option<i64>> = sqlx::query_scalar("SELECT nid FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_optional(&mut *c)
        .await?;
    let log_nid = nid.flatten();
    match outcome {
        JobOutcome::Done(events) => {
            // Logged even if the job was cancelled meanwhile: it did happen.
            let mut queued = false;
            if let Some(nid) = log_nid {
                log_many(c, nid, &events).await?;
                queued = super::webhooks::delivery_events(snapshot, c, nid, &events, now).await?;
            }
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(job)
                .execute(&mut *c)
                .await?;
            Ok(queued)
        }
        JobOutcome::Retry {
            at,
            error,
            log,
            payload,
        } => {
            if let Some(nid) = log_nid {
                log_many(c, nid, &log).await?;
            }
            let payload = payload
                .map(|p| serde_json::to_string(&p))
                .transpose()
                .map_err(bad)?;
            sqlx::query(
                "UPDATE jobs SET run_at = $2, lease_until = NULL, lease_owner = NULL, last_error = $3,
                        payload = COALESCE($4, payload)
                 WHERE id = $1",
            )
            .bind(job)
            .bind(at.0)
            .bind(error)
            .bind(payload)
            .execute(&mut *c)
            .await?;
            Ok(false)
        }
        JobOutcome::Digest { at, payload, lines } => {
            log_by_id(c, &lines).await?;
            super::webhooks::delivery_events_by_id(snapshot, c, &lines, now).await?;
            let json = serde_json::to_string(&payload).map_err(bad)?;
            sqlx::query(
                "UPDATE jobs SET run_at = $2, payload = $3, lease_until = NULL, lease_owner = NULL,
                        attempts = 0, last_error = NULL WHERE id = $1",
            )
            .bind(job)
            .bind(at.0)
            .bind(json)
            .execute(&mut *c)
            .await?;
            Ok(true)
        }
        JobOutcome::DoneLines(lines) => {
            log_by_id(c, &lines).await?;
            let queued = super::webhooks::delivery_events_by_id(snapshot, c, &lines, now).await?;
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(job)
                .execute(&mut *c)
                .await?;
            Ok(queued)
        }
        JobOutcome::Webhook(effect) => {
            let (retried, disabled) = super::webhooks::record(c, job, &effect).await?;
            *changed = disabled;
            Ok(retried)
        }
        JobOutcome::Summarise { summary, log } => {
            let mut added = false;
            if let Some(nid) = log_nid {
                log_many(c, nid, &log).await?;
                added = summarise(c, summary, nid, now).await?;
            }
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(job)
                .execute(&mut *c)
                .await?;
            Ok(added)
        }
        JobOutcome::Release => {
            sqlx::query(
                "UPDATE jobs SET lease_until = NULL, lease_owner = NULL, attempts = GREATEST(attempts - 1, 0)
                 WHERE id = $1",
            )
            .bind(job)
            .execute(&mut *c)
            .await?;
            Ok(true)
        }
        JobOutcome::Later { at, payload, log } => {
            if let Some(nid) = log_nid {
                log_many(c, nid, &log).await?;
            }
            let payload = payload
                .map(|p| serde_json::to_string(&p).map(|json| (p.kind(), json)))
                .transpose()
                .map_err(bad)?;
            sqlx::query(
                "UPDATE jobs SET run_at = $2, lease_until = NULL, lease_owner = NULL,
                        attempts = GREATEST(attempts - 1, 0),
                        kind = COALESCE($3, kind), payload = COALESCE($4, payload)
                 WHERE id = $1",
            )
            .bind(job)
            .bind(at.0)
            .bind(payload.as_ref().map(|p| p.0))
            .bind(payload.as_ref().map(|p| p.1.clone()))
            .execute(&mut *c)
            .await?;
            Ok(true)
        }
        JobOutcome::Continue(payload) => {
            let json = serde_json::to_string(&payload).map_err(bad)?;
            let n = sqlx::query(
                "UPDATE jobs SET kind = $2, payload = $3, run_at = $4, lease_until = NULL,
                        lease_owner = NULL, attempts = 0 WHERE id = $1",
            )
            .bind(job)
            .bind(payload.kind())
            .bind(json)
            .bind(now.0)
            .execute(&mut *c)
            .await?
            .rows_affected();
            Ok(n > 0)
        }
    }
}

/// Logs each line on the notification with that public id (one that is
/// gone meanwhile is skipped).
async fn log_by_id(c: &mut PgConnection, lines: &[(String, DeliveryEvent)]) -> Result<()> {
    for (id, e) in lines {
        let nid: Option<i64> = sqlx::query_scalar("SELECT nid FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(nid) = nid {
            log_many(c, nid, std::slice::from_ref(e)).await?;
        }
    }
    Ok(())
}

/// Adds notification `nid` to the summary job `summary` stands for (see
/// [`crate::plan::summary`]); the row is locked while its payload is
/// rewritten. True when a job was inserted.
async fn summarise(
    c: &mut PgConnection,
    summary: JobPayload,
    nid: i64,
    now: Millis,
) -> Result<bool> {
    use crate::plan::summary::{Join, join, run_at};
    let mut summary = summary;
    loop {
        let key = summary.dedup();
        let found: Option<(i64, String, Option<i64>)> =
            sqlx::query_as("SELECT id, payload, lease_until FROM jobs WHERE dedup = $1 FOR UPDATE")
                .bind(&key)
                .fetch_optional(&mut *c)
                .await?;
        match join(
            summary,
            found.as_ref().map(|(_, p, l)| (p.as_str(), *l)),
            nid,
            now,
        )? {
            Join::Insert(payload) => {
                let json = serde_json::to_string(&payload).map_err(bad)?;
                // Two nodes may insert the same window's job at once: the
                // loser joins the winner's on the next turn.
                let n = sqlx::query(
                    "INSERT INTO jobs (kind, payload, nid, run_at, created_at, dedup)
                     VALUES ($1, $2, NULL, $3, $4, $5)
                     ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING",
                )
                .bind(payload.kind())
                .bind(json)
                .bind(run_at(&payload).0)
                .bind(now.0)
                .bind(payload.dedup())
                .execute(&mut *c)
                .await?
                .rows_affected();
                if n > 0 {
                    return Ok(true);
                }
                summary = payload;
            }
            Join::Update(payload) => {
                let json = serde_json::to_string(&payload).map_err(bad)?;
                sqlx::query("UPDATE jobs SET payload = $2 WHERE id = $1")
                    .bind(found.map(|f| f.0))
                    .bind(json)
                    .execute(&mut *c)
                    .await?;
                return Ok(false);
            }
            Join::Next(next) => summary = next,
        }
    }
}

pub(crate) async fn next_job_at(pool: &PgPool) -> Result<Option<Millis>> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT MIN(GREATEST(run_at, COALESCE(lease_until, 0))) FROM jobs")
            .fetch_one(pool)
            .await?;
    Ok(at.map(Millis))
}

pub(crate) async fn stats(pool: &PgPool, now: Millis) -> Result<JobStats> {
    let (queued, running, retrying): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)),
                COUNT(*) FILTER (WHERE lease_until > $1),
                COUNT(*) FILTER (WHERE attempts > 0 AND (lease_until IS NULL OR lease_until <= $1))
         FROM jobs",
    )
    .bind(now.0)
    .fetch_one(pool)
    .await?;
    Ok(JobStats {
        queued,
        running,
        retrying,
    })
}

/// Queues deliveries for the next page of a broadcast's audience: the
/// members it reached when published (everyone created before it, or the
/// members of its groups at that moment), never the actor. Returns the
/// cursor of the next page and whether jobs were queued.
pub(crate) async fn expand(
    c: &mut PgConnection,
    nid: i64,
    channel: Channel,
    after_uid: i64,
    limit: usize,
    now: Millis,
) -> Result<(Option<i64>, bool)> {
    let row: Option<(Option<i64>, String, String, Option<i64>)> =
        sqlx::query_as("SELECT seq, status, audience, actor_uid FROM notifications WHERE nid = $1")
            .bind(nid)
            .fetch_optional(&mut *c)
            .await?;
    let Some((Some(seq), status, audience, actor_uid)) = row else {
        return Ok((None, false));
    };
    if NotificationStatus::parse(&status)? != NotificationStatus::Published {
        return Ok((None, false));
    }
    let audience = StoredAudience::decode(&audience)?;
    // Web push reaches only members with a push subscription, mobile
    // push only members with a mobile device.
    let pushable = channel == Channel::WebPush;
    let mobile = channel == Channel::MobilePush;
    let members: Vec<(i64, String)> = if audience.all {
        // On a push channel the subscriptions (devices) are read (in uid
        // order, by their index), not every user.
        let sql = match channel {
            Channel::WebPush => {
                "SELECT DISTINCT u.uid, u.id FROM push_subscriptions p JOIN users u ON u.uid = p.uid
                 WHERE p.uid > $1 AND u.created_seq < $2 ORDER BY u.uid LIMIT $3"
            }
            Channel::MobilePush => {
                "SELECT DISTINCT u.uid, u.id FROM mobile_devices d JOIN users u ON u.uid = d.uid
                 WHERE d.uid > $1 AND u.created_seq < $2 ORDER BY u.uid LIMIT $3"
            }
            _ => {
                "SELECT uid, id FROM users WHERE uid > $1 AND created_seq < $2 ORDER BY uid LIMIT $3"
            }
        };
        sqlx::query_as(sql)
            .bind(after_uid)
            .bind(seq)
            .bind(limit as i64)
            .fetch_all(&mut *c)
            .await?
    } else {
        let groups: Vec<&str> = audience.groups.iter().map(|g| g.as_str()).collect();
        sqlx::query_as(
            "SELECT DISTINCT u.uid, u.id FROM memberships m
             JOIN users u ON u.uid = m.uid
             JOIN groups g ON g.gid = m.gid
             WHERE g.id = ANY($1) AND m.uid > $2 AND m.joined_seq < $3
               AND (m.left_seq IS NULL OR $3 <= m.left_seq)
               AND (NOT $5 OR EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.uid = u.uid))
               AND (NOT $6 OR EXISTS (SELECT 1 FROM mobile_devices d WHERE d.uid = u.uid))
             ORDER BY u.uid LIMIT $4",
        )
        .bind(&groups)
        .bind(after_uid)
        .bind(seq)
        .bind(limit as i64)
        .bind(pushable)
        .bind(mobile)
        .fetch_all(&mut *c)
        .await?
    };
    let next = next_page(&members, limit);
    let (jobs, log) = expansion(members, actor_uid, channel, now)?;
    log_many(c, nid, &log).await?;
    add_jobs(c, &jobs, nid, now).await?;
    Ok((next, !jobs.is_empty()))
}

/// Queues several jobs of one notification, due now (one statement).
pub(crate) async fn add_jobs(
    c: &mut PgConnection,
    payloads: &[JobPayload],
    nid: i64,
    now: Millis,
) -> Result<()> {
    if payloads.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = payloads.iter().map(|p| p.kind()).collect();
    let json = payloads
        .iter()
        .map(|p| serde_json::to_string(p).map_err(bad))
        .collect::<Result<Vec<_>>>()?;
    sqlx::query(
        "INSERT INTO jobs (kind, payload, nid, run_at, created_at)
         SELECT k, p, $3, $4, $4 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS x(k, p, o)
         ORDER BY o",
    )
    .bind(&kinds)
    .bind(&json)
    .bind(nid)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// [`EmailUserRow`] and the notification's category definition, read in one query.
type EmailUserAndCategoryRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) async fn delivery_context(
    c: &mut PgConnection,
    nid: i64,
    recipient: &Recipient,
    channel: Channel,
    now: Millis,
    fallback: bool,
) -> Result<Option<DeliveryContext>> {
    let Some(row): Option<EmailNotificationRow> = sqlx::query_as(
        "SELECT id, status, content, published_at, created_at FROM notifications WHERE nid = $1",
    )
    .bind(nid)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(None);
    };
    // One indexed read of the user with their preferences (none for most
    // users), the defaults and the notification's category.
    let (user, category): (Option<EmailUserRow>, Option<String>) = match recipient {
        Recipient::User(user) => {
            let found: Option<EmailUserAndCategoryRow> = sqlx::query_as(
                "SELECT u.email, u.name, u.locale, u.timezone, p.prefs,
                        (SELECT prefs FROM preference_defaults WHERE id = 1),
                        (SELECT def FROM categories WHERE id = $2)
                 FROM users u LEFT JOIN user_preferences p ON p.uid = u.uid WHERE u.id = $1",
            )
            .bind(user.as_str())
            .bind(content_category(&row.2))
            .fetch_optional(&mut *c)
            .await?;
            match found {
                Some((email, name, locale, tz, own, defaults, category)) => {
                    (Some((email, name, locale, tz, own, defaults)), category)
                }
                None => (None, None),
            }
        }
        // A contact's name and language, when they gave them.
        Recipient::Contact(address) => (
            super::access::contact(&mut *c, address)
                .await?
                .map(|(name, locale)| (None, name, locale, None, None, None)),
            None,
        ),
        Recipient::Group(_) => (None, None),
    };
    // The fallback check: seen (the drawer was opened after it arrived),
    // read, or archived in the app.
    let seen = match (recipient, fallback) {
        (Recipient::User(user), true) => {
            let seen: Option<Option<bool>> = sqlx::query_scalar(
                "SELECT n.seq <= u.seen_wm OR i.read_at IS NOT NULL OR i.archived_at IS NOT NULL
                 FROM notifications n JOIN users u ON u.id = $2
                 LEFT JOIN inbox i ON i.uid = u.uid AND i.nid = n.nid
                 WHERE n.nid = $1",
            )
            .bind(nid)
            .bind(user.as_str())
            .fetch_optional(&mut *c)
            .await?;
            Some(match seen.flatten() {
                Some(true) => Seen::Yes,
                _ => Seen::No,
            })
        }
        _ => None,
    };
    delivery_context_of(row, recipient, channel, user, category, now, seen).map(Some)
}

/// One page of a notification's delivery log: the planner (`plan::log`)
/// asks for keyset range scans, each over an index in key order.
pub(crate) async fn deliveries(
    c: &mut PgConnection,
    notification_id: &str,
    query: DeliveryQuery,
) -> Result<DeliveryPage> {
    let Some((nid, seq, published)): Option<(i64, Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT nid, seq, published_at FROM notifications WHERE id = $1")
            .bind(notification_id)
            .fetch_optional(&mut *c)
            .await?
    else {
        return Err(StoreError::NotFound);
    };
    let mut pager = LogPager::new(query, published.map(Millis));
    while let Some(read) = pager.next_read() {
        let limit = read.limit as i64;
        let rows = match read.part {
            // In-app deliveries are the inbox rows themselves; no extra writes.
            Part::Inbox => Rows::Inbox(
                sqlx::query_as(
                    "SELECT i.uid, u.id FROM inbox i JOIN users u ON u.uid = i.uid
                     WHERE i.nid = $1 AND i.uid > $2 ORDER BY i.uid LIMIT $3",
                )
                .bind(nid)
                .bind(read.after)
                .bind(limit)
                .fetch_all(&mut *c)
                .await?,
            ),
            Part::Broadcasts => {
                Rows::Broadcasts(match seq {
                    Some(seq) => sqlx::query_as(
                        "SELECT b.gid, g.id FROM broadcasts b LEFT JOIN groups g ON g.gid = b.gid
                         WHERE b.seq = $1 AND b.gid > $2 ORDER BY b.gid LIMIT $3",
                    )
                    .bind(seq)
                    .bind(read.after)
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?,
                    None => Vec::new(),
                })
            }
            Part::Logged => {
                let rows: Vec<LoggedRow> = sqlx::query_as(
                        "SELECT id, recipient, channel, status, attempt, error, at, reason, held_until FROM deliveries
                     WHERE nid = $1 AND id > $2 ORDER BY id LIMIT $3",
                    )
                    .bind(nid)
                    .bind(read.after)
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?;
                Rows::Logged(
                    rows.into_iter()
                        .map(|(id, r, ch, st, a, e, at, re, u)| (id, (r, ch, st, a, e, at, re, u)))
                        .collect(),
                )
            }
        };
        pager.push(read, rows)?;
    }
    Ok(pager.finish())
}

/// A logged line with its id, as read.
type LoggedRow = (
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
);

/// Cancels what is still pending for a notification: its jobs are removed
/// and each pending delivery is logged as cancelled. A job a worker holds
/// right now is removed too; its outcome is still logged when it finishes.
pub(crate) async fn cancel_jobs(c: &mut PgConnection, nid: i64, now: Millis) -> Result<()> {
    let pending: Vec<String> = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM jobs WHERE nid = $1 RETURNING id, payload)
             SELECT payload FROM gone ORDER BY id",
    )
    .bind(nid)
    .fetch_all(&mut *c)
    .await?;
    let log = pending
        .iter()
        .map(|payload| {
            let payload: JobPayload = serde_json::from_str(payload).map_err(bad)?;
            Ok(cancelled_line(payload, now))
        })
        .collect::<Result<Vec<_>>>()?;
    log_many(c, nid, &log).await
}
