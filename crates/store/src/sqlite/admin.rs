//! The administration console on SQLite: admins, sessions, sign-in
//! failures, run-time settings, and the console's lists.

use super::read;
use crate::admin::{
    Admin, AdminSession, LogFilter, LogLine, NewAdmin, NewAdminSession, NotificationListQuery,
    NotificationRow, RuntimeSettings, StatBucket, UserListQuery, logged_event, prefix_end,
};
use crate::{Constraint, Result, StoreError};
use belfry_core::{Audience, Millis, User};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

const ADMIN_COLUMNS: &str = "id, email, name, created_at";

fn admin_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Admin> {
    Ok(Admin {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        created_at: Millis(r.get(3)?),
    })
}

pub(crate) fn create_admin(c: &Connection, a: &NewAdmin, now: Millis) -> Result<Admin> {
    let taken: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM admins WHERE email = ?1)")?
        .query_row([&a.email], |r| r.get(0))?;
    if taken {
        return Err(StoreError::conflict(Constraint::AdminEmail {
            email: a.email.clone(),
        }));
    }
    c.prepare_cached(
        "INSERT INTO admins (id, email, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![a.id, a.email, a.name, a.password_hash, now.0])?;
    Ok(Admin {
        id: a.id.clone(),
        email: a.email.clone(),
        name: a.name.clone(),
        created_at: now,
    })
}

