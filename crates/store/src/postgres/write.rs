//! Writes of the PostgreSQL backend that assign no seq: each runs in its own
//! transaction on a pooled connection (the callers in `mod.rs` commit and
//! publish the events afterwards). Seqs they record (a user's creation, a
//! membership change, the read watermark) are the highest committed one,
//! read from `seq_counter`.

use super::read::{self, BroadcastFilter, InboxUser};
use crate::plan::inbox::{self, Applied, InboxChange};
use crate::plan::stored::subscriber_columns;
use crate::plan::{stack, users};
use crate::webhooks::{WebhookEventType, read_targets, unread_query};
use crate::{
    ApiKeyInfo, Group, ItemOp, NewApiKey, NotificationStatus, Result, StoreError, StoreEvent,
    Subscriber,
};
use belfry_core::{Category, EntityRef, GroupId, Millis, Patch, User, UserId, UserPatch};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// The highest committed seq (a plain read: it does not wait for a
/// publishing transaction in flight, whose seqs are higher).
pub(crate) async fn current_seq(c: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT value FROM seq_counter")
        .fetch_one(&mut *c)
        .await?)
}

pub(crate) async fn meta_init(c: &mut PgConnection, key: &str, fresh: &[u8]) -> Result<Vec<u8>> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(fresh)
        .execute(&mut *c)
        .await?;
    read::meta(c, key)
        .await?
        .ok_or_else(|| StoreError::backend(format!("meta {key} vanished")))
}

