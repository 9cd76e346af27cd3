//! Web push subscriptions on SQLite (C5): stored, listed and removed per
//! user; an endpoint is unique (posted again, it is updated and follows
//! the user who posted it).

use super::read;
use crate::{NewPushSubscription, PushSubscription, Result, StoreError};
use belfry_core::{Millis, UserId};
use rusqlite::{Connection, params};

type Row = (String, String, String, String, i64, i64);

fn subscription((id, endpoint, p256dh, auth, created, updated): Row) -> PushSubscription {
    PushSubscription {
        id,
        endpoint,
        p256dh,
        auth,
        created_at: Millis(created),
        updated_at: Millis(updated),
    }
}

pub(crate) fn put(
    c: &Connection,
    user: &UserId,
    sub: &NewPushSubscription,
    cap: usize,
    now: Millis,
) -> Result<(PushSubscription, bool)> {
    let uid = read::uid(c, user)?.ok_or(StoreError::NotFound)?;
    let fresh = ulid::Ulid::new().to_string();
    let row: Row = c
        .prepare_cached(
            "INSERT INTO push_subscriptions (id, uid, endpoint, p256dh, auth, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (endpoint) DO UPDATE SET uid = excluded.uid, p256dh = excluded.p256dh,
                 auth = excluded.auth, updated_at = excluded.updated_at
             RETURNING id, endpoint, p256dh, auth, created_at, updated_at",
        )?
        .query_row(
            params![fresh, uid, sub.endpoint, sub.p256dh, sub.auth, now.0],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
    // The cap: the least recently posted go first.
    c.prepare_cached(
        "DELETE FROM push_subscriptions WHERE uid = ?1 AND id NOT IN
             (SELECT id FROM push_subscriptions WHERE uid = ?1
              ORDER BY updated_at DESC, id DESC LIMIT ?2)",
    )?
    .execute(params![uid, cap.max(1) as i64])?;
    let created = row.0 == fresh;
    Ok((subscription(row), created))
}

pub(crate) fn list(c: &Connection, user: &UserId) -> Result<Vec<PushSubscription>> {
    let uid = read::uid(c, user)?.ok_or(StoreError::NotFound)?;
    let rows = c
        .prepare_cached(
            "SELECT id, endpoint, p256dh, auth, created_at, updated_at FROM push_subscriptions
             WHERE uid = ?1 ORDER BY updated_at DESC, id DESC",
        )?
        .query_map([uid], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<Row>>>()?;
    Ok(rows.into_iter().map(subscription).collect())
}

pub(crate) fn delete(c: &Connection, user: &UserId, id: &str) -> Result<bool> {
    let n = c
        .prepare_cached(
            "DELETE FROM push_subscriptions
             WHERE id = ?1 AND uid = (SELECT uid FROM users WHERE id = ?2)",
        )?
        .execute(params![id, user.as_str()])?;
    Ok(n > 0)
}
