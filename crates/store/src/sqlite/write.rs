//! Write operations of the SQLite backend. Each runs on the writer thread
//! inside the batch transaction (and its own savepoint).

use super::Writer;
use super::read::{self, BroadcastFilter, InboxUser};
use crate::plan::inbox::{self, Applied, InboxChange};
use crate::plan::stored::subscriber_columns;
use crate::plan::{stack, users};
use crate::webhooks::{WebhookEventType, read_targets, unread_query};
use crate::{
    ApiKeyInfo, Group, ItemOp, NewApiKey, NotificationStatus, Result, StoreError, Subscriber,
};
use belfry_core::{Category, EntityRef, GroupId, Millis, Patch, User, UserId, UserPatch};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

pub(crate) fn meta_init(c: &Connection, key: &str, fresh: &[u8]) -> Result<Vec<u8>> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        params![key, fresh],
    )?;
    read::meta(c, key)?.ok_or_else(|| StoreError::backend(format!("meta {key} vanished")))
}

pub(crate) fn create_api_key(c: &Connection, key: &NewApiKey, now: Millis) -> Result<ApiKeyInfo> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    c.execute(
        "INSERT INTO api_keys (id, name, scopes, prefix, hash, created_at, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            key.id,
            key.name,
            scopes.join(","),
            key.prefix,
            &key.hash[..],
            now.0,
            key.source
        ],
    )?;
    read::api_key_by_id(c, &key.id)?.ok_or(StoreError::NotFound)
}

pub(crate) fn revoke_source_keys(c: &Connection, source: &str, now: Millis) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "UPDATE api_keys SET revoked_at = ?2 WHERE source = ?1 AND revoked_at IS NULL RETURNING id",
    )?;
    let ids = stmt.query_map(params![source, now.0], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<Vec<String>>>()?)
}

pub(crate) fn revoke_api_key(c: &Connection, id: &str, now: Millis) -> Result<ApiKeyInfo> {
    c.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![id, now.0],
    )?;
    read::api_key_by_id(c, id)?.ok_or(StoreError::NotFound)
}

/// Creates or updates a user: `(user, created)`; the event (new groups)
/// goes out after the commit.
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
    let email_owner = match &patch.email {
        Patch::Value(email) => read::user_by_email(c, email)?
            .map(|(_, owner)| UserId::parse(&owner).map_err(StoreError::backend))
            .transpose()?,
        _ => None,
    };
    let row = users::apply_patch(id, patch, current.as_ref(), email_owner.as_ref())?;
    let uid = match existing {
        Some(uid) => {
            c.execute(
                "UPDATE users SET email = ?2, name = ?3, avatar_url = ?4, locale = ?5, timezone = ?6,
                        data = ?7, updated_at = ?8 WHERE uid = ?1",
                params![
                    uid,
                    row.email(),
                    row.name,
                    row.avatar_url,
                    row.locale(),
                    row.timezone(),
                    row.data,
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
                    row.email(),
                    row.name,
                    row.avatar_url,
                    row.locale(),
                    row.timezone(),
                    row.data,
                    w.last_seq,
                    now.0
                ],
            )?;
            c.last_insert_rowid()
        }
    };
    if let Some(groups) = &row.groups {
        set_memberships(c, uid, groups, w.last_seq, now)?;
    }
    let user = read::user(c, uid)?;
    if let Some(event) = users::updated(&user, row.groups.is_some()) {
        w.emit(event);
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
    let (leave, join) = users::membership_changes(&wanted, &current);
    for gid in leave {
        c.prepare_cached(
            "UPDATE memberships SET left_seq = ?3 WHERE uid = ?1 AND gid = ?2 AND left_seq IS NULL",
        )?
        .execute(params![uid, gid, seq])?;
    }
    for gid in join {
        c.prepare_cached(
            "INSERT INTO memberships (uid, gid, joined_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (uid, gid, joined_seq) DO UPDATE SET left_seq = NULL",
        )?
        .execute(params![uid, gid, seq])?;
    }
    Ok(())
}

