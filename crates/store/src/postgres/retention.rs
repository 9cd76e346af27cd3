//! Retention on PostgreSQL: one bounded step per call, in one transaction
//! (see `crate::retention` for what each phase deletes). The same walk as
//! on SQLite; several nodes never run it at once because the retention job
//! is leased like any other.

use crate::retention::{RetentionCursor, RetentionDeleted, RetentionPolicy, RetentionStep};
use crate::{NotificationStatus, Result, plan::send::idempotency_since};
use belfry_core::Millis;
use sqlx::PgConnection;

pub(crate) async fn step(
    c: &mut PgConnection,
    cursor: RetentionCursor,
    policy: RetentionPolicy,
    now: Millis,
) -> Result<RetentionStep> {
    let batch = policy.batch.max(1);
    match &cursor {
        RetentionCursor::Inbox { from_nid } => match policy.items_before(now) {
            Some(before) => inbox(c, *from_nid, before, batch, now).await,
            None => Ok(RetentionStep::phase_done(&cursor, Default::default())),
        },
        RetentionCursor::Deliveries { after_id } => {
            deliveries(c, *after_id, policy.deliveries_before(now), batch).await
        }
        RetentionCursor::Idempotency { after } => idempotency(c, after.clone(), batch, now).await,
        RetentionCursor::WebhookAttempts { after_id } => match policy.deliveries_before(now) {
            Some(before) => webhook_attempts(c, *after_id, before, batch).await,
            None => Ok(RetentionStep::phase_done(&cursor, Default::default())),
        },
        RetentionCursor::Mailbox { after_id } => match policy.mailbox_before(now) {
            Some(before) => mailbox(c, *after_id, before, batch).await,
            None => Ok(RetentionStep::phase_done(&cursor, Default::default())),
        },
    }
}

type NotificationRow = (i64, i64, Option<i64>, String, Option<i64>);

async fn inbox(
    c: &mut PgConnection,
    from_nid: i64,
    before: i64,
    batch: usize,
    now: Millis,
) -> Result<RetentionStep> {
    let mut deleted = RetentionDeleted::default();
    let rows: Vec<NotificationRow> = sqlx::query_as(
        "SELECT nid, created_at, seq, status, expires_at FROM notifications
         WHERE nid >= $1 ORDER BY nid LIMIT $2",
    )
    .bind(from_nid)
    .bind(batch as i64)
    .fetch_all(&mut *c)
    .await?;
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
        // Entries dealt with go; a stacked one takes its members with it.
        let gone: Vec<(i64, Option<String>, i64)> = sqlx::query_as(
            "DELETE FROM inbox i USING (
                 SELECT uid, seq FROM inbox WHERE nid = $1
                   AND (read_at IS NOT NULL OR archived_at IS NOT NULL
                        OR (expires_at IS NOT NULL AND expires_at <= $2))
                 LIMIT $3) g
             WHERE i.uid = g.uid AND i.seq = g.seq
             RETURNING i.uid, i.stack_key, i.seq",
        )
        .bind(nid)
        .bind(now.0)
        .bind(budget as i64)
        .fetch_all(&mut *c)
        .await?;
        let mut candidates = vec![nid];
        for (uid, stack_key, entry_seq) in &gone {
            if let Some(key) = stack_key {
                let members: Vec<i64> = sqlx::query_scalar(
                    "DELETE FROM stack_members WHERE uid = $1 AND stack_key = $2 AND seq <= $3
                     RETURNING nid",
                )
                .bind(uid)
                .bind(key)
                .bind(entry_seq)
                .fetch_all(&mut *c)
                .await?;
                candidates.extend(members);
            }
        }
        deleted.inbox += gone.len() as u64;
        budget -= gone.len();
        if let Some(seq) = seq
            && expires_at.is_some_and(|at| at <= now.0)
        {
            let states = sqlx::query(
                "DELETE FROM broadcast_state s USING (
                     SELECT uid, seq FROM broadcast_state WHERE seq = $1 LIMIT $2) g
                 WHERE s.uid = g.uid AND s.seq = g.seq",
            )
            .bind(seq)
            .bind(budget as i64)
            .execute(&mut *c)
            .await?
            .rows_affected() as usize;
            budget -= states;
            if budget > 0 {
                sqlx::query("DELETE FROM broadcasts WHERE seq = $1")
                    .bind(seq)
                    .execute(&mut *c)
                    .await?;
            }
        }
        deleted.notifications += remove_unseen(c, &candidates, before).await?;
        if budget == 0 {
            return Ok(RetentionStep {
                deleted,
                next: Some(RetentionCursor::Inbox { from_nid: nid }),
            });
        }
    }
    Ok(RetentionStep {
        deleted,
        next: Some(RetentionCursor::Inbox { from_nid: last + 1 }),
    })
}

async fn remove_unseen(c: &mut PgConnection, nids: &[i64], before: i64) -> Result<u64> {
    let removed: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM notifications n WHERE n.nid = ANY($1) AND n.created_at <= $2 AND n.status <> $3
           AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.nid = n.nid)
           AND NOT EXISTS (SELECT 1 FROM stack_members m WHERE m.nid = n.nid)
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.nid = n.nid)
           AND (n.seq IS NULL OR NOT EXISTS (SELECT 1 FROM broadcasts b WHERE b.seq = n.seq))
         RETURNING n.nid",
    )
    .bind(nids)
    .bind(before)
    .bind(NotificationStatus::Scheduled.as_str())
    .fetch_all(&mut *c)
    .await?;
    if !removed.is_empty() {
        sqlx::query("DELETE FROM notification_contacts WHERE nid = ANY($1)")
            .bind(&removed)
            .execute(&mut *c)
            .await?;
    }
    Ok(removed.len() as u64)
}

