//! Web push subscriptions on PostgreSQL (C5): stored, listed and removed
//! per user; an endpoint is unique (posted again, it is updated and
//! follows the user who posted it).

use super::read;
use crate::{NewPushSubscription, PushSubscription, Result, StoreError};
use belfry_core::{Millis, UserId};
use sqlx::PgConnection;

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

/// Runs in a transaction (the upsert and the cap together).
pub(crate) async fn put(
    c: &mut PgConnection,
    user: &UserId,
    sub: &NewPushSubscription,
    cap: usize,
    now: Millis,
) -> Result<(PushSubscription, bool)> {
    let uid = read::uid(c, user).await?.ok_or(StoreError::NotFound)?;
    let fresh = ulid::Ulid::new().to_string();
    let row: Row = sqlx::query_as(
        "INSERT INTO push_subscriptions (id, uid, endpoint, p256dh, auth, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (endpoint) DO UPDATE SET uid = excluded.uid, p256dh = excluded.p256dh,
             auth = excluded.auth, updated_at = excluded.updated_at
         RETURNING id, endpoint, p256dh, auth, created_at, updated_at",
    )
    .bind(&fresh)
    .bind(uid)
    .bind(&sub.endpoint)
    .bind(&sub.p256dh)
    .bind(&sub.auth)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?;
    // The cap: the least recently posted go first.
    sqlx::query(
        "DELETE FROM push_subscriptions WHERE uid = $1 AND id NOT IN
             (SELECT id FROM push_subscriptions WHERE uid = $1
              ORDER BY updated_at DESC, id DESC LIMIT $2)",
    )
    .bind(uid)
    .bind(cap.max(1) as i64)
    .execute(&mut *c)
    .await?;
    let created = row.0 == fresh;
    Ok((subscription(row), created))
}

pub(crate) async fn list(c: &mut PgConnection, user: &UserId) -> Result<Vec<PushSubscription>> {
    let uid = read::uid(c, user).await?.ok_or(StoreError::NotFound)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, endpoint, p256dh, auth, created_at, updated_at FROM push_subscriptions
         WHERE uid = $1 ORDER BY updated_at DESC, id DESC",
    )
    .bind(uid)
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.into_iter().map(subscription).collect())
}

pub(crate) async fn delete(c: &mut PgConnection, user: &UserId, id: &str) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM push_subscriptions
         WHERE id = $1 AND uid = (SELECT uid FROM users WHERE id = $2)",
    )
    .bind(id)
    .bind(user.as_str())
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(n > 0)
}
