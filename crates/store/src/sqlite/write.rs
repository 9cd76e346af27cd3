//! Write operations of the SQLite backend. Each runs on the writer thread
//! inside the batch transaction (and its own savepoint).

use super::Writer;
use super::read::{self, BroadcastFilter, InboxUser};
use crate::{
    ApiKeyInfo, BroadcastTargets, Group, ItemOp, NewApiKey, Result, SendContext, SendReceipt,
    StoreError, StoreEvent, Subscriber,
};
use belfry_core::{
    Category, EntityRef, GroupId, Millis, NewNotification, Patch, User, UserId, UserPatch,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

pub(crate) fn meta_init(c: &Connection, key: &str, fresh: &[u8]) -> Result<Vec<u8>> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        params![key, fresh],
    )?;
    read::meta(c, key)?.ok_or_else(|| StoreError::Backend(format!("meta {key} vanished")))
}

pub(crate) fn create_api_key(c: &Connection, key: &NewApiKey, now: Millis) -> Result<ApiKeyInfo> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    c.execute(
        "INSERT INTO api_keys (id, name, scopes, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key.id, key.name, scopes.join(","), key.prefix, &key.hash[..], now.0],
    )?;
    read::api_key_by_id(c, &key.id)?.ok_or(StoreError::NotFound)
}

pub(crate) fn revoke_api_key(c: &Connection, id: &str, now: Millis) -> Result<ApiKeyInfo> {
    c.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![id, now.0],
    )?;
    read::api_key_by_id(c, id)?.ok_or(StoreError::NotFound)
}

pub(crate) fn put_user(
    w: &mut Writer,
    id: &UserId,
    patch: UserPatch,
    now: Millis,
) -> Result<(User, bool)> {
    let c = &w.conn;
    let existing = read::uid(c, id)?;
    let current = match existing {
        Some(uid) => Some(read::user(c, uid)?),
        None => None,
    };
    if let Patch::Value(email) = &patch.email
        && let Some(owner) = read::uid_by_email(c, email)?
        && Some(owner) != existing
    {
        let other: String =
            c.query_row("SELECT id FROM users WHERE uid = ?1", [owner], |r| r.get(0))?;
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
    let uid = match existing {
        Some(uid) => {
            c.execute(
                "UPDATE users SET email = ?2, name = ?3, avatar_url = ?4, locale = ?5, timezone = ?6,
                        data = ?7, updated_at = ?8 WHERE uid = ?1",
                params![
                    uid,
                    email.as_ref().map(|e| e.as_str()),
                    name,
                    avatar,
                    locale.as_ref().map(|l| l.as_str()),
                    timezone.as_ref().map(|t| t.as_str()),
                    data,
                    now.0
                ],
            )?;
            uid
        }
        None => {
            c.execute(
                "INSERT INTO users (id, email, name, avatar_url, locale, timezone, data, created_seq,
                                    read_wm, seen_wm, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?9, ?9)",
                params![
                    id.as_str(),
                    email.as_ref().map(|e| e.as_str()),
                    name,
                    avatar,
                    locale.as_ref().map(|l| l.as_str()),
                    timezone.as_ref().map(|t| t.as_str()),
                    data,
                    w.last_seq,
                    now.0
                ],
            )?;
            c.last_insert_rowid()
        }
    };
    let groups_changed = patch.groups.is_some();
    if let Some(groups) = patch.groups {
        set_memberships(c, uid, &groups, w.last_seq, now)?;
    }
    let user = read::user(c, uid)?;
    if groups_changed {
        w.emit(StoreEvent::Groups {
            user: user.id.clone(),
            groups: user.groups.clone(),
        });
    }
    Ok((user, existing.is_none()))
}

