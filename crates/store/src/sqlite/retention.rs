//! Retention on SQLite: one bounded step per call, in the writer's
//! transaction (see `crate::retention` for what each phase deletes).

use super::Writer;
use crate::retention::{RetentionCursor, RetentionDeleted, RetentionPolicy, RetentionStep};
use crate::{NotificationStatus, Result, plan::send::idempotency_since};
use belfry_core::Millis;
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn step(
    w: &mut Writer,
    cursor: RetentionCursor,
    policy: RetentionPolicy,
    now: Millis,
) -> Result<RetentionStep> {
    let c = &w.conn;
    let batch = policy.batch.max(1);
    match &cursor {
        RetentionCursor::Inbox { from_nid } => match policy.items_before(now) {
            Some(before) => inbox(c, *from_nid, before, batch, now),
            None => Ok(RetentionStep::phase_done(&cursor, Default::default())),
        },
        RetentionCursor::Deliveries { after_id } => {
            deliveries(c, *after_id, policy.deliveries_before(now), batch)
        }
        RetentionCursor::Idempotency { after } => idempotency(c, after.clone(), batch, now),
        RetentionCursor::WebhookAttempts { after_id } => match policy.deliveries_before(now) {
            Some(before) => webhook_attempts(c, *after_id, before, batch),
            None => Ok(RetentionStep::phase_done(&cursor, Default::default())),
        },
        RetentionCursor::Mailbox { after_id } => match policy.mailbox_before(now) {
            Some(before) => mailbox(c, *after_id, before, batch),
            None => Ok(RetentionStep::phase_done(&cursor, Default::default())),
        },
    }
}

/// nid, created_at, seq, status, expires_at.
type NotificationRow = (i64, i64, Option<i64>, String, Option<i64>);

