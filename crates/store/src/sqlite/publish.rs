//! Sending on SQLite: accepting a notification (now, or scheduled for
//! later), resolving its audience into inbox rows, broadcast rows and
//! delivery jobs, and the helpers of the job queue and the delivery log.

use super::Writer;
use super::read;
use super::write::subscribe;
use crate::jobs::{DeliveryEvent, DeliveryStatus, JobPayload};
use crate::plan::{audience_json, channels_json, delivery_plan, event, target_labels};
use crate::{
    BroadcastTargets, Published, Result, SendContext, SendReceipt, StoreError, StoreEvent,
    Subscriber,
};
use belfry_core::{Channel, EmailAddress, Millis, NewNotification, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

/// How long an idempotency key is remembered.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Queues a job; workers are woken after the commit.
pub(crate) fn add_job(
    w: &mut Writer,
    payload: &JobPayload,
    nid: Option<i64>,
    run_at: Millis,
    now: Millis,
) -> Result<()> {
    let json = serde_json::to_string(payload).map_err(|e| StoreError::Backend(e.to_string()))?;
    w.conn
        .prepare_cached(
            "INSERT INTO jobs (kind, payload, nid, run_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![payload.kind(), json, nid, run_at.0, now.0])?;
    w.jobs_added = true;
    Ok(())
}

/// Appends one line to the delivery log.
pub(crate) fn log(c: &Connection, nid: i64, e: &DeliveryEvent) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO deliveries (nid, recipient, channel, status, attempt, error, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        nid,
        e.recipient,
        e.channel.as_str(),
        e.status.as_str(),
        e.attempt,
        e.error,
        e.at.0
    ])?;
    Ok(())
}

fn receipt_of(c: &Connection, nid: i64) -> Result<SendReceipt> {
    Ok(
        c.prepare_cached("SELECT id, seq, recipients FROM notifications WHERE nid = ?1")?
            .query_row([nid], |r| {
                Ok(SendReceipt {
                    id: r.get(0)?,
                    seq: r.get(1)?,
                    recipients: r.get(2)?,
                    replayed: true,
                })
            })?,
    )
}

