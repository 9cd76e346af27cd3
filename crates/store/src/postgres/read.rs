//! Queries of the PostgreSQL backend, on a pooled connection or inside a
//! writing transaction. The same queries as `sqlite::read`, in PostgreSQL's
//! dialect; results are rendered the same way.

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
use sqlx::{PgConnection, Row};
use std::collections::{BTreeSet, HashMap};

pub(crate) use crate::plan::reading::InboxUser;

pub(crate) async fn inbox_user(c: &mut PgConnection, id: &UserId) -> Result<Option<InboxUser>> {
    let row: Option<(i64, i64, i64, i64)> =
        sqlx::query_as("SELECT uid, created_seq, read_wm, seen_wm FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
    Ok(row.map(|(uid, created_seq, read_wm, seen_wm)| InboxUser {
        uid,
        created_seq,
        read_wm,
        seen_wm,
    }))
}

pub(crate) async fn uid(c: &mut PgConnection, id: &UserId) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT uid FROM users WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *c)
        .await?)
}

/// The user with this address: internal key and id.
pub(crate) async fn user_by_email(
    c: &mut PgConnection,
    email: &EmailAddress,
) -> Result<Option<(i64, String)>> {
    Ok(sqlx::query_as("SELECT uid, id FROM users WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(&mut *c)
        .await?)
}

pub(crate) async fn subscribers(
    c: &mut PgConnection,
    entity: &EntityRef,
) -> Result<Vec<Subscription>> {
    let rows: Vec<SubscriptionRow> = sqlx::query_as(
        "SELECT entity_type, entity_id, kind, subscriber, created_at FROM subscriptions
         WHERE entity_type = $1 AND entity_id = $2 ORDER BY created_at, kind COLLATE \"C\", subscriber COLLATE \"C\"",
    )
    .bind(&entity.kind)
    .bind(&entity.id)
    .fetch_all(&mut *c)
    .await?;
    rows.into_iter().map(subscription).collect()
}

pub(crate) async fn subscriptions_of(
    c: &mut PgConnection,
    user: &UserId,
) -> Result<Vec<Subscription>> {
    let (uid, email): (i64, Option<String>) =
        sqlx::query_as("SELECT uid, email FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&mut *c)
            .await?
            .ok_or(StoreError::NotFound)?;
    let rows: Vec<SubscriptionRow> = sqlx::query_as(
        "SELECT entity_type, entity_id, kind, subscriber, created_at FROM subscriptions
         WHERE uid = $1 OR (kind = 'email' AND subscriber = $2)
         ORDER BY created_at, entity_type COLLATE \"C\", entity_id COLLATE \"C\"",
    )
    .bind(uid)
    .bind(email)
    .fetch_all(&mut *c)
    .await?;
    rows.into_iter().map(subscription).collect()
}

pub(crate) async fn gid(c: &mut PgConnection, id: &GroupId) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT gid FROM groups WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *c)
        .await?)
}

pub(crate) async fn user(c: &mut PgConnection, uid: i64) -> Result<User> {
    let row: UserRow = sqlx::query_as(
        "SELECT id, email, name, avatar_url, locale, timezone, data, created_at, updated_at
         FROM users WHERE uid = $1",
    )
    .bind(uid)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let groups: Vec<String> = sqlx::query_scalar(
        "SELECT g.id FROM memberships m JOIN groups g ON g.gid = m.gid
         WHERE m.uid = $1 AND m.left_seq IS NULL ORDER BY g.id COLLATE \"C\"",
    )
    .bind(uid)
    .fetch_all(&mut *c)
    .await?;
    stored::user(row, groups)
}

pub(crate) async fn meta(c: &mut PgConnection, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *c)
        .await?)
}

type ApiKeyRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

fn to_api_key((id, name, scopes, prefix, created_at, revoked_at, source): ApiKeyRow) -> ApiKeyInfo {
    ApiKeyInfo {
        id,
        name,
        scopes: scopes
            .split(',')
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
        prefix,
        created_at: Millis(created_at),
        revoked_at: revoked_at.map(Millis),
        source,
    }
}

