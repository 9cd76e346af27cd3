//! Sending on SQLite: the look-ups the planner (`crate::plan::send`) needs
//! and the writing of its plans, on the writer thread inside the batch
//! transaction (a batch of several in a savepoint, so that a refused item
//! undoes the ones before it; one alone needs none). SQLite runs in-process, so
//! a look-up per key costs no round trip; every statement is prepared once
//! and cached.

use super::Writer;
use super::jobs::{add_job, log};
use super::read;
use super::write::subscribe;
use crate::plan::send::{
    self, Facts, Publication, Resolved, Schedule, SubscriberFact, idempotency_since, in_item,
    replayed, scheduled_for,
};
use crate::plan::stack::grow_stack_count;
use crate::plan::stored::decode_request;
use crate::{NotificationStatus, Result, SendContext, SendReceipt, StoreError, Subscriber};
use belfry_core::{GroupId, Millis, NewNotification, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};

/// Sends a batch atomically: the first failing item fails the whole batch.
pub(crate) fn send_batch(
    w: &mut Writer,
    ctx: &SendContext,
    batch: &[NewNotification],
) -> Result<Vec<SendReceipt>> {
    batch
        .iter()
        .enumerate()
        .map(|(index, n)| send_one(w, ctx, n).map_err(|e| in_item(batch.len(), index, e)))
        .collect()
}

fn receipt_of(c: &Connection, nid: i64) -> Result<SendReceipt> {
    Ok(
        c.prepare_cached("SELECT id, seq, recipients FROM notifications WHERE nid = ?1")?
            .query_row([nid], |r| Ok(replayed(r.get(0)?, r.get(1)?, r.get(2)?)))?,
    )
}