/// Accepts one notification: publishes it now, or schedules it.
pub(crate) fn send_one(
    w: &mut Writer,
    ctx: &SendContext,
    n: &NewNotification,
) -> Result<SendReceipt> {
    if let Some(key) = &n.idempotency_key {
        let earlier: Option<i64> = w
            .conn
            .prepare_cached(
                "SELECT nid FROM idempotency WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
            )?
            .query_row(
                params![ctx.key_id, key, ctx.now.0 - IDEMPOTENCY_WINDOW_MS],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(nid) = earlier {
            return receipt_of(&w.conn, nid);
        }
    }
    let (receipt, nid) = match n.send_at {
        Some(at) if at > ctx.now => schedule(w, ctx, n, at)?,
        _ => publish(w, &ctx.key_id, ctx.now, n, None)?,
    };
    if let Some(key) = &n.idempotency_key {
        w.conn
            .prepare_cached(
                "INSERT INTO idempotency (scope, key, nid, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope, key) DO UPDATE SET nid = excluded.nid, created_at = excluded.created_at",
            )?
            .execute(params![ctx.key_id, key, nid, ctx.now.0])?;
    }
    Ok(receipt)
}

/// Stores a notification to be published at `at`; its recipients must exist
/// now (they are resolved again when it is published).
fn schedule(
    w: &mut Writer,
    ctx: &SendContext,
    n: &NewNotification,
    at: Millis,
) -> Result<(SendReceipt, i64)> {
    let c = &w.conn;
    let mut missing = Vec::new();
    for user in &n.audience.users {
        if read::uid(c, user)?.is_none() {
            missing.push(user.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(StoreError::UnknownUsers(missing));
    }
    for group in &n.audience.groups {
        if read::gid(c, group)?.is_none() {
            missing.push(group.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(StoreError::UnknownGroups(missing));
    }
    let id = ulid::Ulid::new().to_string();
    let request = serde_json::to_string(n).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO notifications (id, seq, status, sender, content, audience, channels, stack_key,
                                    created_at, send_at, expires_at, request)
         VALUES (?1, NULL, 'scheduled', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        ctx.key_id,
        n.content.to_json(),
        audience_json(n),
        channels_json(n),
        n.content.stack_key,
        ctx.now.0,
        at.0,
        n.content.expires_at.map(|m| m.0),
        request
    ])?;
    let nid = c.last_insert_rowid();
    for label in target_labels(n) {
        log(
            c,
            nid,
            &event(label, Channel::InApp, DeliveryStatus::Scheduled, None, at),
        )?;
    }
    add_job(w, &JobPayload::Publish, Some(nid), at, ctx.now)?;
    Ok((
        SendReceipt {
            id,
            seq: None,
            recipients: None,
            replayed: false,
        },
        nid,
    ))
}

/// Publishes a scheduled notification that is due.
pub(crate) fn publish_due(w: &mut Writer, nid: i64, now: Millis) -> Result<()> {
    let row: Option<(String, String, String, Option<String>)> = w
        .conn
        .query_row(
            "SELECT id, status, sender, request FROM notifications WHERE nid = ?1",
            [nid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((id, status, sender, Some(request))) = row else {
        return Ok(());
    };
    if status != "scheduled" {
        return Ok(());
    }
    let n: NewNotification = serde_json::from_str(&request)
        .map_err(|e| StoreError::Backend(format!("stored request of {id}: {e}")))?;
    publish(w, &sender, now, &n, Some((nid, id)))?;
    Ok(())
}

/// Resolves the audience and makes the notification visible: one
/// notification row (new, or the scheduled one), inbox rows for direct
/// recipients, one broadcast row per targeted group, delivery jobs for the
/// other channels. With `existing` (a scheduled send) recipients that no
/// longer exist are skipped and logged instead of refusing the send.
pub(crate) fn publish(
    w: &mut Writer,
    sender: &str,
    now: Millis,
    n: &NewNotification,
    existing: Option<(i64, String)>,
) -> Result<(SendReceipt, i64)> {
    let strict = existing.is_none();
    let mut skipped: Vec<DeliveryEvent> = Vec::new();
    let c = &w.conn;
    let a = &n.audience;
    let actor_uid = match n.actor_id() {
        Some(actor) => read::uid(c, actor)?,
        None => None,
    };
    if n.subscribe_actor
        && let (Some(actor), Some(entity)) = (n.actor_id(), &n.content.entity)
    {
        match actor_uid {
            Some(_) => {
                subscribe(c, entity, &Subscriber::User(actor.clone()), now)?;
            }
            None if strict => {
                return Err(StoreError::Invalid(format!(
                    "subscribe_actor: the actor {actor} is not a known user"
                )));
            }
            None => {}
        }
    }

    let mut direct: Vec<(i64, String)> = Vec::with_capacity(a.users.len() + a.emails.len());
    let mut missing = Vec::new();
    for user in &a.users {
        match read::uid(c, user)? {
            Some(uid) => direct.push((uid, user.to_string())),
            None => missing.push(user.to_string()),
        }
    }
    if strict && !missing.is_empty() {
        return Err(StoreError::UnknownUsers(missing));
    }
    for user in missing.drain(..) {
        skipped.push(event(
            format!("user:{user}"),
            Channel::InApp,
            DeliveryStatus::Skipped,
            Some("the user no longer exists".into()),
            now,
        ));
    }
    let mut gids = Vec::with_capacity(a.groups.len());
    for group in &a.groups {
        match read::gid(c, group)? {
            Some(gid) => gids.push(gid),
            None => missing.push(group.to_string()),
        }
    }
    if strict && !missing.is_empty() {
        return Err(StoreError::UnknownGroups(missing));
    }
    for group in missing.drain(..) {
        skipped.push(event(
            format!("group:{group}"),
            Channel::InApp,
            DeliveryStatus::Skipped,
            Some("the group no longer exists".into()),
            now,
        ));
    }
    let mut emails: Vec<String> = a.emails.iter().map(|e| e.to_string()).collect();
    if let Some(entity) = &a.entity {
        let mut subs = c.prepare_cached(
            "SELECT kind, subscriber, uid FROM subscriptions WHERE entity_type = ?1 AND entity_id = ?2",
        )?;
        let rows = subs.query_map([&entity.kind, &entity.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for row in rows {
            match row? {
                (kind, id, Some(uid)) if kind == "user" => direct.push((uid, id)),
                (_, email, _) => emails.push(email),
            }
        }
    }
    // (cid, address) of recipients without a user.
    let mut contacts: Vec<(i64, String)> = Vec::new();
    for email in &emails {
        let address = EmailAddress::parse(email).map_err(StoreError::Backend)?;
        match read::user_by_email(c, &address)? {
            Some(user) => direct.push(user),
            None => {
                c.prepare_cached(
                    "INSERT INTO contacts (email, created_at) VALUES (?1, ?2) ON CONFLICT (email) DO NOTHING",
                )?
                .execute(params![email, now.0])?;
                let cid: i64 = c
                    .prepare_cached("SELECT cid FROM contacts WHERE email = ?1")?
                    .query_row([email], |r| r.get(0))?;
                contacts.push((cid, address.to_string()));
            }
        }
    }

    // Each person once; never the actor; nobody the broadcast part reaches.
    let mut unique = HashSet::with_capacity(direct.len());
    direct.retain(|(uid, _)| unique.insert(*uid) && Some(*uid) != actor_uid);
    if a.all {
        direct.clear();
    } else if !gids.is_empty() {
        let mut member = c.prepare_cached(
            "SELECT 1 FROM memberships WHERE uid = ?1 AND gid = ?2 AND left_seq IS NULL",
        )?;
        let mut kept = Vec::with_capacity(direct.len());
        for (uid, id) in direct {
            let mut covered = false;
            for gid in &gids {
                if member.exists(params![uid, gid])? {
                    covered = true;
                    break;
                }
            }
            if !covered {
                kept.push((uid, id));
            }
        }
        direct = kept;
    }
    contacts.sort_unstable();
    contacts.dedup();

    let in_app = n.wants(Channel::InApp, false);
    let broadcast = a.is_broadcast();
    let recipients = (!a.is_broadcast()).then_some((direct.len() + contacts.len()) as i64);
    let content = &n.content;
    let category = content.category.as_ref().map(|c| c.as_str());
    let (etype, eid) = content
        .entity
        .as_ref()
        .map(|e| (e.kind.as_str(), e.id.as_str()))
        .unzip();
    let expires = content.expires_at.map(|m| m.0);
    let content_json = content.to_json();

    let seq = w.next_seq();
    let c = &w.conn;
    let (nid, id) = match existing {
        Some((nid, id)) => {
            c.prepare_cached(
                "UPDATE notifications SET seq = ?2, status = 'published', actor_uid = ?3,
                        recipients = ?4, published_at = ?5 WHERE nid = ?1",
            )?
            .execute(params![nid, seq, actor_uid, recipients, now.0])?;
            (nid, id)
        }
        None => {
            let id = ulid::Ulid::new().to_string();
            c.prepare_cached(
                "INSERT INTO notifications (id, seq, status, sender, content, audience, channels, actor_uid,
                                            stack_key, recipients, created_at, published_at, expires_at)
                 VALUES (?1, ?2, 'published', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
            )?
            .execute(params![
                id,
                seq,
                sender,
                content_json,
                audience_json(n),
                channels_json(n),
                actor_uid,
                content.stack_key,
                recipients,
                now.0,
                expires
            ])?;
            (c.last_insert_rowid(), id)
        }
    };

    if broadcast && in_app {
        let mut insert = c.prepare_cached(
            "INSERT INTO broadcasts (gid, seq, nid, actor_uid, expires_at, category, entity_type, entity_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let targets = if a.all { vec![0] } else { gids.clone() };
        for gid in targets {
            insert.execute(params![
                gid, seq, nid, actor_uid, expires, category, etype, eid
            ])?;
        }
    }

    let mut delivered = Vec::with_capacity(direct.len());
    if in_app {
        for (uid, user_id) in &direct {
            let mut stack_count: Option<i64> = None;
            if let Some(key) = &content.stack_key {
                stack_count = c
                    .prepare_cached(
                        "UPDATE inbox SET seq = ?3, nid = ?4,
                            stack_count = CASE WHEN read_at IS NULL AND archived_at IS NULL
                                               THEN stack_count + 1 ELSE 1 END,
                            read_at = NULL, archived_at = NULL, expires_at = ?5, category = ?6,
                            entity_type = ?7, entity_id = ?8
                         WHERE uid = ?1 AND stack_key = ?2
                         RETURNING stack_count",
                    )?
                    .query_row(
                        params![uid, key, seq, nid, expires, category, etype, eid],
                        |r| r.get(0),
                    )
                    .optional()?;
            }
            if stack_count.is_none() {
                c.prepare_cached(
                    "INSERT INTO inbox (uid, seq, nid, stack_key, expires_at, category, entity_type, entity_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![uid, seq, nid, content.stack_key, expires, category, etype, eid])?;
            }
            let user = UserId::parse(user_id).map_err(StoreError::Backend)?;
            delivered.push((user, stack_count.unwrap_or(1)));
        }
    }
    for (cid, _) in &contacts {
        c.prepare_cached(
            "INSERT INTO notification_contacts (nid, cid) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![nid, cid])?;
    }

    // Other channels: one job per person (a broadcast's audience is
    // expanded page by page by its own job, never in this transaction).
    for e in &skipped {
        log(c, nid, e)?;
    }
    let direct_ids: Vec<&str> = direct.iter().map(|(_, id)| id.as_str()).collect();
    let contact_addresses: Vec<&str> = contacts.iter().map(|(_, a)| a.as_str()).collect();
    let plan = delivery_plan(n, &direct_ids, &contact_addresses, now)?;
    for e in &plan.log {
        log(&w.conn, nid, e)?;
    }
    for job in &plan.jobs {
        add_job(w, job, Some(nid), now, now)?;
    }

    w.emit(StoreEvent::Published(std::sync::Arc::new(Published {
        seq,
        id: id.clone(),
        created_at: now,
        content_json,
        direct: delivered,
        broadcast: (broadcast && in_app).then(|| BroadcastTargets {
            all: a.all,
            groups: if a.all { Vec::new() } else { a.groups.clone() },
        }),
        actor: n.actor_id().cloned(),
    })));
    Ok((
        SendReceipt {
            id,
            seq: Some(seq),
            recipients,
            replayed: false,
        },
        nid,
    ))
}