async fn deliveries(
    c: &mut PgConnection,
    after_id: i64,
    before: Option<i64>,
    batch: usize,
) -> Result<RetentionStep> {
    let (seen, last, removed): (i64, Option<i64>, i64) = sqlx::query_as(
        "WITH page AS (
             SELECT d.id, d.at, EXISTS (SELECT 1 FROM notifications n WHERE n.nid = d.nid) AS live
             FROM deliveries d WHERE d.id > $1 ORDER BY d.id LIMIT $2),
         gone AS (
             DELETE FROM deliveries d USING page p
             WHERE d.id = p.id AND (NOT p.live OR ($3::BIGINT IS NOT NULL AND p.at < $3))
             RETURNING d.id)
         SELECT (SELECT COUNT(*) FROM page), (SELECT MAX(id) FROM page), (SELECT COUNT(*) FROM gone)",
    )
    .bind(after_id)
    .bind(batch as i64)
    .bind(before)
    .fetch_one(&mut *c)
    .await?;
    let deleted = RetentionDeleted {
        deliveries: removed as u64,
        ..Default::default()
    };
    Ok(match last {
        Some(last) if seen as usize == batch => RetentionStep {
            deleted,
            next: Some(RetentionCursor::Deliveries { after_id: last }),
        },
        _ => RetentionStep::phase_done(&RetentionCursor::Deliveries { after_id }, deleted),
    })
}

async fn idempotency(
    c: &mut PgConnection,
    after: Option<(String, String)>,
    batch: usize,
    now: Millis,
) -> Result<RetentionStep> {
    let (scope, key) = after.clone().unwrap_or_default();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT scope, key, created_at FROM idempotency
         WHERE NOT $1 OR (scope, key) > ($2, $3) ORDER BY scope, key LIMIT $4",
    )
    .bind(after.is_some())
    .bind(&scope)
    .bind(&key)
    .bind(batch as i64)
    .fetch_all(&mut *c)
    .await?;
    let since = idempotency_since(now);
    let (scopes, keys): (Vec<String>, Vec<String>) = rows
        .iter()
        .filter(|r| r.2 <= since)
        .map(|r| (r.0.clone(), r.1.clone()))
        .unzip();
    let removed = sqlx::query(
        "DELETE FROM idempotency i USING UNNEST($1::TEXT[], $2::TEXT[]) AS g(scope, key)
         WHERE i.scope = g.scope AND i.key = g.key AND i.created_at <= $3",
    )
    .bind(&scopes)
    .bind(&keys)
    .bind(since)
    .execute(&mut *c)
    .await?
    .rows_affected();
    let deleted = RetentionDeleted {
        idempotency: removed,
        ..Default::default()
    };
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

async fn mailbox(
    c: &mut PgConnection,
    after_id: i64,
    before: i64,
    batch: usize,
) -> Result<RetentionStep> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM mailbox m USING (
             SELECT id FROM mailbox WHERE id > $1 AND created_at < $2 ORDER BY id LIMIT $3) g
         WHERE m.id = g.id RETURNING m.id",
    )
    .bind(after_id)
    .bind(before)
    .bind(batch as i64)
    .fetch_all(&mut *c)
    .await?;
    let deleted = RetentionDeleted {
        mailbox: ids.len() as u64,
        ..Default::default()
    };
    Ok(match ids.iter().max() {
        Some(last) if ids.len() == batch => RetentionStep {
            deleted,
            next: Some(RetentionCursor::Mailbox { after_id: *last }),
        },
        _ => RetentionStep::phase_done(&RetentionCursor::Mailbox { after_id }, deleted),
    })
}

/// Adds the retention job unless there is one; two nodes starting at once
/// take turns on an advisory lock, so only one adds it.
pub(crate) async fn ensure_job(
    c: &mut PgConnection,
    first_run: Millis,
    now: Millis,
) -> Result<bool> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('belfry-retention:' || current_schema()))")
        .execute(&mut *c)
        .await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'retention' LIMIT 1")
            .fetch_optional(&mut *c)
            .await?;
    if exists.is_some() {
        return Ok(false);
    }
    let payload = crate::JobPayload::Retention { cursor: None };
    super::jobs::add_job(c, &payload, None, first_run, now).await?;
    Ok(true)
}

/// Webhook attempts after `after_id` logged before `before`.
async fn webhook_attempts(
    c: &mut PgConnection,
    after_id: i64,
    before: i64,
    batch: usize,
) -> Result<RetentionStep> {
    let (seen, last, last_at, removed): (i64, Option<i64>, Option<i64>, i64) = sqlx::query_as(
        "WITH page AS (
             SELECT aid, at FROM webhook_attempts WHERE aid > $1 ORDER BY aid LIMIT $2),
         gone AS (
             DELETE FROM webhook_attempts a USING page p
             WHERE a.aid = p.aid AND p.at < $3
             RETURNING a.aid)
         SELECT (SELECT COUNT(*) FROM page), (SELECT MAX(aid) FROM page),
                (SELECT at FROM page ORDER BY aid DESC LIMIT 1), (SELECT COUNT(*) FROM gone)",
    )
    .bind(after_id)
    .bind(batch as i64)
    .bind(before)
    .fetch_one(&mut *c)
    .await?;
    let deleted = RetentionDeleted {
        webhook_attempts: removed as u64,
        ..Default::default()
    };
    Ok(match (last, last_at) {
        // Attempts are logged in time order: once one is young enough,
        // the rest are too.
        (Some(last), Some(at)) if seen as usize == batch && at < before => RetentionStep {
            deleted,
            next: Some(RetentionCursor::WebhookAttempts { after_id: last }),
        },
        _ => RetentionStep::phase_done(&RetentionCursor::WebhookAttempts { after_id }, deleted),
    })
}
