//! Publishing on PostgreSQL: the writer task that assigns seqs.
//!
//! A send is handled in two phases:
//!
//! 1. **Resolve**, by the resolver ([`resolver_loop`]) on pooled
//!    connections (`--pg-resolvers`, one by default; no transaction, no
//!    lock):
//!    idempotency look-ups, users, groups, subscribers, addresses,
//!    preferences, push, mobile and chat targets. Every request waiting
//!    when a connection is free joins one group, whose audiences are looked
//!    up together, a query per kind of fact ([`resolve_many`]). Requests
//!    that fail validation are answered here; repeated idempotency keys get
//!    their first receipt.
//! 2. **Apply**, by the writer task, which takes every resolved send waiting
//!    (up to `MAX_BATCH`) into one transaction.
//!
//! The *bulk path* ([`run_bulk`]) writes sends published now: the
//! notification ids first (from the writer's [`NidReserve`], drawn ahead
//! from the identity's sequence outside any transaction), then one
//! statement ([`BULK`]) that writes every delivery
//! log line and job of the batch, moves the counter on by the batch's size
//! (taking its row lock) and writes the rows that carry a seq —
//! notifications, inbox entries, broadcasts — numbered from its old value.
//! Without idempotency keys that statement runs on its own and PostgreSQL
//! commits it as it ends: the lock is held for the rows that carry a seq
//! and the commit, with no round trip in between. With keys it runs in a
//! transaction, and the keys are stored (one statement) before `COMMIT`.
//!
//! When the database refuses a statement of the bulk path (a constraint, an
//! idempotency key stored by another transaction since phase 1), the
//! transaction is rolled back and the batch written again by the *serial
//! path* ([`run_serial`]): the counter locked first, each send inside its own
//! savepoint (one bad send fails alone and gives its seqs back). Sends the
//! bulk path does not write (scheduling, scheduled sends becoming due,
//! stacks, contacts, an actor's subscription) take the serial path, in a
//! transaction after the bulk one.
//!
//! Either way the counter's row lock is held until the commit. Every
//! transaction that assigns seqs, on any node, takes it, so they commit one
//! after the other: when seq N becomes visible, every seq below N is visible
//! already. Idempotency keys are stored under the lock, so two nodes racing
//! on one key agree (the second answers the first's receipt).

use super::Shared;
use super::durable::{Committed, Durability, SEQ_JUMP, hand_on};
use super::jobs::{add_job, add_jobs, log_many};
use super::write;
use crate::plan::send::{
    self, Facts, Publication, Resolved, Schedule, SubscriberFact, idempotency_since, in_item,
    replayed, scheduled_for,
};
use crate::plan::stack::grow_stack_count;
use crate::plan::stored::decode_request;
use crate::{
    Constraint, NotificationStatus, Result, SendContext, SendReceipt, StoreError, StoreEvent,
    Subscriber,
};
use belfry_core::{EmailAddress, GroupId, Millis, NewNotification, UserId};
use sqlx::{Connection as _, PgConnection};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

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

/// One item of a send, after phase 1.
pub(crate) enum Item {
    /// A repeated idempotency key: the first receipt.
    Replayed(SendReceipt),
    /// Boxed: a resolved audience is far larger than the other variants.
    Publish(Box<Resolved>),
    /// Hold until `at`; the targets' ids as looked up (all exist).
    Schedule {
        at: Millis,
        users: Vec<Option<i64>>,
        groups: Vec<Option<i64>>,
    },
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
        resolved: Box<Resolved>,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A written request, answered once the transaction committed and its WAL
/// was flushed (`durable`), or failed.
pub(crate) enum Written {
    Send(
        oneshot::Sender<Result<Vec<SendReceipt>>>,
        Result<Vec<SendReceipt>>,
    ),
    PublishDue(oneshot::Sender<Result<()>>, Result<()>),
}

impl Written {
    pub(crate) fn finish(self, commit: &std::result::Result<(), StoreError>) {
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

/// The writer: runs until the store (the channel's sender) is gone. Its
/// commits go to `durable` ([`super::durable::durable_loop`]), which answers
/// and publishes them once they are flushed.
pub(crate) async fn writer_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Pending>,
    durable: mpsc::Sender<Committed>,
) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    // The writer keeps its connection (it does not queue for the pool
    // behind the requests it serves); a new one after a failure.
    let mut conn = None;
    // The held connection's `synchronous_commit` (None: a new connection).
    let mut mode = None;
    let mut pace = Pace::default();
    let mut nids = NidReserve::default();
    while let Some(op) = rx.recv().await {
        ops.push(op);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut w = Writer {
            shared: &shared,
            durable: &durable,
            flush: pace.flush(ops.len() > 1 || !rx.is_empty()),
            mode: &mut mode,
        };
        w.run_batch(&mut conn, &mut nids, std::mem::take(&mut ops))
            .await;
    }
}

/// What the writer's paths share: the store, where commits go, and
/// whether this batch's commit waits for its WAL flush.
struct Writer<'a> {
    shared: &'a Shared,
    durable: &'a mpsc::Sender<Committed>,
    flush: bool,
    mode: &'a mut Option<bool>,
}

/// How many batches of one request, with nothing queued behind, the writer
/// takes before its commits wait for their flush again.
const LONE_BEFORE_FLUSH: u32 = 8;

/// Whether the writer's commits wait for their WAL flush. While requests
/// come one at a time they do: one round trip, nobody waits for the
/// counter meanwhile, and no flush statement after it (the answer comes
/// as soon as before `durable`). Once they queue behind one another, they
/// do not (`durable`), until [`LONE_BEFORE_FLUSH`] lone batches in a row:
/// a switch costs a statement (`SET`), so a lone batch amid load does not
/// switch back.
struct Pace {
    flush: bool,
    lone: u32,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            flush: true,
            lone: 0,
        }
    }
}

impl Pace {
    /// Whether the next batch's commit waits for its flush; `busy`: it has
    /// more than one request, or more are queued behind it.
    fn flush(&mut self, busy: bool) -> bool {
        if busy {
            self.flush = false;
            self.lone = 0;
        } else if !self.flush {
            self.lone += 1;
            if self.lone >= LONE_BEFORE_FLUSH {
                self.flush = true;
            }
        }
        self.flush
    }
}

impl Writer<'_> {
    async fn run_batch(
        &mut self,
        held: &mut Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
        nids: &mut NidReserve,
        pending: Vec<Pending>,
    ) {
        let (bulk, serial): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(bulk_eligible);
        if !bulk.is_empty() {
            run_bulk(self, held, nids, bulk).await;
        }
        if !serial.is_empty() {
            run_serial(self, held, serial).await;
        }
    }

    async fn committed(&self, c: Committed) {
        hand_on(self.durable, c).await;
    }

    fn durability(&self) -> Durability {
        if self.flush {
            Durability::Flushed
        } else {
            Durability::Unflushed
        }
    }
}

