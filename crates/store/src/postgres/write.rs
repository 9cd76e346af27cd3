//! Writes of the PostgreSQL backend that assign no seq: each runs in its own
//! transaction on a pooled connection (the callers in `mod.rs` commit and
//! publish the events afterwards). Seqs they record (a user's creation, a
//! membership change, the read watermark) are the highest committed one,
//! read from `seq_counter`.

use super::read::{self, BroadcastFilter, InboxUser};
use crate::{
    ApiKeyInfo, BroadcastTargets, Group, ItemOp, NewApiKey, Result, StoreError, StoreEvent,
    Subscriber,
};
use belfry_core::{Category, EntityRef, GroupId, Millis, Patch, User, UserId, UserPatch};
use sqlx::PgConnection;
use std::collections::HashSet;

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
        .ok_or_else(|| StoreError::Backend(format!("meta {key} vanished")))
}

pub(crate) async fn create_api_key(
    c: &mut PgConnection,
    key: &NewApiKey,
    now: Millis,
) -> Result<ApiKeyInfo> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    sqlx::query(
        "INSERT INTO api_keys (id, name, scopes, prefix, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(scopes.join(","))
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(now.0)
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
        "INSERT INTO api_keys (id, name, scopes, prefix, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(scopes.join(","))
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
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

/// Creates or updates a user: `(user, created, groups changed)`.
pub(crate) async fn put_user(
    c: &mut PgConnection,
    id: &UserId,
    patch: UserPatch,
    now: Millis,
) -> Result<(User, bool, bool)> {
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
    if let Patch::Value(email) = &patch.email
        && let Some((owner, other)) = read::user_by_email(c, email).await?
        && Some(owner) != existing
    {
        return Err(StoreError::Conflict(format!(
            "the email address {email} already belongs to user {other}"
        )));
    }
    let cur = current.as_ref();
    let email = patch.email.apply(cur.and_then(|u| u.email.clone()));
    let name = patch.name.apply(cur.and_then(|u| u.name.clone()));
    let avatar = patch
        .avatar_url
        .apply(cur.and_then(|u| u.avatar_url.clone()));
    let locale = patch.locale.apply(cur.and_then(|u| u.locale.clone()));
    let timezone = patch.timezone.apply(cur.and_then(|u| u.timezone.clone()));
    let data = patch
        .data
        .apply(cur.and_then(|u| u.data.clone()))
        .map(|d| d.to_string());
    let seq = current_seq(c).await?;
    let uid = match existing {
        Some(uid) => {
            sqlx::query(
                "UPDATE users SET email = $2, name = $3, avatar_url = $4, locale = $5, timezone = $6,
                        data = $7, updated_at = $8 WHERE uid = $1",
            )
            .bind(uid)
            .bind(email.as_ref().map(|e| e.as_str()))
            .bind(&name)
            .bind(&avatar)
            .bind(locale.as_ref().map(|l| l.as_str()))
            .bind(timezone.as_ref().map(|t| t.as_str()))
            .bind(&data)
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
        .bind(email.as_ref().map(|e| e.as_str()))
        .bind(&name)
        .bind(&avatar)
        .bind(locale.as_ref().map(|l| l.as_str()))
        .bind(timezone.as_ref().map(|t| t.as_str()))
        .bind(&data)
        .bind(seq)
        .bind(now.0)
        .fetch_one(&mut *c)
        .await?,
    };
    let groups_changed = patch.groups.is_some();
    if let Some(groups) = patch.groups {
        set_memberships(c, uid, &groups, seq, now).await?;
    }
    let user = read::user(c, uid).await?;
    Ok((user, existing.is_none(), groups_changed))
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
    for gid in current.difference(&wanted) {
        sqlx::query(
            "UPDATE memberships SET left_seq = $3 WHERE uid = $1 AND gid = $2 AND left_seq IS NULL",
        )
        .bind(uid)
        .bind(gid)
        .bind(seq)
        .execute(&mut *c)
        .await?;
    }
    for gid in wanted.difference(&current) {
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

pub(crate) async fn delete_user(c: &mut PgConnection, id: &UserId) -> Result<()> {
    // Waits for a publishing transaction in flight (which may be writing
    // this user's inbox rows), so that none is left behind.
    sqlx::query("SELECT value FROM seq_counter FOR UPDATE")
        .execute(&mut *c)
        .await?;
    let uid = read::uid(c, id).await?.ok_or(StoreError::NotFound)?;
    for sql in [
        "DELETE FROM subscriptions WHERE uid = $1",
        "DELETE FROM inbox WHERE uid = $1",
        "DELETE FROM broadcast_state WHERE uid = $1",
        "DELETE FROM memberships WHERE uid = $1",
        "DELETE FROM users WHERE uid = $1",
    ] {
        sqlx::query(sql).bind(uid).execute(&mut *c).await?;
    }
    Ok(())
}

fn subscriber_parts(who: &Subscriber) -> (&'static str, String) {
    match who {
        Subscriber::User(u) => ("user", u.to_string()),
        Subscriber::Email(e) => ("email", e.to_string()),
    }
}

pub(crate) async fn subscribe(
    c: &mut PgConnection,
    entity: &EntityRef,
    who: &Subscriber,
    now: Millis,
) -> Result<bool> {
    let (kind, subscriber) = subscriber_parts(who);
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
    .bind(&subscriber)
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
    let (kind, subscriber) = subscriber_parts(who);
    let n = sqlx::query(
        "DELETE FROM subscriptions WHERE entity_type = $1 AND entity_id = $2 AND kind = $3 AND subscriber = $4",
    )
    .bind(&entity.kind)
    .bind(&entity.id)
    .bind(kind)
    .bind(&subscriber)
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

/// Cancels a notification; the event to publish, None if it was cancelled already.
pub(crate) async fn delete_notification(
    c: &mut PgConnection,
    id: &str,
    now: Millis,
) -> Result<Option<StoreEvent>> {
    // The row lock waits for a publication of this (scheduled) notification
    // in flight, and keeps a concurrent publication from starting.
    let (nid, seq, status, audience): (i64, Option<i64>, String, String) = sqlx::query_as(
        "SELECT nid, seq, status, audience FROM notifications WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    if status == "cancelled" {
        return Ok(None);
    }
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT u.id FROM inbox i JOIN users u ON u.uid = i.uid WHERE i.nid = $1",
    )
    .bind(nid)
    .fetch_all(&mut *c)
    .await?;
    let users = users
        .iter()
        .map(|u| UserId::parse(u).map_err(StoreError::Backend))
        .collect::<Result<Vec<_>>>()?;
    let mut broadcast = None;
    super::jobs::cancel_jobs(c, nid, now).await?;
    sqlx::query("UPDATE notifications SET status = 'cancelled' WHERE nid = $1")
        .bind(nid)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM inbox WHERE nid = $1")
        .bind(nid)
        .execute(&mut *c)
        .await?;
    if let Some(seq) = seq {
        let removed = sqlx::query("DELETE FROM broadcasts WHERE seq = $1")
            .bind(seq)
            .execute(&mut *c)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM broadcast_state WHERE seq = $1")
            .bind(seq)
            .execute(&mut *c)
            .await?;
        if removed > 0 {
            let a: serde_json::Value =
                serde_json::from_str(&audience).map_err(|e| StoreError::Backend(e.to_string()))?;
            broadcast = Some(BroadcastTargets {
                all: a["all"].as_bool().unwrap_or(false),
                groups: a["groups"]
                    .as_array()
                    .map(|g| {
                        g.iter()
                            .filter_map(|v| v.as_str().and_then(|s| GroupId::parse(s).ok()))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    Ok(Some(StoreEvent::Removed {
        id: id.to_string(),
        users,
        broadcast,
    }))
}

/// Where an item of a user's inbox lives.
enum Target {
    /// The inbox row with this seq.
    Direct(i64),
    /// The broadcast with this seq.
    Broadcast(i64),
}

async fn locate(
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
            };
            let q = sqlx::query(sql).bind(u.uid).bind(seq);
            let q = if op == ItemOp::Archive {
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
