//! Publishing on PostgreSQL: the writer task that assigns seqs.
//!
//! A send is handled in two phases:
//!
//! 1. **Resolve**, in the caller's task on a pooled connection (many run at
//!    once; no transaction, no lock): idempotency look-ups, users, groups,
//!    subscribers, addresses. Requests that fail validation are answered
//!    here; repeated idempotency keys get their first receipt.
//! 2. **Apply**, by the writer task, which takes every resolved send waiting
//!    (up to `MAX_BATCH`) into one transaction: lock the `seq_counter` row,
//!    write each send inside its own savepoint, numbering the published ones
//!    from the counter in memory; store the new counter value and commit. A
//!    send that fails is rolled back to its savepoint and gives its seqs back.
//!
//! The counter's row lock is held from step 2's first statement to the
//! commit. Every transaction that assigns seqs, on any node, takes it, so
//! they commit one after the other: when seq N becomes visible, every seq
//! below N is visible already. Idempotency keys are re-checked under the
//! lock, so two nodes racing on one key agree (the second answers the
//! first's receipt).

use super::Shared;
use super::jobs::{add_job, add_jobs, log_many};
use super::read;
use super::write;
use crate::jobs::{DeliveryEvent, DeliveryStatus, JobPayload};
use crate::plan::{audience_json, channels_json, delivery_plan, event, target_labels};
use crate::{
    BroadcastTargets, Published, Result, SendContext, SendReceipt, StoreError, StoreEvent,
    Subscriber,
};
use belfry_core::{Channel, EmailAddress, Millis, NewNotification, UserId};
use sqlx::{Connection as _, PgConnection};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// How long an idempotency key is remembered.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// How many requests the writer commits together at most.
const MAX_BATCH: usize = 256;