/// The writer's connection: the one it holds, or a new one from the pool
/// (None: the pool failed, and every request was answered with its error).
/// A new one commits without waiting for the flush (`durable`), and is
/// closed when the writer lets go of it, never given back to the pool,
/// where that setting would follow it.
async fn writer_conn(
    w: &mut Writer<'_>,
    held: &mut Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    pending: &mut Vec<Pending>,
) -> Option<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let conn = match held.take() {
        Some(c) => Ok(c),
        None => {
            *w.mode = None;
            w.shared.pool.acquire().await.map(|mut c| {
                c.close_on_drop();
                c
            })
        }
    };
    let conn = match conn {
        Ok(mut c) if *w.mode != Some(w.flush) => {
            let sql = if w.flush {
                "SET synchronous_commit = on"
            } else {
                "SET synchronous_commit = off"
            };
            match sqlx::raw_sql(sql).execute(&mut *c).await {
                Ok(_) => {
                    *w.mode = Some(w.flush);
                    Ok(c)
                }
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    match conn {
        Ok(c) => Some(c),
        Err(e) => {
            let e = StoreError::from(e);
            for p in pending.drain(..) {
                fail_pending(p, e.clone());
            }
            None
        }
    }
}

/// Writes requests one after the other, each in its own savepoint, the
/// counter locked from the start: the path for what the bulk path does not
/// write (scheduling, scheduled sends becoming due, stacks, contacts, the
/// actor's subscription), and for a batch the bulk path gave back.
async fn run_serial(
    w: &mut Writer<'_>,
    held: &mut Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    mut pending: Vec<Pending>,
) {
    let Some(mut conn) = writer_conn(w, held, &mut pending).await else {
        return;
    };
    let mut written = Vec::with_capacity(pending.len());
    let mut state = None;
    let outcome = apply_all(&mut conn, pending, &mut written, &mut state).await;
    match (&outcome, state) {
        (Ok(()), Some(st)) => {
            *held = Some(conn);
            w.committed(Committed {
                durability: w.durability(),
                last_seq: st.last_seq,
                jobs_added: st.jobs_added,
                events: st.events,
                answers: written,
            })
            .await;
            return;
        }
        (Err(e), _) => {
            tracing::error!(error = %e, "the PostgreSQL writer's transaction failed");
            // Whatever state it is in, the connection is closed (dropped).
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
    // After a crash of the database (`seq_guard` empty) the seqs start
    // past any it may have lost (`durable`).
    let (stored, base): (i64, i64) = match sqlx::query_as(SERIAL_LOCK)
        .bind(SEQ_JUMP)
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
    let locked = Instant::now();
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
    if st.last_seq != stored {
        sqlx::query("UPDATE seq_counter SET value = $1")
            .bind(st.last_seq)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    lock_held(locked, None, "serial");
    *state = Some(st);
    Ok(())
}

/// The most requests one phase-1 group takes.
const MAX_GROUP: usize = 64;

/// Phase 1 for every node's request: whenever one of `resolvers`
/// connections is free, takes every request waiting (up to
/// [`MAX_GROUP`]), resolves them together ([`prepare_many`]) and hands them
/// to the writer. A request alone is resolved at once; under load the
/// groups grow, and the round trips per send fall with them.
pub(crate) async fn resolver_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<WriteOp>,
    writer: mpsc::Sender<Pending>,
    durable: mpsc::Sender<Committed>,
    resolvers: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(resolvers.max(1)));
    while let Some(op) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // What arrived while waiting for a connection goes in the same group.
        let mut ops = vec![op];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let (shared, writer, durable) = (shared.clone(), writer.clone(), durable.clone());
        tokio::spawn(async move {
            let pending = match shared.pool.acquire().await {
                Ok(mut c) => prepare_many(&mut c, ops).await,
                Err(e) => {
                    let e = StoreError::from(e);
                    for op in ops {
                        fail_op(op, e.clone());
                    }
                    return;
                }
            };
            // The connection is back in the pool; the writer's queue may
            // make this wait (and the requests behind it shed).
            drop(permit);
            for p in pending {
                match replays_only(p) {
                    Ok(c) => hand_on(&durable, c).await,
                    Err(p) => {
                        if let Err(mpsc::error::SendError(p)) = writer.send(p).await {
                            fail_pending(p, StoreError::Closed);
                        }
                    }
                }
            }
        });
    }
}

/// A request whose every send repeats an idempotency key writes nothing:
/// it is answered with the first receipts, but only once the database is
/// durable past them. The first send's commit may be another node's, visible
/// and not yet flushed (`durable`): answered before the flush, a crash could
/// lose what the receipt names.
fn replays_only(p: Pending) -> std::result::Result<Committed, Pending> {
    match p {
        Pending::Send { items, reply, .. }
            if items.iter().all(|i| matches!(i, Item::Replayed(_))) =>
        {
            let receipts = items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Replayed(r) => Some(r),
                    _ => None,
                })
                .collect();
            Ok(Committed {
                durability: Durability::Read,
                last_seq: 0,
                jobs_added: false,
                events: Vec::new(),
                answers: vec![Written::Send(reply, Ok(receipts))],
            })
        }
        other => Err(other),
    }
}

