//! The job queue and the delivery log on SQLite.
//! Claims go through the single writer, so two workers never get the same job.

use super::Writer;
use crate::jobs::{
    DeliveryContext, DeliveryEvent, Job, JobOutcome, JobPayload, JobStats, Recipient,
};
use crate::plan::log::{DeliveryPage, DeliveryQuery, LogPager, Part, Rows};
use crate::plan::send::{expansion, next_page};
use crate::plan::stored::{
    EmailNotificationRow, EmailUserRow, Seen, StoredAudience, content_category,
    delivery_context as delivery_context_of,
};
use crate::plan::{StoredLine, cancelled_line};
use crate::{NotificationStatus, Result, StoreError};
use belfry_core::{Channel, Millis};
use rusqlite::{Connection, OptionalExtension, params};

/// Queues a job; workers are woken after the commit.
pub(crate) fn add_job(
    w: &mut Writer,
    payload: &JobPayload,
    nid: Option<i64>,
    run_at: Millis,
    now: Millis,
) -> Result<()> {
    let json = serde_json::to_string(payload).map_err(StoreError::backend)?;
    w.conn
        .prepare_cached(
            "INSERT INTO jobs (kind, payload, nid, run_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![payload.kind(), json, nid, run_at.0, now.0])?;
    w.jobs_added = true;
    Ok(())
}

/// Queues a user's digest job unless they have one (`jobs.dedup`); with
/// `reschedule`, moves a waiting one to `at`.
pub(crate) fn schedule_digest(
    w: &mut Writer,
    user: &belfry_core::UserId,
    at: Millis,
    reschedule: bool,
    now: Millis,
) -> Result<()> {
    let payload = JobPayload::Digest {
        user: user.clone(),
        since: None,
    };
    let json = serde_json::to_string(&payload).map_err(StoreError::backend)?;
    let n = w
        .conn
        .prepare_cached(
            "INSERT INTO jobs (kind, payload, nid, run_at, created_at, dedup)
             VALUES (?1, ?2, NULL, ?3, ?4, ?5)
             ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO UPDATE SET run_at = excluded.run_at
             WHERE ?6 AND (jobs.lease_until IS NULL OR jobs.lease_until <= ?4)",
        )?
        .execute(params![
            payload.kind(),
            json,
            at.0,
            now.0,
            payload.dedup(),
            reschedule
        ])?;
    if n > 0 {
        w.jobs_added = true;
    }
    Ok(())
}

/// Appends one line to the delivery log.
pub(crate) fn log(c: &Connection, nid: i64, e: &DeliveryEvent) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO deliveries (nid, recipient, channel, status, attempt, error, at, reason, held_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        nid,
        e.recipient,
        e.channel.as_str(),
        e.status.as_str(),
        e.attempt,
        e.error,
        e.at.0,
        e.reason.map(|r| r.as_str()),
        e.until.map(|u| u.0)
    ])?;
    Ok(())
}

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(e.to_string())
}