pub(crate) async fn api_keys(c: &mut PgConnection) -> Result<Vec<ApiKeyInfo>> {
    let rows: Vec<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, scopes, prefix, created_at, revoked_at, source FROM api_keys
         ORDER BY created_at, id COLLATE \"C\"",
    )
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.into_iter().map(to_api_key).collect())
}

pub(crate) async fn api_key_by_id(c: &mut PgConnection, id: &str) -> Result<Option<ApiKeyInfo>> {
    let row: Option<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, scopes, prefix, created_at, revoked_at, source FROM api_keys WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(to_api_key))
}

pub(crate) async fn api_key_by_hash(
    c: &mut PgConnection,
    hash: &[u8; 32],
) -> Result<Option<ApiKeyInfo>> {
    let row: Option<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, scopes, prefix, created_at, revoked_at, source FROM api_keys WHERE hash = $1",
    )
    .bind(&hash[..])
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(to_api_key))
}

type GroupRow = (String, Option<String>, i64, i64);

fn to_group(row: GroupRow) -> Result<Group> {
    Ok(Group {
        id: GroupId::parse(&row.0).map_err(StoreError::backend)?,
        name: row.1,
        created_at: Millis(row.2),
        members: row.3,
    })
}

const GROUP_SELECT: &str = "SELECT g.id, g.name, g.created_at,
    (SELECT COUNT(*) FROM memberships m WHERE m.gid = g.gid AND m.left_seq IS NULL)
    FROM groups g";

pub(crate) async fn groups(c: &mut PgConnection) -> Result<Vec<Group>> {
    let sql = format!("{GROUP_SELECT} ORDER BY g.id COLLATE \"C\"");
    let rows: Vec<GroupRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *c)
        .await?;
    rows.into_iter().map(to_group).collect()
}

pub(crate) async fn group(c: &mut PgConnection, id: &GroupId) -> Result<Group> {
    let sql = format!("{GROUP_SELECT} WHERE g.id = $1");
    let row: GroupRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    to_group(row)
}

pub(crate) async fn notification(
    c: &mut PgConnection,
    id: &str,
) -> Result<Option<NotificationRecord>> {
    let Some(r) = sqlx::query(
        "SELECT nid, id, seq, status, sender, content, audience, channels, created_at,
                published_at, send_at, recipients
         FROM notifications WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(None);
    };
    let nid: i64 = r.try_get(0)?;
    let mut rec = NotificationRecord {
        id: r.try_get(1)?,
        seq: r.try_get(2)?,
        status: NotificationStatus::parse(r.try_get(3)?)?,
        sender: r.try_get(4)?,
        content_json: r.try_get(5)?,
        audience_json: r.try_get(6)?,
        channels_json: r.try_get(7)?,
        created_at: Millis(r.try_get(8)?),
        published_at: r.try_get::<Option<i64>, _>(9)?.map(Millis),
        send_at: r.try_get::<Option<i64>, _>(10)?.map(Millis),
        recipients: r.try_get(11)?,
        inbox_entries: 0,
        inbox_read: 0,
        broadcast_read: 0,
        contacts: 0,
    };
    (rec.inbox_entries, rec.inbox_read) =
        sqlx::query_as("SELECT COUNT(*), COUNT(read_at) FROM inbox WHERE nid = $1")
            .bind(nid)
            .fetch_one(&mut *c)
            .await?;
    if let Some(seq) = rec.seq {
        rec.broadcast_read =
            sqlx::query_scalar("SELECT COUNT(*) FROM broadcast_state WHERE seq = $1 AND read")
                .bind(seq)
                .fetch_one(&mut *c)
                .await?;
    }
    rec.contacts = sqlx::query_scalar("SELECT COUNT(*) FROM notification_contacts WHERE nid = $1")
        .bind(nid)
        .fetch_one(&mut *c)
        .await?;
    Ok(Some(rec))
}