/// Stores a revocation (see `plan::users::Revocation` for its `after`) and forgets the ones that
/// refuse nothing unexpired any more; the stored `after`.
fn store_revocation(c: &Connection, r: &users::Revocation) -> Result<Millis> {
    let after: i64 = c
        .prepare_cached(
            "INSERT INTO token_revocations (user_id, after) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET after = max(excluded.after, after + 1)
             RETURNING after",
        )?
        .query_row(params![r.user.as_str(), r.after.0], |row| row.get(0))?;
    c.prepare_cached("DELETE FROM token_revocations WHERE after < ?1")?
        .execute([r.forget_before.0])?;
    Ok(Millis(after))
}

/// Revokes a user's tokens; every node hears of it after the commit.
pub(crate) fn revoke_tokens(w: &mut Writer, id: &UserId, now: Millis) -> Result<Millis> {
    read::uid(&w.conn, id)?.ok_or(StoreError::NotFound)?;
    let revocation = users::revoke_tokens(id, now);
    let after = store_revocation(&w.conn, &revocation)?;
    w.emit(revocation.event(after));
    Ok(after)
}

/// Removes a user and everything that is theirs and revokes their tokens;
/// their streams end after the commit.
pub(crate) fn delete_user(w: &mut Writer, id: &UserId, now: Millis) -> Result<()> {
    let c = &w.conn;
    let uid = read::uid(c, id)?.ok_or(StoreError::NotFound)?;
    let revocation = users::delete(id, now);
    let after = store_revocation(c, &revocation)?;
    for sql in [
        "DELETE FROM subscriptions WHERE uid = ?1",
        "DELETE FROM push_subscriptions WHERE uid = ?1",
        "DELETE FROM mobile_devices WHERE uid = ?1",
        "DELETE FROM chat_targets WHERE uid = ?1",
        "DELETE FROM action_responses WHERE uid = ?1",
        "DELETE FROM inbox WHERE uid = ?1",
        "DELETE FROM stack_members WHERE uid = ?1",
        "DELETE FROM broadcast_state WHERE uid = ?1",
        "DELETE FROM memberships WHERE uid = ?1",
        "DELETE FROM user_preferences WHERE uid = ?1",
        "DELETE FROM users WHERE uid = ?1",
    ] {
        c.execute(sql, [uid])?;
    }
    w.emit(revocation.event(after));
    w.emit(users::deleted(id));
    Ok(())
}

