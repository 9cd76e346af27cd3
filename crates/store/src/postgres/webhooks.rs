//! Producer webhooks on PostgreSQL (C7): the table of webhooks, their
//! attempts log, and the events queued as jobs in the transaction of the
//! change that causes them. Which event types enabled webhooks subscribe
//! to is a snapshot in memory ([`Snapshot`]), forgotten when this node
//! changes the webhooks and when another node says it did
//! (`StoreEvent::WebhooksChanged` over the bus, see `Store::webhooks_changed`).

use super::jobs::add_job;
use crate::webhooks::{
    AttemptEffect, AttemptPage, AttemptStatus, NewWebhook, Snapshot, Subscribed, Webhook,
    WebhookAttempt, WebhookEvent, WebhookEventType, WebhookTarget, disable_reason, matches,
    new_event_id, parse_events,
};
use crate::{DeliveryEvent, JobPayload, Result, StoreError};
use belfry_core::{Millis, UserId};
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgConnection;

const COLUMNS: &str = "id, url, events, source, enabled, disabled_reason, disabled_at,
    failure_streak, failing_since, created_at, updated_at";

type Row = (
    String,
    String,
    String,
    Option<String>,
    bool,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
    i64,
);

fn webhook(r: Row) -> Result<Webhook> {
    Ok(Webhook {
        id: r.0,
        url: r.1,
        events: parse_events(&r.2)?,
        source: r.3,
        enabled: r.4,
        disabled_reason: r.5,
        disabled_at: r.6.map(Millis),
        failure_streak: r.7,
        failing_since: r.8.map(Millis),
        created_at: Millis(r.9),
        updated_at: Millis(r.10),
    })
}

fn events_json(events: &[WebhookEventType]) -> Result<String> {
    serde_json::to_string(events).map_err(StoreError::backend)
}

pub(crate) async fn put(
    c: &mut PgConnection,
    hook: &NewWebhook,
    now: Millis,
) -> Result<(Webhook, bool)> {
    let existed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1)")
        .bind(&hook.id)
        .fetch_one(&mut *c)
        .await?;
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhooks (id, url, events, source, secret, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, events = excluded.events,
             source = excluded.source, updated_at = excluded.updated_at, enabled = TRUE,
             disabled_reason = NULL, disabled_at = NULL, failure_streak = 0,
             failing_since = NULL
         RETURNING {COLUMNS}"
    )))
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(events_json(&hook.events)?)
    .bind(&hook.source)
    .bind(hook.secret.expose_secret())
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?;
    Ok((webhook(row)?, !existed))
}

pub(crate) async fn rotate(
    c: &mut PgConnection,
    id: &str,
    secret: &SecretString,
    now: Millis,
) -> Result<Webhook> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhooks SET secret = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(secret.expose_secret())
    .bind(now.0)
    .fetch_optional(&mut *c)
    .await?;
    webhook(row.ok_or(StoreError::NotFound)?)
}

pub(crate) async fn get(c: &mut PgConnection, id: &str) -> Result<Option<Webhook>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    row.map(webhook).transpose()
}

pub(crate) async fn list(c: &mut PgConnection) -> Result<Vec<Webhook>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks ORDER BY id"
    )))
    .fetch_all(&mut *c)
    .await?;
    rows.into_iter().map(webhook).collect()
}

pub(crate) async fn delete(c: &mut PgConnection, id: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM webhook_attempts WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    // Its waiting events go with it (a running one finds it gone).
    sqlx::query(
        "DELETE FROM jobs WHERE kind = 'webhook' AND (payload::jsonb ->> 'webhook') = $1
           AND lease_until IS NULL",
    )
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(true)
}