fn ensure_group(c: &Connection, id: &GroupId, now: Millis) -> Result<i64> {
    c.prepare_cached(
        "INSERT INTO groups (id, created_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![id.as_str(), now.0])?;
    read::gid(c, id)?.ok_or(StoreError::NotFound)
}

/// Makes the user's current groups exactly `groups`. Leaving records the
/// current seq so that broadcasts sent while a member stay in the inbox.
fn set_memberships(
    c: &Connection,
    uid: i64,
    groups: &[GroupId],
    seq: i64,
    now: Millis,
) -> Result<()> {
    let wanted: HashSet<i64> = groups
        .iter()
        .map(|g| ensure_group(c, g, now))
        .collect::<Result<_>>()?;
    let current: HashSet<i64> = c
        .prepare_cached("SELECT gid FROM memberships WHERE uid = ?1 AND left_seq IS NULL")?
        .query_map([uid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for gid in current.difference(&wanted) {
        c.prepare_cached(
            "UPDATE memberships SET left_seq = ?3 WHERE uid = ?1 AND gid = ?2 AND left_seq IS NULL",
        )?
        .execute(params![uid, gid, seq])?;
    }
    for gid in wanted.difference(&current) {
        c.prepare_cached(
            "INSERT INTO memberships (uid, gid, joined_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (uid, gid, joined_seq) DO UPDATE SET left_seq = NULL",
        )?
        .execute(params![uid, gid, seq])?;
    }
    Ok(())
}

pub(crate) fn delete_user(c: &Connection, id: &UserId) -> Result<()> {
    let uid = read::uid(c, id)?.ok_or(StoreError::NotFound)?;
    for sql in [
        "DELETE FROM subscriptions WHERE uid = ?1",
        "DELETE FROM inbox WHERE uid = ?1",
        "DELETE FROM broadcast_state WHERE uid = ?1",
        "DELETE FROM memberships WHERE uid = ?1",
        "DELETE FROM users WHERE uid = ?1",
    ] {
        c.execute(sql, [uid])?;
    }
    Ok(())
}

fn subscriber_key(c: &Connection, who: &Subscriber) -> Result<(&'static str, String, Option<i64>)> {
    Ok(match who {
        Subscriber::User(user) => (
            "user",
            user.to_string(),
            Some(read::uid(c, user)?.ok_or(StoreError::NotFound)?),
        ),
        Subscriber::Email(email) => ("email", email.to_string(), None),
    })
}

pub(crate) fn subscribe(
    c: &Connection,
    entity: &EntityRef,
    who: &Subscriber,
    now: Millis,
) -> Result<bool> {
    let (kind, subscriber, uid) = subscriber_key(c, who)?;
    let n = c
        .prepare_cached(
            "INSERT INTO subscriptions (entity_type, entity_id, kind, subscriber, uid, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            entity.kind,
            entity.id,
            kind,
            subscriber,
            uid,
            now.0
        ])?;
    Ok(n > 0)
}

pub(crate) fn unsubscribe(c: &Connection, entity: &EntityRef, who: &Subscriber) -> Result<bool> {
    let (kind, subscriber) = match who {
        Subscriber::User(u) => ("user", u.to_string()),
        Subscriber::Email(e) => ("email", e.to_string()),
    };
    let n = c
        .prepare_cached(
            "DELETE FROM subscriptions WHERE entity_type = ?1 AND entity_id = ?2 AND kind = ?3 AND subscriber = ?4",
        )?
        .execute(params![entity.kind, entity.id, kind, subscriber])?;
    Ok(n > 0)
}

pub(crate) fn put_group(
    c: &Connection,
    id: &GroupId,
    name: Option<String>,
    now: Millis,
) -> Result<(Group, bool)> {
    let created = read::gid(c, id)?.is_none();
    c.execute(
        "INSERT INTO groups (id, name, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        params![id.as_str(), name, now.0],
    )?;
    Ok((read::group(c, id)?, created))
}

/// Sends a batch atomically: the first failing item fails the whole batch.
pub(crate) fn send_batch(
    w: &mut Writer,
    ctx: &SendContext,
    batch: &[NewNotification],
) -> Result<Vec<SendReceipt>> {
    let single = batch.len() == 1;
    batch
        .iter()
        .enumerate()
        .map(|(index, n)| {
            super::publish::send_one(w, ctx, n).map_err(|error| {
                if single {
                    error
                } else {
                    StoreError::InItem {
                        index,
                        error: Box::new(error),
                    }
                }
            })
        })
        .collect()
}

pub(crate) fn delete_notification(w: &mut Writer, id: &str, now: Millis) -> Result<()> {
    let c = &w.conn;
    let (nid, seq, status, audience): (i64, Option<i64>, String, String) = c
        .query_row(
            "SELECT nid, seq, status, audience FROM notifications WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .ok_or(StoreError::NotFound)?;
    if status == "cancelled" {
        return Ok(());
    }
    let users: Vec<UserId> = c
        .prepare_cached("SELECT u.id FROM inbox i JOIN users u ON u.uid = i.uid WHERE i.nid = ?1")?
        .query_map([nid], |r| r.get::<_, String>(0))?
        .map(|r| UserId::parse(&r?).map_err(StoreError::Backend))
        .collect::<Result<_>>()?;
    let mut broadcast = None;
    super::jobs::cancel_jobs(c, nid, now)?;
    c.execute(
        "UPDATE notifications SET status = 'cancelled' WHERE nid = ?1",
        [nid],
    )?;
    c.execute("DELETE FROM inbox WHERE nid = ?1", [nid])?;
    if let Some(seq) = seq {
        let removed = c.execute("DELETE FROM broadcasts WHERE seq = ?1", [seq])?;
        c.execute("DELETE FROM broadcast_state WHERE seq = ?1", [seq])?;
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
    w.emit(StoreEvent::Removed {
        id: id.to_string(),
        users,
        broadcast,
    });
    Ok(())
}

/// Where an item of a user's inbox lives.
enum Target {
    /// The inbox row with this seq.
    Direct(i64),
    /// The broadcast with this seq.
    Broadcast(i64),
}

fn locate(c: &Connection, u: &InboxUser, id: &str, now: Millis) -> Result<Option<Target>> {
    let found: Option<(i64, Option<i64>, Option<String>)> = c
        .prepare_cached(
            "SELECT nid, seq, stack_key FROM notifications WHERE id = ?1 AND status = 'published'",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((nid, Some(seq), stack_key)) = found else {
        return Ok(None);
    };
    let live = "AND (expires_at IS NULL OR expires_at > ?3)";
    let direct: Option<i64> = c
        .prepare_cached(&format!(
            "SELECT seq FROM inbox WHERE nid = ?1 AND uid = ?2 {live}"
        ))?
        .query_row(params![nid, u.uid, now.0], |r| r.get(0))
        .optional()?;
    if let Some(s) = direct {
        return Ok(Some(Target::Direct(s)));
    }
    if let Some(key) = stack_key {
        // An older member of a stack addresses the stack's entry.
        let stacked: Option<i64> = c
            .prepare_cached(&format!(
                "SELECT seq FROM inbox WHERE stack_key = ?1 AND uid = ?2 {live} AND seq >= ?4"
            ))?
            .query_row(params![key, u.uid, now.0, seq], |r| r.get(0))
            .optional()?;
        if let Some(s) = stacked {
            return Ok(Some(Target::Direct(s)));
        }
    }
    if read::broadcast_visible(c, u, seq, now)? {
        return Ok(Some(Target::Broadcast(seq)));
    }
    Ok(None)
}

/// Applies `op` to one item; false when the user cannot see it.
pub(crate) fn update_item(
    c: &Connection,
    u: &InboxUser,
    id: &str,
    op: ItemOp,
    now: Millis,
) -> Result<bool> {
    match locate(c, u, id, now)? {
        None => Ok(false),
        Some(Target::Direct(seq)) => {
            let key = params![u.uid, seq];
            let stamped = params![u.uid, seq, now.0];
            let (sql, args) = match op {
                ItemOp::Read => (
                    "UPDATE inbox SET read_at = COALESCE(read_at, ?3) WHERE uid = ?1 AND seq = ?2",
                    stamped,
                ),
                ItemOp::Unread => (
                    "UPDATE inbox SET read_at = NULL WHERE uid = ?1 AND seq = ?2",
                    key,
                ),
                ItemOp::Archive => (
                    "UPDATE inbox SET archived_at = COALESCE(archived_at, ?3) WHERE uid = ?1 AND seq = ?2",
                    stamped,
                ),
                ItemOp::Unarchive => (
                    "UPDATE inbox SET archived_at = NULL WHERE uid = ?1 AND seq = ?2",
                    key,
                ),
                ItemOp::Delete => ("DELETE FROM inbox WHERE uid = ?1 AND seq = ?2", key),
            };
            c.prepare_cached(sql)?.execute(args)?;
            Ok(true)
        }
        Some(Target::Broadcast(seq)) => {
            let set = match op {
                ItemOp::Read => "read = 1",
                ItemOp::Unread => "read = 0",
                ItemOp::Archive => "archived_at = COALESCE(archived_at, ?3)",
                ItemOp::Unarchive => "archived_at = NULL",
                ItemOp::Delete => "deleted = 1",
            };
            let (read, archived, deleted) = match op {
                ItemOp::Read => (Some(1), None, 0),
                ItemOp::Unread => (Some(0), None, 0),
                ItemOp::Archive => (None, Some(now.0), 0),
                ItemOp::Unarchive => (None, None, 0),
                ItemOp::Delete => (None, None, 1),
            };
            c.prepare_cached(&format!(
                "INSERT INTO broadcast_state (uid, seq, read, archived_at, deleted) VALUES (?1, ?2, ?4, ?5, ?6)
                 ON CONFLICT (uid, seq) DO UPDATE SET {set}"
            ))?
            .execute(params![u.uid, seq, now.0, read, archived, deleted])?;
            Ok(true)
        }
    }
}

/// Marks the inbox (or one category of it) read. Direct rows are updated;
/// broadcasts are covered by moving the user's read watermark, except for a
/// category, where the few unread broadcasts of that category get state rows.
pub(crate) fn read_all(
    w: &mut Writer,
    u: &InboxUser,
    category: Option<&Category>,
    now: Millis,
) -> Result<i64> {
    let c = &w.conn;
    let category = category.map(|c| c.as_str());
    let direct = c
        .prepare_cached(
            "UPDATE inbox SET read_at = ?2 WHERE uid = ?1 AND read_at IS NULL AND archived_at IS NULL
               AND (?3 IS NULL OR category = ?3)",
        )?
        .execute(params![u.uid, now.0, category])? as i64;
    let unread = read::broadcast_unread(
        c,
        u,
        now,
        BroadcastFilter {
            category,
            entity: None,
        },
    )?;
    if category.is_none() {
        c.execute(
            "UPDATE users SET read_wm = ?2 WHERE uid = ?1",
            params![u.uid, w.last_seq],
        )?;
        c.execute(
            "UPDATE broadcast_state SET read = NULL WHERE uid = ?1 AND read = 0",
            [u.uid],
        )?;
    } else {
        mark_broadcasts_read(c, u, &unread)?;
    }
    Ok(direct + unread.len() as i64)
}

fn mark_broadcasts_read<'a>(
    c: &Connection,
    u: &InboxUser,
    seqs: impl IntoIterator<Item = &'a i64>,
) -> Result<()> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO broadcast_state (uid, seq, read) VALUES (?1, ?2, 1)
         ON CONFLICT (uid, seq) DO UPDATE SET read = 1",
    )?;
    for seq in seqs {
        stmt.execute(params![u.uid, seq])?;
    }
    Ok(())
}

pub(crate) fn read_entity(
    c: &Connection,
    u: &InboxUser,
    entity: &EntityRef,
    now: Millis,
) -> Result<i64> {
    let direct = c
        .prepare_cached(
            "UPDATE inbox SET read_at = ?2 WHERE uid = ?1 AND entity_type = ?3 AND entity_id = ?4
               AND read_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
        )?
        .execute(params![u.uid, now.0, entity.kind, entity.id])? as i64;
    let unread = read::broadcast_unread(
        c,
        u,
        now,
        BroadcastFilter {
            category: None,
            entity: Some((&entity.kind, &entity.id)),
        },
    )?;
    mark_broadcasts_read(c, u, &unread)?;
    Ok(direct + unread.len() as i64)
}