fn fail_op(op: WriteOp, e: StoreError) {
    match op {
        WriteOp::Send { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        WriteOp::PublishDue { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}

/// A send request during phase 1: its items that are answered before
/// their audience is resolved ([`prepare_early`]; None: published now).
struct Early {
    ctx: SendContext,
    batch: Vec<NewNotification>,
    reply: oneshot::Sender<Result<Vec<SendReceipt>>>,
    early: Vec<Option<Result<Item>>>,
}

/// Phase 1 of many requests (outside of any transaction): replayed keys,
/// scheduled sends and scheduled sends becoming due one by one; the
/// audiences of every send published now in one [`resolve_many`]. Each
/// request is answered with its first item's error, by index (as if its
/// items were resolved one after the other); a database error answers
/// every send of the group. Returns what is left for the writer.
pub(crate) async fn prepare_many(c: &mut PgConnection, ops: Vec<WriteOp>) -> Vec<Pending> {
    let mut out = Vec::with_capacity(ops.len());
    let mut sends = Vec::with_capacity(ops.len());
    // The earlier sends of every idempotency key in the group, in one query.
    let earlier = match earlier_sends(c, &ops).await {
        Ok(earlier) => earlier,
        Err(e) => {
            for op in ops {
                fail_op(op, e.clone());
            }
            return out;
        }
    };
    for op in ops {
        match op {
            WriteOp::Send { ctx, batch, reply } => {
                let mut early = Vec::with_capacity(batch.len());
                for n in &batch {
                    early.push(prepare_early(c, &ctx, n, &earlier).await.transpose());
                }
                sends.push(Early {
                    ctx,
                    batch,
                    reply,
                    early,
                });
            }
            WriteOp::PublishDue { nid, now, reply } => match prepare_due(c, nid, now).await {
                Ok(Some((id, sender, n, resolved))) => out.push(Pending::PublishDue {
                    nid,
                    id,
                    sender,
                    now,
                    n: Box::new(n),
                    resolved: Box::new(resolved),
                    reply,
                }),
                Ok(None) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
        }
    }
    let now: Vec<(&NewNotification, Millis)> = sends
        .iter()
        .flat_map(|s| {
            s.batch
                .iter()
                .zip(&s.early)
                .filter(|(_, e)| e.is_none())
                .map(|(n, _)| (n, s.ctx.now))
        })
        .collect();
    let resolved = resolve_many(c, &now, true).await;
    drop(now);
    let mut resolved = match resolved {
        Ok(r) => r.into_iter(),
        Err(e) => {
            for s in sends {
                let _ = s.reply.send(Err(e.clone()));
            }
            return out;
        }
    };
    for s in sends {
        let len = s.batch.len();
        let mut items = Vec::with_capacity(len);
        let mut failed = None;
        for (index, e) in s.early.into_iter().enumerate() {
            // Every published-now item takes its result, so that the next
            // request's items start at their own.
            let item = match e {
                Some(item) => item,
                None => resolved
                    .next()
                    .unwrap_or_else(|| {
                        Err(StoreError::backend("resolve_many gave too few results"))
                    })
                    .map(|r| Item::Publish(Box::new(r))),
            };
            match item {
                Ok(item) => items.push(item),
                Err(error) if failed.is_none() => failed = Some(in_item(len, index, error)),
                Err(_) => {}
            }
        }
        if let Some(error) = failed {
            let _ = s.reply.send(Err(error));
        } else {
            out.push(Pending::Send {
                ctx: s.ctx,
                batch: s.batch,
                items,
                reply: s.reply,
            });
        }
    }
    out
}

/// Stored idempotency keys by scope, then key: the earlier send's nid and
/// fingerprint (nested, so that a look-up borrows instead of allocating).
type EarlierSends = HashMap<String, HashMap<String, (i64, Option<Vec<u8>>)>>;

/// The stored idempotency keys (within the window) of the sends in `ops`,
/// by scope and key: the earlier send's nid and fingerprint. One query for
/// all of them; none without keys.
async fn earlier_sends(c: &mut PgConnection, ops: &[WriteOp]) -> Result<EarlierSends> {
    let (mut scopes, mut keys, mut since) = (Vec::new(), Vec::new(), Vec::new());
    for op in ops {
        if let WriteOp::Send { ctx, batch, .. } = op {
            for key in batch.iter().filter_map(|n| n.idempotency_key.as_deref()) {
                scopes.push(ctx.key_id.as_str());
                keys.push(key);
                since.push(idempotency_since(ctx.now));
            }
        }
    }
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String, i64, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT i.scope, i.key, i.nid, i.fingerprint
         FROM idempotency i
         JOIN UNNEST($1::text[], $2::text[], $3::bigint[]) AS x(s, k, since)
           ON i.scope = x.s AND i.key = x.k AND i.created_at > x.since",
    )
    .bind(&scopes)
    .bind(&keys)
    .bind(&since)
    .fetch_all(&mut *c)
    .await?;
    let mut earlier = EarlierSends::new();
    for (scope, key, nid, fingerprint) in rows {
        earlier
            .entry(scope)
            .or_default()
            .insert(key, (nid, fingerprint));
    }
    Ok(earlier)
}

/// What phase 1 of one item answers before its audience is resolved: the
/// receipt of a repeated key (`earlier`: the group's stored keys, see
/// [`earlier_sends`]), or a scheduled send's targets (None: it is
/// published now).
async fn prepare_early(
    c: &mut PgConnection,
    ctx: &SendContext,
    n: &NewNotification,
    earlier: &EarlierSends,
) -> Result<Option<Item>> {
    if let Some(key) = &n.idempotency_key
        && let Some((nid, stored)) = earlier
            .get(ctx.key_id.as_str())
            .and_then(|keys| keys.get(key.as_str()))
    {
        send::repeated_key(key, stored.as_deref(), &send::fingerprint(n)?)?;
        return Ok(Some(Item::Replayed(receipt_of(c, *nid).await?)));
    }
    match scheduled_for(n, ctx.now) {
        Some(at) => {
            // Its targets must exist now; checked again (in `Schedule::new`)
            // when it is written.
            let users = uids(c, &n.audience.users).await?;
            let groups = gids(c, &n.audience.groups).await?;
            send::require_known(n, &users, &groups)?;
            Ok(Some(Item::Schedule { at, users, groups }))
        }
        None => Ok(None),
    }
}

/// The receipt of an earlier send with this key (within the window);
/// `IdempotencyKeyReused` when that send was a different request.
async fn idempotent_receipt(
    c: &mut PgConnection,
    ctx: &SendContext,
    n: &NewNotification,
    key: &str,
) -> Result<Option<SendReceipt>> {
    let earlier: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT nid, fingerprint FROM idempotency WHERE scope = $1 AND key = $2 AND created_at > $3",
    )
    .bind(&ctx.key_id)
    .bind(key)
    .bind(idempotency_since(ctx.now))
    .fetch_optional(&mut *c)
    .await?;
    match earlier {
        Some((nid, stored)) => {
            send::repeated_key(key, stored.as_deref(), &send::fingerprint(n)?)?;
            receipt_of(c, nid).await.map(Some)
        }
        None => Ok(None),
    }
}

async fn receipt_of(c: &mut PgConnection, nid: i64) -> Result<SendReceipt> {
    let (id, seq, recipients): (String, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT id, seq, recipients FROM notifications WHERE nid = $1")
            .bind(nid)
            .fetch_one(&mut *c)
            .await?;
    Ok(replayed(id, seq, recipients))
}

/// The uid of each user (None: unknown), in one query.
async fn uids(c: &mut PgConnection, users: &[UserId]) -> Result<Vec<Option<i64>>> {
    let ids: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
    numbers_of(c, "SELECT id, uid FROM users WHERE id = ANY($1)", &ids).await
}

/// The gid of each group (None: unknown), in one query.
async fn gids(c: &mut PgConnection, groups: &[GroupId]) -> Result<Vec<Option<i64>>> {
    let ids: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
    numbers_of(c, "SELECT id, gid FROM groups WHERE id = ANY($1)", &ids).await
}

/// The internal number of each id, in order (None: unknown), by `sql`,
/// which selects `(id, number)` for the ids bound as `$1`.
async fn numbers_of(
    c: &mut PgConnection,
    sql: &'static str,
    ids: &[&str],
) -> Result<Vec<Option<i64>>> {
    let found = number_map(c, sql, ids.to_vec()).await?;
    Ok(ids.iter().map(|id| found.get(*id).copied()).collect())
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
    if NotificationStatus::parse(&status)? != NotificationStatus::Scheduled {
        return Ok(None);
    }
    let n = decode_request(&id, &request)?;
    let resolved = resolve(c, &n, false, now).await?;
    Ok(Some((id, sender, n, resolved)))
}

/// Resolves one audience: [`resolve_many`] of one.
async fn resolve(
    c: &mut PgConnection,
    n: &NewNotification,
    strict: bool,
    now: Millis,
) -> Result<Resolved> {
    resolve_many(c, &[(n, now)], strict)
        .await?
        .pop()
        .unwrap_or_else(|| Err(StoreError::backend("resolve_many gave no result")))
}

/// Looks up the facts of many audiences at once and resolves each: one
/// query per kind of fact for all of them (users, groups, addresses,
/// preferences, push and mobile subscriptions, chat targets), so a batch
/// of 500 sends costs about as many round trips as one. Entity
/// subscribers, group coverage and groups' chat targets, which few sends
/// have, are read per audience. The outer error is the database's (it
/// concerns all of them); the inner ones are each audience's own.
async fn resolve_many(
    c: &mut PgConnection,
    sends: &[(&NewNotification, Millis)],
    strict: bool,
) -> Result<Vec<Result<Resolved>>> {
    let ns: Vec<&NewNotification> = sends.iter().map(|(n, _)| *n).collect();
    // Users (recipients and actors) and groups of every audience.
    let mut user_ids: Vec<&str> = Vec::new();
    let mut group_ids: Vec<&str> = Vec::new();
    for n in &ns {
        user_ids.extend(n.audience.users.iter().map(|u| u.as_str()));
        user_ids.extend(n.actor_id().map(|a| a.as_str()));
        group_ids.extend(n.audience.groups.iter().map(|g| g.as_str()));
    }
    let user_uids = number_map(c, "SELECT id, uid FROM users WHERE id = ANY($1)", user_ids).await?;
    let group_gids = number_map(
        c,
        "SELECT id, gid FROM groups WHERE id = ANY($1)",
        group_ids,
    )
    .await?;

    let mut all_facts = Vec::with_capacity(ns.len());
    for n in &ns {
        let a = &n.audience;
        let mut facts = Facts {
            actor_uid: n
                .actor_id()
                .and_then(|actor| user_uids.get(actor.as_str()).copied()),
            users: a
                .users
                .iter()
                .map(|u| user_uids.get(u.as_str()).copied())
                .collect(),
            groups: a
                .groups
                .iter()
                .map(|g| group_gids.get(g.as_str()).copied())
                .collect(),
            subscribers: Vec::new(),
        };
        if let Some(entity) = &a.entity {
            let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
                "SELECT kind, subscriber, uid FROM subscriptions WHERE entity_type = $1 AND entity_id = $2",
            )
            .bind(&entity.kind)
            .bind(&entity.id)
            .fetch_all(&mut *c)
            .await?;
            for (kind, subscriber, uid) in rows {
                facts
                    .subscribers
                    .push(SubscriberFact::from_row(&kind, &subscriber, uid)?);
            }
        }
        all_facts.push(facts);
    }

    // The owners of every address (requested or subscribed), in one query.
    let addresses: HashSet<&str> = ns
        .iter()
        .zip(&all_facts)
        .flat_map(|(n, f)| send::addresses(n, &f.subscribers).map(|a| a.as_str()))
        .collect();
    let mut owner_of: HashMap<String, (i64, UserId)> = HashMap::new();
    if !addresses.is_empty() {
        let addresses: Vec<&str> = addresses.into_iter().collect();
        for (email, uid, id) in sqlx::query_as::<_, (String, i64, String)>(
            "SELECT email, uid, id FROM users WHERE email = ANY($1)",
        )
        .bind(&addresses)
        .fetch_all(&mut *c)
        .await?
        {
            owner_of.insert(
                email,
                (uid, UserId::parse(&id).map_err(StoreError::backend)?),
            );
        }
    }

    let mut out: Vec<Result<Resolved>> = Vec::with_capacity(ns.len());
    for ((n, now), facts) in sends.iter().zip(all_facts) {
        let owners = send::addresses(n, &facts.subscribers)
            .map(|a| owner_of.get(a.as_str()).cloned())
            .collect();
        out.push(send::resolve(n, facts, owners, strict, *now));
    }

    // Direct recipients who are members of a targeted group already.
    for r in out.iter_mut().flatten() {
        if r.needs_coverage() {
            let uids: Vec<i64> = r.direct_uids().collect();
            let covered: HashSet<i64> = sqlx::query_scalar::<_, i64>(
                "SELECT DISTINCT uid FROM memberships
                 WHERE uid = ANY($1) AND gid = ANY($2) AND left_seq IS NULL",
            )
            .bind(&uids)
            .bind(&r.gids)
            .fetch_all(&mut *c)
            .await?
            .into_iter()
            .collect();
            r.exclude_covered(&covered);
        }
    }

    // Preferences: the defaults (the row without a uid) and the own
    // preferences of every direct recipient who may opt in, in one query.
    let opt_in: Vec<Vec<belfry_core::Channel>> = ns
        .iter()
        .zip(&out)
        .map(|(n, r)| r.as_ref().map(|r| r.opt_in_channels(n)).unwrap_or_default())
        .collect();
    if opt_in.iter().any(|c| !c.is_empty()) {
        let uids: Vec<i64> = out
            .iter()
            .zip(&opt_in)
            .filter(|(_, c)| !c.is_empty())
            .filter_map(|(r, _)| r.as_ref().ok())
            .flat_map(|r| r.direct_uids())
            .collect::<HashSet<i64>>()
            .into_iter()
            .collect();
        let mut own: HashMap<i64, String> = HashMap::new();
        let mut defaults = None;
        for (uid, prefs) in sqlx::query_as::<_, (Option<i64>, String)>(
            "SELECT NULL::bigint, prefs FROM preference_defaults WHERE id = 1
             UNION ALL
             SELECT uid, prefs FROM user_preferences WHERE uid = ANY($1)",
        )
        .bind(&uids)
        .fetch_all(&mut *c)
        .await?
        {
            match uid {
                Some(uid) => {
                    own.insert(uid, prefs);
                }
                None => defaults = Some(prefs),
            }
        }
        let defaults = super::prefs::parse_defaults(defaults.as_deref())?;
        for ((n, r), channels) in ns.iter().zip(out.iter_mut()).zip(&opt_in) {
            let Ok(r) = r else { continue };
            if channels.is_empty() {
                continue;
            }
            let uids: Vec<i64> = r.direct_uids().collect();
            for uid in uids {
                r.add_opt_ins(
                    n,
                    channels,
                    &defaults,
                    uid,
                    own.get(&uid).map(String::as_str),
                );
            }
        }
    }

    // Web push and mobile push (C6) in one round trip for all: who of the
    // direct recipients has a push subscription (a mobile device), and
    // whether anyone has, each part only when some audience wants that
    // channel (a subquery under a false CASE or AND is never run).
    let wants: Vec<(bool, bool)> = ns
        .iter()
        .zip(&out)
        .map(|(n, r)| match r {
            Ok(r) => (r.needs_push_lookup(n), r.needs_mobile_lookup(n)),
            Err(_) => (false, false),
        })
        .collect();
    let (push, mobile) = (wants.iter().any(|w| w.0), wants.iter().any(|w| w.1));
    if push || mobile {
        let uids_wanting = |pick: fn(&(bool, bool)) -> bool| -> Vec<i64> {
            out.iter()
                .zip(&wants)
                .filter(|(_, w)| pick(w))
                .filter_map(|(r, _)| r.as_ref().ok())
                .flat_map(|r| r.direct_uids())
                .collect::<HashSet<i64>>()
                .into_iter()
                .collect()
        };
        let (push_uids, mobile_uids) = (uids_wanting(|w| w.0), uids_wanting(|w| w.1));
        let (pushable, push_anyone, with_device, mobile_anyone): (Vec<i64>, bool, Vec<i64>, bool) =
            sqlx::query_as(
                "SELECT CASE WHEN $3 THEN COALESCE((SELECT array_agg(DISTINCT uid)
                            FROM push_subscriptions WHERE uid = ANY($1)), '{}') ELSE '{}' END,
                        $3 AND EXISTS (SELECT 1 FROM push_subscriptions),
                        CASE WHEN $4 THEN COALESCE((SELECT array_agg(DISTINCT uid)
                            FROM mobile_devices WHERE uid = ANY($2)), '{}') ELSE '{}' END,
                        $4 AND EXISTS (SELECT 1 FROM mobile_devices)",
            )
            .bind(&push_uids)
            .bind(&mobile_uids)
            .bind(push)
            .bind(mobile)
            .fetch_one(&mut *c)
            .await?;
        let pushable: HashSet<i64> = pushable.into_iter().collect();
        let with_device: HashSet<i64> = with_device.into_iter().collect();
        for (r, (push, mobile)) in out.iter_mut().zip(&wants) {
            let Ok(r) = r else { continue };
            if *push {
                r.pushable = r.direct_uids().filter(|u| pushable.contains(u)).collect();
                r.push_anyone = push_anyone;
            }
            if *mobile {
                r.mobile = r
                    .direct_uids()
                    .filter(|u| with_device.contains(u))
                    .collect();
                r.mobile_anyone = mobile_anyone;
            }
        }
    }

    // Chat targets: the direct recipients' in one query for all; the
    // groups' per audience.
    let chat: Vec<bool> = ns
        .iter()
        .zip(&out)
        .map(|(n, r)| r.as_ref().is_ok_and(|r| r.needs_chat_lookup(n)))
        .collect();
    if chat.iter().any(|c| *c) {
        let uids: Vec<i64> = out
            .iter()
            .zip(&chat)
            .filter(|(_, c)| **c)
            .filter_map(|(r, _)| r.as_ref().ok())
            .flat_map(|r| r.direct_uids())
            .collect::<HashSet<i64>>()
            .into_iter()
            .collect();
        let chattable: HashSet<i64> = sqlx::query_scalar::<_, i64>(
            "SELECT DISTINCT uid FROM chat_targets WHERE uid = ANY($1)",
        )
        .bind(&uids)
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .collect();
        for ((n, r), wanted) in ns.iter().zip(out.iter_mut()).zip(&chat) {
            let Ok(r) = r else { continue };
            if !wanted {
                continue;
            }
            r.chattable = r.direct_uids().filter(|u| chattable.contains(u)).collect();
            if n.wants(belfry_core::Channel::Chat, false) && !r.gids.is_empty() {
                // In the audience's order, each group once.
                let with_target: HashMap<i64, String> = sqlx::query_as::<_, (i64, String)>(
                    "SELECT g.gid, g.id FROM groups g WHERE g.gid = ANY($1)
                       AND EXISTS (SELECT 1 FROM chat_targets t WHERE t.gid = g.gid)",
                )
                .bind(&r.gids)
                .fetch_all(&mut *c)
                .await?
                .into_iter()
                .collect();
                r.chat_groups = r
                    .gids
                    .iter()
                    .filter_map(|gid| with_target.get(gid))
                    .map(|id| GroupId::parse(id).map_err(StoreError::backend))
                    .collect::<Result<Vec<_>>>()?;
            }
        }
    }
    Ok(out)
}

