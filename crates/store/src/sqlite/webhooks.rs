//! Producer webhooks on SQLite (C7): the table of webhooks, their attempts
//! log, the writer's snapshot of who subscribes to what, and the events
//! queued as jobs in the writer's transaction of the change that causes
//! them (a delivery's outcome, a mark-read).

use super::Writer;
use crate::webhooks::{
    AttemptEffect, AttemptPage, AttemptStatus, NewWebhook, Subscribed, Webhook, WebhookAttempt,
    WebhookEvent, WebhookEventType, WebhookTarget, matches, new_event_id, parse_events,
};
use crate::{JobPayload, Result, StoreError, StoreEvent};
use belfry_core::Millis;
use rusqlite::{Connection, OptionalExtension as _, params};
use secrecy::{ExposeSecret as _, SecretString};

const COLUMNS: &str = "id, url, events, source, enabled, disabled_reason, disabled_at,
    failure_streak, failing_since, created_at, updated_at";

fn webhook(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Webhook, String)> {
    Ok((
        Webhook {
            id: r.get(0)?,
            url: r.get(1)?,
            events: Vec::new(),
            source: r.get(3)?,
            enabled: r.get(4)?,
            disabled_reason: r.get(5)?,
            disabled_at: r.get::<_, Option<i64>>(6)?.map(Millis),
            failure_streak: r.get(7)?,
            failing_since: r.get::<_, Option<i64>>(8)?.map(Millis),
            created_at: Millis(r.get(9)?),
            updated_at: Millis(r.get(10)?),
        },
        r.get(2)?,
    ))
}

fn parsed((mut hook, events): (Webhook, String)) -> Result<Webhook> {
    hook.events = parse_events(&events)?;
    Ok(hook)
}

fn events_json(events: &[WebhookEventType]) -> Result<String> {
    serde_json::to_string(events).map_err(StoreError::backend)
}

/// The webhooks changed in this transaction: the snapshot is read again
/// when next needed, and other readers of the events hear of it.
fn changed(w: &mut Writer) {
    w.webhooks = None;
    w.emit(StoreEvent::WebhooksChanged);
}

pub(crate) fn put(w: &mut Writer, hook: &NewWebhook, now: Millis) -> Result<(Webhook, bool)> {
    let existed = w
        .conn
        .prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1")?
        .exists([&hook.id])?;
    let row = w
        .conn
        .prepare_cached(&format!(
            "INSERT INTO webhooks (id, url, events, source, secret, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, events = excluded.events,
                 source = excluded.source, updated_at = excluded.updated_at, enabled = 1,
                 disabled_reason = NULL, disabled_at = NULL, failure_streak = 0,
                 failing_since = NULL
             RETURNING {COLUMNS}"
        ))?
        .query_row(
            params![
                hook.id,
                hook.url,
                events_json(&hook.events)?,
                hook.source,
                hook.secret.expose_secret(),
                now.0
            ],
            webhook,
        )?;
    changed(w);
    Ok((parsed(row)?, !existed))
}

pub(crate) fn rotate(
    c: &Connection,
    id: &str,
    secret: &SecretString,
    now: Millis,
) -> Result<Webhook> {
    let row = c
        .prepare_cached(&format!(
            "UPDATE webhooks SET secret = ?2, updated_at = ?3 WHERE id = ?1 RETURNING {COLUMNS}"
        ))?
        .query_row(params![id, secret.expose_secret(), now.0], webhook)
        .optional()?
        .ok_or(StoreError::NotFound)?;
    parsed(row)
}

pub(crate) fn get(c: &Connection, id: &str) -> Result<Option<Webhook>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"))?
        .query_row([id], webhook)
        .optional()?
        .map(parsed)
        .transpose()
}

pub(crate) fn list(c: &Connection) -> Result<Vec<Webhook>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks ORDER BY id"))?
        .query_map([], webhook)?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(parsed)
        .collect()
}