/// The windows of broadcasts that reach a user (`plan::reading::windows`).
pub(crate) async fn broadcast_windows(c: &mut PgConnection, u: &InboxUser) -> Result<Vec<Window>> {
    let memberships: Vec<(i64, i64, Option<i64>)> =
        sqlx::query_as("SELECT gid, joined_seq, left_seq FROM memberships WHERE uid = $1")
            .bind(u.uid)
            .fetch_all(&mut *c)
            .await?;
    Ok(reading::windows(u, memberships))
}

/// The seqs of the broadcasts the user has not read (nor archived, nor deleted).
pub(crate) async fn broadcast_unread(
    c: &mut PgConnection,
    u: &InboxUser,
    now: Millis,
    filter: BroadcastFilter<'_>,
) -> Result<BTreeSet<i64>> {
    let mut out = BTreeSet::new();
    let (etype, eid) = filter.entity.unzip();
    for w in broadcast_windows(c, u).await? {
        let Some(w) = w.above(u.read_wm) else {
            continue;
        };
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT b.seq FROM broadcasts b
             LEFT JOIN broadcast_state s ON s.uid = $1 AND s.seq = b.seq
             WHERE b.gid = $2 AND b.seq > $3 AND b.seq <= $4
               AND (b.expires_at IS NULL OR b.expires_at > $5)
               AND (b.actor_uid IS NULL OR b.actor_uid <> $1)
               AND ($6::text IS NULL OR b.category = $6)
               AND ($7::text IS NULL OR (b.entity_type = $7 AND b.entity_id = $8))
               AND (s.seq IS NULL OR (s.read IS NOT TRUE AND s.archived_at IS NULL AND NOT s.deleted))",
        )
        .bind(u.uid)
        .bind(w.gid)
        .bind(w.after)
        .bind(w.until)
        .bind(now.0)
        .bind(filter.category)
        .bind(etype)
        .bind(eid)
        .fetch_all(&mut *c)
        .await?;
        out.extend(seqs);
    }
    // Broadcasts below the watermark that the user marked unread again.
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT s.seq FROM broadcast_state s
         JOIN broadcasts b ON b.seq = s.seq
         WHERE s.uid = $1 AND s.read = FALSE AND s.archived_at IS NULL AND NOT s.deleted
           AND (b.expires_at IS NULL OR b.expires_at > $2)
           AND ($3::text IS NULL OR b.category = $3)
           AND ($4::text IS NULL OR (b.entity_type = $4 AND b.entity_id = $5))",
    )
    .bind(u.uid)
    .bind(now.0)
    .bind(filter.category)
    .bind(etype)
    .bind(eid)
    .fetch_all(&mut *c)
    .await?;
    out.extend(seqs);
    Ok(out)
}

/// Whether the broadcast with this seq is in the user's inbox (not deleted).
pub(crate) async fn broadcast_visible(
    c: &mut PgConnection,
    u: &InboxUser,
    seq: i64,
    now: Millis,
) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM broadcasts b
         WHERE b.seq = $1
           AND (b.expires_at IS NULL OR b.expires_at > $3)
           AND (b.actor_uid IS NULL OR b.actor_uid <> $2)
           AND ((b.gid = 0 AND b.seq > $4) OR EXISTS (
                 SELECT 1 FROM memberships m WHERE m.uid = $2 AND m.gid = b.gid
                   AND b.seq > m.joined_seq AND (m.left_seq IS NULL OR b.seq <= m.left_seq)))
           AND NOT EXISTS (SELECT 1 FROM broadcast_state s WHERE s.uid = $2 AND s.seq = b.seq AND s.deleted)
         LIMIT 1",
    )
    .bind(seq)
    .bind(u.uid)
    .bind(now.0)
    .bind(u.created_seq)
    .fetch_optional(&mut *c)
    .await?
    .is_some())
}

