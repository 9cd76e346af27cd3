//! The administration console on PostgreSQL: admins, sessions, sign-in
//! failures, run-time settings, and the console's lists.

use super::read;
use crate::admin::{
    Admin, AdminSession, LogFilter, LogLine, NewAdmin, NewAdminSession, NotificationListQuery,
    NotificationRow, RuntimeSettings, StatBucket, UserListQuery, like_prefix, logged_event,
};
use crate::{Constraint, Result, StoreError};
use belfry_core::{Audience, Millis, User};
use sqlx::PgConnection;

type AdminRow = (String, String, String, i64);

fn admin((id, email, name, created_at): AdminRow) -> Admin {
    Admin {
        id,
        email,
        name,
        created_at: Millis(created_at),
    }
}

/// A bound value of a query built at run time.
enum Arg {
    I(i64),
    T(String),
}

/// Appends `cond` with the next placeholder number.
fn push(sql: &mut String, args: &mut Vec<Arg>, arg: Arg, cond: &str) {
    args.push(arg);
    sql.push_str(&format!(" AND {cond}${}", args.len()));
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::I(v) => q.bind(v),
                Arg::T(v) => q.bind(v),
            };
        }
        q
    }};
}

pub(crate) async fn create_admin(c: &mut PgConnection, a: &NewAdmin, now: Millis) -> Result<Admin> {
    let inserted = sqlx::query(
        "INSERT INTO admins (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(&a.id)
    .bind(&a.email)
    .bind(&a.name)
    .bind(&a.password_hash)
    .bind(now.0)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::conflict(Constraint::AdminEmail {
            email: a.email.clone(),
        }));
    }
    Ok(Admin {
        id: a.id.clone(),
        email: a.email.clone(),
        name: a.name.clone(),
        created_at: now,
    })
}

pub(crate) async fn list_admins(c: &mut PgConnection) -> Result<Vec<Admin>> {
    let rows: Vec<AdminRow> =
        sqlx::query_as("SELECT id, email, name, created_at FROM admins ORDER BY created_at, id")
            .fetch_all(&mut *c)
            .await?;
    Ok(rows.into_iter().map(admin).collect())
}

pub(crate) async fn admin_by_email(
    c: &mut PgConnection,
    email: &str,
) -> Result<Option<(Admin, String)>> {
    let row: Option<(String, String, String, i64, String)> = sqlx::query_as(
        "SELECT id, email, name, created_at, password_hash FROM admins WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(|(id, email, name, at, hash)| (admin((id, email, name, at)), hash)))
}

/// In a transaction: the last admin is kept even when two are deleted at once.
pub(crate) async fn delete_admin(c: &mut PgConnection, id: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('belfry-admins:' || current_schema()))")
        .execute(&mut *c)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admins WHERE id = $1)")
        .bind(id)
        .fetch_one(&mut *c)
        .await?;
    if !exists {
        return Err(StoreError::NotFound);
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admins")
        .fetch_one(&mut *c)
        .await?;
    if count <= 1 {
        return Err(StoreError::conflict(Constraint::LastAdmin));
    }
    sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM admins WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn login_failures(
    c: &mut PgConnection,
    email: &str,
    since: Millis,
) -> Result<Vec<Millis>> {
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT at FROM admin_login_failures WHERE email = $1 AND at >= $2 ORDER BY at",
    )
    .bind(email)
    .bind(since.0)
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.into_iter().map(Millis).collect())
}

pub(crate) async fn record_login_failure(
    c: &mut PgConnection,
    email: &str,
    now: Millis,
    forget_before: Millis,
) -> Result<()> {
    sqlx::query("DELETE FROM admin_login_failures WHERE email = $1 AND at < $2")
        .bind(email)
        .bind(forget_before.0)
        .execute(&mut *c)
        .await?;
    sqlx::query("INSERT INTO admin_login_failures (email, at) VALUES ($1, $2)")
        .bind(email)
        .bind(now.0)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn clear_login_failures(c: &mut PgConnection, email: &str) -> Result<()> {
    sqlx::query("DELETE FROM admin_login_failures WHERE email = $1")
        .bind(email)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn create_session(
    c: &mut PgConnection,
    s: &NewAdminSession,
    now: Millis,
) -> Result<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
        .bind(now.0)
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "INSERT INTO admin_sessions (hash, admin_id, csrf_token, created_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(&s.hash[..])
    .bind(&s.admin_id)
    .bind(&s.csrf_token)
    .bind(now.0)
    .bind(s.expires_at.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// An admin's columns, then the session's: csrf token, last seen, expires, created.
type SessionRow = (String, String, String, i64, String, i64, i64, i64);

pub(crate) async fn session(
    c: &mut PgConnection,
    hash: &[u8; 32],
    now: Millis,
) -> Result<Option<AdminSession>> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT a.id, a.email, a.name, a.created_at, s.csrf_token, s.last_seen_at, s.expires_at,
                s.created_at
         FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
         WHERE s.hash = $1 AND s.expires_at > $2",
    )
    .bind(&hash[..])
    .bind(now.0)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(
        |(id, email, name, created, csrf_token, last_seen, expires, started)| AdminSession {
            admin: admin((id, email, name, created)),
            csrf_token,
            created_at: Millis(started),
            last_seen_at: Millis(last_seen),
            expires_at: Millis(expires),
        },
    ))
}