pub(crate) fn delete(w: &mut Writer, id: &str) -> Result<bool> {
    let n = w
        .conn
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
        .execute([id])?;
    if n == 0 {
        return Ok(false);
    }
    w.conn
        .prepare_cached("DELETE FROM webhook_attempts WHERE webhook_id = ?1")?
        .execute([id])?;
    // Its waiting events go with it (a running one finds it gone).
    w.conn
        .prepare_cached(
            "DELETE FROM jobs WHERE kind = 'webhook' AND json_extract(payload, '$.webhook') = ?1
               AND (lease_until IS NULL)",
        )?
        .execute([id])?;
    changed(w);
    Ok(true)
}

pub(crate) fn target(c: &Connection, id: &str) -> Result<Option<WebhookTarget>> {
    Ok(
        c.prepare_cached("SELECT url, secret, enabled FROM webhooks WHERE id = ?1")?
            .query_row([id], |r| {
                Ok(WebhookTarget {
                    url: r.get(0)?,
                    secret: SecretString::from(r.get::<_, String>(1)?),
                    enabled: r.get(2)?,
                })
            })
            .optional()?,
    )
}

pub(crate) fn attempts(
    c: &Connection,
    id: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<AttemptPage> {
    if get(c, id)?.is_none() {
        return Err(StoreError::NotFound);
    }
    let rows = c
        .prepare_cached(
            "SELECT aid, event_id, event_type, attempt, status, response_code, response,
                    duration_ms, at, next_retry_at
             FROM webhook_attempts WHERE webhook_id = ?1 AND aid < ?2
             ORDER BY aid DESC LIMIT ?3",
        )?
        .query_map(
            params![id, before.unwrap_or(i64::MAX), limit as i64 + 1],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut page = AttemptPage::default();
    let mut last = None;
    for (aid, event_id, kind, attempt, status, code, response, duration, at, next) in rows {
        if page.items.len() == limit {
            page.next_cursor = last;
            break;
        }
        page.items.push(WebhookAttempt {
            webhook: id.to_string(),
            event_id,
            event_type: WebhookEventType::parse(&kind)
                .ok_or_else(|| StoreError::backend(format!("unknown event type {kind}")))?,
            attempt,
            status: AttemptStatus::parse(&status)
                .ok_or_else(|| StoreError::backend(format!("unknown attempt status {status}")))?,
            response_code: code,
            response,
            duration_ms: duration,
            at: Millis(at),
            next_retry_at: next.map(Millis),
        });
        last = Some(aid);
    }
    Ok(page)
}

/// Which event types an enabled webhook subscribes to: the writer's
/// snapshot, read from the table when it was forgotten.
pub(crate) fn subscribed(w: &mut Writer) -> Result<Subscribed> {
    if let Some(s) = w.webhooks {
        return Ok(s);
    }
    let lists = w
        .conn
        .prepare_cached("SELECT events FROM webhooks WHERE enabled")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .iter()
        .map(|e| parse_events(e))
        .collect::<Result<Vec<_>>>()?;
    let s = Subscribed::of(lists.iter().map(Vec::as_slice));
    w.webhooks = Some(s);
    Ok(s)
}

/// Queues an event of `kind` about a notification from `source` for every
/// enabled webhook that takes it: one job each.
pub(crate) fn enqueue(
    w: &mut Writer,
    kind: WebhookEventType,
    source: Option<&str>,
    data: serde_json::Value,
    now: Millis,
) -> Result<()> {
    let hooks = w
        .conn
        .prepare_cached("SELECT id, events, source FROM webhooks WHERE enabled")?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut event = None;
    for (id, events, filter) in hooks {
        if !matches(&parse_events(&events)?, filter.as_deref(), kind, source) {
            continue;
        }
        let event = event
            .get_or_insert_with(|| WebhookEvent {
                id: new_event_id(),
                kind,
                at: now,
                data: data.clone(),
            })
            .clone();
        let payload = JobPayload::Webhook { webhook: id, event };
        super::jobs::add_job(w, &payload, None, now, now)?;
    }
    Ok(())
}

/// Records one attempt (and what it does to its webhook) and finishes its
/// job: retried at the attempt's `next_retry_at` while the webhook is
/// enabled, else removed.
pub(crate) fn record(w: &mut Writer, job: i64, effect: &AttemptEffect) -> Result<()> {
    let a = &effect.attempt;
    let now = a.at;
    let succeeded = a.status == AttemptStatus::Succeeded;
    // The webhook's failure run, and whether it ends it now.
    let state: Option<(bool, Option<i64>)> = w
        .conn
        .prepare_cached("SELECT enabled, failing_since FROM webhooks WHERE id = ?1")?
        .query_row([&a.webhook], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut status = a.status;
    let mut next = a.next_retry_at;
    if let Some((enabled, failing_since)) = state {
        if succeeded {
            w.conn
                .prepare_cached(
                    "UPDATE webhooks SET failure_streak = 0, failing_since = NULL WHERE id = ?1",
                )?
                .execute([&a.webhook])?;
        } else {
            let reason = crate::webhooks::disable_reason(effect, failing_since);
            w.conn
                .prepare_cached(
                    "UPDATE webhooks SET failure_streak = failure_streak + 1,
                         failing_since = COALESCE(failing_since, ?2) WHERE id = ?1",
                )?
                .execute(params![a.webhook, now.0])?;
            if enabled && let Some(reason) = reason {
                w.conn
                    .prepare_cached(
                        "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, disabled_at = ?3
                         WHERE id = ?1",
                    )?
                    .execute(params![a.webhook, reason, now.0])?;
                tracing::warn!(webhook = %a.webhook, %reason, "webhook disabled");
                metrics::counter!("belfry_webhooks_disabled_total").increment(1);
                changed(w);
                status = AttemptStatus::Failed;
                next = None;
            } else if !enabled {
                status = AttemptStatus::Failed;
                next = None;
            }
        }
        w.conn
            .prepare_cached(
                "INSERT INTO webhook_attempts (webhook_id, event_id, event_type, attempt, status,
                     response_code, response, duration_ms, at, next_retry_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                a.webhook,
                a.event_id,
                a.event_type.as_str(),
                a.attempt,
                status.as_str(),
                a.response_code,
                a.response,
                a.duration_ms,
                a.at.0,
                next.map(|n| n.0)
            ])?;
    }
    match next {
        Some(at) if status == AttemptStatus::Retrying => {
            w.conn
                .prepare_cached(
                    "UPDATE jobs SET run_at = ?2, lease_until = NULL, lease_owner = NULL,
                         last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![job, at.0, a.response])?;
        }
        _ => {
            w.conn
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute([job])?;
        }
    }
    Ok(())
}

/// Queues `delivery.sent` / `delivery.failed` for the final delivery-log
/// lines of notification `nid` a finished job writes (nothing, at no cost,
/// when no enabled webhook subscribes to either).
pub(crate) fn delivery_events(
    w: &mut Writer,
    nid: i64,
    lines: &[crate::DeliveryEvent],
    now: Millis,
) -> Result<()> {
    let wanted: Vec<(WebhookEventType, &crate::DeliveryEvent)> = lines
        .iter()
        .filter_map(|l| crate::webhooks::delivery_event_type(l).map(|k| (k, l)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let subs = subscribed(w)?;
    if !wanted.iter().any(|(k, _)| subs.wants(*k)) {
        return Ok(());
    }
    let found: Option<(String, String)> = w
        .conn
        .prepare_cached("SELECT id, content FROM notifications WHERE nid = ?1")?
        .query_row([nid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, content)) = found else {
        return Ok(());
    };
    let (source, _) = crate::webhooks::source_and_category(&content);
    for (kind, line) in wanted {
        if subs.wants(kind) {
            let data = crate::webhooks::delivery_data(&id, &content, line);
            enqueue(w, kind, source.as_deref(), data, now)?;
        }
    }
    Ok(())
}

/// Queues `notification.read` for each `(notification id, content or item
/// JSON)` a user read.
pub(crate) fn read_events(
    w: &mut Writer,
    user: &belfry_core::UserId,
    read: &[(String, String)],
    now: Millis,
) -> Result<()> {
    for (id, json) in read {
        let (source, _) = crate::webhooks::source_and_category(json);
        let data = crate::webhooks::read_data(id, json, user, now);
        enqueue(
            w,
            WebhookEventType::NotificationRead,
            source.as_deref(),
            data,
            now,
        )?;
    }
    Ok(())
}