pub(crate) fn subscribe(
    c: &Connection,
    entity: &EntityRef,
    who: &Subscriber,
    now: Millis,
) -> Result<bool> {
    let (kind, subscriber) = subscriber_columns(who);
    let uid = match who {
        Subscriber::User(user) => Some(read::uid(c, user)?.ok_or(StoreError::NotFound)?),
        Subscriber::Email(_) => None,
    };
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
    let (kind, subscriber) = subscriber_columns(who);
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

/// Cancels a notification: pending jobs are cancelled, broadcast rows go,
/// and each inbox entry that shows it shrinks or goes (`plan::stack`).
pub(crate) fn delete_notification(w: &mut Writer, id: &str, now: Millis) -> Result<()> {
    let c = &w.conn;
    let (nid, seq, status, audience, stack_key): stack::CancelRow = c
        .query_row(
            "SELECT nid, seq, status, audience, stack_key FROM notifications WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?
        .ok_or(StoreError::NotFound)?;
    if !stack::needs_cancelling(&status)? {
        return Ok(());
    }
    let plan = stack::cancel(nid, stack_entries(c, nid, stack_key.as_deref())?);
    super::jobs::cancel_jobs(c, nid, now)?;
    c.execute(
        "UPDATE notifications SET status = ?2 WHERE nid = ?1",
        params![nid, NotificationStatus::Cancelled.as_str()],
    )?;
    for (uid, seq) in &plan.remove {
        c.prepare_cached("DELETE FROM inbox WHERE uid = ?1 AND seq = ?2")?
            .execute(params![uid, seq])?;
    }
    for s in &plan.shrink {
        match s.show {
            None => c
                .prepare_cached("UPDATE inbox SET stack_count = ?3 WHERE uid = ?1 AND seq = ?2")?
                .execute(params![s.uid, s.seq, s.count])?,
            // The entry shows its newest remaining member from now on.
            Some((shown_seq, shown_nid)) => c
                .prepare_cached(
                    "UPDATE inbox SET seq = ?4, nid = n.nid, stack_count = ?3, expires_at = n.expires_at,
                            category = json_extract(n.content, '$.category'),
                            entity_type = json_extract(n.content, '$.entity.type'),
                            entity_id = json_extract(n.content, '$.entity.id')
                     FROM notifications n WHERE n.nid = ?5 AND inbox.uid = ?1 AND inbox.seq = ?2",
                )?
                .execute(params![s.uid, s.seq, s.count, shown_seq, shown_nid])?,
        };
    }
    c.execute("DELETE FROM stack_members WHERE nid = ?1", [nid])?;
    let mut broadcast_removed = false;
    if let Some(seq) = seq {
        broadcast_removed = c.execute("DELETE FROM broadcasts WHERE seq = ?1", [seq])? > 0;
        c.execute("DELETE FROM broadcast_state WHERE seq = ?1", [seq])?;
    }
    w.emit(stack::removed(
        id,
        plan.users,
        broadcast_removed,
        &audience,
    )?);
    Ok(())
}

/// The inbox entries that may show notification `nid`: those of its own
/// rows and, for a stacked one, the entries of its stack that count it,
/// each with the user's members of the stack.
fn stack_entries(c: &Connection, nid: i64, stack_key: Option<&str>) -> Result<Vec<stack::Entry>> {
    let mut entries: Vec<stack::Entry> = c
        .prepare_cached(
            "SELECT i.uid, u.id, i.seq, i.nid, i.stack_count FROM inbox i JOIN users u ON u.uid = i.uid
             WHERE i.nid = ?1
             UNION
             SELECT i.uid, u.id, i.seq, i.nid, i.stack_count FROM stack_members m
               JOIN inbox i ON i.uid = m.uid AND i.stack_key = m.stack_key
               JOIN users u ON u.uid = i.uid
             WHERE m.nid = ?1",
        )?
        .query_map([nid], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?
        .map(|row| {
            let (uid, user, seq, shown, count) = row?;
            Ok(stack::Entry {
                uid,
                user: UserId::parse(&user).map_err(StoreError::backend)?,
                seq,
                nid: shown,
                count,
                members: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;
    if let Some(key) = stack_key {
        let mut members = c.prepare_cached(
            "SELECT seq, nid FROM stack_members WHERE uid = ?1 AND stack_key = ?2
             ORDER BY seq DESC LIMIT ?3",
        )?;
        for e in &mut entries {
            e.members = members
                .query_map(params![e.uid, key, e.count], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
        }
    }
    Ok(entries)
}

/// Where an item of a user's inbox lives.
pub(crate) enum Target {
    /// The inbox row with this seq.
    Direct(i64),
    /// The broadcast with this seq.
    Broadcast(i64),
}

pub(crate) fn locate(
    c: &Connection,
    u: &InboxUser,
    id: &str,
    now: Millis,
) -> Result<Option<Target>> {
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
                ItemOp::Dismiss => (
                    "UPDATE inbox SET dismissed_at = COALESCE(dismissed_at, ?3) WHERE uid = ?1 AND seq = ?2",
                    stamped,
                ),
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
                ItemOp::Dismiss => "dismissed_at = COALESCE(dismissed_at, ?3)",
            };
            let (read, archived, deleted, dismissed) = match op {
                ItemOp::Read => (Some(1), None, 0, None),
                ItemOp::Unread => (Some(0), None, 0, None),
                ItemOp::Archive => (None, Some(now.0), 0, None),
                ItemOp::Unarchive => (None, None, 0, None),
                ItemOp::Delete => (None, None, 1, None),
                ItemOp::Dismiss => (None, None, 0, Some(now.0)),
            };
            c.prepare_cached(&format!(
                "INSERT INTO broadcast_state (uid, seq, read, archived_at, deleted, dismissed_at)
                 VALUES (?1, ?2, ?4, ?5, ?6, ?7)
                 ON CONFLICT (uid, seq) DO UPDATE SET {set}"
            ))?
            .execute(params![
                u.uid, seq, now.0, read, archived, deleted, dismissed
            ])?;
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

/// Applies one change of `user`'s inbox; its event goes out after the commit.
pub(crate) fn inbox_change(
    w: &mut Writer,
    user: &UserId,
    change: InboxChange,
    now: Millis,
) -> Result<i64> {
    let u = read::inbox_user(&w.conn, user)?.ok_or(StoreError::NotFound)?;
    // What a mark-all-read (or read-entity) reads, for `notification.read`
    // webhooks; nothing is looked up when no webhook subscribes.
    let wants_read = super::webhooks::subscribed(w)?.wants(WebhookEventType::NotificationRead);
    let mut read = match &change {
        InboxChange::ReadAll(category) if wants_read => {
            let page = read::list_inbox(&w.conn, &u, &unread_query(category.as_ref()), now)?;
            read_targets(&page.items, None)
        }
        InboxChange::ReadEntity(entity) if wants_read => {
            let page = read::list_inbox(&w.conn, &u, &unread_query(None), now)?;
            read_targets(&page.items, Some(entity))
        }
        _ => Vec::new(),
    };
    let applied = match &change {
        InboxChange::Item { .. } | InboxChange::Archive(_) => {
            let (op, ids) = change.items().expect("an item change");
            let mut changed = Vec::with_capacity(ids.len());
            for id in ids {
                if update_item(&w.conn, &u, id, op, now)? {
                    changed.push(id.clone());
                }
            }
            Applied::Items(changed)
        }
        InboxChange::ReadAll(category) => Applied::Count(read_all(w, &u, category.as_ref(), now)?),
        InboxChange::SeenAll => {
            w.conn.execute(
                "UPDATE users SET seen_wm = ?1 WHERE uid = ?2",
                (w.last_seq, u.uid),
            )?;
            Applied::Count(0)
        }
        InboxChange::ReadEntity(entity) => Applied::Count(read_entity(&w.conn, &u, entity, now)?),
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
            let content: Option<String> = w
                .conn
                .prepare_cached("SELECT content FROM notifications WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            if let Some(content) = content {
                read.push((id.clone(), content));
            }
        }
    }
    if !read.is_empty() {
        super::webhooks::read_events(w, user, &read, now)?;
    }
    let (count, event) = inbox::settle(user, change, applied)?;
    if let Some(event) = event {
        w.emit(event);
    }
    Ok(count)
}

/// Folds a user's unread entries above their `inbox_counts.upto` into the
/// kept counts, so that reading the counts stops counting them (see
/// migration 0017). Safe to run at any time, any number of times: the
/// writer is the only one changing entries, and the triggers keep what is
/// folded right from then on. Nothing for a user that no longer exists.
pub(crate) fn fold_counts(c: &Connection, uid: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO inbox_counts (uid, upto, unread, unseen)
         SELECT u.uid, MAX(i.seq), COUNT(*), COALESCE(SUM(i.seq > u.seen_wm), 0)
         FROM users u JOIN inbox i INDEXED BY inbox_unread ON i.uid = u.uid
         WHERE u.uid = ?1 AND i.read_at IS NULL AND i.archived_at IS NULL AND i.expires_at IS NULL
           AND i.seq > (SELECT COALESCE(MAX(upto), 0) FROM inbox_counts WHERE uid = ?1)
         GROUP BY u.uid
         ON CONFLICT (uid) DO UPDATE SET upto = excluded.upto,
                                         unread = unread + excluded.unread,
                                         unseen = unseen + excluded.unseen",
    )?
    .execute([uid])?;
    Ok(())
}