/// The internal numbers of distinct ids, by `sql`, which selects
/// `(id, number)` for the ids bound as `$1` (unknown ids are absent).
async fn number_map(
    c: &mut PgConnection,
    sql: &'static str,
    mut ids: Vec<&str>,
) -> Result<HashMap<String, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(sqlx::query_as::<_, (String, i64)>(sql)
        .bind(&ids)
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .collect())
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
            let mut receipts = Vec::with_capacity(items.len());
            for (index, (n, item)) in batch.iter().zip(items).enumerate() {
                match apply_item(c, st, &ctx, n, item).await {
                    Ok(r) => receipts.push(r),
                    Err(error) => {
                        return Written::Send(reply, Err(in_item(batch.len(), index, error)));
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
                if let Some(status) = status
                    && NotificationStatus::parse(&status)? == NotificationStatus::Scheduled
                {
                    publish(c, st, &sender, now, &n, *resolved, Some((nid, id))).await?;
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
        && let Some(receipt) = idempotent_receipt(c, ctx, n, key).await?
    {
        // Another request with this key (on this node or another) committed
        // after phase 1 looked.
        return Ok(receipt);
    }
    let (receipt, nid) = match item {
        Item::Schedule { at, users, groups } => {
            schedule(c, st, ctx, n, at, &users, &groups).await?
        }
        Item::Publish(resolved) => publish(c, st, &ctx.key_id, ctx.now, n, *resolved, None).await?,
        Item::Replayed(_) => unreachable!("handled above"),
    };
    if let Some(key) = &n.idempotency_key {
        // Under the counter lock nobody else can hold a fresh row for this
        // key; an expired one is taken over.
        let stored: Option<i64> = sqlx::query_scalar(
            "INSERT INTO idempotency (scope, key, nid, created_at, fingerprint) VALUES ($1, $2, $3, $4, $6)
             ON CONFLICT (scope, key) DO UPDATE SET nid = excluded.nid,
                 created_at = excluded.created_at, fingerprint = excluded.fingerprint
             WHERE idempotency.created_at <= $5
             RETURNING nid",
        )
        .bind(&ctx.key_id)
        .bind(key)
        .bind(nid)
        .bind(ctx.now.0)
        .bind(idempotency_since(ctx.now))
        .bind(send::fingerprint(n)?)
        .fetch_optional(&mut *c)
        .await?;
        if stored.is_none() {
            return Err(StoreError::conflict(Constraint::IdempotencyKey {
                key: key.clone(),
            }));
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
    users: &[Option<i64>],
    groups: &[Option<i64>],
) -> Result<(SendReceipt, i64)> {
    let plan = Schedule::new(n, users, groups, &ctx.key_id, ctx.now, at)?;
    let nid: i64 = sqlx::query_scalar(
        "INSERT INTO notifications (id, seq, status, sender, content, audience, channels, stack_key,
                                    created_at, send_at, expires_at, request)
         VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING nid",
    )
    .bind(&plan.id)
    .bind(NotificationStatus::Scheduled.as_str())
    .bind(plan.sender)
    .bind(&plan.content_json)
    .bind(&plan.audience_json)
    .bind(&plan.channels_json)
    .bind(plan.columns.stack_key)
    .bind(plan.now.0)
    .bind(plan.at.0)
    .bind(plan.columns.expires_at)
    .bind(&plan.request_json)
    .fetch_one(&mut *c)
    .await?;
    log_many(c, nid, &plan.log).await?;
    add_job(c, &plan.job, Some(nid), plan.at, plan.now).await?;
    st.jobs_added = true;
    Ok((plan.receipt(), nid))
}

/// Makes the notification visible (a new one, or the scheduled `existing`
/// one), as its resolved audience gives it.
async fn publish(
    c: &mut PgConnection,
    st: &mut TxState,
    sender: &str,
    now: Millis,
    n: &NewNotification,
    resolved: Resolved,
    existing: Option<(i64, String)>,
) -> Result<(SendReceipt, i64)> {
    let seq = st.next_seq();
    let (existing_nid, existing_id) = existing.unzip();
    let plan = Publication::new(n, resolved, seq, existing_id, sender, now);
    let (nid, stacked) = apply(c, &plan, existing_nid).await?;
    if !plan.jobs.is_empty() {
        st.jobs_added = true;
    }
    let (event, receipt) = plan.finish(&stacked);
    st.events.push(event);
    Ok((receipt, nid))
}

/// Writes a publication: the notification row, broadcast rows, inbox
/// entries (growing stacks), contacts, log lines and jobs, a statement per
/// kind of row. Returns the nid and the counts of the stacks that grew.
async fn apply(
    c: &mut PgConnection,
    p: &Publication<'_>,
    existing: Option<i64>,
) -> Result<(i64, HashMap<i64, i64>)> {
    if let Some((actor, entity)) = p.subscribe_actor {
        write::subscribe(c, entity, &Subscriber::User(actor.clone()), p.now).await?;
    }
    let cols = &p.columns;
    // Without a stack key, the inbox rows are plain inserts: they go with
    // the notification row in one statement (one round trip).
    let inserted_with_rows = existing.is_none() && cols.stack_key.is_none();
    let nid = match existing {
        Some(nid) => {
            sqlx::query(
                "UPDATE notifications SET seq = $2, status = $3, actor_uid = $4,
                        recipients = $5, published_at = $6 WHERE nid = $1",
            )
            .bind(nid)
            .bind(p.seq)
            .bind(NotificationStatus::Published.as_str())
            .bind(p.actor_uid)
            .bind(p.recipients)
            .bind(p.now.0)
            .execute(&mut *c)
            .await?;
            nid
        }
        None => {
            let inbox_uids: Vec<i64> = if inserted_with_rows {
                p.inbox_uids().collect()
            } else {
                Vec::new()
            };
            sqlx::query_scalar(
                "WITH n AS (
                    INSERT INTO notifications (id, seq, status, sender, content, audience, channels,
                                               actor_uid, stack_key, recipients, created_at, published_at,
                                               expires_at)
                    VALUES ($1, $2, $16, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
                    RETURNING nid),
                 i AS (
                    INSERT INTO inbox (uid, seq, nid, expires_at, category, entity_type, entity_id)
                    SELECT u, $2, n.nid, $11, $13, $14, $15 FROM n, UNNEST($12::bigint[]) u)
                 SELECT nid FROM n",
            )
            .bind(&p.id)
            .bind(p.seq)
            .bind(p.sender)
            .bind(&p.content_json)
            .bind(p.audience_json())
            .bind(p.channels_json())
            .bind(p.actor_uid)
            .bind(cols.stack_key)
            .bind(p.recipients)
            .bind(p.now.0)
            .bind(cols.expires_at)
            .bind(&inbox_uids)
            .bind(cols.category)
            .bind(cols.entity_type)
            .bind(cols.entity_id)
            .bind(NotificationStatus::Published.as_str())
            .fetch_one(&mut *c)
            .await?
        }
    };

    if !p.broadcast_gids.is_empty() {
        sqlx::query(
            "INSERT INTO broadcasts (gid, seq, nid, actor_uid, expires_at, category, entity_type, entity_id)
             SELECT g, $2, $3, $4, $5, $6, $7, $8 FROM UNNEST($1::bigint[]) g",
        )
        .bind(&p.broadcast_gids)
        .bind(p.seq)
        .bind(nid)
        .bind(p.actor_uid)
        .bind(cols.expires_at)
        .bind(cols.category)
        .bind(cols.entity_type)
        .bind(cols.entity_id)
        .execute(&mut *c)
        .await?;
    }

    let mut stacked: HashMap<i64, i64> = HashMap::new();
    if !inserted_with_rows && !p.inbox.is_empty() {
        let uids: Vec<i64> = p.inbox_uids().collect();
        if let Some(key) = cols.stack_key {
            // A stack grows: the user's entry with this key gets the new
            // seq, content and an unread state.
            let rows: Vec<(i64, i64)> = sqlx::query_as(concat!(
                "UPDATE inbox SET seq = $3, nid = $4, stack_count = ",
                grow_stack_count!(),
                ", read_at = NULL, archived_at = NULL, expires_at = $5, category = $6,
                   entity_type = $7, entity_id = $8
                 WHERE uid = ANY($1) AND stack_key = $2
                 RETURNING uid, stack_count"
            ))
            .bind(&uids)
            .bind(key)
            .bind(p.seq)
            .bind(nid)
            .bind(cols.expires_at)
            .bind(cols.category)
            .bind(cols.entity_type)
            .bind(cols.entity_id)
            .fetch_all(&mut *c)
            .await?;
            stacked.extend(rows);
            sqlx::query(
                "INSERT INTO stack_members (uid, stack_key, seq, nid)
                 SELECT u, $2, $3, $4 FROM UNNEST($1::bigint[]) u",
            )
            .bind(&uids)
            .bind(key)
            .bind(p.seq)
            .bind(nid)
            .execute(&mut *c)
            .await?;
        }
        let fresh: Vec<i64> = uids
            .into_iter()
            .filter(|uid| !stacked.contains_key(uid))
            .collect();
        if !fresh.is_empty() {
            sqlx::query(
                "INSERT INTO inbox (uid, seq, nid, stack_key, expires_at, category, entity_type, entity_id)
                 SELECT u, $2, $3, $4, $5, $6, $7, $8 FROM UNNEST($1::bigint[]) u",
            )
            .bind(&fresh)
            .bind(p.seq)
            .bind(nid)
            .bind(cols.stack_key)
            .bind(cols.expires_at)
            .bind(cols.category)
            .bind(cols.entity_type)
            .bind(cols.entity_id)
            .execute(&mut *c)
            .await?;
        }
    }
    if !p.contacts.is_empty() {
        let addresses: Vec<&str> = p.contacts.iter().map(EmailAddress::as_str).collect();
        sqlx::query(
            "INSERT INTO contacts (email, created_at) SELECT e, $2 FROM UNNEST($1::text[]) e
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(&addresses)
        .bind(p.now.0)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "INSERT INTO notification_contacts (nid, cid)
             SELECT $1, cid FROM contacts WHERE email = ANY($2) ON CONFLICT DO NOTHING",
        )
        .bind(nid)
        .bind(&addresses)
        .execute(&mut *c)
        .await?;
    }
    log_many(c, nid, &p.log).await?;
    add_jobs(c, &p.jobs, nid, p.now).await?;
    Ok((nid, stacked))
}

/// Records how long a transaction held the seq counter, from the statement
/// that takes it to the end of the commit, less `waited`: the time the
/// database reports it spent in that statement before it had the lock
/// (the bulk path measures it; the serial path cannot, and its figure
/// includes the wait): `belfry_pg_seq_lock_hold_seconds{path}`, and the
/// wait in `belfry_pg_seq_lock_wait_seconds{path}`.
fn lock_held(since: Instant, waited: Option<f64>, path: &'static str) {
    let elapsed = since.elapsed().as_secs_f64();
    let held = match waited {
        Some(waited) => {
            metrics::histogram!("belfry_pg_seq_lock_wait_seconds", "path" => path).record(waited);
            (elapsed - waited).max(0.0)
        }
        None => elapsed,
    };
    metrics::histogram!("belfry_pg_seq_lock_hold_seconds", "path" => path).record(held);
}

/// Whether the bulk path writes this request: a send whose items are all
/// published now (or replayed), without a stack key, external contacts or
/// an actor to subscribe (those go through [`run_serial`]).
fn bulk_eligible(p: &Pending) -> bool {
    match p {
        Pending::Send { batch, items, .. } => batch.iter().zip(items).all(|(n, item)| match item {
            Item::Replayed(_) => true,
            Item::Publish(r) => {
                !r.subscribe_actor && r.contacts.is_empty() && n.content.stack_key.is_none()
            }
            Item::Schedule { .. } => false,
        }),
        Pending::PublishDue { .. } => false,
    }
}

/// How a bulk attempt ended.
enum BulkOutcome {
    /// Committed: the receipts of each request, in order.
    Committed {
        receipts: Vec<Vec<SendReceipt>>,
        state: TxState,
    },
    /// Rolled back (a row was refused, an idempotency key was taken
    /// meanwhile): nothing was written; the requests go through the serial
    /// path, which answers each on its own.
    RolledBack(StoreError),
    /// The connection failed (or the commit did): every request fails.
    Failed(StoreError),
}

/// Writes sends through the bulk path: one transaction, a statement per
/// kind of row for all of them, the counter locked only for the rows that
/// carry a seq and the commit. Falls back to [`run_serial`] when the
/// database refuses a row.
async fn run_bulk(
    w: &mut Writer<'_>,
    held: &mut Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    nids: &mut NidReserve,
    mut pending: Vec<Pending>,
) {
    let Some(mut conn) = writer_conn(w, held, &mut pending).await else {
        return;
    };
    match apply_bulk(&mut conn, nids, &pending).await {
        BulkOutcome::Committed { receipts, state } => {
            *held = Some(conn);
            let mut answers = Vec::with_capacity(pending.len());
            for (p, r) in pending.into_iter().zip(receipts) {
                if let Pending::Send { reply, .. } = p {
                    answers.push(Written::Send(reply, Ok(r)));
                }
            }
            w.committed(Committed {
                durability: w.durability(),
                last_seq: state.last_seq,
                jobs_added: state.jobs_added,
                events: state.events,
                answers,
            })
            .await;
        }
        BulkOutcome::RolledBack(e) => {
            tracing::debug!(error = %e, "bulk write refused; writing the batch send by send");
            metrics::counter!("belfry_pg_bulk_fallbacks_total").increment(1);
            *held = Some(conn);
            run_serial(w, held, pending).await;
        }
        BulkOutcome::Failed(e) => {
            tracing::error!(error = %e, "the PostgreSQL writer's transaction failed");
            drop(conn);
            for p in pending {
                fail_pending(p, e.clone());
            }
        }
    }
}

/// One publication of the bulk path.
struct Planned<'a> {
    /// Its request in the batch.
    send: usize,
    ctx: &'a SendContext,
    plan: Publication<'a>,
}

/// The bulk transaction. Before the counter: the notification ids
/// (`nextval`), the delivery log and the jobs. Then one statement takes the
/// counter's row lock (moving it on by the batch) and writes the rows that
/// carry a seq (notifications, inbox entries, broadcasts); under the lock
/// still, the idempotency keys (if any) and the commit.
async fn apply_bulk(
    conn: &mut PgConnection,
    nids: &mut NidReserve,
    pending: &[Pending],
) -> BulkOutcome {
    let mut planned = Vec::new();
    for (send, p) in pending.iter().enumerate() {
        let Pending::Send {
            ctx, batch, items, ..
        } = p
        else {
            continue;
        };
        for (n, item) in batch.iter().zip(items) {
            if let Item::Publish(r) = item {
                // A clone: should the batch fall back, the serial path
                // plans again from the resolved audience.
                let plan = Publication::new(n, (**r).clone(), 0, None, &ctx.key_id, ctx.now);
                planned.push(Planned { send, ctx, plan });
            }
        }
    }
    let state = match bulk_write(conn, nids, &mut planned).await {
        Ok(state) => state,
        Err(e) => {
            // A refused statement leaves the connection usable (ROLLBACK
            // works); a broken connection does not.
            return match sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
                Ok(_) if !matches!(e, StoreError::Unavailable { .. } | StoreError::Closed) => {
                    BulkOutcome::RolledBack(e)
                }
                _ => BulkOutcome::Failed(e),
            };
        }
    };
    let state = match state {
        Ok(state) => state,
        Err(commit) => return BulkOutcome::Failed(commit),
    };
    // The receipts, in each request's order: published ones from the plans,
    // replayed ones as resolved.
    let mut receipts: Vec<Vec<SendReceipt>> = Vec::with_capacity(pending.len());
    let mut events = Vec::with_capacity(planned.len());
    let mut plans = planned.into_iter().peekable();
    for (send, p) in pending.iter().enumerate() {
        let mut own = Vec::new();
        if let Pending::Send { items, .. } = p {
            for item in items {
                match item {
                    Item::Replayed(r) => own.push(r.clone()),
                    _ => {
                        let next = plans.next_if(|pl| pl.send == send);
                        if let Some(pl) = next {
                            let (event, receipt) = pl.plan.finish(&HashMap::new());
                            events.push(event);
                            own.push(receipt);
                        }
                    }
                }
            }
        }
        receipts.push(own);
    }
    BulkOutcome::Committed {
        receipts,
        state: TxState {
            last_seq: state.last_seq,
            events,
            jobs_added: state.jobs_added,
        },
    }
}

/// How many notification ids the writer draws at least when it draws.
const NID_BLOCK: usize = 256;

/// How long drawn ids are kept for later batches. Ids are drawn before the
/// batches that use them, so they follow the order of creation only
/// roughly; retention walks notifications by id and stops at the first one
/// too young, and the console lists them by id. Kept for at most a second,
/// ids are out of order by at most that across nodes, as drawing per batch
/// already made them by a batch's time.
const NID_MAX_AGE: Duration = Duration::from_secs(1);

/// The writer's notification ids, drawn ahead from the identity's sequence
/// in blocks (one query serves many small batches, where each used to draw
/// its own: one statement and one round trip fewer per batch). Ids of a
/// batch that fails are not given back, as with any sequence.
#[derive(Default)]
struct NidReserve {
    ids: std::collections::VecDeque<i64>,
    drawn_at: Option<Instant>,
}

impl NidReserve {
    /// How many ids to draw before taking `n` at `now`, if any; the ids
    /// left are let go when too old or too few.
    fn draw_before_taking(&mut self, n: usize, now: Instant) -> Option<usize> {
        let fresh = self
            .drawn_at
            .is_some_and(|at| now.duration_since(at) < NID_MAX_AGE);
        if fresh && self.ids.len() >= n {
            return None;
        }
        self.ids.clear();
        Some(n.max(NID_BLOCK))
    }

    /// Keeps ids drawn at `now`.
    fn fill(&mut self, ids: Vec<i64>, now: Instant) {
        self.ids.extend(ids);
        self.drawn_at = Some(now);
    }

    /// The next `n` ids (all of them after [`Self::draw_before_taking`] and
    /// [`Self::fill`]).
    fn take(&mut self, n: usize) -> Vec<i64> {
        self.ids.drain(..n.min(self.ids.len())).collect()
    }
}

/// The statements of [`apply_bulk`]. The outer error: nothing was
/// committed (roll back); the inner one: the commit failed.
///
/// The nids come first, from the writer's reserve, drawn from their
/// sequence when it runs short or old (outside any transaction: a sequence
/// hands numbers out whatever happens to the transaction). Then
/// everything but the idempotency keys is one statement ([`BULK`]). A
/// batch without keys runs it on its own, outside an explicit transaction:
/// PostgreSQL commits it when it ends, so the counter's row lock is held
/// for the rest of that statement's work and the commit's WAL flush, with
/// no round trip to this node in between. A batch with keys runs it in a
/// transaction, then stores the keys under the lock and commits.
async fn bulk_write(
    conn: &mut PgConnection,
    reserve: &mut NidReserve,
    planned: &mut [Planned<'_>],
) -> std::result::Result<std::result::Result<TxState, StoreError>, StoreError> {
    let keyed = planned.iter().any(|pl| pl.plan.n.idempotency_key.is_some());
    let now = Instant::now();
    if let Some(more) = reserve.draw_before_taking(planned.len(), now) {
        let drawn: Vec<i64> = sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('notifications', 'nid'))
             FROM generate_series(1, $1)",
        )
        .bind(more as i64)
        .fetch_all(&mut *conn)
        .await?;
        if drawn.len() != more {
            return Err(StoreError::backend("nextval gave too few notification ids"));
        }
        reserve.fill(drawn, now);
    }
    let nids = reserve.take(planned.len());
    if keyed {
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    }

    // Every row names its notification by nid; the rows that carry a seq
    // hold their send's ordinal (1-based), which the statement adds to the
    // counter's old value.
    let mut log = LogColumns::default();
    let (mut job_kinds, mut job_payloads, mut job_nids, mut job_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, pl) in planned.iter_mut().enumerate() {
        pl.plan.seq = 1 + k as i64;
    }
    let mut rows = SeqColumns::default();
    for (pl, nid) in planned.iter().zip(&nids) {
        for e in &pl.plan.log {
            log.push(*nid, e);
        }
        for job in &pl.plan.jobs {
            job_kinds.push(job.kind());
            job_payloads
                .push(serde_json::to_string(job).map_err(|e| StoreError::backend(e.to_string()))?);
            job_nids.push(*nid);
            job_times.push(pl.plan.now.0);
        }
        rows.push(*nid, &pl.plan);
    }
    let jobs_added = !job_kinds.is_empty();

    let locking = Instant::now();
    let written: std::result::Result<(i64, f64), sqlx::Error> = sqlx::query_as(BULK)
        .bind(&rows.n_nids)
        .bind(&rows.n_ids)
        .bind(&rows.n_seqs)
        .bind(&rows.n_senders)
        .bind(&rows.n_contents)
        .bind(&rows.n_audiences)
        .bind(&rows.n_channels)
        .bind(&rows.n_actors)
        .bind(&rows.n_recipients)
        .bind(&rows.n_times)
        .bind(&rows.n_expires)
        .bind(&rows.i_uids)
        .bind(&rows.i.seqs)
        .bind(&rows.i.nids)
        .bind(&rows.i.expires)
        .bind(&rows.i.categories)
        .bind(&rows.i.entity_types)
        .bind(&rows.i.entity_ids)
        .bind(&rows.b_gids)
        .bind(&rows.b.seqs)
        .bind(&rows.b.nids)
        .bind(&rows.b_actors)
        .bind(&rows.b.expires)
        .bind(&rows.b.categories)
        .bind(&rows.b.entity_types)
        .bind(&rows.b.entity_ids)
        .bind(planned.len() as i64)
        .bind(&log.nids)
        .bind(&log.recipients)
        .bind(&log.channels)
        .bind(&log.statuses)
        .bind(&log.attempts)
        .bind(&log.errors)
        .bind(&log.ats)
        .bind(&log.reasons)
        .bind(&log.untils)
        .bind(&job_kinds)
        .bind(&job_payloads)
        .bind(&job_nids)
        .bind(&job_times)
        .bind(SEQ_JUMP)
        .fetch_one(&mut *conn)
        .await;
    drop(rows);
    let (base, waited) = match written {
        Ok(row) => row,
        // Outside a transaction the statement was its own: whether it
        // failed or its commit did, nothing was written, unless the
        // connection broke, when nobody can tell (as for a `COMMIT`).
        Err(e) if !keyed => {
            let e = StoreError::from(e);
            return if matches!(e, StoreError::Unavailable { .. } | StoreError::Closed) {
                Ok(Err(e))
            } else {
                Err(e)
            };
        }
        Err(e) => return Err(e.into()),
    };
    for pl in planned.iter_mut() {
        pl.plan.seq += base;
    }
    let last_seq = base + planned.len() as i64;
    let done = |path| {
        lock_held(locking, Some(waited), path);
        metrics::histogram!("belfry_pg_bulk_batch_notifications").record(planned.len() as f64);
        TxState {
            last_seq,
            events: Vec::new(),
            jobs_added,
        }
    };
    if !keyed {
        return Ok(Ok(done("bulk")));
    }

    // Idempotency keys, under the counter's lock: a key another transaction
    // stored since phase 1 looked (or a key twice in this batch) fails the
    // statement or returns fewer rows; the batch then goes send by send,
    // which answers the earlier receipt.
    let mut keys = KeyColumns::default();
    for (pl, nid) in planned.iter().zip(&nids) {
        if let Some(key) = &pl.plan.n.idempotency_key {
            keys.scopes.push(pl.ctx.key_id.as_str());
            keys.keys.push(key.as_str());
            keys.nids.push(*nid);
            keys.times.push(pl.ctx.now.0);
            keys.fingerprints.push(send::fingerprint(pl.plan.n)?);
        }
    }
    let stored: i64 = sqlx::query_scalar(
        "WITH k AS (
            INSERT INTO idempotency (scope, key, nid, created_at, fingerprint)
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
            ON CONFLICT (scope, key) DO UPDATE SET nid = excluded.nid,
                created_at = excluded.created_at, fingerprint = excluded.fingerprint
            WHERE idempotency.created_at <= excluded.created_at - $6
            RETURNING 1)
         SELECT COUNT(*) FROM k",
    )
    .bind(&keys.scopes)
    .bind(&keys.keys)
    .bind(&keys.nids)
    .bind(&keys.times)
    .bind(&keys.fingerprints)
    .bind(send::IDEMPOTENCY_WINDOW_MS)
    .fetch_one(&mut *conn)
    .await?;
    if stored != keys.keys.len() as i64 {
        return Err(StoreError::conflict(Constraint::Database(
            "idempotency key stored meanwhile".into(),
        )));
    }
    Ok(match sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
        Ok(_) => Ok(done("bulk_keys")),
        Err(e) => Err(StoreError::from(e)),
    })
}

