//! Queries of the SQLite backend, used by the reader pool and, inside its
//! transaction, by the writer.

pub(crate) use crate::plan::reading::BroadcastFilter;
use crate::plan::reading::{self, Broadcasts, Entry, PageScan, Window};
use crate::plan::stored::{self, SubscriptionRow, UserRow, subscription};
use crate::{
    ApiKeyInfo, Group, InboxPage, NotificationRecord, NotificationStatus, Result, Scope,
    StoreError, Subscription,
};
use belfry_core::{
    Counts, EmailAddress, EntityRef, Filter, GroupId, InboxQuery, Millis, User, UserId,
};
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::BTreeSet;

impl rusqlite::types::FromSql for NotificationStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        NotificationStatus::parse(text).map_err(|e| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

pub(crate) use crate::plan::reading::InboxUser;

pub(crate) fn inbox_user(c: &Connection, id: &UserId) -> Result<Option<InboxUser>> {
    Ok(
        c.prepare_cached("SELECT uid, created_seq, read_wm, seen_wm FROM users WHERE id = ?1")?
            .query_row([id.as_str()], |r| {
                Ok(InboxUser {
                    uid: r.get(0)?,
                    created_seq: r.get(1)?,
                    read_wm: r.get(2)?,
                    seen_wm: r.get(3)?,
                })
            })
            .optional()?,
    )
}

pub(crate) fn uid(c: &Connection, id: &UserId) -> Result<Option<i64>> {
    Ok(c.prepare_cached("SELECT uid FROM users WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?)
}

/// The user with this address: internal key and id.
pub(crate) fn user_by_email(c: &Connection, email: &EmailAddress) -> Result<Option<(i64, String)>> {
    Ok(
        c.prepare_cached("SELECT uid, id FROM users WHERE email = ?1")?
            .query_row([email.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    )
}

fn subscription_row(r: &Row<'_>) -> rusqlite::Result<SubscriptionRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

pub(crate) fn subscribers(c: &Connection, entity: &EntityRef) -> Result<Vec<Subscription>> {
    let mut stmt = c.prepare_cached(
        "SELECT entity_type, entity_id, kind, subscriber, created_at FROM subscriptions
         WHERE entity_type = ?1 AND entity_id = ?2 ORDER BY created_at, kind, subscriber",
    )?;
    let rows = stmt.query_map([&entity.kind, &entity.id], subscription_row)?;
    rows.map(|r| subscription(r?)).collect()
}

pub(crate) fn subscriptions_of(c: &Connection, user: &UserId) -> Result<Vec<Subscription>> {
    let uid = uid(c, user)?.ok_or(StoreError::NotFound)?;
    let email: Option<String> = c
        .prepare_cached("SELECT email FROM users WHERE uid = ?1")?
        .query_row([uid], |r| r.get(0))?;
    let mut stmt = c.prepare_cached(
        "SELECT entity_type, entity_id, kind, subscriber, created_at FROM subscriptions
         WHERE uid = ?1 OR (kind = 'email' AND subscriber = ?2)
         ORDER BY created_at, entity_type, entity_id",
    )?;
    let rows = stmt.query_map(rusqlite::params![uid, email], subscription_row)?;
    rows.map(|r| subscription(r?)).collect()
}

pub(crate) fn gid(c: &Connection, id: &GroupId) -> Result<Option<i64>> {
    Ok(c.prepare_cached("SELECT gid FROM groups WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?)
}

pub(crate) fn user(c: &Connection, uid: i64) -> Result<User> {
    let row: UserRow = c
        .prepare_cached(
            "SELECT id, email, name, avatar_url, locale, timezone, data, created_at, updated_at
             FROM users WHERE uid = ?1",
        )?
        .query_row([uid], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .optional()?
        .ok_or(StoreError::NotFound)?;
    let groups = c
        .prepare_cached(
            "SELECT g.id FROM memberships m JOIN groups g ON g.gid = m.gid
             WHERE m.uid = ?1 AND m.left_seq IS NULL ORDER BY g.id",
        )?
        .query_map([uid], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    stored::user(row, groups)
}

pub(crate) fn meta(c: &Connection, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn api_key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    let scopes: String = r.get(2)?;
    Ok(ApiKeyInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        scopes: scopes
            .split(',')
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
        prefix: r.get(3)?,
        created_at: Millis(r.get(4)?),
        revoked_at: r.get::<_, Option<i64>>(5)?.map(Millis),
        source: r.get(6)?,
    })
}

const API_KEY_COLUMNS: &str = "id, name, scopes, prefix, created_at, revoked_at, source";

pub(crate) fn api_keys(c: &Connection) -> Result<Vec<ApiKeyInfo>> {
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([], api_key_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn api_key_by_id(c: &Connection, id: &str) -> Result<Option<ApiKeyInfo>> {
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], api_key_row)
        .optional()?)
}

pub(crate) fn api_key_by_hash(c: &Connection, hash: &[u8; 32]) -> Result<Option<ApiKeyInfo>> {
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([&hash[..]], api_key_row)
        .optional()?)
}

const GROUP_SELECT: &str = "SELECT g.id, g.name, g.created_at,
    (SELECT COUNT(*) FROM memberships m WHERE m.gid = g.gid AND m.left_seq IS NULL)
    FROM groups g";

fn group_row(r: &Row<'_>) -> rusqlite::Result<(String, Option<String>, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_group(row: (String, Option<String>, i64, i64)) -> Result<Group> {
    Ok(Group {
        id: GroupId::parse(&row.0).map_err(StoreError::backend)?,
        name: row.1,
        created_at: Millis(row.2),
        members: row.3,
    })
}

pub(crate) fn groups(c: &Connection) -> Result<Vec<Group>> {
    let sql = format!("{GROUP_SELECT} ORDER BY g.id");
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([], group_row)?;
    rows.map(|r| to_group(r?)).collect()
}

pub(crate) fn group(c: &Connection, id: &GroupId) -> Result<Group> {
    let sql = format!("{GROUP_SELECT} WHERE g.id = ?1");
    let row = c
        .prepare_cached(&sql)?
        .query_row([id.as_str()], group_row)
        .optional()?
        .ok_or(StoreError::NotFound)?;
    to_group(row)
}

pub(crate) fn notification(c: &Connection, id: &str) -> Result<Option<NotificationRecord>> {
    let row = c
        .prepare_cached(
            "SELECT nid, id, seq, status, sender, content, audience, channels, created_at,
                    published_at, send_at, recipients
             FROM notifications WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                NotificationRecord {
                    id: r.get(1)?,
                    seq: r.get(2)?,
                    status: r.get(3)?,
                    sender: r.get(4)?,
                    content_json: r.get(5)?,
                    audience_json: r.get(6)?,
                    channels_json: r.get(7)?,
                    created_at: Millis(r.get(8)?),
                    published_at: r.get::<_, Option<i64>>(9)?.map(Millis),
                    send_at: r.get::<_, Option<i64>>(10)?.map(Millis),
                    recipients: r.get(11)?,
                    inbox_entries: 0,
                    inbox_read: 0,
                    broadcast_read: 0,
                    contacts: 0,
                },
            ))
        })
        .optional()?;
    let Some((nid, mut rec)) = row else {
        return Ok(None);
    };
    (rec.inbox_entries, rec.inbox_read) = c
        .prepare_cached("SELECT COUNT(*), COUNT(read_at) FROM inbox WHERE nid = ?1")?
        .query_row([nid], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if let Some(seq) = rec.seq {
        rec.broadcast_read = c
            .prepare_cached("SELECT COUNT(*) FROM broadcast_state WHERE seq = ?1 AND read = 1")?
            .query_row([seq], |r| r.get(0))?;
    }
    rec.contacts = c
        .prepare_cached("SELECT COUNT(*) FROM notification_contacts WHERE nid = ?1")?
        .query_row([nid], |r| r.get(0))?;
    Ok(Some(rec))
}

/// The windows of broadcasts that reach a user (`plan::reading::windows`).
pub(crate) fn broadcast_windows(c: &Connection, u: &InboxUser) -> Result<Vec<Window>> {
    let memberships = c
        .prepare_cached("SELECT gid, joined_seq, left_seq FROM memberships WHERE uid = ?1")?
        .query_map([u.uid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(reading::windows(u, memberships))
}

/// The seqs of the broadcasts the user has not read (nor archived, nor deleted).
pub(crate) fn broadcast_unread(
    c: &Connection,
    u: &InboxUser,
    now: Millis,
    filter: BroadcastFilter<'_>,
) -> Result<BTreeSet<i64>> {
    let mut out = BTreeSet::new();
    let (etype, eid) = filter.entity.unzip();
    let mut stmt = c.prepare_cached(
        "SELECT b.seq FROM broadcasts b
         LEFT JOIN broadcast_state s ON s.uid = ?1 AND s.seq = b.seq
         WHERE b.gid = ?2 AND b.seq > ?3 AND b.seq <= ?4
           AND (b.expires_at IS NULL OR b.expires_at > ?5)
           AND (b.actor_uid IS NULL OR b.actor_uid <> ?1)
           AND (?6 IS NULL OR b.category = ?6)
           AND (?7 IS NULL OR (b.entity_type = ?7 AND b.entity_id = ?8))
           AND (s.seq IS NULL OR (s.read IS NOT 1 AND s.archived_at IS NULL AND s.deleted = 0))",
    )?;
    for w in broadcast_windows(c, u)? {
        let Some(w) = w.above(u.read_wm) else {
            continue;
        };
        let rows = stmt.query_map(
            rusqlite::params![
                u.uid,
                w.gid,
                w.after,
                w.until,
                now.0,
                filter.category,
                etype,
                eid
            ],
            |r| r.get::<_, i64>(0),
        )?;
        for seq in rows {
            out.insert(seq?);
        }
    }
    // Broadcasts below the watermark that the user marked unread again.
    let mut stmt = c.prepare_cached(
        "SELECT s.seq FROM broadcast_state s
         JOIN broadcasts b ON b.seq = s.seq
         WHERE s.uid = ?1 AND s.read = 0 AND s.archived_at IS NULL AND s.deleted = 0
           AND (b.expires_at IS NULL OR b.expires_at > ?2)
           AND (?3 IS NULL OR b.category = ?3)
           AND (?4 IS NULL OR (b.entity_type = ?4 AND b.entity_id = ?5))",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![u.uid, now.0, filter.category, etype, eid],
        |r| r.get::<_, i64>(0),
    )?;
    for seq in rows {
        out.insert(seq?);
    }
    Ok(out)
}

/// Whether the broadcast with this seq is in the user's inbox (not deleted).
pub(crate) fn broadcast_visible(
    c: &Connection,
    u: &InboxUser,
    seq: i64,
    now: Millis,
) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM broadcasts b
         WHERE b.seq = ?1
           AND (b.expires_at IS NULL OR b.expires_at > ?3)
           AND (b.actor_uid IS NULL OR b.actor_uid <> ?2)
           AND ((b.gid = 0 AND b.seq > ?4) OR EXISTS (
                 SELECT 1 FROM memberships m WHERE m.uid = ?2 AND m.gid = b.gid
                   AND b.seq > m.joined_seq AND (m.left_seq IS NULL OR b.seq <= m.left_seq)))
           AND NOT EXISTS (SELECT 1 FROM broadcast_state s WHERE s.uid = ?2 AND s.seq = b.seq AND s.deleted = 1)
         LIMIT 1",
    )?
    .query_row(rusqlite::params![seq, u.uid, now.0, u.created_seq], |_| Ok(()))
    .optional()?
    .is_some())
}

/// The counts, the seq they are as of (every notification up to it and
/// none above), and how many unread entries above the user's folded
/// counts (`inbox_counts.upto`) had to be counted: when that is more than a
/// few, the caller asks the writer to fold them in (`write::fold_counts`).
pub(crate) fn counts(c: &Connection, u: &InboxUser, now: Millis) -> Result<(Counts, i64, i64)> {
    // One statement, so one snapshot: the folded counts, the unread entries
    // above them (without an expiry), the live ones that expire, and the
    // newest notification's seq (a notification's row commits with its
    // entries; a cancelled one keeps its seq). The cost does not grow with
    // the unread count once it is folded.
    let (unread, unseen, above, seq): (i64, i64, i64, i64) = c
        .prepare_cached(
            "SELECT f.unread + a.n + x.n, f.unseen + a.m + x.m, a.n,
                    (SELECT COALESCE(MAX(seq), 0) FROM notifications)
             FROM (SELECT COALESCE(MAX(unread), 0) AS unread, COALESCE(MAX(unseen), 0) AS unseen
                   FROM inbox_counts WHERE uid = ?1) f,
                  (SELECT COUNT(*) AS n, COALESCE(SUM(seq > ?2), 0) AS m
                   FROM inbox INDEXED BY inbox_unread
                   WHERE uid = ?1 AND read_at IS NULL AND archived_at IS NULL AND expires_at IS NULL
                     AND seq > (SELECT COALESCE(MAX(upto), 0) FROM inbox_counts WHERE uid = ?1)) a,
                  (SELECT COUNT(*) AS n, COALESCE(SUM(seq > ?2), 0) AS m
                   FROM inbox INDEXED BY inbox_unread_expiring
                   WHERE uid = ?1 AND read_at IS NULL AND archived_at IS NULL AND expires_at > ?3) x",
        )?
        .query_row((u.uid, u.seen_wm, now.0), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let broadcasts = broadcast_unread(c, u, now, BroadcastFilter::default())?;
    Ok((
        reading::counts(u, unread, unseen, &broadcasts, seq),
        seq,
        above,
    ))
}

fn entry(r: &Row<'_>, stacked: bool) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: r.get(0)?,
        nid: r.get(1)?,
        read: r.get(2)?,
        archived: r.get(3)?,
        stack_count: if stacked { r.get(4)? } else { 1 },
        dismissed: r.get(if stacked { 5 } else { 4 })?,
    })
}

fn direct_sql(filter: Filter) -> &'static str {
    match filter {
        Filter::All => {
            "SELECT seq, nid, read_at IS NOT NULL, archived_at IS NOT NULL, stack_count, dismissed_at IS NOT NULL FROM inbox
             WHERE uid = ?1 AND seq < ?2 AND archived_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?3) AND (?4 IS NULL OR category = ?4)
             ORDER BY seq DESC LIMIT ?5"
        }
        Filter::Unread => {
            "SELECT seq, nid, 0, 0, stack_count, dismissed_at IS NOT NULL FROM inbox
             WHERE uid = ?1 AND seq < ?2 AND read_at IS NULL AND archived_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?3) AND (?4 IS NULL OR category = ?4)
             ORDER BY seq DESC LIMIT ?5"
        }
        Filter::Archived => {
            "SELECT seq, nid, read_at IS NOT NULL, 1, stack_count, dismissed_at IS NOT NULL FROM inbox
             WHERE uid = ?1 AND seq < ?2 AND archived_at IS NOT NULL
               AND (expires_at IS NULL OR expires_at > ?3) AND (?4 IS NULL OR category = ?4)
             ORDER BY seq DESC LIMIT ?5"
        }
    }
}