/// Accepts one notification: publishes it now, or schedules it.
fn send_one(w: &mut Writer, ctx: &SendContext, n: &NewNotification) -> Result<SendReceipt> {
    let fingerprint = match &n.idempotency_key {
        Some(_) => Some(send::fingerprint(n)?),
        None => None,
    };
    if let (Some(key), Some(fp)) = (&n.idempotency_key, &fingerprint) {
        let earlier: Option<(i64, Option<Vec<u8>>)> = w
            .conn
            .prepare_cached(
                "SELECT nid, fingerprint FROM idempotency WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
            )?
            .query_row(params![ctx.key_id, key, idempotency_since(ctx.now)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((nid, stored)) = earlier {
            send::repeated_key(key, stored.as_deref(), fp)?;
            return receipt_of(&w.conn, nid);
        }
    }
    let (receipt, nid) = match scheduled_for(n, ctx.now) {
        Some(at) => schedule(w, ctx, n, at)?,
        None => publish(w, &ctx.key_id, ctx.now, n, None)?,
    };
    if let (Some(key), Some(fp)) = (&n.idempotency_key, &fingerprint) {
        w.conn
            .prepare_cached(
                "INSERT INTO idempotency (scope, key, nid, created_at, fingerprint) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (scope, key) DO UPDATE SET nid = excluded.nid,
                     created_at = excluded.created_at, fingerprint = excluded.fingerprint",
            )?
            .execute(params![ctx.key_id, key, nid, ctx.now.0, fp])?;
    }
    Ok(receipt)
}

fn uids(c: &Connection, users: &[UserId]) -> Result<Vec<Option<i64>>> {
    users.iter().map(|u| read::uid(c, u)).collect()
}

fn gids(c: &Connection, groups: &[GroupId]) -> Result<Vec<Option<i64>>> {
    groups.iter().map(|g| read::gid(c, g)).collect()
}

/// Looks up the facts of `n`'s audience and resolves it.
fn resolve(
    c: &Connection,
    n: &NewNotification,
    strict: bool,
    now: Millis,
    defaults: &mut Option<belfry_core::preferences::Overrides>,
) -> Result<Resolved> {
    let a = &n.audience;
    let mut facts = Facts {
        actor_uid: match n.actor_id() {
            Some(actor) => read::uid(c, actor)?,
            None => None,
        },
        users: uids(c, &a.users)?,
        groups: gids(c, &a.groups)?,
        subscribers: Vec::new(),
    };
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
            let (kind, subscriber, uid) = row?;
            facts
                .subscribers
                .push(SubscriberFact::from_row(&kind, &subscriber, uid)?);
        }
    }
    let owners = send::addresses(n, &facts.subscribers)
        .map(|address| {
            read::user_by_email(c, address)?
                .map(|(uid, id)| Ok((uid, UserId::parse(&id).map_err(StoreError::backend)?)))
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut r = send::resolve(n, facts, owners, strict, now)?;
    if r.needs_coverage() {
        let mut member = c.prepare_cached(
            "SELECT 1 FROM memberships WHERE uid = ?1 AND gid = ?2 AND left_seq IS NULL",
        )?;
        let mut covered = HashSet::new();
        for uid in r.direct_uids() {
            for gid in &r.gids {
                if member.exists(params![uid, gid])? {
                    covered.insert(uid);
                    break;
                }
            }
        }
        r.exclude_covered(&covered);
    }
    let channels = r.opt_in_channels(n);
    if !channels.is_empty() {
        if defaults.is_none() {
            *defaults = Some(super::prefs::preference_defaults(c)?);
        }
        let defaults = defaults.as_ref().expect("read just now");
        let mut own = c.prepare_cached("SELECT prefs FROM user_preferences WHERE uid = ?1")?;
        let uids: Vec<i64> = r.direct_uids().collect();
        for uid in uids {
            let json: Option<String> = own.query_row([uid], |row| row.get(0)).optional()?;
            r.add_opt_ins(n, &channels, defaults, uid, json.as_deref());
        }
    }
    // Where nobody has a push subscription (web push unused), one probe
    // per send; else one per direct recipient.
    if r.needs_push_lookup(n) {
        r.push_anyone = c
            .prepare_cached("SELECT 1 FROM push_subscriptions LIMIT 1")?
            .exists([])?;
        if r.push_anyone {
            let mut subscribed =
                c.prepare_cached("SELECT 1 FROM push_subscriptions WHERE uid = ?1 LIMIT 1")?;
            let mut pushable = HashSet::new();
            for uid in r.direct_uids() {
                if subscribed.exists([uid])? {
                    pushable.insert(uid);
                }
            }
            r.pushable = pushable;
        }
    }
    // Mobile push (C6), the same way: one probe per send where nobody has
    // a device, else one index probe per direct recipient.
    if r.needs_mobile_lookup(n) {
        r.mobile_anyone = c
            .prepare_cached("SELECT 1 FROM mobile_devices LIMIT 1")?
            .exists([])?;
        if r.mobile_anyone {
            let mut mobile = HashSet::new();
            for uid in r.direct_uids() {
                if super::mobile::has_device(c, uid)? {
                    mobile.insert(uid);
                }
            }
            r.mobile = mobile;
        }
    }
    if r.needs_chat_lookup(n) {
        let mut chattable = HashSet::new();
        for uid in r.direct_uids() {
            if super::chat::user_has_target(c, uid)? {
                chattable.insert(uid);
            }
        }
        r.chattable = chattable;
        if n.wants(belfry_core::Channel::Chat, false) {
            let mut groups = Vec::new();
            for gid in &r.gids {
                if let Some(id) = super::chat::group_with_target(c, *gid)? {
                    groups.push(GroupId::parse(&id).map_err(StoreError::backend)?);
                }
            }
            r.chat_groups = groups;
        }
    }
    Ok(r)
}

/// Stores a notification to be published at `at`.
fn schedule(
    w: &mut Writer,
    ctx: &SendContext,
    n: &NewNotification,
    at: Millis,
) -> Result<(SendReceipt, i64)> {
    let c = &w.conn;
    let a = &n.audience;
    let plan = Schedule::new(
        n,
        &uids(c, &a.users)?,
        &gids(c, &a.groups)?,
        &ctx.key_id,
        ctx.now,
        at,
    )?;
    c.prepare_cached(
        "INSERT INTO notifications (id, seq, status, sender, content, audience, channels, stack_key,
                                    created_at, send_at, expires_at, request)
         VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        plan.id,
        NotificationStatus::Scheduled.as_str(),
        plan.sender,
        plan.content_json,
        plan.audience_json,
        plan.channels_json,
        plan.columns.stack_key,
        plan.now.0,
        plan.at.0,
        plan.columns.expires_at,
        plan.request_json
    ])?;
    let nid = c.last_insert_rowid();
    for e in &plan.log {
        log(c, nid, e)?;
    }
    add_job(w, &plan.job, Some(nid), plan.at, plan.now)?;
    Ok((plan.receipt(), nid))
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
    if NotificationStatus::parse(&status)? != NotificationStatus::Scheduled {
        return Ok(());
    }
    let n = decode_request(&id, &request)?;
    publish(w, &sender, now, &n, Some((nid, id)))?;
    Ok(())
}