/// The serial path's lock on the counter: its value, and where this
/// transaction's seqs start (past [`SEQ_JUMP`] more when `seq_guard` was
/// empty: the database lost unflushed commits in a crash).
const SERIAL_LOCK: &str = "
WITH g AS (INSERT INTO seq_guard (id) VALUES (TRUE) ON CONFLICT DO NOTHING RETURNING 1)
SELECT value, value + (SELECT COUNT(*) FROM g) * $1 FROM seq_counter FOR UPDATE OF seq_counter";

/// The bulk path's statement. The delivery log lines (`d`) and jobs (`j`)
/// name their notification by nid, not by seq, and are written first: the
/// counter's `UPDATE` (`c`) counts their rows in its `WHERE`, so they are
/// done before it takes the row lock. Then the rows that carry a seq
/// (notifications, inbox entries, broadcasts): each array holds its send's
/// ordinal in the batch (1-based), added to the counter's old value, which
/// the statement returns, with the seconds from the statement's start until
/// the counter's row was updated (`RETURNING` is evaluated once the row
/// lock is taken): writing the log lines and jobs, and waiting for the
/// lock.
const BULK: &str = "
WITH d AS (
    INSERT INTO deliveries (nid, recipient, channel, status, attempt, error, at, reason, held_until)
    SELECT n, r, c, s, a, e, t, re, u
    FROM UNNEST($28::bigint[], $29::text[], $30::text[], $31::text[], $32::bigint[], $33::text[],
                $34::bigint[], $35::text[], $36::bigint[])
         WITH ORDINALITY AS x(n, r, c, s, a, e, t, re, u, o)
    ORDER BY o
    RETURNING 1),
 j AS (
    INSERT INTO jobs (kind, payload, nid, run_at, created_at)
    SELECT k, p, n, t, t
    FROM UNNEST($37::text[], $38::text[], $39::bigint[], $40::bigint[])
         WITH ORDINALITY AS x(k, p, n, t, o)
    ORDER BY o
    RETURNING 1),
 g AS (
    INSERT INTO seq_guard (id) VALUES (TRUE) ON CONFLICT DO NOTHING RETURNING 1),
 c AS (
    UPDATE seq_counter SET value = value + $27 + (SELECT COUNT(*) FROM g) * $41
    WHERE (SELECT COUNT(*) FROM d) + (SELECT COUNT(*) FROM j) >= 0
    RETURNING value - $27 AS base,
              EXTRACT(EPOCH FROM clock_timestamp() - statement_timestamp())::float8 AS waited),
 n AS (
    INSERT INTO notifications (nid, id, seq, status, sender, content, audience, channels,
                               actor_uid, recipients, created_at, published_at, expires_at)
    SELECT n, i, c.base + s, 'published', se, co, a, ch, ac, r, t, t, e
    FROM c, UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                   $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
         AS x(n, i, s, se, co, a, ch, ac, r, t, e)),
 i AS (
    INSERT INTO inbox (uid, seq, nid, expires_at, category, entity_type, entity_id)
    SELECT u, c.base + s, n, e, ca, et, ei
    FROM c, UNNEST($12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
                   $16::text[], $17::text[], $18::text[]) AS x(u, s, n, e, ca, et, ei)),
 b AS (
    INSERT INTO broadcasts (gid, seq, nid, actor_uid, expires_at, category, entity_type, entity_id)
    SELECT g, c.base + s, n, ac, e, ca, et, ei
    FROM c, UNNEST($19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[],
                   $23::bigint[], $24::text[], $25::text[], $26::text[])
         AS x(g, s, n, ac, e, ca, et, ei))