/// Notifications from `from_nid` on, created before `before`: their inbox
/// entries that are dealt with (read, archived, expired) and then the
/// notifications no one can see any longer.
fn inbox(
    c: &Connection,
    from_nid: i64,
    before: i64,
    batch: usize,
    now: Millis,
) -> Result<RetentionStep> {
    let mut deleted = RetentionDeleted::default();
    let rows: Vec<NotificationRow> = c
        .prepare_cached(
            "SELECT nid, created_at, seq, status, expires_at FROM notifications
             WHERE nid >= ?1 ORDER BY nid LIMIT ?2",
        )?
        .query_map(params![from_nid, batch as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let done = RetentionCursor::Inbox { from_nid };
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(RetentionStep::phase_done(&done, deleted));
    };
    let mut budget = batch;
    for (nid, created_at, seq, status, expires_at) in rows {
        if created_at > before {
            return Ok(RetentionStep::phase_done(&done, deleted));
        }
        if NotificationStatus::parse(&status)? == NotificationStatus::Scheduled {
            continue;
        }
        let gone: Vec<(i64, i64, Option<String>)> = c
            .prepare_cached(
                "SELECT uid, seq, stack_key FROM inbox WHERE nid = ?1
                   AND (read_at IS NOT NULL OR archived_at IS NOT NULL
                        OR (expires_at IS NOT NULL AND expires_at <= ?2))
                 LIMIT ?3",
            )?
            .query_map(params![nid, now.0, budget as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut candidates = vec![nid];
        for (uid, entry_seq, stack_key) in &gone {
            c.prepare_cached("DELETE FROM inbox WHERE uid = ?1 AND seq = ?2")?
                .execute(params![uid, entry_seq])?;
            // The entry stood for its stack's members up to it: they go too.
            if let Some(key) = stack_key {
                let members: Vec<i64> = c
                    .prepare_cached(
                        "DELETE FROM stack_members WHERE uid = ?1 AND stack_key = ?2 AND seq <= ?3
                         RETURNING nid",
                    )?
                    .query_map(params![uid, key, entry_seq], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                candidates.extend(members);
            }
        }
        deleted.inbox += gone.len() as u64;
        budget -= gone.len();
        // An expired broadcast: its per-user state first, then its rows.
        if let Some(seq) = seq
            && expires_at.is_some_and(|at| at <= now.0)
        {
            let states = c
                .prepare_cached(
                    "DELETE FROM broadcast_state WHERE (uid, seq) IN
                       (SELECT uid, seq FROM broadcast_state WHERE seq = ?1 LIMIT ?2)",
                )?
                .execute(params![seq, budget as i64])?;
            budget -= states;
            if budget > 0 {
                c.prepare_cached("DELETE FROM broadcasts WHERE seq = ?1")?
                    .execute([seq])?;
            }
        }
        if budget == 0 {
            // More of this notification next time.
            deleted.notifications += remove_unseen(c, &candidates, before)?;
            return Ok(RetentionStep {
                deleted,
                next: Some(RetentionCursor::Inbox { from_nid: nid }),
            });
        }
        deleted.notifications += remove_unseen(c, &candidates, before)?;
    }
    Ok(RetentionStep {
        deleted,
        next: Some(RetentionCursor::Inbox { from_nid: last + 1 }),
    })
}

/// Deletes those of `nids` that no one can see any longer: no inbox entry,
/// no stack member, no broadcast row, not scheduled, no job queued, created
/// before `before`. Their delivery-log lines go in the deliveries phase.
fn remove_unseen(c: &Connection, nids: &[i64], before: i64) -> Result<u64> {
    let mut n = 0;
    for nid in nids {
        let removed = c
            .prepare_cached(
                "DELETE FROM notifications WHERE nid = ?1 AND created_at <= ?2 AND status <> ?3
                   AND NOT EXISTS (SELECT 1 FROM inbox WHERE nid = ?1)
                   AND NOT EXISTS (SELECT 1 FROM stack_members WHERE nid = ?1)
                   AND NOT EXISTS (SELECT 1 FROM jobs WHERE nid = ?1)
                   AND (seq IS NULL OR NOT EXISTS (SELECT 1 FROM broadcasts b WHERE b.seq = notifications.seq))",
            )?
            .execute(params![
                nid,
                before,
                NotificationStatus::Scheduled.as_str()
            ])?;
        if removed > 0 {
            c.prepare_cached("DELETE FROM notification_contacts WHERE nid = ?1")?
                .execute([nid])?;
            c.prepare_cached("DELETE FROM action_responses WHERE nid = ?1")?
                .execute([nid])?;
            n += removed as u64;
        }
    }
    Ok(n)
}

/// Delivery-log lines after `after_id`: those older than `before` and
/// those of notifications that are gone.
fn deliveries(
    c: &Connection,
    after_id: i64,
    before: Option<i64>,
    batch: usize,
) -> Result<RetentionStep> {
    let rows: Vec<(i64, i64, bool)> = c
        .prepare_cached(
            "SELECT d.id, d.at, EXISTS (SELECT 1 FROM notifications n WHERE n.nid = d.nid)
             FROM deliveries d WHERE d.id > ?1 ORDER BY d.id LIMIT ?2",
        )?
        .query_map(params![after_id, batch as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut deleted = RetentionDeleted::default();
    for (id, at, exists) in &rows {
        if !exists || before.is_some_and(|b| *at < b) {
            c.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?
                .execute([id])?;
            deleted.deliveries += 1;
        }
    }
    Ok(match rows.last() {
        Some((last, ..)) if rows.len() == batch => RetentionStep {
            deleted,
            next: Some(RetentionCursor::Deliveries { after_id: *last }),
        },
        _ => RetentionStep::phase_done(&RetentionCursor::Deliveries { after_id }, deleted),
    })
}

/// Idempotency keys after `after` whose window has passed.
fn idempotency(
    c: &Connection,
    after: Option<(String, String)>,
    batch: usize,
    now: Millis,
) -> Result<RetentionStep> {
    let (scope, key) = after.clone().unwrap_or_default();
    let rows: Vec<(String, String, i64)> = c
        .prepare_cached(
            "SELECT scope, key, created_at FROM idempotency
             WHERE ?1 = 0 OR (scope, key) > (?2, ?3) ORDER BY scope, key LIMIT ?4",
        )?
        .query_map(
            params![after.is_some() as i64, scope, key, batch as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let since = idempotency_since(now);
    let mut deleted = RetentionDeleted::default();
    for (scope, key, created_at) in &rows {
        if *created_at <= since {
            c.prepare_cached("DELETE FROM idempotency WHERE scope = ?1 AND key = ?2")?
                .execute(params![scope, key])?;
            deleted.idempotency += 1;
        }
    }
    Ok(match rows.last() {
        Some((scope, key, _)) if rows.len() == batch => RetentionStep {
            deleted,
            next: Some(RetentionCursor::Idempotency {
                after: Some((scope.clone(), key.clone())),
            }),
        },
        _ => RetentionStep::phase_done(&RetentionCursor::Idempotency { after }, deleted),
    })
}

/// Development mailbox entries after `after_id` older than `before`
/// (entries are numbered in the order they arrived).
fn mailbox(c: &Connection, after_id: i64, before: i64, batch: usize) -> Result<RetentionStep> {
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT id FROM mailbox WHERE id > ?1 AND created_at < ?2 ORDER BY id LIMIT ?3",
        )?
        .query_map(params![after_id, before, batch as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in &ids {
        c.prepare_cached("DELETE FROM mailbox WHERE id = ?1")?
            .execute([id])?;
    }
    let deleted = RetentionDeleted {
        mailbox: ids.len() as u64,
        ..Default::default()
    };
    Ok(match ids.last() {
        Some(last) if ids.len() == batch => RetentionStep {
            deleted,
            next: Some(RetentionCursor::Mailbox { after_id: *last }),
        },
        _ => RetentionStep::phase_done(&RetentionCursor::Mailbox { after_id }, deleted),
    })
}

/// Adds the retention job unless there is one (a run in progress or the
/// next one); returns whether it was added.
pub(crate) fn ensure_job(w: &mut Writer, first_run: Millis, now: Millis) -> Result<bool> {
    let exists: Option<i64> = w
        .conn
        .query_row(
            "SELECT id FROM jobs WHERE kind = 'retention' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Ok(false);
    }
    let payload = crate::JobPayload::Retention { cursor: None };
    super::jobs::add_job(w, &payload, None, first_run, now)?;
    Ok(true)
}

/// Reads, on a read connection, the pages the next inbox step will change
/// (the notifications, their inbox entries, the id and seq index entries),
/// so that the writer finds them in the operating system's cache instead
/// of waiting for the disk while it holds the write lock: retention walks
/// old data, which is the coldest there is.
pub(crate) fn warm(
    c: &Connection,
    cursor: &RetentionCursor,
    policy: &RetentionPolicy,
    now: Millis,
) -> Result<()> {
    let (RetentionCursor::Inbox { from_nid }, Some(before)) = (cursor, policy.items_before(now))
    else {
        return Ok(());
    };
    let rows: Vec<(i64, i64, Option<i64>, String)> = c
        .prepare_cached(
            "SELECT nid, created_at, seq, id FROM notifications WHERE nid >= ?1 ORDER BY nid LIMIT ?2",
        )?
        .query_map(params![from_nid, policy.batch.max(1) as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (nid, created_at, seq, id) in rows {
        if created_at > before {
            break;
        }
        let _: i64 = c
            .prepare_cached(
                "SELECT COUNT(stack_key) + COUNT(entity_id) + COUNT(read_at) FROM inbox WHERE nid = ?1",
            )?
            .query_row([nid], |r| r.get(0))?;
        let _: Option<i64> = c
            .prepare_cached("SELECT nid FROM notifications WHERE id = ?1")?
            .query_row([&id], |r| r.get(0))
            .optional()?;
        if let Some(seq) = seq {
            let _: Option<i64> = c
                .prepare_cached("SELECT nid FROM notifications WHERE seq = ?1")?
                .query_row([seq], |r| r.get(0))
                .optional()?;
        }
    }
    Ok(())
}

/// Webhook attempts after `after_id` logged before `before`.
fn webhook_attempts(
    c: &Connection,
    after_id: i64,
    before: i64,
    batch: usize,
) -> Result<RetentionStep> {
    let rows: Vec<(i64, i64)> = c
        .prepare_cached(
            "SELECT aid, at FROM webhook_attempts WHERE aid > ?1 ORDER BY aid LIMIT ?2",
        )?
        .query_map(params![after_id, batch as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut deleted = RetentionDeleted::default();
    for (aid, at) in &rows {
        if *at < before {
            c.prepare_cached("DELETE FROM webhook_attempts WHERE aid = ?1")?
                .execute([aid])?;
            deleted.webhook_attempts += 1;
        }
    }
    let done = RetentionCursor::WebhookAttempts { after_id };
    Ok(match rows.last() {
        // Attempts are logged in time order: once one is young enough,
        // the rest are too.
        Some((last, at)) if rows.len() == batch && *at < before => RetentionStep {
            deleted,
            next: Some(RetentionCursor::WebhookAttempts { after_id: *last }),
        },
        _ => RetentionStep::phase_done(&done, deleted),
    })
}