/// Resolves the audience and makes the notification visible (a new one, or
/// the scheduled `existing` one).
fn publish(
    w: &mut Writer,
    sender: &str,
    now: Millis,
    n: &NewNotification,
    existing: Option<(i64, String)>,
) -> Result<(SendReceipt, i64)> {
    let resolved = resolve(
        &w.conn,
        n,
        existing.is_none(),
        now,
        &mut w.preference_defaults,
    )?;
    let seq = w.next_seq();
    let (existing_nid, existing_id) = existing.unzip();
    let plan = Publication::new(n, resolved, seq, existing_id, sender, now);
    let (nid, stacked) = apply(w, &plan, existing_nid)?;
    let (event, receipt) = plan.finish(&stacked);
    w.emit(event);
    Ok((receipt, nid))
}

/// Writes a publication: the notification row, broadcast rows, inbox
/// entries (growing stacks), contacts, log lines and jobs. Returns the
/// notification's nid and the counts of the stacks that grew.
fn apply(
    w: &mut Writer,
    p: &Publication<'_>,
    existing: Option<i64>,
) -> Result<(i64, HashMap<i64, i64>)> {
    let c = &w.conn;
    if let Some((actor, entity)) = p.subscribe_actor {
        subscribe(c, entity, &Subscriber::User(actor.clone()), p.now)?;
    }
    let cols = &p.columns;
    let nid = match existing {
        Some(nid) => {
            c.prepare_cached(
                "UPDATE notifications SET seq = ?2, status = ?3, actor_uid = ?4,
                        recipients = ?5, published_at = ?6 WHERE nid = ?1",
            )?
            .execute(params![
                nid,
                p.seq,
                NotificationStatus::Published.as_str(),
                p.actor_uid,
                p.recipients,
                p.now.0
            ])?;
            nid
        }
        None => {
            c.prepare_cached(
                "INSERT INTO notifications (id, seq, status, sender, content, audience, channels, actor_uid,
                                            stack_key, recipients, created_at, published_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
            )?
            .execute(params![
                p.id,
                p.seq,
                NotificationStatus::Published.as_str(),
                p.sender,
                p.content_json,
                p.audience_json(),
                p.channels_json(),
                p.actor_uid,
                cols.stack_key,
                p.recipients,
                p.now.0,
                cols.expires_at
            ])?;
            c.last_insert_rowid()
        }
    };

    if !p.broadcast_gids.is_empty() {
        let mut insert = c.prepare_cached(
            "INSERT INTO broadcasts (gid, seq, nid, actor_uid, expires_at, category, entity_type, entity_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for gid in &p.broadcast_gids {
            insert.execute(params![
                gid,
                p.seq,
                nid,
                p.actor_uid,
                cols.expires_at,
                cols.category,
                cols.entity_type,
                cols.entity_id
            ])?;
        }
    }

    let mut stacked = HashMap::new();
    for uid in p.inbox_uids() {
        let mut grown: Option<i64> = None;
        if let Some(key) = cols.stack_key {
            grown = c
                .prepare_cached(concat!(
                    "UPDATE inbox SET seq = ?3, nid = ?4, stack_count = ",
                    grow_stack_count!(),
                    ", read_at = NULL, archived_at = NULL, expires_at = ?5, category = ?6,
                       entity_type = ?7, entity_id = ?8
                     WHERE uid = ?1 AND stack_key = ?2
                     RETURNING stack_count"
                ))?
                .query_row(
                    params![
                        uid,
                        key,
                        p.seq,
                        nid,
                        cols.expires_at,
                        cols.category,
                        cols.entity_type,
                        cols.entity_id
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            c.prepare_cached(
                "INSERT INTO stack_members (uid, stack_key, seq, nid) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![uid, key, p.seq, nid])?;
        }
        match grown {
            Some(count) => {
                stacked.insert(uid, count);
            }
            None => {
                c.prepare_cached(
                    "INSERT INTO inbox (uid, seq, nid, stack_key, expires_at, category, entity_type, entity_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    uid,
                    p.seq,
                    nid,
                    cols.stack_key,
                    cols.expires_at,
                    cols.category,
                    cols.entity_type,
                    cols.entity_id
                ])?;
            }
        }
    }
    for address in &p.contacts {
        c.prepare_cached(
            "INSERT INTO contacts (email, created_at) VALUES (?1, ?2) ON CONFLICT (email) DO NOTHING",
        )?
        .execute(params![address.as_str(), p.now.0])?;
        c.prepare_cached(
            "INSERT INTO notification_contacts (nid, cid)
             SELECT ?1, cid FROM contacts WHERE email = ?2 ON CONFLICT DO NOTHING",
        )?
        .execute(params![nid, address.as_str()])?;
    }
    for e in &p.log {
        log(c, nid, e)?;
    }
    for job in &p.jobs {
        add_job(w, job, Some(nid), p.now, p.now)?;
    }
    Ok((nid, stacked))
}