pub(crate) fn list_admins(c: &Connection) -> Result<Vec<Admin>> {
    let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY created_at, id");
    Ok(c.prepare_cached(&sql)?
        .query_map([], admin_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn admin_by_email(c: &Connection, email: &str) -> Result<Option<(Admin, String)>> {
    let sql = format!("SELECT {ADMIN_COLUMNS}, password_hash FROM admins WHERE email = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([email], |r| Ok((admin_row(r)?, r.get(4)?)))
        .optional()?)
}

pub(crate) fn delete_admin(c: &Connection, id: &str) -> Result<()> {
    let exists: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM admins WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?;
    if !exists {
        return Err(StoreError::NotFound);
    }
    let count: i64 = c.query_row("SELECT COUNT(*) FROM admins", [], |r| r.get(0))?;
    if count <= 1 {
        return Err(StoreError::conflict(Constraint::LastAdmin));
    }
    c.execute("DELETE FROM admin_sessions WHERE admin_id = ?1", [id])?;
    c.execute("DELETE FROM admins WHERE id = ?1", [id])?;
    Ok(())
}

pub(crate) fn login_failures(c: &Connection, email: &str, since: Millis) -> Result<Vec<Millis>> {
    Ok(c.prepare_cached(
        "SELECT at FROM admin_login_failures WHERE email = ?1 AND at >= ?2 ORDER BY at",
    )?
    .query_map(params![email, since.0], |r| Ok(Millis(r.get(0)?)))?
    .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn record_login_failure(
    c: &Connection,
    email: &str,
    now: Millis,
    forget_before: Millis,
) -> Result<()> {
    c.prepare_cached("DELETE FROM admin_login_failures WHERE email = ?1 AND at < ?2")?
        .execute(params![email, forget_before.0])?;
    c.prepare_cached("INSERT INTO admin_login_failures (email, at) VALUES (?1, ?2)")?
        .execute(params![email, now.0])?;
    Ok(())
}

pub(crate) fn clear_login_failures(c: &Connection, email: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM admin_login_failures WHERE email = ?1")?
        .execute([email])?;
    Ok(())
}

pub(crate) fn create_session(c: &Connection, s: &NewAdminSession, now: Millis) -> Result<()> {
    // Expired sessions go when anyone signs in.
    c.prepare_cached("DELETE FROM admin_sessions WHERE expires_at <= ?1")?
        .execute([now.0])?;
    c.prepare_cached(
        "INSERT INTO admin_sessions (hash, admin_id, csrf_token, created_at, last_seen_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![&s.hash[..], s.admin_id, s.csrf_token, now.0, s.expires_at.0])?;
    Ok(())
}

pub(crate) fn session(
    c: &Connection,
    hash: &[u8; 32],
    now: Millis,
) -> Result<Option<AdminSession>> {
    Ok(c.prepare_cached(
        "SELECT a.id, a.email, a.name, a.created_at, s.csrf_token, s.last_seen_at, s.expires_at,
                s.created_at
         FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
         WHERE s.hash = ?1 AND s.expires_at > ?2",
    )?
    .query_row(params![&hash[..], now.0], |r| {
        Ok(AdminSession {
            admin: admin_row(r)?,
            csrf_token: r.get(4)?,
            created_at: Millis(r.get(7)?),
            last_seen_at: Millis(r.get(5)?),
            expires_at: Millis(r.get(6)?),
        })
    })
    .optional()?)
}

pub(crate) fn touch_session(
    c: &Connection,
    hash: &[u8; 32],
    now: Millis,
    expires_at: Millis,
) -> Result<()> {
    c.prepare_cached(
        "UPDATE admin_sessions SET last_seen_at = ?2, expires_at = ?3 WHERE hash = ?1",
    )?
    .execute(params![&hash[..], now.0, expires_at.0])?;
    Ok(())
}

pub(crate) fn delete_session(c: &Connection, hash: &[u8; 32]) -> Result<()> {
    c.prepare_cached("DELETE FROM admin_sessions WHERE hash = ?1")?
        .execute([&hash[..]])?;
    Ok(())
}

const RUNTIME: &str = "runtime";

pub(crate) fn runtime_settings(c: &Connection) -> Result<RuntimeSettings> {
    let value: Option<String> = c
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([RUNTIME], |r| r.get(0))
        .optional()?;
    match value {
        Some(v) => serde_json::from_str(&v).map_err(StoreError::backend),
        None => Ok(RuntimeSettings::default()),
    }
}

pub(crate) fn put_runtime_settings(c: &Connection, s: &RuntimeSettings, now: Millis) -> Result<()> {
    let value = serde_json::to_string(s).map_err(StoreError::backend)?;
    c.prepare_cached(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![RUNTIME, value, now.0])?;
    Ok(())
}

pub(crate) fn list_notifications(
    c: &Connection,
    q: &NotificationListQuery,
) -> Result<Vec<NotificationRow>> {
    let mut sql = String::from(
        "SELECT nid, id, status, sender, content, audience, created_at, published_at, send_at, recipients
         FROM notifications WHERE 1 = 1",
    );
    let mut args: Vec<Value> = Vec::new();
    if let Some(before) = q.before {
        args.push(Value::Integer(before));
        sql.push_str(&format!(" AND nid < ?{}", args.len()));
    }
    if let Some(since) = q.since {
        args.push(Value::Integer(since.0));
        sql.push_str(&format!(" AND created_at >= ?{}", args.len()));
    }
    if let Some(category) = &q.category {
        args.push(Value::Text(category.clone()));
        sql.push_str(&format!(
            " AND json_extract(content, '$.category') = ?{}",
            args.len()
        ));
    }
    if let Some(source) = &q.source {
        args.push(Value::Text(source.clone()));
        sql.push_str(&format!(
            " AND json_extract(content, '$.source') = ?{}",
            args.len()
        ));
    }
    args.push(Value::Integer(q.limit as i64));
    sql.push_str(&format!(" ORDER BY nid DESC LIMIT ?{}", args.len()));
    let mut rows: Vec<NotificationRow> = c
        .prepare(&sql)?
        .query_map(params_from_iter(args), |r| {
            Ok(NotificationRow {
                nid: r.get(0)?,
                id: r.get(1)?,
                status: r.get(2)?,
                sender: r.get(3)?,
                content_json: r.get(4)?,
                audience_json: r.get(5)?,
                created_at: Millis(r.get(6)?),
                published_at: r.get::<_, Option<i64>>(7)?.map(Millis),
                send_at: r.get::<_, Option<i64>>(8)?.map(Millis),
                recipients: r.get(9)?,
                deliveries: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = c.prepare_cached(
        "SELECT channel, status, COUNT(*) FROM deliveries WHERE nid = ?1
         GROUP BY channel, status ORDER BY channel, status",
    )?;
    for row in &mut rows {
        row.deliveries = counts
            .query_map([row.nid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(rows)
}

pub(crate) fn delivery_log(c: &Connection, f: &LogFilter) -> Result<Vec<LogLine>> {
    let mut sql = String::from(
        "SELECT d.id, n.id, d.recipient, d.channel, d.status, d.attempt, d.error, d.at, d.reason, d.held_until
         FROM deliveries d JOIN notifications n ON n.nid = d.nid WHERE 1 = 1",
    );
    let mut args: Vec<Value> = Vec::new();
    let mut and = |args: &mut Vec<Value>, v: Value, cond: &str| {
        args.push(v);
        sql.push_str(&format!(" AND {cond}{}", args.len()));
    };
    if let Some(before) = f.before {
        and(&mut args, Value::Integer(before), "d.id < ?");
    }
    if let Some(r) = &f.recipient {
        and(&mut args, Value::Text(r.clone()), "d.recipient = ?");
    }
    if let Some(ch) = &f.channel {
        and(&mut args, Value::Text(ch.clone()), "d.channel = ?");
    }
    if let Some(st) = &f.status {
        and(&mut args, Value::Text(st.clone()), "d.status = ?");
    }
    if let Some(since) = f.since {
        and(&mut args, Value::Integer(since.0), "d.at >= ?");
    }
    if let Some(until) = f.until {
        and(&mut args, Value::Integer(until.0), "d.at < ?");
    }
    if let Some(cat) = &f.category {
        and(
            &mut args,
            Value::Text(cat.clone()),
            "json_extract(n.content, '$.category') = ?",
        );
    }
    if let Some(src) = &f.source {
        and(
            &mut args,
            Value::Text(src.clone()),
            "json_extract(n.content, '$.source') = ?",
        );
    }
    args.push(Value::Integer(f.limit as i64));
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ?{}", args.len()));
    let rows: Vec<(i64, String, crate::plan::StoredLine)> = c
        .prepare(&sql)?
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                (
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(id, notification_id, line)| {
            Ok(LogLine {
                id,
                notification_id,
                event: logged_event(line)?,
            })
        })
        .collect()
}

pub(crate) fn delivery_stats(
    c: &Connection,
    since: Millis,
    until: Millis,
    bucket_ms: i64,
) -> Result<Vec<StatBucket>> {
    Ok(c.prepare_cached(
        "SELECT (at / ?3) * ?3 AS start, channel, status, COUNT(*) FROM deliveries
         WHERE at >= ?1 AND at < ?2 GROUP BY start, channel, status ORDER BY start, channel, status",
    )?
    .query_map(params![since.0, until.0, bucket_ms], |r| {
        Ok(StatBucket {
            start: Millis(r.get(0)?),
            channel: r.get(1)?,
            status: r.get(2)?,
            count: r.get(3)?,
        })
    })?
    .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn audience_size(c: &Connection, a: &Audience) -> Result<i64> {
    let mut unknown_groups = Vec::new();
    let mut gids = Vec::new();
    for g in &a.groups {
        match read::gid(c, g)? {
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
        match read::uid(c, u)? {
            Some(uid) => {
                uids.insert(uid);
            }
            None => unknown_users.push(u.to_string()),
        }
    }
    if !unknown_users.is_empty() {
        return Err(StoreError::UnknownUsers(unknown_users));
    }
    // Email addresses: a user's, or an external contact.
    let mut emails: std::collections::BTreeSet<String> =
        a.emails.iter().map(|e| e.as_str().to_string()).collect();
    if let Some(entity) = &a.entity {
        let mut stmt = c.prepare_cached(
            "SELECT kind, subscriber, uid FROM subscriptions WHERE entity_type = ?1 AND entity_id = ?2",
        )?;
        let subs = stmt.query_map([&entity.kind, &entity.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for s in subs {
            match s? {
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
        let owner: Option<i64> = c
            .prepare_cached("SELECT uid FROM users WHERE email = ?1")?
            .query_row([email], |r| r.get(0))
            .optional()?;
        match owner {
            Some(uid) => {
                uids.insert(uid);
            }
            None => external += 1,
        }
    }
    if a.all {
        let users: i64 = c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        return Ok(users + external);
    }
    let users: i64 = match (gids.as_slice(), uids.is_empty()) {
        ([], _) => uids.len() as i64,
        // One group alone: a count of its part of the membership index.
        ([gid], true) => c
            // Kept by triggers: one row however large the group.
            .prepare_cached("SELECT COALESCE((SELECT members FROM group_sizes WHERE gid = ?1), 0)")?
            .query_row([gid], |r| r.get(0))?,
        _ => {
            let gids_json = serde_json::to_string(&gids).map_err(StoreError::backend)?;
            let uids_json = serde_json::to_string(&uids).map_err(StoreError::backend)?;
            c.prepare_cached(
                "SELECT COUNT(*) FROM (
                    SELECT uid FROM memberships
                    WHERE gid IN (SELECT value FROM json_each(?1)) AND left_seq IS NULL
                    UNION SELECT value FROM json_each(?2))",
            )?
            .query_row([gids_json, uids_json], |r| r.get(0))?
        }
    };
    Ok(users + external)
}

pub(crate) fn list_users(c: &Connection, q: &UserListQuery) -> Result<Vec<(i64, User)>> {
    let mut sql = String::from("SELECT u.uid FROM users u");
    let mut args: Vec<Value> = Vec::new();
    if let Some(group) = &q.group {
        let Some(gid) = read::gid(c, group)? else {
            return Ok(Vec::new());
        };
        args.push(Value::Integer(gid));
        sql.push_str(&format!(
            " JOIN memberships m ON m.uid = u.uid AND m.gid = ?{} AND m.left_seq IS NULL",
            args.len()
        ));
    }
    args.push(Value::Integer(q.after.unwrap_or(0)));
    sql.push_str(&format!(" WHERE u.uid > ?{}", args.len()));
    if let Some(query) = q.query.as_deref().filter(|s| !s.is_empty()) {
        let lower = query.to_lowercase();
        // One index range per column, united first: scanning in uid order
        // and testing each user would read the whole table.
        let mut ranges = Vec::new();
        // (`name IS NOT NULL` lets the partial index on lower(name) serve.)
        for (column, value) in [
            ("id", query.to_string()),
            ("email", lower.clone()),
            ("name IS NOT NULL AND lower(name)", lower),
        ] {
            args.push(Value::Text(value.clone()));
            let from = args.len();
            match prefix_end(&value) {
                Some(end) => {
                    args.push(Value::Text(end));
                    ranges.push(format!(
                        "SELECT uid FROM users WHERE {column} >= ?{from} AND {column} < ?{}",
                        args.len()
                    ));
                }
                None => ranges.push(format!("SELECT uid FROM users WHERE {column} >= ?{from}")),
            }
        }
        sql.push_str(&format!(" AND u.uid IN ({})", ranges.join(" UNION ")));
    }
    args.push(Value::Integer(q.limit as i64));
    sql.push_str(&format!(" ORDER BY u.uid LIMIT ?{}", args.len()));
    let uids: Vec<i64> = c
        .prepare(&sql)?
        .query_map(params_from_iter(args), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    uids.into_iter()
        .map(|uid| Ok((uid, read::user(c, uid)?)))
        .collect()
}