SELECT base, waited FROM c";

/// The delivery log lines of a bulk write, a column each.
#[derive(Default)]
struct LogColumns<'a> {
    nids: Vec<i64>,
    recipients: Vec<&'a str>,
    channels: Vec<&'a str>,
    statuses: Vec<&'a str>,
    attempts: Vec<i64>,
    errors: Vec<Option<&'a str>>,
    ats: Vec<i64>,
    reasons: Vec<Option<&'a str>>,
    untils: Vec<Option<i64>>,
}

impl<'a> LogColumns<'a> {
    fn push(&mut self, nid: i64, e: &'a crate::jobs::DeliveryEvent) {
        self.nids.push(nid);
        self.recipients.push(e.recipient.as_str());
        self.channels.push(e.channel.as_str());
        self.statuses.push(e.status.as_str());
        self.attempts.push(e.attempt);
        self.errors.push(e.error.as_deref());
        self.ats.push(e.at.0);
        self.reasons.push(e.reason.map(|r| r.as_str()));
        self.untils.push(e.until.map(|u| u.0));
    }
}

/// The idempotency keys of a bulk write.
#[derive(Default)]
struct KeyColumns<'a> {
    scopes: Vec<&'a str>,
    keys: Vec<&'a str>,
    nids: Vec<i64>,
    times: Vec<i64>,
    fingerprints: Vec<Vec<u8>>,
}