fn broadcast_sql(filter: Filter) -> String {
    // Without a state row (LEFT JOIN) the columns are NULL: not archived,
    // and the read watermark decides.
    let state = match filter {
        Filter::All => "s.archived_at IS NULL",
        Filter::Archived => "s.archived_at IS NOT NULL",
        Filter::Unread => {
            "s.archived_at IS NULL AND (s.read = 0 OR (s.read IS NULL AND b.seq > ?9))"
        }
    };
    format!(
        "SELECT b.seq, b.nid, CASE WHEN s.read IS NULL THEN b.seq <= ?9 ELSE s.read = 1 END,
                s.archived_at IS NOT NULL, s.dismissed_at IS NOT NULL
         FROM broadcasts b
         LEFT JOIN broadcast_state s ON s.uid = ?1 AND s.seq = b.seq
         WHERE b.gid = ?2 AND b.seq > ?3 AND b.seq <= ?4 AND b.seq < ?5
           AND (b.expires_at IS NULL OR b.expires_at > ?6)
           AND (b.actor_uid IS NULL OR b.actor_uid <> ?1)
           AND (?7 IS NULL OR b.category = ?7)
           AND COALESCE(s.deleted, 0) = 0
           AND ({state})
         ORDER BY b.seq DESC LIMIT ?8"
    )
}