pub(crate) async fn create_api_key(
    c: &mut PgConnection,
    key: &NewApiKey,
    now: Millis,
) -> Result<ApiKeyInfo> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    sqlx::query(
        "INSERT INTO api_keys (id, name, scopes, prefix, hash, created_at, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(scopes.join(","))
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(now.0)
    .bind(&key.source)
    .execute(&mut *c)
    .await?;
    read::api_key_by_id(c, &key.id)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Stores `key` unless a key with the same hash exists (also when another
/// node stores it at the same moment).
pub(crate) async fn ensure_api_key(
    c: &mut PgConnection,
    key: &NewApiKey,
    now: Millis,
) -> Result<()> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    sqlx::query(
        "INSERT INTO api_keys (id, name, scopes, prefix, hash, created_at, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(scopes.join(","))
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(now.0)
    .bind(&key.source)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn revoke_source_keys(
    c: &mut PgConnection,
    source: &str,
    now: Millis,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = $2 WHERE source = $1 AND revoked_at IS NULL RETURNING id",
    )
    .bind(source)
    .bind(now.0)
    .fetch_all(&mut *c)
    .await?)
}

pub(crate) async fn revoke_api_key(
    c: &mut PgConnection,
    id: &str,
    now: Millis,
) -> Result<ApiKeyInfo> {
    sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
        .bind(id)
        .bind(now.0)
        .execute(&mut *c)
        .await?;
    read::api_key_by_id(c, id)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Creates or updates a user: `(user, created, the event to emit after the commit)`.
pub(crate) async fn put_user(
    c: &mut PgConnection,
    id: &UserId,
    patch: UserPatch,
    now: Millis,
) -> Result<(User, bool, Option<StoreEvent>)> {
    // Two requests creating the same user at once: the second waits here
    // and then updates the first one's row.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('belfry-user:' || $1))")
        .bind(id.as_str())
        .execute(&mut *c)
        .await?;
    let existing = read::uid(c, id).await?;
    let current = match existing {
        Some(uid) => Some(read::user(c, uid).await?),
        None => None,
    };
    let email_owner = match &patch.email {
        Patch::Value(email) => read::user_by_email(c, email)
            .await?
            .map(|(_, owner)| UserId::parse(&owner).map_err(StoreError::backend))
            .transpose()?,
        _ => None,
    };
    let row = users::apply_patch(id, patch, current.as_ref(), email_owner.as_ref())?;
    let seq = current_seq(c).await?;
    let uid = match existing {
        Some(uid) => {
            sqlx::query(
                "UPDATE users SET email = $2, name = $3, avatar_url = $4, locale = $5, timezone = $6,
                        data = $7, updated_at = $8 WHERE uid = $1",
            )
            .bind(uid)
            .bind(row.email())
            .bind(&row.name)
            .bind(&row.avatar_url)
            .bind(row.locale())
            .bind(row.timezone())
            .bind(&row.data)
            .bind(now.0)
            .execute(&mut *c)
            .await?;
            uid
        }
        None => sqlx::query_scalar(
            "INSERT INTO users (id, email, name, avatar_url, locale, timezone, data, created_seq,
                                    read_wm, seen_wm, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $9, $9)
                 RETURNING uid",
        )
        .bind(id.as_str())
        .bind(row.email())
        .bind(&row.name)
        .bind(&row.avatar_url)
        .bind(row.locale())
        .bind(row.timezone())
        .bind(&row.data)
        .bind(seq)
        .bind(now.0)
        .fetch_one(&mut *c)
        .await?,
    };
    if let Some(groups) = &row.groups {
        set_memberships(c, uid, groups, seq, now).await?;
    }
    let user = read::user(c, uid).await?;
    let event = users::updated(&user, row.groups.is_some());
    Ok((user, existing.is_none(), event))
}

async fn ensure_group(c: &mut PgConnection, id: &GroupId, now: Millis) -> Result<i64> {
    sqlx::query("INSERT INTO groups (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(id.as_str())
        .bind(now.0)
        .execute(&mut *c)
        .await?;
    read::gid(c, id).await?.ok_or(StoreError::NotFound)
}

/// Makes the user's current groups exactly `groups`. Leaving records the
/// current seq so that broadcasts sent while a member stay in the inbox.
async fn set_memberships(
    c: &mut PgConnection,
    uid: i64,
    groups: &[GroupId],
    seq: i64,
    now: Millis,
) -> Result<()> {
    let mut wanted = HashSet::new();
    for g in groups {
        wanted.insert(ensure_group(c, g, now).await?);
    }
    let current: HashSet<i64> = sqlx::query_scalar::<_, i64>(
        "SELECT gid FROM memberships WHERE uid = $1 AND left_seq IS NULL",
    )
    .bind(uid)
    .fetch_all(&mut *c)
    .await?
    .into_iter()
    .collect();
    let (leave, join) = users::membership_changes(&wanted, &current);
    for gid in leave {
        sqlx::query(
            "UPDATE memberships SET left_seq = $3 WHERE uid = $1 AND gid = $2 AND left_seq IS NULL",
        )
        .bind(uid)
        .bind(gid)
        .bind(seq)
        .execute(&mut *c)
        .await?;
    }
    for gid in join {
        sqlx::query(
            "INSERT INTO memberships (uid, gid, joined_seq) VALUES ($1, $2, $3)
             ON CONFLICT (uid, gid, joined_seq) DO UPDATE SET left_seq = NULL",
        )
        .bind(uid)
        .bind(gid)
        .bind(seq)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Stores a revocation (see `plan::users::Revocation` for its `after`) and forgets the ones that
/// refuse nothing unexpired any more; the stored `after`.
async fn store_revocation(c: &mut PgConnection, r: &users::Revocation) -> Result<Millis> {
    let after: i64 = sqlx::query_scalar(
        "INSERT INTO token_revocations (user_id, after) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET after = GREATEST(excluded.after, token_revocations.after + 1)
         RETURNING after",
    )
    .bind(r.user.as_str())
    .bind(r.after.0)
    .fetch_one(&mut *c)
    .await?;
    sqlx::query("DELETE FROM token_revocations WHERE after < $1")
        .bind(r.forget_before.0)
        .execute(&mut *c)
        .await?;
    Ok(Millis(after))
}

/// Revokes a user's tokens: the stored `after` and the event to emit after
/// the commit.
pub(crate) async fn revoke_tokens(
    c: &mut PgConnection,
    id: &UserId,
    now: Millis,
) -> Result<(Millis, StoreEvent)> {
    read::uid(c, id).await?.ok_or(StoreError::NotFound)?;
    let revocation = users::revoke_tokens(id, now);
    let after = store_revocation(c, &revocation).await?;
    Ok((after, revocation.event(after)))
}

/// Removes a user and everything that is theirs and revokes their tokens:
/// the events (tokens revoked, their streams end) to emit after the commit.
pub(crate) async fn delete_user(
    c: &mut PgConnection,
    id: &UserId,
    now: Millis,
) -> Result<Vec<StoreEvent>> {
    // Waits for a publishing transaction in flight (which may be writing
    // this user's inbox rows), so that none is left behind.
    sqlx::query("SELECT value FROM seq_counter FOR UPDATE")
        .execute(&mut *c)
        .await?;
    let uid = read::uid(c, id).await?.ok_or(StoreError::NotFound)?;
    for sql in [
        "DELETE FROM subscriptions WHERE uid = $1",
        "DELETE FROM push_subscriptions WHERE uid = $1",
        "DELETE FROM mobile_devices WHERE uid = $1",
        "DELETE FROM chat_targets WHERE uid = $1",
        "DELETE FROM inbox WHERE uid = $1",
        "DELETE FROM stack_members WHERE uid = $1",
        "DELETE FROM broadcast_state WHERE uid = $1",
        "DELETE FROM memberships WHERE uid = $1",
        "DELETE FROM users WHERE uid = $1",
    ] {
        sqlx::query(sql).bind(uid).execute(&mut *c).await?;
    }
    let revocation = users::delete(id, now);
    let after = store_revocation(c, &revocation).await?;
    Ok(vec![revocation.event(after), users::deleted(id)])
}

pub(crate) async fn subscribe(
    c: &mut PgConnection,
    entity: &EntityRef,
    who: &Subscriber,
    now: Millis,
) -> Result<bool> {
    let (kind, subscriber) = subscriber_columns(who);
    let uid = match who {
        Subscriber::User(user) => Some(read::uid(c, user).await?.ok_or(StoreError::NotFound)?),
        Subscriber::Email(_) => None,
    };
    let n = sqlx::query(
        "INSERT INTO subscriptions (entity_type, entity_id, kind, subscriber, uid, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&entity.kind)
    .bind(&entity.id)
    .bind(kind)
    .bind(subscriber)
    .bind(uid)
    .bind(now.0)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn unsubscribe(
    c: &mut PgConnection,
    entity: &EntityRef,
    who: &Subscriber,
) -> Result<bool> {
    let (kind, subscriber) = subscriber_columns(who);
    let n = sqlx::query(
        "DELETE FROM subscriptions WHERE entity_type = $1 AND entity_id = $2 AND kind = $3 AND subscriber = $4",
    )
    .bind(&entity.kind)
    .bind(&entity.id)
    .bind(kind)
    .bind(subscriber)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn put_group(
    c: &mut PgConnection,
    id: &GroupId,
    name: Option<String>,
    now: Millis,
) -> Result<(Group, bool)> {
    let created: bool = sqlx::query_scalar(
        "INSERT INTO groups (id, name, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name
         RETURNING (xmax = 0)",
    )
    .bind(id.as_str())
    .bind(&name)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?;
    Ok((read::group(c, id).await?, created))
}

/// Cancels a notification: pending jobs are cancelled, broadcast rows go,
/// and each inbox entry that shows it shrinks or goes (`plan::stack`).
/// The event to emit after the commit; None if it was cancelled already.
pub(crate) async fn delete_notification(
    c: &mut PgConnection,
    id: &str,
    now: Millis,
) -> Result<Option<StoreEvent>> {
    // Waits for a publishing transaction in flight (which may be growing
    // one of the stacks changed here).
    sqlx::query("SELECT value FROM seq_counter FOR UPDATE")
        .execute(&mut *c)
        .await?;
    // The row lock waits for a publication of this (scheduled) notification
    // in flight, and keeps a concurrent publication from starting.
    let (nid, seq, status, audience, stack_key): stack::CancelRow = sqlx::query_as(
        "SELECT nid, seq, status, audience, stack_key FROM notifications WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    if !stack::needs_cancelling(&status)? {
        return Ok(None);
    }
    let plan = stack::cancel(nid, stack_entries(c, nid, stack_key.as_deref()).await?);
    super::jobs::cancel_jobs(c, nid, now).await?;
    sqlx::query("UPDATE notifications SET status = $2 WHERE nid = $1")
        .bind(nid)
        .bind(NotificationStatus::Cancelled.as_str())
        .execute(&mut *c)
        .await?;
    if !plan.remove.is_empty() {
        let (uids, seqs): (Vec<i64>, Vec<i64>) = plan.remove.iter().copied().unzip();
        sqlx::query(
            "DELETE FROM inbox i USING UNNEST($1::bigint[], $2::bigint[]) AS x(uid, seq)
             WHERE i.uid = x.uid AND i.seq = x.seq",
        )
        .bind(&uids)
        .bind(&seqs)
        .execute(&mut *c)
        .await?;
    }
    for s in &plan.shrink {
        let query = match s.show {
            None => sqlx::query("UPDATE inbox SET stack_count = $3 WHERE uid = $1 AND seq = $2")
                .bind(s.uid)
                .bind(s.seq)
                .bind(s.count),
            // The entry shows its newest remaining member from now on.
            Some((shown_seq, shown_nid)) => sqlx::query(
                "UPDATE inbox SET seq = $4, nid = n.nid, stack_count = $3, expires_at = n.expires_at,
                        category = n.content::jsonb ->> 'category',
                        entity_type = n.content::jsonb -> 'entity' ->> 'type',
                        entity_id = n.content::jsonb -> 'entity' ->> 'id'
                 FROM notifications n WHERE n.nid = $5 AND inbox.uid = $1 AND inbox.seq = $2",
            )
            .bind(s.uid)
            .bind(s.seq)
            .bind(s.count)
            .bind(shown_seq)
            .bind(shown_nid),
        };
        query.execute(&mut *c).await?;
    }
    sqlx::query("DELETE FROM stack_members WHERE nid = $1")
        .bind(nid)
        .execute(&mut *c)
        .await?;
    let mut broadcast_removed = false;
    if let Some(seq) = seq {
        broadcast_removed = sqlx::query("DELETE FROM broadcasts WHERE seq = $1")
            .bind(seq)
            .execute(&mut *c)
            .await?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM broadcast_state WHERE seq = $1")
            .bind(seq)
            .execute(&mut *c)
            .await?;
    }
    stack::removed(id, plan.users, broadcast_removed, &audience).map(Some)
}

/// The inbox entries that may show notification `nid`: those of its own
/// rows and, for a stacked one, the entries of its stack that count it,
/// each with the user's members of the stack (newest first).
async fn stack_entries(
    c: &mut PgConnection,
    nid: i64,
    stack_key: Option<&str>,
) -> Result<Vec<stack::Entry>> {
    let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT i.uid, u.id, i.seq, i.nid, i.stack_count FROM inbox i JOIN users u ON u.uid = i.uid
         WHERE i.nid = $1
         UNION
         SELECT i.uid, u.id, i.seq, i.nid, i.stack_count FROM stack_members m
           JOIN inbox i ON i.uid = m.uid AND i.stack_key = m.stack_key
           JOIN users u ON u.uid = i.uid
         WHERE m.nid = $1",
    )
    .bind(nid)
    .fetch_all(&mut *c)
    .await?;
    let mut members: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    if let Some(key) = stack_key
        && !rows.is_empty()
    {
        let uids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let found: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT uid, seq, nid FROM stack_members WHERE uid = ANY($1) AND stack_key = $2
             ORDER BY uid, seq DESC",
        )
        .bind(&uids)
        .bind(key)
        .fetch_all(&mut *c)
        .await?;
        for (uid, seq, member) in found {
            members.entry(uid).or_default().push((seq, member));
        }
    }
    rows.into_iter()
        .map(|(uid, user, seq, shown, count)| {
            Ok(stack::Entry {
                uid,
                user: UserId::parse(&user).map_err(StoreError::backend)?,
                seq,
                nid: shown,
                count,
                members: members.remove(&uid).unwrap_or_default(),
            })
        })
        .collect()
}

/// Where an item of a user's inbox lives.
pub(crate) enum Target {
    /// The inbox row with this seq.
    Direct(i64),
    /// The broadcast with this seq.
    Broadcast(i64),
}

pub(crate) async fn locate(
    c: &mut PgConnection,
    u: &InboxUser,
    id: &str,
    now: Millis,
) -> Result<Option<Target>> {
    let found: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT nid, seq, stack_key FROM notifications WHERE id = $1 AND status = 'published'",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    let Some((nid, Some(seq), stack_key)) = found else {
        return Ok(None);
    };
    let direct: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM inbox WHERE nid = $1 AND uid = $2 AND (expires_at IS NULL OR expires_at > $3)",
    )
    .bind(nid)
    .bind(u.uid)
    .bind(now.0)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(s) = direct {
        return Ok(Some(Target::Direct(s)));
    }
    if let Some(key) = stack_key {
        // An older member of a stack addresses the stack's entry.
        let stacked: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM inbox WHERE stack_key = $1 AND uid = $2
               AND (expires_at IS NULL OR expires_at > $3) AND seq >= $4",
        )
        .bind(&key)
        .bind(u.uid)
        .bind(now.0)
        .bind(seq)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(s) = stacked {
            return Ok(Some(Target::Direct(s)));
        }
    }
    if read::broadcast_visible(c, u, seq, now).await? {
        return Ok(Some(Target::Broadcast(seq)));
    }
    Ok(None)
}

/// Applies `op` to one item; false when the user cannot see it.
pub(crate) async fn update_item(
    c: &mut PgConnection,
    u: &InboxUser,
    id: &str,
    op: ItemOp,
    now: Millis,
) -> Result<bool> {
    match locate(c, u, id, now).await? {
        None => Ok(false),
        Some(Target::Direct(seq)) => {
            let sql = match op {
                ItemOp::Read => {
                    "UPDATE inbox SET read_at = COALESCE(read_at, $3) WHERE uid = $1 AND seq = $2"
                }
                ItemOp::Unread => {
                    "UPDATE inbox SET read_at = NULL WHERE uid = $1 AND seq = $2 AND $3::bigint IS NOT NULL"
                }
                ItemOp::Archive => {
                    "UPDATE inbox SET archived_at = COALESCE(archived_at, $3) WHERE uid = $1 AND seq = $2"
                }
                ItemOp::Unarchive => {
                    "UPDATE inbox SET archived_at = NULL WHERE uid = $1 AND seq = $2 AND $3::bigint IS NOT NULL"
                }
                ItemOp::Delete => {
                    "DELETE FROM inbox WHERE uid = $1 AND seq = $2 AND $3::bigint IS NOT NULL"
                }
                ItemOp::Dismiss => {
                    "UPDATE inbox SET dismissed_at = COALESCE(dismissed_at, $3) WHERE uid = $1 AND seq = $2"
                }
            };
            sqlx::query(sql)
                .bind(u.uid)
                .bind(seq)
                .bind(now.0)
                .execute(&mut *c)
                .await?;
            Ok(true)
        }
        Some(Target::Broadcast(seq)) => {
            let sql = match op {
                ItemOp::Read => {
                    "INSERT INTO broadcast_state (uid, seq, read) VALUES ($1, $2, TRUE)
                     ON CONFLICT (uid, seq) DO UPDATE SET read = TRUE"
                }
                ItemOp::Unread => {
                    "INSERT INTO broadcast_state (uid, seq, read) VALUES ($1, $2, FALSE)
                     ON CONFLICT (uid, seq) DO UPDATE SET read = FALSE"
                }
                ItemOp::Archive => {
                    "INSERT INTO broadcast_state (uid, seq, archived_at) VALUES ($1, $2, $3)
                     ON CONFLICT (uid, seq) DO UPDATE
                     SET archived_at = COALESCE(broadcast_state.archived_at, $3)"
                }
                ItemOp::Unarchive => {
                    "INSERT INTO broadcast_state (uid, seq) VALUES ($1, $2)
                     ON CONFLICT (uid, seq) DO UPDATE SET archived_at = NULL"
                }
                ItemOp::Delete => {
                    "INSERT INTO broadcast_state (uid, seq, deleted) VALUES ($1, $2, TRUE)
                     ON CONFLICT (uid, seq) DO UPDATE SET deleted = TRUE"
                }
                ItemOp::Dismiss => {
                    "INSERT INTO broadcast_state (uid, seq, dismissed_at) VALUES ($1, $2, $3)
                     ON CONFLICT (uid, seq) DO UPDATE
                     SET dismissed_at = COALESCE(broadcast_state.dismissed_at, $3)"
                }
            };
            let q = sqlx::query(sql).bind(u.uid).bind(seq);
            let q = if matches!(op, ItemOp::Archive | ItemOp::Dismiss) {
                q.bind(now.0)
            } else {
                q
            };
            q.execute(&mut *c).await?;
            Ok(true)
        }
    }
}

/// Marks the inbox (or one category of it) read. Direct rows are updated;
/// broadcasts are covered by moving the user's read watermark, except for a
/// category, where the few unread broadcasts of that category get state rows.
pub(crate) async fn read_all(
    c: &mut PgConnection,
    u: &InboxUser,
    category: Option<&Category>,
    now: Millis,
) -> Result<i64> {
    let category = category.map(|c| c.as_str());
    let direct = sqlx::query(
        "UPDATE inbox SET read_at = $2 WHERE uid = $1 AND read_at IS NULL AND archived_at IS NULL
           AND ($3::text IS NULL OR category = $3)",
    )
    .bind(u.uid)
    .bind(now.0)
    .bind(category)
    .execute(&mut *c)
    .await?
    .rows_affected() as i64;
    let unread = read::broadcast_unread(
        c,
        u,
        now,
        BroadcastFilter {
            category,
            entity: None,
        },
    )
    .await?;
    if category.is_none() {
        sqlx::query("UPDATE users SET read_wm = (SELECT value FROM seq_counter) WHERE uid = $1")
            .bind(u.uid)
            .execute(&mut *c)
            .await?;
        sqlx::query("UPDATE broadcast_state SET read = NULL WHERE uid = $1 AND read = FALSE")
            .bind(u.uid)
            .execute(&mut *c)
            .await?;
    } else {
        mark_broadcasts_read(c, u, &unread).await?;
    }
    Ok(direct + unread.len() as i64)
}

async fn mark_broadcasts_read(
    c: &mut PgConnection,
    u: &InboxUser,
    seqs: &std::collections::BTreeSet<i64>,
) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = seqs.iter().copied().collect();
    sqlx::query(
        "INSERT INTO broadcast_state (uid, seq, read) SELECT $1, s, TRUE FROM UNNEST($2::bigint[]) s
         ON CONFLICT (uid, seq) DO UPDATE SET read = TRUE",
    )
    .bind(u.uid)
    .bind(&seqs)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn read_entity(
    c: &mut PgConnection,
    u: &InboxUser,
    entity: &EntityRef,
    now: Millis,
) -> Result<i64> {
    let direct = sqlx::query(
        "UPDATE inbox SET read_at = $2 WHERE uid = $1 AND entity_type = $3 AND entity_id = $4
           AND read_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(u.uid)
    .bind(now.0)
    .bind(&entity.kind)
    .bind(&entity.id)
    .execute(&mut *c)
    .await?
    .rows_affected() as i64;
    let unread = read::broadcast_unread(
        c,
        u,
        now,
        BroadcastFilter {
            category: None,
            entity: Some((&entity.kind, &entity.id)),
        },
    )
    .await?;
    mark_broadcasts_read(c, u, &unread).await?;
    Ok(direct + unread.len() as i64)
}

/// Applies one change of a user's inbox: how many items changed, and the
/// event to emit after the commit.
/// Applies one change of a user's inbox: how many items changed, the
/// event for after the commit, and whether webhook jobs were queued.
pub(crate) async fn inbox_change(
    c: &mut PgConnection,
    snapshot: &crate::webhooks::Snapshot,
    u: &InboxUser,
    user: &UserId,
    change: InboxChange,
    now: Millis,
) -> Result<(i64, Option<StoreEvent>, bool)> {
    // What a mark-all-read (or read-entity) reads, for `notification.read`
    // webhooks; nothing is looked up when no webhook subscribes.
    let wants_read = super::webhooks::subscribed(snapshot, c)
        .await?
        .wants(WebhookEventType::NotificationRead);
    let mut read = match &change {
        InboxChange::ReadAll(category) if wants_read => {
            let page = read::list_inbox(c, u, &unread_query(category.as_ref()), now).await?;
            read_targets(&page.items, None)
        }
        InboxChange::ReadEntity(entity) if wants_read => {
            let page = read::list_inbox(c, u, &unread_query(None), now).await?;
            read_targets(&page.items, Some(entity))
        }
        _ => Vec::new(),
    };
    let applied = match &change {
        InboxChange::Item { .. } | InboxChange::Archive(_) => {
            let (op, ids) = change.items().expect("an item change");
            let mut changed = Vec::with_capacity(ids.len());
            for id in ids {
                if update_item(c, u, id, op, now).await? {
                    changed.push(id.clone());
                }
            }
            Applied::Items(changed)
        }
        InboxChange::ReadAll(category) => {
            Applied::Count(read_all(c, u, category.as_ref(), now).await?)
        }
        InboxChange::SeenAll => {
            // Everything committed so far is seen; a send still being
            // committed gets a higher seq and stays unseen.
            sqlx::query(
                "UPDATE users SET seen_wm = (SELECT value FROM seq_counter) WHERE uid = $1",
            )
            .bind(u.uid)
            .execute(&mut *c)
            .await?;
            Applied::Count(0)
        }
        InboxChange::ReadEntity(entity) => Applied::Count(read_entity(c, u, entity, now).await?),
    };
    if wants_read
        && let (
            InboxChange::Item {
                op: ItemOp::Read, ..
            },
            Applied::Items(ids),
        ) = (&change, &applied)
    {
        for id in ids {
            let content: Option<String> =
                sqlx::query_scalar("SELECT content FROM notifications WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
            if let Some(content) = content {
                read.push((id.clone(), content));
            }
        }
    }
    let queued = !read.is_empty() && super::webhooks::read_events(c, user, &read, now).await?;
    let (count, event) = inbox::settle(user, change, applied)?;
    Ok((count, event, queued))
}

/// Folds a user's unread entries above their `inbox_counts.upto` into the
/// kept counts (migration 0015), so that reading the counts stops counting
/// them. Holds the user's counts lock exclusively: every transaction that
/// changed the user's entries before has committed (its triggers hold the
/// lock shared), and one that changes them meanwhile waits and then sees
/// the new `upto`. Safe to run at any time, any number of times.
pub(crate) async fn fold_counts(pool: &sqlx::PgPool, uid: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('belfry-counts'), ($1 % 2147483647)::int4)")
        .bind(uid)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO inbox_counts AS k (uid, upto, unread, unseen)
         SELECT u.uid, MAX(i.seq), COUNT(*), COUNT(*) FILTER (WHERE i.seq > u.seen_wm)
         FROM users u JOIN inbox i ON i.uid = u.uid
         WHERE u.uid = $1 AND i.read_at IS NULL AND i.archived_at IS NULL AND i.expires_at IS NULL
           AND i.seq > COALESCE((SELECT upto FROM inbox_counts WHERE uid = $1), 0)
         GROUP BY u.uid, u.seen_wm
         ON CONFLICT (uid) DO UPDATE SET upto = excluded.upto,
                                         unread = k.unread + excluded.unread,
                                         unseen = k.unseen + excluded.unseen",
    )
    .bind(uid)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