/// A request for the writer.
pub(crate) enum WriteOp {
    Send {
        ctx: SendContext,
        batch: Vec<NewNotification>,
        reply: oneshot::Sender<Result<Vec<SendReceipt>>>,
    },
    PublishDue {
        nid: i64,
        now: Millis,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// The state of the open batch transaction.
pub(crate) struct TxState {
    /// The highest seq handed out (committed, or in this transaction).
    last_seq: i64,
    /// Events of this transaction, published after it commits.
    events: Vec<StoreEvent>,
    /// Jobs were queued: wake the workers after the commit.
    jobs_added: bool,
}

impl TxState {
    fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }
}

/// The audience of one notification, resolved (phase 1, reads only).
pub(crate) struct Resolved {
    actor_uid: Option<i64>,
    /// Subscribe the actor to the entity when publishing.
    subscribe_actor: bool,
    /// Users who get an inbox row: (uid, id).
    direct: Vec<(i64, String)>,
    gids: Vec<i64>,
    /// Addresses that belong to no user (external contacts).
    contact_emails: Vec<String>,
    /// Targets that no longer exist (scheduled sends only).
    skipped: Vec<DeliveryEvent>,
}

/// One item of a send, after phase 1.
pub(crate) enum Item {
    /// A repeated idempotency key: the first receipt.
    Replayed(SendReceipt),
    Publish(Resolved),
    Schedule(Millis),
}

/// A resolved request that still has to be written (phase 2).
pub(crate) enum Pending {
    Send {
        ctx: SendContext,
        batch: Vec<NewNotification>,
        items: Vec<Item>,
        reply: oneshot::Sender<Result<Vec<SendReceipt>>>,
    },
    PublishDue {
        nid: i64,
        id: String,
        sender: String,
        now: Millis,
        n: Box<NewNotification>,
        resolved: Resolved,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A written request, answered once the transaction committed (or not).
enum Written {
    Send(
        oneshot::Sender<Result<Vec<SendReceipt>>>,
        Result<Vec<SendReceipt>>,
    ),
    PublishDue(oneshot::Sender<Result<()>>, Result<()>),
}

impl Written {
    fn finish(self, commit: &std::result::Result<(), StoreError>) {
        fn pick<T>(own: Result<T>, commit: &std::result::Result<(), StoreError>) -> Result<T> {
            match (own, commit) {
                (Ok(v), Ok(())) => Ok(v),
                // Its own error is more telling than the batch's.
                (Err(own), _) => Err(own),
                (Ok(_), Err(e)) => Err(e.clone()),
            }
        }
        match self {
            Written::Send(reply, r) => {
                let _ = reply.send(pick(r, commit));
            }
            Written::PublishDue(reply, r) => {
                let _ = reply.send(pick(r, commit));
            }
        }
    }
}

fn fail_pending(p: Pending, e: StoreError) {
    match p {
        Pending::Send { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Pending::PublishDue { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}

/// The writer: runs until the store (the channel's sender) is gone.
pub(crate) async fn writer_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Pending>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    // The writer keeps its connection (it does not queue for the pool
    // behind the requests it serves); a new one after a failure.
    let mut conn = None;
    while let Some(op) = rx.recv().await {
        ops.push(op);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        run_batch(&shared, &mut conn, std::mem::take(&mut ops)).await;
    }
}

async fn run_batch(
    shared: &Shared,
    held: &mut Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    pending: Vec<Pending>,
) {
    let mut conn = match held.take() {
        Some(c) => c,
        None => match shared.pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                let e = StoreError::from(e);
                for p in pending {
                    fail_pending(p, e.clone());
                }
                return;
            }
        },
    };
    let mut written = Vec::with_capacity(pending.len());
    let mut state = None;
    let outcome = apply_all(&mut conn, pending, &mut written, &mut state).await;
    match (&outcome, state) {
        (Ok(()), Some(st)) => {
            shared.committed(st.last_seq);
            if st.jobs_added {
                shared.jobs_wakeup.notify_one();
            }
            shared.emit(st.events);
            *held = Some(conn);
        }
        (Err(e), _) => {
            tracing::error!(error = %e, "the PostgreSQL writer's transaction failed");
            // Whatever state the connection is in, it does not go back to the pool.
            conn.close_on_drop();
        }
        _ => {}
    }
    for w in written {
        w.finish(&outcome);
    }
}

/// Writes every pending request in one transaction; `written` collects the
/// answers, `state` what to publish after the commit.
async fn apply_all(
    conn: &mut PgConnection,
    pending: Vec<Pending>,
    written: &mut Vec<Written>,
    state: &mut Option<TxState>,
) -> std::result::Result<(), StoreError> {
    let mut queue = pending.into_iter();
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let e = StoreError::from(e);
            for p in queue {
                fail_pending(p, e.clone());
            }
            return Err(e);
        }
    };
    // As late as possible: everything before this ran without the lock.
    let base: i64 = match sqlx::query_scalar("SELECT value FROM seq_counter FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let e = StoreError::from(e);
            for p in queue {
                fail_pending(p, e.clone());
            }
            return Err(e);
        }
    };
    let mut st = TxState {
        last_seq: base,
        events: Vec::new(),
        jobs_added: false,
    };
    let mut savepoint = false;
    for p in queue.by_ref() {
        // Releasing the previous savepoint and opening the next costs one round trip.
        let sql = if savepoint {
            "RELEASE SAVEPOINT op; SAVEPOINT op"
        } else {
            "SAVEPOINT op"
        };
        if let Err(e) = sqlx::raw_sql(sql).execute(&mut *tx).await {
            let e = StoreError::from(e);
            fail_pending(p, e.clone());
            for p in queue {
                fail_pending(p, e.clone());
            }
            return Err(e);
        }
        savepoint = true;
        let (seq_before, events_before, jobs_before) =
            (st.last_seq, st.events.len(), st.jobs_added);
        let w = apply_one(&mut tx, &mut st, p).await;
        let failed = match &w {
            Written::Send(_, r) => r.is_err(),
            Written::PublishDue(_, r) => r.is_err(),
        };
        written.push(w);
        if failed {
            st.last_seq = seq_before;
            st.events.truncate(events_before);
            st.jobs_added = jobs_before;
            if let Err(e) = sqlx::raw_sql("ROLLBACK TO SAVEPOINT op")
                .execute(&mut *tx)
                .await
            {
                let e = StoreError::from(e);
                for p in queue {
                    fail_pending(p, e.clone());
                }
                return Err(e);
            }
        }
    }
    if st.last_seq != base {
        sqlx::query("UPDATE seq_counter SET value = $1")
            .bind(st.last_seq)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    *state = Some(st);
    Ok(())
}

/// Phase 1 of one request (outside of any transaction: an SQL error here
/// concerns this request only): None when it was answered already.
pub(crate) async fn prepare(c: &mut PgConnection, op: WriteOp) -> Option<Pending> {
    match op {
        WriteOp::Send { ctx, batch, reply } => {
            let single = batch.len() == 1;
            let mut items = Vec::with_capacity(batch.len());
            for (index, n) in batch.iter().enumerate() {
                match prepare_item(c, &ctx, n).await {
                    Ok(item) => items.push(item),
                    Err(error) => {
                        let _ = reply.send(Err(if single {
                            error
                        } else {
                            StoreError::InItem {
                                index,
                                error: Box::new(error),
                            }
                        }));
                        return None;
                    }
                }
            }
            if items.iter().all(|i| matches!(i, Item::Replayed(_))) {
                let receipts = items
                    .into_iter()
                    .filter_map(|i| match i {
                        Item::Replayed(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                let _ = reply.send(Ok(receipts));
                return None;
            }
            Some(Pending::Send {
                ctx,
                batch,
                items,
                reply,
            })
        }
        WriteOp::PublishDue { nid, now, reply } => match prepare_due(c, nid, now).await {
            Ok(Some((id, sender, n, resolved))) => Some(Pending::PublishDue {
                nid,
                id,
                sender,
                now,
                n: Box::new(n),
                resolved,
                reply,
            }),
            Ok(None) => {
                let _ = reply.send(Ok(()));
                None
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        },
    }
}

async fn prepare_item(
    c: &mut PgConnection,
    ctx: &SendContext,
    n: &NewNotification,
) -> Result<Item> {
    if let Some(key) = &n.idempotency_key
        && let Some(receipt) = idempotent_receipt(c, ctx, key).await?
    {
        return Ok(Item::Replayed(receipt));
    }
    match n.send_at {
        Some(at) if at > ctx.now => {
            check_schedule(c, n).await?;
            Ok(Item::Schedule(at))
        }
        _ => Ok(Item::Publish(resolve(c, n, true, ctx.now).await?)),
    }
}

/// The receipt of an earlier send with this key (within 24 hours).
async fn idempotent_receipt(
    c: &mut PgConnection,
    ctx: &SendContext,
    key: &str,
) -> Result<Option<SendReceipt>> {
    let earlier: Option<i64> = sqlx::query_scalar(
        "SELECT nid FROM idempotency WHERE scope = $1 AND key = $2 AND created_at > $3",
    )
    .bind(&ctx.key_id)
    .bind(key)
    .bind(ctx.now.0 - IDEMPOTENCY_WINDOW_MS)
    .fetch_optional(&mut *c)
    .await?;
    match earlier {
        Some(nid) => receipt_of(c, nid).await.map(Some),
        None => Ok(None),
    }
}

async fn receipt_of(c: &mut PgConnection, nid: i64) -> Result<SendReceipt> {
    let (id, seq, recipients): (String, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT id, seq, recipients FROM notifications WHERE nid = $1")
            .bind(nid)
            .fetch_one(&mut *c)
            .await?;
    Ok(SendReceipt {
        id,
        seq,
        recipients,
        replayed: true,
    })
}

/// A scheduled send's recipients must exist now (they are resolved again
/// when it is published).
async fn check_schedule(c: &mut PgConnection, n: &NewNotification) -> Result<()> {
    let users = uids(c, n.audience.users.iter().map(|u| u.as_str())).await?;
    let missing: Vec<String> = n
        .audience
        .users
        .iter()
        .filter(|u| !users.contains_key(u.as_str()))
        .map(|u| u.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::UnknownUsers(missing));
    }
    let groups = gids(c, n.audience.groups.iter().map(|g| g.as_str())).await?;
    let missing: Vec<String> = n
        .audience
        .groups
        .iter()
        .filter(|g| !groups.contains_key(g.as_str()))
        .map(|g| g.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::UnknownGroups(missing));
    }
    Ok(())
}

async fn uids<'a>(
    c: &mut PgConnection,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>> {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, uid FROM users WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *c)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn gids<'a>(
    c: &mut PgConnection,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>> {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, gid FROM groups WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *c)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Phase 1 of publishing a due scheduled notification: None when there is
/// nothing to do (cancelled, or published already).
async fn prepare_due(
    c: &mut PgConnection,
    nid: i64,
    now: Millis,
) -> Result<Option<(String, String, NewNotification, Resolved)>> {
    let row: Option<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, sender, request FROM notifications WHERE nid = $1")
            .bind(nid)
            .fetch_optional(&mut *c)
            .await?;
    let Some((id, status, sender, Some(request))) = row else {
        return Ok(None);
    };
    if status != "scheduled" {
        return Ok(None);
    }
    let n: NewNotification = serde_json::from_str(&request)
        .map_err(|e| StoreError::Backend(format!("stored request of {id}: {e}")))?;
    let resolved = resolve(c, &n, false, now).await?;
    Ok(Some((id, sender, n, resolved)))
}

/// Resolves the audience: who gets an inbox row, which groups a broadcast
/// row, which addresses are external contacts. `strict` (a send now)
/// refuses unknown users and groups; otherwise (a scheduled send being
/// published) they are skipped and logged.
async fn resolve(
    c: &mut PgConnection,
    n: &NewNotification,
    strict: bool,
    now: Millis,
) -> Result<Resolved> {
    let mut skipped = Vec::new();
    let a = &n.audience;
    let actor_uid = match n.actor_id() {
        Some(actor) => read::uid(c, actor).await?,
        None => None,
    };
    let mut subscribe_actor = false;
    if n.subscribe_actor
        && let (Some(actor), Some(_)) = (n.actor_id(), &n.content.entity)
    {
        match actor_uid {
            Some(_) => subscribe_actor = true,
            None if strict => {
                return Err(StoreError::Invalid(format!(
                    "subscribe_actor: the actor {actor} is not a known user"
                )));
            }
            None => {}
        }
    }

    let mut direct: Vec<(i64, String)> = Vec::with_capacity(a.users.len() + a.emails.len());
    let found = uids(c, a.users.iter().map(|u| u.as_str())).await?;
    let mut missing = Vec::new();
    for user in &a.users {
        match found.get(user.as_str()) {
            Some(uid) => direct.push((*uid, user.to_string())),
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
    let found = gids(c, a.groups.iter().map(|g| g.as_str())).await?;
    let mut group_ids = Vec::with_capacity(a.groups.len());
    for group in &a.groups {
        match found.get(group.as_str()) {
            Some(gid) => group_ids.push(*gid),
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
        let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT kind, subscriber, uid FROM subscriptions WHERE entity_type = $1 AND entity_id = $2",
        )
        .bind(&entity.kind)
        .bind(&entity.id)
        .fetch_all(&mut *c)
        .await?;
        for row in rows {
            match row {
                (kind, id, Some(uid)) if kind == "user" => direct.push((uid, id)),
                (_, email, _) => emails.push(email),
            }
        }
    }
    let mut contact_emails = Vec::new();
    if !emails.is_empty() {
        let owners: HashMap<String, (i64, String)> = sqlx::query_as::<_, (String, i64, String)>(
            "SELECT email, uid, id FROM users WHERE email = ANY($1)",
        )
        .bind(&emails)
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .map(|(email, uid, id)| (email, (uid, id)))
        .collect();
        for email in emails {
            // Stored addresses were validated; check again rather than trust.
            EmailAddress::parse(&email).map_err(StoreError::Backend)?;
            match owners.get(&email) {
                Some(user) => direct.push(user.clone()),
                None => contact_emails.push(email),
            }
        }
    }

    // Each person once; never the actor; nobody the broadcast part reaches.
    let mut unique = HashSet::with_capacity(direct.len());
    direct.retain(|(uid, _)| unique.insert(*uid) && Some(*uid) != actor_uid);
    if a.all {
        direct.clear();
    } else if !group_ids.is_empty() && !direct.is_empty() {
        let uids: Vec<i64> = direct.iter().map(|d| d.0).collect();
        let covered: HashSet<i64> = sqlx::query_scalar::<_, i64>(
            "SELECT DISTINCT uid FROM memberships
             WHERE uid = ANY($1) AND gid = ANY($2) AND left_seq IS NULL",
        )
        .bind(&uids)
        .bind(&group_ids)
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .collect();
        direct.retain(|(uid, _)| !covered.contains(uid));
    }
    Ok(Resolved {
        actor_uid,
        subscribe_actor,
        direct,
        gids: group_ids,
        contact_emails,
        skipped,
    })
}

/// Phase 2 of one request, inside the transaction (and its savepoint).
async fn apply_one(c: &mut PgConnection, st: &mut TxState, p: Pending) -> Written {
    match p {
        Pending::Send {
            ctx,
            batch,
            items,
            reply,
        } => {
            let single = batch.len() == 1;
            let mut receipts = Vec::with_capacity(items.len());
            for (index, (n, item)) in batch.iter().zip(items).enumerate() {
                match apply_item(c, st, &ctx, n, item).await {
                    Ok(r) => receipts.push(r),
                    Err(error) => {
                        let error = if single {
                            error
                        } else {
                            StoreError::InItem {
                                index,
                                error: Box::new(error),
                            }
                        };
                        return Written::Send(reply, Err(error));
                    }
                }
            }
            Written::Send(reply, Ok(receipts))
        }
        Pending::PublishDue {
            nid,
            id,
            sender,
            now,
            n,
            resolved,
            reply,
        } => {
            let r = async {
                // Cancelled (or published by another node) since phase 1?
                let status: Option<String> = sqlx::query_scalar(
                    "SELECT status FROM notifications WHERE nid = $1 FOR UPDATE",
                )
                .bind(nid)
                .fetch_optional(&mut *c)
                .await?;
                if status.as_deref() == Some("scheduled") {
                    publish(c, st, &sender, now, &n, resolved, Some((nid, id))).await?;
                }
                Ok(())
            }
            .await;
            Written::PublishDue(reply, r)
        }
    }
}

async fn apply_item(
    c: &mut PgConnection,
    st: &mut TxState,
    ctx: &SendContext,
    n: &NewNotification,
    item: Item,
) -> Result<SendReceipt> {
    if let Item::Replayed(receipt) = item {
        return Ok(receipt);
    }
    if let Some(key) = &n.idempotency_key
        && let Some(receipt) = idempotent_receipt(c, ctx, key).await?
    {
        // Another request with this key (on this node or another) committed
        // after phase 1 looked.
        return Ok(receipt);
    }
    let (receipt, nid) = match item {
        Item::Schedule(at) => schedule(c, st, ctx, n, at).await?,
        Item::Publish(resolved) => publish(c, st, &ctx.key_id, ctx.now, n, resolved, None).await?,
        Item::Replayed(_) => unreachable!("handled above"),
    };
    if let Some(key) = &n.idempotency_key {
        // Under the counter lock nobody else can hold a fresh row for this
        // key; an expired one is taken over.
        let stored: Option<i64> = sqlx::query_scalar(
            "INSERT INTO idempotency (scope, key, nid, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, key) DO UPDATE SET nid = excluded.nid, created_at = excluded.created_at
             WHERE idempotency.created_at <= $5
             RETURNING nid",
        )
        .bind(&ctx.key_id)
        .bind(key)
        .bind(nid)
        .bind(ctx.now.0)
        .bind(ctx.now.0 - IDEMPOTENCY_WINDOW_MS)
        .fetch_optional(&mut *c)
        .await?;
        if stored.is_none() {
            return Err(StoreError::Conflict(format!(
                "the idempotency key '{key}' is being used by another request"
            )));
        }
    }
    Ok(receipt)
}

/// Stores a notification to be published at `at`.
async fn schedule(
    c: &mut PgConnection,
    st: &mut TxState,
    ctx: &SendContext,
    n: &NewNotification,
    at: Millis,
) -> Result<(SendReceipt, i64)> {
    let id = ulid::Ulid::new().to_string();
    let request = serde_json::to_string(n).map_err(|e| StoreError::Backend(e.to_string()))?;
    let nid: i64 = sqlx::query_scalar(
        "INSERT INTO notifications (id, seq, status, sender, content, audience, channels, stack_key,
                                    created_at, send_at, expires_at, request)
         VALUES ($1, NULL, 'scheduled', $2, $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING nid",
    )
    .bind(&id)
    .bind(&ctx.key_id)
    .bind(n.content.to_json())
    .bind(audience_json(n))
    .bind(channels_json(n))
    .bind(&n.content.stack_key)
    .bind(ctx.now.0)
    .bind(at.0)
    .bind(n.content.expires_at.map(|m| m.0))
    .bind(request)
    .fetch_one(&mut *c)
    .await?;
    let log: Vec<DeliveryEvent> = target_labels(n)
        .into_iter()
        .map(|label| event(label, Channel::InApp, DeliveryStatus::Scheduled, None, at))
        .collect();
    log_many(c, nid, &log).await?;
    add_job(c, &JobPayload::Publish, Some(nid), at, ctx.now).await?;
    st.jobs_added = true;
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

/// Makes the notification visible: one notification row (new, or the
/// scheduled one), inbox rows for direct recipients, one broadcast row per
/// targeted group, delivery jobs for the other channels.
async fn publish(
    c: &mut PgConnection,
    st: &mut TxState,
    sender: &str,
    now: Millis,
    n: &NewNotification,
    r: Resolved,
    existing: Option<(i64, String)>,
) -> Result<(SendReceipt, i64)> {
    let a = &n.audience;
    if r.subscribe_actor
        && let (Some(actor), Some(entity)) = (n.actor_id(), &n.content.entity)
    {
        write::subscribe(c, entity, &Subscriber::User(actor.clone()), now).await?;
    }
    // (cid, address) of recipients without a user.
    let mut contacts: Vec<(i64, String)> = Vec::new();
    if !r.contact_emails.is_empty() {
        sqlx::query(
            "INSERT INTO contacts (email, created_at) SELECT e, $2 FROM UNNEST($1::text[]) e
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(&r.contact_emails)
        .bind(now.0)
        .execute(&mut *c)
        .await?;
        contacts = sqlx::query_as("SELECT cid, email FROM contacts WHERE email = ANY($1)")
            .bind(&r.contact_emails)
            .fetch_all(&mut *c)
            .await?;
        contacts.sort_unstable();
        contacts.dedup();
    }
    let direct = r.direct;

    let in_app = n.wants(Channel::InApp, false);
    let broadcast = a.is_broadcast();
    let recipients = (!broadcast).then_some((direct.len() + contacts.len()) as i64);
    let content = &n.content;
    let category = content.category.as_ref().map(|c| c.as_str());
    let (etype, eid) = content
        .entity
        .as_ref()
        .map(|e| (e.kind.as_str(), e.id.as_str()))
        .unzip();
    let expires = content.expires_at.map(|m| m.0);
    let content_json = content.to_json();

    let seq = st.next_seq();
    // Without a stack key, the inbox rows are plain inserts: they go with
    // the notification row in one statement (one round trip).
    let inserted_with_rows = existing.is_none() && content.stack_key.is_none();
    let (nid, id) = match existing {
        Some((nid, id)) => {
            sqlx::query(
                "UPDATE notifications SET seq = $2, status = 'published', actor_uid = $3,
                        recipients = $4, published_at = $5 WHERE nid = $1",
            )
            .bind(nid)
            .bind(seq)
            .bind(r.actor_uid)
            .bind(recipients)
            .bind(now.0)
            .execute(&mut *c)
            .await?;
            (nid, id)
        }
        None => {
            let id = ulid::Ulid::new().to_string();
            let inbox_uids: Vec<i64> = if inserted_with_rows && in_app {
                direct.iter().map(|d| d.0).collect()
            } else {
                Vec::new()
            };
            let nid: i64 = sqlx::query_scalar(
                "WITH n AS (
                    INSERT INTO notifications (id, seq, status, sender, content, audience, channels,
                                               actor_uid, stack_key, recipients, created_at, published_at,
                                               expires_at)
                    VALUES ($1, $2, 'published', $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
                    RETURNING nid),
                 i AS (
                    INSERT INTO inbox (uid, seq, nid, expires_at, category, entity_type, entity_id)
                    SELECT u, $2, n.nid, $11, $13, $14, $15 FROM n, UNNEST($12::bigint[]) u)
                 SELECT nid FROM n",
            )
            .bind(&id)
            .bind(seq)
            .bind(sender)
            .bind(&content_json)
            .bind(audience_json(n))
            .bind(channels_json(n))
            .bind(r.actor_uid)
            .bind(&content.stack_key)
            .bind(recipients)
            .bind(now.0)
            .bind(expires)
            .bind(&inbox_uids)
            .bind(category)
            .bind(etype)
            .bind(eid)
            .fetch_one(&mut *c)
            .await?;
            (nid, id)
        }
    };

    if broadcast && in_app {
        let targets: Vec<i64> = if a.all { vec![0] } else { r.gids.clone() };
        sqlx::query(
            "INSERT INTO broadcasts (gid, seq, nid, actor_uid, expires_at, category, entity_type, entity_id)
             SELECT g, $2, $3, $4, $5, $6, $7, $8 FROM UNNEST($1::bigint[]) g",
        )
        .bind(&targets)
        .bind(seq)
        .bind(nid)
        .bind(r.actor_uid)
        .bind(expires)
        .bind(category)
        .bind(etype)
        .bind(eid)
        .execute(&mut *c)
        .await?;
    }

    let mut delivered = Vec::with_capacity(direct.len());
    if in_app && inserted_with_rows {
        for (_, user_id) in &direct {
            let user = UserId::parse(user_id).map_err(StoreError::Backend)?;
            delivered.push((user, 1));
        }
    } else if in_app && !direct.is_empty() {
        // A stack grows: the user's entry with this key gets the new seq,
        // content and an unread state.
        let mut stacked: HashMap<i64, i64> = HashMap::new();
        if let Some(key) = &content.stack_key {
            let uids: Vec<i64> = direct.iter().map(|d| d.0).collect();
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "UPDATE inbox SET seq = $3, nid = $4,
                    stack_count = CASE WHEN read_at IS NULL AND archived_at IS NULL
                                       THEN stack_count + 1 ELSE 1 END,
                    read_at = NULL, archived_at = NULL, expires_at = $5, category = $6,
                    entity_type = $7, entity_id = $8
                 WHERE uid = ANY($1) AND stack_key = $2
                 RETURNING uid, stack_count",
            )
            .bind(&uids)
            .bind(key)
            .bind(seq)
            .bind(nid)
            .bind(expires)
            .bind(category)
            .bind(etype)
            .bind(eid)
            .fetch_all(&mut *c)
            .await?;
            stacked.extend(rows);
        }
        let fresh: Vec<i64> = direct
            .iter()
            .map(|d| d.0)
            .filter(|uid| !stacked.contains_key(uid))
            .collect();
        if !fresh.is_empty() {
            sqlx::query(
                "INSERT INTO inbox (uid, seq, nid, stack_key, expires_at, category, entity_type, entity_id)
                 SELECT u, $2, $3, $4, $5, $6, $7, $8 FROM UNNEST($1::bigint[]) u",
            )
            .bind(&fresh)
            .bind(seq)
            .bind(nid)
            .bind(&content.stack_key)
            .bind(expires)
            .bind(category)
            .bind(etype)
            .bind(eid)
            .execute(&mut *c)
            .await?;
        }
        for (uid, user_id) in &direct {
            let user = UserId::parse(user_id).map_err(StoreError::Backend)?;
            delivered.push((user, stacked.get(uid).copied().unwrap_or(1)));
        }
    }
    if !contacts.is_empty() {
        let cids: Vec<i64> = contacts.iter().map(|c| c.0).collect();
        sqlx::query(
            "INSERT INTO notification_contacts (nid, cid) SELECT $1, c FROM UNNEST($2::bigint[]) c
             ON CONFLICT DO NOTHING",
        )
        .bind(nid)
        .bind(&cids)
        .execute(&mut *c)
        .await?;
    }

    // Other channels: one job per person (a broadcast's audience is
    // expanded page by page by its own job, never in this transaction).
    let direct_ids: Vec<&str> = direct.iter().map(|(_, id)| id.as_str()).collect();
    let contact_addresses: Vec<&str> = contacts.iter().map(|(_, a)| a.as_str()).collect();
    let plan = delivery_plan(n, &direct_ids, &contact_addresses, now)?;
    let mut log = r.skipped;
    log.extend(plan.log);
    log_many(c, nid, &log).await?;
    if !plan.jobs.is_empty() {
        add_jobs(c, &plan.jobs, nid, now).await?;
        st.jobs_added = true;
    }

    st.events
        .push(StoreEvent::Published(std::sync::Arc::new(Published {
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