pub(crate) async fn touch_session(
    c: &mut PgConnection,
    hash: &[u8; 32],
    now: Millis,
    expires_at: Millis,
) -> Result<()> {
    sqlx::query("UPDATE admin_sessions SET last_seen_at = $2, expires_at = $3 WHERE hash = $1")
        .bind(&hash[..])
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn delete_session(c: &mut PgConnection, hash: &[u8; 32]) -> Result<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE hash = $1")
        .bind(&hash[..])
        .execute(&mut *c)
        .await?;
    Ok(())
}

const RUNTIME: &str = "runtime";

pub(crate) async fn runtime_settings(c: &mut PgConnection) -> Result<RuntimeSettings> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(RUNTIME)
        .fetch_optional(&mut *c)
        .await?;
    match value {
        Some(v) => serde_json::from_str(&v).map_err(StoreError::backend),
        None => Ok(RuntimeSettings::default()),
    }
}

pub(crate) async fn put_runtime_settings(
    c: &mut PgConnection,
    s: &RuntimeSettings,
    now: Millis,
) -> Result<()> {
    let value = serde_json::to_string(s).map_err(StoreError::backend)?;
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(RUNTIME)
    .bind(value)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

type NotificationTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub(crate) async fn list_notifications(
    c: &mut PgConnection,
    q: &NotificationListQuery,
) -> Result<Vec<NotificationRow>> {
    let mut sql = String::from(
        "SELECT nid, id, status, sender, content, audience, created_at, published_at, send_at, recipients
         FROM notifications WHERE TRUE",
    );
    let mut args = Vec::new();
    if let Some(before) = q.before {
        push(&mut sql, &mut args, Arg::I(before), "nid < ");
    }
    if let Some(since) = q.since {
        push(&mut sql, &mut args, Arg::I(since.0), "created_at >= ");
    }
    if let Some(category) = &q.category {
        push(
            &mut sql,
            &mut args,
            Arg::T(category.clone()),
            "(content::jsonb ->> 'category') = ",
        );
    }
    if let Some(source) = &q.source {
        push(
            &mut sql,
            &mut args,
            Arg::T(source.clone()),
            "(content::jsonb ->> 'source') = ",
        );
    }
    args.push(Arg::I(q.limit as i64));
    sql.push_str(&format!(" ORDER BY nid DESC LIMIT ${}", args.len()));
    let rows: Vec<NotificationTuple> = bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *c)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (nid, id, status, sender, content, audience, created, published, send_at, recipients) in
        rows
    {
        let deliveries: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT channel, status, COUNT(*) FROM deliveries WHERE nid = $1
             GROUP BY channel, status ORDER BY channel, status",
        )
        .bind(nid)
        .fetch_all(&mut *c)
        .await?;
        out.push(NotificationRow {
            nid,
            id,
            status,
            sender,
            content_json: content,
            audience_json: audience,
            created_at: Millis(created),
            published_at: published.map(Millis),
            send_at: send_at.map(Millis),
            recipients,
            deliveries,
        });
    }
    Ok(out)
}

type LogTuple = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
);

pub(crate) async fn delivery_log(c: &mut PgConnection, f: &LogFilter) -> Result<Vec<LogLine>> {
    let mut sql = String::from(
        "SELECT d.id, n.id, d.recipient, d.channel, d.status, d.attempt, d.error, d.at, d.reason, d.held_until
         FROM deliveries d JOIN notifications n ON n.nid = d.nid WHERE TRUE",
    );
    let mut args = Vec::new();
    if let Some(before) = f.before {
        push(&mut sql, &mut args, Arg::I(before), "d.id < ");
    }
    if let Some(r) = &f.recipient {
        push(&mut sql, &mut args, Arg::T(r.clone()), "d.recipient = ");
    }
    if let Some(ch) = &f.channel {
        push(&mut sql, &mut args, Arg::T(ch.clone()), "d.channel = ");
    }
    if let Some(st) = &f.status {
        push(&mut sql, &mut args, Arg::T(st.clone()), "d.status = ");
    }
    if let Some(since) = f.since {
        push(&mut sql, &mut args, Arg::I(since.0), "d.at >= ");
    }
    if let Some(until) = f.until {
        push(&mut sql, &mut args, Arg::I(until.0), "d.at < ");
    }
    if let Some(cat) = &f.category {
        push(
            &mut sql,
            &mut args,
            Arg::T(cat.clone()),
            "(n.content::jsonb ->> 'category') = ",
        );
    }
    if let Some(src) = &f.source {
        push(
            &mut sql,
            &mut args,
            Arg::T(src.clone()),
            "(n.content::jsonb ->> 'source') = ",
        );
    }
    args.push(Arg::I(f.limit as i64));
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ${}", args.len()));
    let rows: Vec<LogTuple> = bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *c)
        .await?;
    rows.into_iter()
        .map(|(id, nid, r, ch, st, a, e, at, re, u)| {
            Ok(LogLine {
                id,
                notification_id: nid,
                event: logged_event((r, ch, st, a, e, at, re, u))?,
            })
        })
        .collect()
}