pub(crate) fn list_inbox(
    c: &Connection,
    u: &InboxUser,
    q: &InboxQuery,
    now: Millis,
) -> Result<InboxPage> {
    let scan = PageScan::of(q);

    let direct = c
        .prepare_cached(direct_sql(q.filter))?
        .query_map(
            rusqlite::params![u.uid, scan.before, now.0, scan.category, scan.fetch],
            |r| entry(r, true),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    // Each window is an index range scan of at most limit+1 rows.
    let mut broadcasts = Broadcasts::default();
    let mut stmt = c.prepare_cached(&broadcast_sql(q.filter))?;
    for w in broadcast_windows(c, u)? {
        let rows = stmt.query_map(
            rusqlite::params![
                u.uid,
                w.gid,
                w.after,
                w.until,
                scan.before,
                now.0,
                scan.category,
                scan.fetch,
                u.read_wm
            ],
            |r| entry(r, false),
        )?;
        for row in rows {
            broadcasts.add(row?);
        }
    }
    let (entries, next_cursor) = reading::page(direct, broadcasts, q.limit);
    Ok(InboxPage {
        items: render_entries(c, u, entries)?,
        next_cursor,
    })
}

/// Attaches the stored content to entries: the JSON items clients see.
fn render_entries(c: &Connection, u: &InboxUser, entries: Vec<Entry>) -> Result<Vec<String>> {
    let mut content = c.prepare_cached(
        "SELECT id, COALESCE(published_at, created_at), content, answered FROM notifications WHERE nid = ?1",
    )?;
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        let (id, at, json, answered): (String, i64, String, Option<String>) = content
            .query_row([e.nid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        items.push(reading::item(u, &e, id, Millis(at), answered).render(&json));
    }
    Ok(items)
}

/// Everything that arrived in the user's inbox after `after` and is still
/// there (archived included, deleted and expired not), oldest first.
pub(crate) fn replay(
    c: &Connection,
    u: &InboxUser,
    after: i64,
    limit: usize,
    now: Millis,
) -> Result<Vec<(i64, String)>> {
    let fetch = limit as i64;
    let direct = c
        .prepare_cached(
            "SELECT seq, nid, read_at IS NOT NULL, archived_at IS NOT NULL, stack_count, dismissed_at IS NOT NULL FROM inbox
             WHERE uid = ?1 AND seq > ?2 AND (expires_at IS NULL OR expires_at > ?3)
             ORDER BY seq ASC LIMIT ?4",
        )?
        .query_map(rusqlite::params![u.uid, after, now.0, fetch], |r| {
            entry(r, true)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut broadcasts = Broadcasts::default();
    let mut stmt = c.prepare_cached(
        "SELECT b.seq, b.nid, CASE WHEN s.read IS NULL THEN b.seq <= ?7 ELSE s.read = 1 END,
                s.archived_at IS NOT NULL, s.dismissed_at IS NOT NULL
         FROM broadcasts b
         LEFT JOIN broadcast_state s ON s.uid = ?1 AND s.seq = b.seq
         WHERE b.gid = ?2 AND b.seq > ?3 AND b.seq <= ?4
           AND (b.expires_at IS NULL OR b.expires_at > ?5)
           AND (b.actor_uid IS NULL OR b.actor_uid <> ?1)
           AND COALESCE(s.deleted, 0) = 0
         ORDER BY b.seq ASC LIMIT ?6",
    )?;
    for w in broadcast_windows(c, u)? {
        let Some(w) = w.above(after) else {
            continue;
        };
        let rows = stmt.query_map(
            rusqlite::params![u.uid, w.gid, w.after, w.until, now.0, fetch, u.read_wm],
            |r| entry(r, false),
        )?;
        for row in rows {
            broadcasts.add(row?);
        }
    }
    let entries = reading::replay(direct, broadcasts, limit);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    Ok(seqs
        .into_iter()
        .zip(render_entries(c, u, entries)?)
        .collect())
}

/// Token revocations with `after >= since`.
pub(crate) fn token_revocations(c: &Connection, since: Millis) -> Result<Vec<(UserId, Millis)>> {
    let mut stmt =
        c.prepare_cached("SELECT user_id, after FROM token_revocations WHERE after >= ?1")?;
    let rows = stmt.query_map([since.0], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    rows.map(|row| {
        let (user, after) = row?;
        Ok((
            UserId::parse(&user).map_err(StoreError::backend)?,
            Millis(after),
        ))
    })
    .collect()
}