/// The counts, the seq they are as of (every notification up to it and
/// none above), and how many unread entries above the user's kept counts
/// (`inbox_counts.upto`, migration 0015) had to be counted: when that is
/// more than a few, the caller has them folded in (`write::fold_counts`).
pub(crate) async fn counts(
    c: &mut PgConnection,
    u: &InboxUser,
    now: Millis,
) -> Result<(Counts, i64, i64)> {
    // One statement, so one snapshot: the kept counts, the unread entries
    // above them (without an expiry), the live ones that expire, and the
    // seq counter. Seqs commit in order (see `publish`), so that snapshot
    // holds every notification up to the counter's value and none above.
    let (unread, unseen, above, seq): (i64, i64, i64, i64) = sqlx::query_as(
        "WITH k AS (
             SELECT COALESCE(MAX(upto), 0) AS upto, COALESCE(MAX(unread), 0) AS unread,
                    COALESCE(MAX(unseen), 0) AS unseen
             FROM inbox_counts WHERE uid = $1),
         a AS (
             SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE i.seq > $2) AS m FROM inbox i, k
             WHERE i.uid = $1 AND i.read_at IS NULL AND i.archived_at IS NULL
               AND i.expires_at IS NULL AND i.seq > k.upto),
         x AS (
             SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE seq > $2) AS m FROM inbox
             WHERE uid = $1 AND read_at IS NULL AND archived_at IS NULL AND expires_at > $3)
         SELECT k.unread + a.n + x.n, k.unseen + a.m + x.m, a.n,
                (SELECT value FROM seq_counter) FROM k, a, x",
    )
    .bind(u.uid)
    .bind(u.seen_wm)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?;
    let broadcasts = broadcast_unread(c, u, now, BroadcastFilter::default()).await?;
    Ok((
        reading::counts(u, unread, unseen, &broadcasts, seq),
        seq,
        above,
    ))
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Entry {
    fn from_row(r: &'r sqlx::postgres::PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(Entry {
            seq: r.try_get(0)?,
            nid: r.try_get(1)?,
            read: r.try_get(2)?,
            archived: r.try_get(3)?,
            stack_count: r.try_get(4)?,
            dismissed: r.try_get(5)?,
        })
    }
}

fn direct_sql(filter: Filter) -> &'static str {
    match filter {
        Filter::All => {
            "SELECT seq, nid, read_at IS NOT NULL AS read, archived_at IS NOT NULL AS archived, stack_count, dismissed_at IS NOT NULL AS dismissed
             FROM inbox
             WHERE uid = $1 AND seq < $2 AND archived_at IS NULL
               AND (expires_at IS NULL OR expires_at > $3) AND ($4::text IS NULL OR category = $4)
             ORDER BY seq DESC LIMIT $5"
        }
        Filter::Unread => {
            "SELECT seq, nid, FALSE AS read, FALSE AS archived, stack_count, dismissed_at IS NOT NULL AS dismissed FROM inbox
             WHERE uid = $1 AND seq < $2 AND read_at IS NULL AND archived_at IS NULL
               AND (expires_at IS NULL OR expires_at > $3) AND ($4::text IS NULL OR category = $4)
             ORDER BY seq DESC LIMIT $5"
        }
        Filter::Archived => {
            "SELECT seq, nid, read_at IS NOT NULL AS read, TRUE AS archived, stack_count, dismissed_at IS NOT NULL AS dismissed FROM inbox
             WHERE uid = $1 AND seq < $2 AND archived_at IS NOT NULL
               AND (expires_at IS NULL OR expires_at > $3) AND ($4::text IS NULL OR category = $4)
             ORDER BY seq DESC LIMIT $5"
        }
    }
}