/// The columns inbox entries and broadcast rows share.
#[derive(Default)]
struct EntryRows<'a> {
    seqs: Vec<i64>,
    nids: Vec<i64>,
    expires: Vec<Option<i64>>,
    categories: Vec<Option<&'a str>>,
    entity_types: Vec<Option<&'a str>>,
    entity_ids: Vec<Option<&'a str>>,
}

impl<'a> EntryRows<'a> {
    fn push(&mut self, seq: i64, nid: i64, p: &Publication<'a>) {
        self.seqs.push(seq);
        self.nids.push(nid);
        self.expires.push(p.columns.expires_at);
        self.categories.push(p.columns.category);
        self.entity_types.push(p.columns.entity_type);
        self.entity_ids.push(p.columns.entity_id);
    }
}

/// The rows of a bulk write that carry a seq.
#[derive(Default)]
struct SeqColumns<'a> {
    n_nids: Vec<i64>,
    n_ids: Vec<String>,
    n_seqs: Vec<i64>,
    n_senders: Vec<&'a str>,
    n_contents: Vec<String>,
    n_audiences: Vec<String>,
    n_channels: Vec<Option<String>>,
    n_actors: Vec<Option<i64>>,
    n_recipients: Vec<Option<i64>>,
    n_times: Vec<i64>,
    n_expires: Vec<Option<i64>>,
    i: EntryRows<'a>,
    i_uids: Vec<i64>,
    b: EntryRows<'a>,
    b_gids: Vec<i64>,
    b_actors: Vec<Option<i64>>,
}