pub(crate) fn claim(
    w: &mut Writer,
    now: Millis,
    lease_ms: i64,
    limit: usize,
    owner: &str,
) -> Result<Vec<Job>> {
    let c = &w.conn;
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT id FROM jobs WHERE run_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)
             ORDER BY run_at, id LIMIT ?2",
        )?
        .query_map(params![now.0, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut jobs = Vec::with_capacity(ids.len());
    let mut take = c.prepare_cached(
        "UPDATE jobs SET lease_until = ?2, lease_owner = ?3, attempts = attempts + 1 WHERE id = ?1
         RETURNING nid, payload, attempts, run_at",
    )?;
    for id in ids {
        let (nid, payload, attempts, run_at): (Option<i64>, String, i64, i64) = take
            .query_row(params![id, now.0 + lease_ms, owner], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        jobs.push(Job {
            id,
            nid,
            payload: serde_json::from_str(&payload).map_err(bad)?,
            attempts,
            run_at: Millis(run_at),
        });
    }
    Ok(jobs)
}

pub(crate) fn finish(w: &mut Writer, job: i64, outcome: JobOutcome, now: Millis) -> Result<()> {
    let nid: Option<Option<i64>> = w
        .conn
        .prepare_cached("SELECT nid FROM jobs WHERE id = ?1")?
        .query_row([job], |r| r.get(0))
        .optional()?;
    let write_log = |c: &Connection, events: &[DeliveryEvent]| -> Result<()> {
        if let Some(Some(nid)) = nid {
            for e in events {
                log(c, nid, e)?;
            }
        }
        Ok(())
    };
    match outcome {
        JobOutcome::Done(events) => {
            // Logged even if the job was cancelled meanwhile: it did happen.
            write_log(&w.conn, &events)?;
            if let Some(Some(nid)) = nid {
                super::webhooks::delivery_events(w, nid, &events, now)?;
            }
            w.conn
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute([job])?;
        }
        JobOutcome::Retry {
            at,
            error,
            log,
            payload,
        } => {
            write_log(&w.conn, &log)?;
            let payload = payload
                .map(|p| serde_json::to_string(&p))
                .transpose()
                .map_err(bad)?;
            w.conn
                .prepare_cached(
                    "UPDATE jobs SET run_at = ?2, lease_until = NULL, lease_owner = NULL, last_error = ?3,
                            payload = COALESCE(?4, payload)
                     WHERE id = ?1",
                )?
                .execute(params![job, at.0, error, payload])?;
        }
        JobOutcome::Digest { at, payload, lines } => {
            log_by_id(&w.conn, &lines)?;
            delivery_events_by_id(w, &lines, now)?;
            let json = serde_json::to_string(&payload).map_err(bad)?;
            w.conn
                .prepare_cached(
                    "UPDATE jobs SET run_at = ?2, payload = ?3, lease_until = NULL, lease_owner = NULL,
                            attempts = 0, last_error = NULL WHERE id = ?1",
                )?
                .execute(params![job, at.0, json])?;
            w.jobs_added = true;
        }
        JobOutcome::DoneLines(lines) => {
            log_by_id(&w.conn, &lines)?;
            delivery_events_by_id(w, &lines, now)?;
            w.conn
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute([job])?;
        }
        JobOutcome::Summarise { summary, log } => {
            write_log(&w.conn, &log)?;
            if let Some(Some(nid)) = nid {
                summarise(w, summary, nid, now)?;
            }
            w.conn
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute([job])?;
        }
        JobOutcome::Release => {
            w.conn
                .prepare_cached(
                    "UPDATE jobs SET lease_until = NULL, lease_owner = NULL, attempts = MAX(attempts - 1, 0)
                     WHERE id = ?1",
                )?
                .execute([job])?;
            w.jobs_added = true;
        }
        JobOutcome::Later { at, payload, log } => {
            write_log(&w.conn, &log)?;
            let payload = payload
                .map(|p| serde_json::to_string(&p).map(|json| (p.kind(), json)))
                .transpose()
                .map_err(bad)?;
            w.conn
                .prepare_cached(
                    "UPDATE jobs SET run_at = ?2, lease_until = NULL, lease_owner = NULL,
                            attempts = MAX(attempts - 1, 0),
                            kind = COALESCE(?3, kind), payload = COALESCE(?4, payload)
                     WHERE id = ?1",
                )?
                .execute(params![
                    job,
                    at.0,
                    payload.as_ref().map(|p| p.0),
                    payload.as_ref().map(|p| p.1.as_str())
                ])?;
            w.jobs_added = true;
        }
        JobOutcome::Webhook(effect) => {
            super::webhooks::record(w, job, &effect)?;
        }
        JobOutcome::Continue(payload) => {
            let json = serde_json::to_string(&payload).map_err(bad)?;
            let n = w
                .conn
                .prepare_cached(
                    "UPDATE jobs SET kind = ?2, payload = ?3, run_at = ?4, lease_until = NULL,
                            lease_owner = NULL, attempts = 0 WHERE id = ?1",
                )?
                .execute(params![job, payload.kind(), json, now.0])?;
            if n > 0 {
                w.jobs_added = true;
            }
        }
    }
    Ok(())
}

/// The webhook events of lines logged by public id (a digest's, a
/// summary's): nothing to look up when no webhook wants them.
fn delivery_events_by_id(
    w: &mut Writer,
    lines: &[(String, DeliveryEvent)],
    now: Millis,
) -> Result<()> {
    if !super::webhooks::subscribed(w)?.any() {
        return Ok(());
    }
    for (id, e) in lines {
        let nid: Option<i64> = w
            .conn
            .prepare_cached("SELECT nid FROM notifications WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if let Some(nid) = nid {
            super::webhooks::delivery_events(w, nid, std::slice::from_ref(e), now)?;
        }
    }
    Ok(())
}

/// Logs each line on the notification with that public id (one that is
/// gone meanwhile is skipped).
fn log_by_id(c: &Connection, lines: &[(String, DeliveryEvent)]) -> Result<()> {
    for (id, e) in lines {
        let nid: Option<i64> = c
            .prepare_cached("SELECT nid FROM notifications WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if let Some(nid) = nid {
            log(c, nid, e)?;
        }
    }
    Ok(())
}

/// Adds notification `nid` to the summary job `summary` stands for: the
/// waiting one of its window, or a new one; when that one is running
/// already, the next window's (see [`crate::plan::summary`]).
fn summarise(w: &mut Writer, summary: JobPayload, nid: i64, now: Millis) -> Result<()> {
    let mut summary = summary;
    loop {
        let key = summary.dedup();
        let found: Option<(i64, String, Option<i64>)> = w
            .conn
            .prepare_cached("SELECT id, payload, lease_until FROM jobs WHERE dedup = ?1")?
            .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        match crate::plan::summary::join(
            summary,
            found.as_ref().map(|(_, p, l)| (p.as_str(), *l)),
            nid,
            now,
        )? {
            crate::plan::summary::Join::Insert(payload) => {
                let json = serde_json::to_string(&payload).map_err(bad)?;
                let at = crate::plan::summary::run_at(&payload);
                w.conn
                    .prepare_cached(
                        "INSERT INTO jobs (kind, payload, nid, run_at, created_at, dedup)
                         VALUES (?1, ?2, NULL, ?3, ?4, ?5)",
                    )?
                    .execute(params![payload.kind(), json, at.0, now.0, payload.dedup()])?;
                w.jobs_added = true;
                return Ok(());
            }
            crate::plan::summary::Join::Update(payload) => {
                let json = serde_json::to_string(&payload).map_err(bad)?;
                let id = found.map(|f| f.0);
                w.conn
                    .prepare_cached("UPDATE jobs SET payload = ?2 WHERE id = ?1")?
                    .execute(params![id, json])?;
                return Ok(());
            }
            crate::plan::summary::Join::Next(next) => summary = next,
        }
    }
}

pub(crate) fn next_job_at(c: &Connection) -> Result<Option<Millis>> {
    let at: Option<i64> = c
        .prepare_cached("SELECT MIN(MAX(run_at, COALESCE(lease_until, 0))) FROM jobs")?
        .query_row([], |r| r.get(0))?;
    Ok(at.map(Millis))
}

pub(crate) fn stats(c: &Connection, now: Millis) -> Result<JobStats> {
    let (queued, running, retrying): (Option<i64>, Option<i64>, Option<i64>) = c
        .prepare_cached(
            "SELECT SUM(run_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)),
                    SUM(lease_until > ?1),
                    SUM(attempts > 0 AND (lease_until IS NULL OR lease_until <= ?1))
             FROM jobs",
        )?
        .query_row([now.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(JobStats {
        queued: queued.unwrap_or(0),
        running: running.unwrap_or(0),
        retrying: retrying.unwrap_or(0),
    })
}

/// The condition an expansion on web push adds: the member has a push
/// subscription (so the pages hold only members who get a job).
const PUSHABLE: &str = " AND EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.uid = u.uid)";
/// The condition an expansion on mobile push adds: the member has a
/// mobile device.
const WITH_DEVICE: &str = " AND EXISTS (SELECT 1 FROM mobile_devices d WHERE d.uid = u.uid)";

/// Queues deliveries for the next page of a broadcast's audience: the
/// members it reached when published (everyone created before it, or the
/// members of its groups at that moment), never the actor.
pub(crate) fn expand(
    w: &mut Writer,
    nid: i64,
    channel: Channel,
    after_uid: i64,
    limit: usize,
    now: Millis,
) -> Result<Option<i64>> {
    let row: Option<(Option<i64>, String, String, Option<i64>)> = w
        .conn
        .query_row(
            "SELECT seq, status, audience, actor_uid FROM notifications WHERE nid = ?1",
            [nid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((Some(seq), status, audience, actor_uid)) = row else {
        return Ok(None);
    };
    if NotificationStatus::parse(&status)? != NotificationStatus::Published {
        return Ok(None);
    }
    let audience = StoredAudience::decode(&audience)?;
    // Web push reaches only members with a push subscription, mobile
    // push only members with a mobile device.
    let pushable = match channel {
        Channel::WebPush => PUSHABLE,
        Channel::MobilePush => WITH_DEVICE,
        _ => "",
    };
    let members: Vec<(i64, String)> = if audience.all {
        // On a push channel the subscriptions (devices) are read (in uid
        // order, by their index), not every user.
        let sql = match channel {
            Channel::WebPush => {
                "SELECT DISTINCT u.uid, u.id FROM push_subscriptions p JOIN users u ON u.uid = p.uid
                 WHERE p.uid > ?1 AND u.created_seq < ?2 ORDER BY p.uid LIMIT ?3"
            }
            Channel::MobilePush => {
                "SELECT DISTINCT u.uid, u.id FROM mobile_devices d JOIN users u ON u.uid = d.uid
                 WHERE d.uid > ?1 AND u.created_seq < ?2 ORDER BY d.uid LIMIT ?3"
            }
            _ => {
                "SELECT uid, id FROM users WHERE uid > ?1 AND created_seq < ?2 ORDER BY uid LIMIT ?3"
            }
        };
        w.conn
            .prepare_cached(sql)?
            .query_map(params![after_uid, seq, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?
    } else {
        let placeholders = vec!["?"; audience.groups.len().max(1)].join(",");
        let sql = format!(
            "SELECT DISTINCT u.uid, u.id FROM memberships m
             JOIN users u ON u.uid = m.uid
             JOIN groups g ON g.gid = m.gid
             WHERE g.id IN ({placeholders}) AND m.uid > ? AND m.joined_seq < ?
               AND (m.left_seq IS NULL OR ? <= m.left_seq){pushable}
             ORDER BY u.uid LIMIT ?"
        );
        let mut args: Vec<rusqlite::types::Value> = audience
            .groups
            .into_iter()
            .map(|g| g.into_string().into())
            .collect();
        if args.is_empty() {
            args.push(rusqlite::types::Value::Null);
        }
        args.extend([
            after_uid.into(),
            seq.into(),
            seq.into(),
            (limit as i64).into(),
        ]);
        w.conn
            .prepare_cached(&sql)?
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?
    };
    let next = next_page(&members, limit);
    let (jobs, lines) = expansion(members, actor_uid, channel, now)?;
    for e in &lines {
        log(&w.conn, nid, e)?;
    }
    for job in &jobs {
        add_job(w, job, Some(nid), now, now)?;
    }
    Ok(next)
}

pub(crate) fn delivery_context(
    c: &Connection,
    nid: i64,
    recipient: &Recipient,
    channel: Channel,
    now: Millis,
    fallback: bool,
) -> Result<Option<DeliveryContext>> {
    let Some(row): Option<EmailNotificationRow> = c
        .prepare_cached(
            "SELECT id, status, content, published_at, created_at FROM notifications WHERE nid = ?1",
        )?
        .query_row([nid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?
    else {
        return Ok(None);
    };
    // One indexed read of the user with their preferences (none for most
    // users) and the defaults, one of the category.
    let (user, category): (Option<EmailUserRow>, Option<String>) = match recipient {
        Recipient::User(user) => (
            c.prepare_cached(
                "SELECT u.email, u.name, u.locale, u.timezone, p.prefs,
                        (SELECT prefs FROM preference_defaults WHERE id = 1)
                 FROM users u LEFT JOIN user_preferences p ON p.uid = u.uid WHERE u.id = ?1",
            )?
            .query_row([user.as_str()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?,
            match content_category(&row.2) {
                Some(id) => c
                    .prepare_cached("SELECT def FROM categories WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?,
                None => None,
            },
        ),
        // A contact's name and language, when they gave them.
        Recipient::Contact(address) => (
            super::access::contact(c, address)?
                .map(|(name, locale)| (None, name, locale, None, None, None)),
            None,
        ),
        Recipient::Group(_) => (None, None),
    };
    // The fallback check: seen (the drawer was opened after it arrived),
    // read, or archived in the app.
    let seen = match (recipient, fallback) {
        (Recipient::User(user), true) => c
            .prepare_cached(
                "SELECT n.seq <= u.seen_wm OR i.read_at IS NOT NULL OR i.archived_at IS NOT NULL
                 FROM notifications n JOIN users u ON u.id = ?2
                 LEFT JOIN inbox i ON i.uid = u.uid AND i.nid = n.nid
                 WHERE n.nid = ?1",
            )?
            .query_row(params![nid, user.as_str()], |r| r.get::<_, Option<bool>>(0))
            .optional()?
            .flatten()
            .map_or(Some(Seen::No), |seen| {
                Some(if seen { Seen::Yes } else { Seen::No })
            }),
        _ => None,
    };
    delivery_context_of(row, recipient, channel, user, category, now, seen).map(Some)
}

/// The keyset reads of a delivery log page (`plan::log`): (key of the
/// notification, key after which to continue, how many rows), each a range
/// scan of an index in key order (see the test below).
const LOG_INBOX: &str = "SELECT i.uid, u.id FROM inbox i JOIN users u ON u.uid = i.uid
     WHERE i.nid = ?1 AND i.uid > ?2 ORDER BY i.uid LIMIT ?3";
const LOG_BROADCASTS: &str =
    "SELECT b.gid, g.id FROM broadcasts b LEFT JOIN groups g ON g.gid = b.gid
     WHERE b.seq = ?1 AND b.gid > ?2 ORDER BY b.gid LIMIT ?3";
const LOG_LINES: &str =
    "SELECT id, recipient, channel, status, attempt, error, at, reason, held_until FROM deliveries
     WHERE nid = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

/// One page of a notification's delivery log: the planner (`plan::log`)
/// asks for keyset range scans, each over an index in key order.
pub(crate) fn deliveries(
    c: &Connection,
    notification_id: &str,
    query: DeliveryQuery,
) -> Result<DeliveryPage> {
    let Some((nid, seq, published)): Option<(i64, Option<i64>, Option<i64>)> = c
        .prepare_cached("SELECT nid, seq, published_at FROM notifications WHERE id = ?1")?
        .query_row([notification_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
    else {
        return Err(StoreError::NotFound);
    };
    let mut pager = LogPager::new(query, published.map(Millis));
    while let Some(read) = pager.next_read() {
        let limit = read.limit as i64;
        let rows = match read.part {
            // In-app deliveries are the inbox rows themselves; no extra writes.
            Part::Inbox => Rows::Inbox(
                c.prepare_cached(LOG_INBOX)?
                    .query_map((nid, read.after, limit), |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?,
            ),
            Part::Broadcasts => Rows::Broadcasts(match seq {
                Some(seq) => c
                    .prepare_cached(LOG_BROADCASTS)?
                    .query_map((seq, read.after, limit), |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?,
                None => Vec::new(),
            }),
            Part::Logged => Rows::Logged(
                c.prepare_cached(LOG_LINES)?
                    .query_map((nid, read.after, limit), |r| {
                        let line: StoredLine = (
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        );
                        Ok((r.get(0)?, line))
                    })?
                    .collect::<rusqlite::Result<_>>()?,
            ),
        };
        pager.push(read, rows)?;
    }
    Ok(pager.finish())
}

/// Cancels what is still pending for a notification: its jobs are removed
/// and each pending delivery is logged as cancelled.
pub(crate) fn cancel_jobs(c: &Connection, nid: i64, now: Millis) -> Result<()> {
    let pending: Vec<String> = c
        .prepare_cached("SELECT payload FROM jobs WHERE nid = ?1")?
        .query_map([nid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for payload in pending {
        let payload: JobPayload = serde_json::from_str(&payload).map_err(bad)?;
        log(c, nid, &cancelled_line(payload, now))?;
    }
    c.prepare_cached("DELETE FROM jobs WHERE nid = ?1")?
        .execute([nid])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of a broadcast's log with 100k lines must not read them all:
    /// every read is a search of an index, in its order (no sort, no scan).
    #[test]
    fn delivery_log_pages_are_index_range_scans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.db");
        let store = crate::SqliteStore::open(crate::SqliteOptions::new(&path)).unwrap();
        let c = Connection::open(&path).unwrap();
        for sql in [LOG_INBOX, LOG_BROADCASTS, LOG_LINES] {
            let plan: Vec<String> = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map((1, 0, 10), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let text = plan.join(" | ");
            assert!(!text.contains("TEMP B-TREE"), "sorts: {sql}: {text}");
            assert!(
                plan.first().is_some_and(|p| p.starts_with("SEARCH")),
                "scans: {sql}: {text}"
            );
        }
        drop(store);
    }
}