fn broadcast_sql(filter: Filter) -> &'static str {
    // Without a state row (LEFT JOIN) the columns are NULL: not archived,
    // and the read watermark decides.
    match filter {
        Filter::All => {
            "SELECT b.seq, b.nid, COALESCE(s.read, b.seq <= $9) AS read,
                    s.archived_at IS NOT NULL AS archived, 1::bigint AS stack_count,
                    s.dismissed_at IS NOT NULL AS dismissed
             FROM broadcasts b
             LEFT JOIN broadcast_state s ON s.uid = $1 AND s.seq = b.seq
             WHERE b.gid = $2 AND b.seq > $3 AND b.seq <= $4 AND b.seq < $5
               AND (b.expires_at IS NULL OR b.expires_at > $6)
               AND (b.actor_uid IS NULL OR b.actor_uid <> $1)
               AND ($7::text IS NULL OR b.category = $7)
               AND NOT COALESCE(s.deleted, FALSE)
               AND s.archived_at IS NULL
             ORDER BY b.seq DESC LIMIT $8"
        }
        Filter::Archived => {
            "SELECT b.seq, b.nid, COALESCE(s.read, b.seq <= $9) AS read,
                    s.archived_at IS NOT NULL AS archived, 1::bigint AS stack_count,
                    s.dismissed_at IS NOT NULL AS dismissed
             FROM broadcasts b
             LEFT JOIN broadcast_state s ON s.uid = $1 AND s.seq = b.seq
             WHERE b.gid = $2 AND b.seq > $3 AND b.seq <= $4 AND b.seq < $5
               AND (b.expires_at IS NULL OR b.expires_at > $6)
               AND (b.actor_uid IS NULL OR b.actor_uid <> $1)
               AND ($7::text IS NULL OR b.category = $7)
               AND NOT COALESCE(s.deleted, FALSE)
               AND s.archived_at IS NOT NULL
             ORDER BY b.seq DESC LIMIT $8"
        }
        Filter::Unread => {
            "SELECT b.seq, b.nid, COALESCE(s.read, b.seq <= $9) AS read,
                    s.archived_at IS NOT NULL AS archived, 1::bigint AS stack_count,
                    s.dismissed_at IS NOT NULL AS dismissed
             FROM broadcasts b
             LEFT JOIN broadcast_state s ON s.uid = $1 AND s.seq = b.seq
             WHERE b.gid = $2 AND b.seq > $3 AND b.seq <= $4 AND b.seq < $5
               AND (b.expires_at IS NULL OR b.expires_at > $6)
               AND (b.actor_uid IS NULL OR b.actor_uid <> $1)
               AND ($7::text IS NULL OR b.category = $7)
               AND NOT COALESCE(s.deleted, FALSE)
               AND s.archived_at IS NULL AND (s.read = FALSE OR (s.read IS NULL AND b.seq > $9))
             ORDER BY b.seq DESC LIMIT $8"
        }
    }
}

pub(crate) async fn list_inbox(
    c: &mut PgConnection,
    u: &InboxUser,
    q: &InboxQuery,
    now: Millis,
) -> Result<InboxPage> {
    let scan = PageScan::of(q);

    let direct: Vec<Entry> = sqlx::query_as(direct_sql(q.filter))
        .bind(u.uid)
        .bind(scan.before)
        .bind(now.0)
        .bind(scan.category)
        .bind(scan.fetch)
        .fetch_all(&mut *c)
        .await?;

    // Each window is an index range scan of at most limit+1 rows.
    let mut broadcasts = Broadcasts::default();
    for w in broadcast_windows(c, u).await? {
        let rows: Vec<Entry> = sqlx::query_as(broadcast_sql(q.filter))
            .bind(u.uid)
            .bind(w.gid)
            .bind(w.after)
            .bind(w.until)
            .bind(scan.before)
            .bind(now.0)
            .bind(scan.category)
            .bind(scan.fetch)
            .bind(u.read_wm)
            .fetch_all(&mut *c)
            .await?;
        rows.into_iter().for_each(|e| broadcasts.add(e));
    }
    let (entries, next_cursor) = reading::page(direct, broadcasts, q.limit);
    Ok(InboxPage {
        items: render_entries(c, u, entries).await?,
        next_cursor,
    })
}