pub(crate) async fn target(c: &mut PgConnection, id: &str) -> Result<Option<WebhookTarget>> {
    let row: Option<(String, String, bool)> =
        sqlx::query_as("SELECT url, secret, enabled FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
    Ok(row.map(|(url, secret, enabled)| WebhookTarget {
        url,
        secret: SecretString::from(secret),
        enabled,
    }))
}

type AttemptRow = (
    i64,
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

pub(crate) async fn attempts(
    c: &mut PgConnection,
    id: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<AttemptPage> {
    if get(c, id).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT aid, event_id, event_type, attempt, status, response_code, response,
                duration_ms, at, next_retry_at
         FROM webhook_attempts WHERE webhook_id = $1 AND aid < $2
         ORDER BY aid DESC LIMIT $3",
    )
    .bind(id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit as i64 + 1)
    .fetch_all(&mut *c)
    .await?;
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

/// Which event types an enabled webhook subscribes to: the snapshot, read
/// from the table when it was forgotten.
pub(crate) async fn subscribed(snapshot: &Snapshot, c: &mut PgConnection) -> Result<Subscribed> {
    let generation = match snapshot.get() {
        Ok(s) => return Ok(s),
        Err(generation) => generation,
    };
    let lists: Vec<String> = sqlx::query_scalar("SELECT events FROM webhooks WHERE enabled")
        .fetch_all(&mut *c)
        .await?;
    let lists = lists
        .iter()
        .map(|e| parse_events(e))
        .collect::<Result<Vec<_>>>()?;
    let s = Subscribed::of(lists.iter().map(Vec::as_slice));
    snapshot.set(generation, s);
    Ok(s)
}

/// Queues an event of `kind` about a notification from `source` for every
/// enabled webhook that takes it: one job each. True when any was queued.
pub(crate) async fn enqueue(
    c: &mut PgConnection,
    kind: WebhookEventType,
    source: Option<&str>,
    data: serde_json::Value,
    now: Millis,
) -> Result<bool> {
    let hooks: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, events, source FROM webhooks WHERE enabled")
            .fetch_all(&mut *c)
            .await?;
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
        add_job(
            c,
            &JobPayload::Webhook { webhook: id, event },
            None,
            now,
            now,
        )
        .await?;
    }
    Ok(event.is_some())
}

/// Records one attempt (and what it does to its webhook) and finishes its
/// job. Returns (the job is retried, the webhook was disabled now).
pub(crate) async fn record(
    c: &mut PgConnection,
    job: i64,
    effect: &AttemptEffect,
) -> Result<(bool, bool)> {
    let a = &effect.attempt;
    let now = a.at;
    let state: Option<(bool, Option<i64>)> =
        sqlx::query_as("SELECT enabled, failing_since FROM webhooks WHERE id = $1 FOR UPDATE")
            .bind(&a.webhook)
            .fetch_optional(&mut *c)
            .await?;
    let mut status = a.status;
    let mut next = a.next_retry_at;
    let mut disabled = false;
    if let Some((enabled, failing_since)) = state {
        if status == AttemptStatus::Succeeded {
            sqlx::query(
                "UPDATE webhooks SET failure_streak = 0, failing_since = NULL WHERE id = $1",
            )
            .bind(&a.webhook)
            .execute(&mut *c)
            .await?;
        } else {
            let reason = disable_reason(effect, failing_since);
            sqlx::query(
                "UPDATE webhooks SET failure_streak = failure_streak + 1,
                     failing_since = COALESCE(failing_since, $2) WHERE id = $1",
            )
            .bind(&a.webhook)
            .bind(now.0)
            .execute(&mut *c)
            .await?;
            if enabled && let Some(reason) = reason {
                sqlx::query(
                    "UPDATE webhooks SET enabled = FALSE, disabled_reason = $2, disabled_at = $3
                     WHERE id = $1",
                )
                .bind(&a.webhook)
                .bind(&reason)
                .bind(now.0)
                .execute(&mut *c)
                .await?;
                tracing::warn!(webhook = %a.webhook, %reason, "webhook disabled");
                metrics::counter!("belfry_webhooks_disabled_total").increment(1);
                disabled = true;
            }
            if disabled || !enabled {
                status = AttemptStatus::Failed;
                next = None;
            }
        }
        sqlx::query(
            "INSERT INTO webhook_attempts (webhook_id, event_id, event_type, attempt, status,
                 response_code, response, duration_ms, at, next_retry_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.webhook)
        .bind(&a.event_id)
        .bind(a.event_type.as_str())
        .bind(a.attempt)
        .bind(status.as_str())
        .bind(a.response_code)
        .bind(&a.response)
        .bind(a.duration_ms)
        .bind(a.at.0)
        .bind(next.map(|n| n.0))
        .execute(&mut *c)
        .await?;
    }
    match next {
        Some(at) if status == AttemptStatus::Retrying => {
            sqlx::query(
                "UPDATE jobs SET run_at = $2, lease_until = NULL, lease_owner = NULL,
                     last_error = $3 WHERE id = $1",
            )
            .bind(job)
            .bind(at.0)
            .bind(&a.response)
            .execute(&mut *c)
            .await?;
            Ok((true, disabled))
        }
        _ => {
            sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(job)
                .execute(&mut *c)
                .await?;
            Ok((false, disabled))
        }
    }
}

/// Queues `delivery.sent` / `delivery.failed` for the final delivery-log
/// lines of notification `nid` a finished job writes (nothing, at no cost,
/// when no enabled webhook subscribes to either). True when any was queued.
pub(crate) async fn delivery_events(
    snapshot: &Snapshot,
    c: &mut PgConnection,
    nid: i64,
    lines: &[DeliveryEvent],
    now: Millis,
) -> Result<bool> {
    let wanted: Vec<(WebhookEventType, &DeliveryEvent)> = lines
        .iter()
        .filter_map(|l| crate::webhooks::delivery_event_type(l).map(|k| (k, l)))
        .collect();
    if wanted.is_empty() {
        return Ok(false);
    }
    let subs = subscribed(snapshot, c).await?;
    if !wanted.iter().any(|(k, _)| subs.wants(*k)) {
        return Ok(false);
    }
    let found: Option<(String, String)> =
        sqlx::query_as("SELECT id, content FROM notifications WHERE nid = $1")
            .bind(nid)
            .fetch_optional(&mut *c)
            .await?;
    let Some((id, content)) = found else {
        return Ok(false);
    };
    let (source, _) = crate::webhooks::source_and_category(&content);
    let mut queued = false;
    for (kind, line) in wanted {
        if subs.wants(kind) {
            let data = crate::webhooks::delivery_data(&id, &content, line);
            queued |= enqueue(c, kind, source.as_deref(), data, now).await?;
        }
    }
    Ok(queued)
}

/// The same for lines logged by public id (a digest's, a summary's).
pub(crate) async fn delivery_events_by_id(
    snapshot: &Snapshot,
    c: &mut PgConnection,
    lines: &[(String, DeliveryEvent)],
    now: Millis,
) -> Result<bool> {
    if !subscribed(snapshot, c).await?.any() {
        return Ok(false);
    }
    let mut queued = false;
    for (id, e) in lines {
        let nid: Option<i64> = sqlx::query_scalar("SELECT nid FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(nid) = nid {
            queued |= delivery_events(snapshot, c, nid, std::slice::from_ref(e), now).await?;
        }
    }
    Ok(queued)
}

/// Queues `notification.read` for each `(notification id, content or item
/// JSON)` a user read. True when any was queued.
pub(crate) async fn read_events(
    c: &mut PgConnection,
    user: &UserId,
    read: &[(String, String)],
    now: Millis,
) -> Result<bool> {
    let mut queued = false;
    for (id, json) in read {
        let (source, _) = crate::webhooks::source_and_category(json);
        let data = crate::webhooks::read_data(id, json, user, now);
        queued |= enqueue(
            c,
            WebhookEventType::NotificationRead,
            source.as_deref(),
            data,
            now,
        )
        .await?;
    }
    Ok(queued)
}