impl<'a> SeqColumns<'a> {
    fn push(&mut self, nid: i64, p: &Publication<'a>) {
        self.n_nids.push(nid);
        self.n_ids.push(p.id.clone());
        self.n_seqs.push(p.seq);
        self.n_senders.push(p.sender);
        self.n_contents.push(p.content_json.clone());
        self.n_audiences.push(p.audience_json());
        self.n_channels.push(p.channels_json());
        self.n_actors.push(p.actor_uid);
        self.n_recipients.push(p.recipients);
        self.n_times.push(p.now.0);
        self.n_expires.push(p.columns.expires_at);
        for uid in p.inbox_uids() {
            self.i_uids.push(uid);
            self.i.push(p.seq, nid, p);
        }
        for gid in &p.broadcast_gids {
            self.b_gids.push(*gid);
            self.b_actors.push(p.actor_uid);
            self.b.push(p.seq, nid, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's commits wait for their flush while requests come one at
    /// a time, stop at once when they queue, and wait again only after
    /// eight lone batches in a row.
    #[test]
    fn commits_wait_for_their_flush_until_requests_queue_and_again_after_lone_ones() {
        let mut pace = Pace::default();
        let busy = [false, true, false, false, false, false, false, false, true];
        let seen: Vec<bool> = busy.iter().map(|b| pace.flush(*b)).collect();
        assert_eq!(
            seen,
            [true, false, false, false, false, false, false, false, false]
        );
        let seen: Vec<bool> = (0..9).map(|_| pace.flush(false)).collect();
        assert_eq!(
            seen,
            [false, false, false, false, false, false, false, true, true]
        );
    }

    #[test]
    fn the_nid_reserve_draws_a_block_serves_batches_from_it_and_lets_old_ids_go() {
        let start = Instant::now();
        let mut r = NidReserve::default();
        // Empty: a block, however small the batch.
        assert_eq!(r.draw_before_taking(3, start), Some(NID_BLOCK));
        r.fill((1..=NID_BLOCK as i64).collect(), start);
        assert_eq!(r.take(3), vec![1, 2, 3]);
        // The next batches come from it, in order, without drawing.
        let later = start + Duration::from_millis(10);
        assert_eq!(r.draw_before_taking(2, later), None);
        assert_eq!(r.take(2), vec![4, 5]);
        // Too few left: they go, and what the batch needs (at least a block) is drawn.
        let left = NID_BLOCK - 5;
        assert_eq!(r.draw_before_taking(left + 1, later), Some(NID_BLOCK));
        assert!(r.ids.is_empty());
        r.fill((1000..1000 + NID_BLOCK as i64).collect(), later);
        assert_eq!(
            r.draw_before_taking(2 * NID_BLOCK, later),
            Some(2 * NID_BLOCK)
        );
        r.fill((5000..5000 + 2 * NID_BLOCK as i64).collect(), later);
        assert_eq!(r.take(2 * NID_BLOCK).len(), 2 * NID_BLOCK);
        // Old ids are not used: drawn ids follow creation within NID_MAX_AGE.
        r.fill(vec![9000, 9001], later);
        assert_eq!(
            r.draw_before_taking(1, later + NID_MAX_AGE - Duration::from_millis(1)),
            None
        );
        assert_eq!(
            r.draw_before_taking(1, later + NID_MAX_AGE),
            Some(NID_BLOCK)
        );
        assert!(r.ids.is_empty());
    }
}