/// Attaches the stored content to entries (one query for the page): the
/// JSON items clients see.
async fn render_entries(
    c: &mut PgConnection,
    u: &InboxUser,
    entries: Vec<Entry>,
) -> Result<Vec<String>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let nids: Vec<i64> = entries.iter().map(|e| e.nid).collect();
    type Row = (i64, String, i64, String, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT nid, id, COALESCE(published_at, created_at), content, answered FROM notifications
         WHERE nid = ANY($1)",
    )
    .bind(&nids)
    .fetch_all(&mut *c)
    .await?;
    let content: HashMap<i64, Row> = rows.into_iter().map(|r| (r.0, r)).collect();
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        let (_, id, at, json, answered) = content
            .get(&e.nid)
            .ok_or_else(|| StoreError::backend(format!("notification {} vanished", e.nid)))?;
        items.push(reading::item(u, &e, id.clone(), Millis(*at), answered.clone()).render(json));
    }
    Ok(items)
}

/// Everything that arrived in the user's inbox after `after` and is still
/// there (archived included, deleted and expired not), oldest first.
pub(crate) async fn replay(
    c: &mut PgConnection,
    u: &InboxUser,
    after: i64,
    limit: usize,
    now: Millis,
) -> Result<Vec<(i64, String)>> {
    let fetch = limit as i64;
    let direct: Vec<Entry> = sqlx::query_as(
        "SELECT seq, nid, read_at IS NOT NULL AS read, archived_at IS NOT NULL AS archived, stack_count, dismissed_at IS NOT NULL AS dismissed
         FROM inbox
         WHERE uid = $1 AND seq > $2 AND (expires_at IS NULL OR expires_at > $3)
         ORDER BY seq ASC LIMIT $4",
    )
    .bind(u.uid)
    .bind(after)
    .bind(now.0)
    .bind(fetch)
    .fetch_all(&mut *c)
    .await?;
    let mut broadcasts = Broadcasts::default();
    for w in broadcast_windows(c, u).await? {
        let Some(w) = w.above(after) else {
            continue;
        };
        let rows: Vec<Entry> = sqlx::query_as(
            "SELECT b.seq, b.nid, COALESCE(s.read, b.seq <= $7) AS read,
                    s.archived_at IS NOT NULL AS archived, 1::bigint AS stack_count,
                    s.dismissed_at IS NOT NULL AS dismissed
             FROM broadcasts b
             LEFT JOIN broadcast_state s ON s.uid = $1 AND s.seq = b.seq
             WHERE b.gid = $2 AND b.seq > $3 AND b.seq <= $4
               AND (b.expires_at IS NULL OR b.expires_at > $5)
               AND (b.actor_uid IS NULL OR b.actor_uid <> $1)
               AND NOT COALESCE(s.deleted, FALSE)
             ORDER BY b.seq ASC LIMIT $6",
        )
        .bind(u.uid)
        .bind(w.gid)
        .bind(w.after)
        .bind(w.until)
        .bind(now.0)
        .bind(fetch)
        .bind(u.read_wm)
        .fetch_all(&mut *c)
        .await?;
        rows.into_iter().for_each(|e| broadcasts.add(e));
    }
    let entries = reading::replay(direct, broadcasts, limit);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    Ok(seqs
        .into_iter()
        .zip(render_entries(c, u, entries).await?)
        .collect())
}

/// Token revocations with `after >= since`.
pub(crate) async fn token_revocations(
    c: &mut PgConnection,
    since: Millis,
) -> Result<Vec<(UserId, Millis)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT user_id, after FROM token_revocations WHERE after >= $1")
            .bind(since.0)
            .fetch_all(&mut *c)
            .await?;
    rows.into_iter()
        .map(|(user, after)| {
            Ok((
                UserId::parse(&user).map_err(StoreError::backend)?,
                Millis(after),
            ))
        })
        .collect()
}