pub(crate) async fn delivery_stats(
    c: &mut PgConnection,
    since: Millis,
    until: Millis,
    bucket_ms: i64,
) -> Result<Vec<StatBucket>> {
    let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT (at / $3) * $3 AS start, channel, status, COUNT(*) FROM deliveries
         WHERE at >= $1 AND at < $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind(since.0)
    .bind(until.0)
    .bind(bucket_ms)
    .fetch_all(&mut *c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(start, channel, status, count)| StatBucket {
            start: Millis(start),
            channel,
            status,
            count,
        })
        .collect())
}

pub(crate) async fn audience_size(c: &mut PgConnection, a: &Audience) -> Result<i64> {
    let mut unknown_groups = Vec::new();
    let mut gids = Vec::new();
    for g in &a.groups {
        match read::gid(c, g).await? {
            Some(gid) => gids.push(gid),
            None => unknown_groups.push(g.to_string()),
        }
    }
    if !unknown_groups.is_empty() {
        return Err(StoreError::UnknownGroups(unknown_groups));
    }
    let mut unknown_users = Vec::new();
    let mut uids = std::collections::BTreeSet::new();
    for u in &a.users {
        match read::uid(c, u).await? {
            Some(uid) => {
                uids.insert(uid);
            }
            None => unknown_users.push(u.to_string()),
        }
    }
    if !unknown_users.is_empty() {
        return Err(StoreError::UnknownUsers(unknown_users));
    }
    let mut emails: std::collections::BTreeSet<String> =
        a.emails.iter().map(|e| e.as_str().to_string()).collect();
    if let Some(entity) = &a.entity {
        let subs: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT kind, subscriber, uid FROM subscriptions WHERE entity_type = $1 AND entity_id = $2",
        )
        .bind(&entity.kind)
        .bind(&entity.id)
        .fetch_all(&mut *c)
        .await?;
        for s in subs {
            match s {
                (_, _, Some(uid)) => {
                    uids.insert(uid);
                }
                (kind, address, None) if kind == "email" => {
                    emails.insert(address);
                }
                _ => {}
            }
        }
    }
    let mut external = 0i64;
    for email in &emails {
        let owner: Option<i64> = sqlx::query_scalar("SELECT uid FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *c)
            .await?;
        match owner {
            Some(uid) => {
                uids.insert(uid);
            }
            None => external += 1,
        }
    }
    if a.all {
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *c)
            .await?;
        return Ok(users + external);
    }
    let users: i64 = match (gids.as_slice(), uids.is_empty()) {
        ([], _) => uids.len() as i64,
        ([gid], true) => {
            sqlx::query_scalar(
                "SELECT COALESCE((SELECT members FROM group_sizes WHERE gid = $1), 0)",
            )
            .bind(gid)
            .fetch_one(&mut *c)
            .await?
        }
        _ => {
            let uids: Vec<i64> = uids.into_iter().collect();
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM (
                    SELECT uid FROM memberships WHERE gid = ANY($1) AND left_seq IS NULL
                    UNION SELECT unnest($2::bigint[])) r",
            )
            .bind(&gids)
            .bind(&uids)
            .fetch_one(&mut *c)
            .await?
        }
    };
    Ok(users + external)
}

pub(crate) async fn list_users(
    c: &mut PgConnection,
    q: &UserListQuery,
) -> Result<Vec<(i64, User)>> {
    let mut sql = String::from("SELECT u.uid FROM users u");
    let mut args = Vec::new();
    if let Some(group) = &q.group {
        let Some(gid) = read::gid(c, group).await? else {
            return Ok(Vec::new());
        };
        args.push(Arg::I(gid));
        sql.push_str(&format!(
            " JOIN memberships m ON m.uid = u.uid AND m.gid = ${} AND m.left_seq IS NULL",
            args.len()
        ));
    }
    args.push(Arg::I(q.after.unwrap_or(0)));
    sql.push_str(&format!(" WHERE u.uid > ${}", args.len()));
    if let Some(query) = q.query.as_deref().filter(|s| !s.is_empty()) {
        let lower = like_prefix(&query.to_lowercase());
        args.push(Arg::T(like_prefix(query)));
        let id = args.len();
        args.push(Arg::T(lower));
        let low = args.len();
        sql.push_str(&format!(
            " AND u.uid IN (SELECT uid FROM users WHERE id LIKE ${id}
                UNION SELECT uid FROM users WHERE email LIKE ${low}
                UNION SELECT uid FROM users WHERE name IS NOT NULL AND lower(name) LIKE ${low})"
        ));
    }
    args.push(Arg::I(q.limit as i64));
    sql.push_str(&format!(" ORDER BY u.uid LIMIT ${}", args.len()));
    let uids: Vec<i64> = bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *c)
        .await?;
    let mut out = Vec::with_capacity(uids.len());
    for uid in uids {
        out.push((uid, read::user(c, uid).await?));
    }
    Ok(out)
}
