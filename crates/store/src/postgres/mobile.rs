//! Mobile push devices on PostgreSQL (C6): stored, listed and removed per
//! user; a token is unique per platform (posted again, it is updated and
//! follows the user who posted it).

use super::read;
use crate::{MobileDevice, MobilePlatform, NewMobileDevice, Result, StoreError};
use belfry_core::{Millis, UserId};
use sqlx::PgConnection;

type Row = (String, String, String, String, i64, i64);

fn device((id, platform, token, app_id, created, updated): Row) -> Result<MobileDevice> {
    Ok(MobileDevice {
        id,
        platform: MobilePlatform::parse(&platform)
            .ok_or_else(|| StoreError::backend(format!("unknown mobile platform '{platform}'")))?,
        token,
        app_id,
        created_at: Millis(created),
        updated_at: Millis(updated),
    })
}

/// Runs in a transaction (the upsert and the cap together).
pub(crate) async fn put(
    c: &mut PgConnection,
    user: &UserId,
    new: &NewMobileDevice,
    cap: usize,
    now: Millis,
) -> Result<(MobileDevice, bool)> {
    let uid = read::uid(c, user).await?.ok_or(StoreError::NotFound)?;
    let fresh = ulid::Ulid::new().to_string();
    let stored: Row = sqlx::query_as(
        "INSERT INTO mobile_devices (id, uid, platform, token, app_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (platform, token) DO UPDATE SET uid = excluded.uid,
             app_id = excluded.app_id, updated_at = excluded.updated_at
         RETURNING id, platform, token, app_id, created_at, updated_at",
    )
    .bind(&fresh)
    .bind(uid)
    .bind(new.platform.as_str())
    .bind(&new.token)
    .bind(&new.app_id)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?;
    // The cap: the least recently posted go first.
    sqlx::query(
        "DELETE FROM mobile_devices WHERE uid = $1 AND id NOT IN
             (SELECT id FROM mobile_devices WHERE uid = $1
              ORDER BY updated_at DESC, id DESC LIMIT $2)",
    )
    .bind(uid)
    .bind(cap.max(1) as i64)
    .execute(&mut *c)
    .await?;
    let created = stored.0 == fresh;
    Ok((device(stored)?, created))
}

pub(crate) async fn list(c: &mut PgConnection, user: &UserId) -> Result<Vec<MobileDevice>> {
    let uid = read::uid(c, user).await?.ok_or(StoreError::NotFound)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, platform, token, app_id, created_at, updated_at FROM mobile_devices
         WHERE uid = $1 ORDER BY updated_at DESC, id DESC",
    )
    .bind(uid)
    .fetch_all(&mut *c)
    .await?;
    rows.into_iter().map(device).collect()
}

pub(crate) async fn delete(c: &mut PgConnection, user: &UserId, id: &str) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM mobile_devices
         WHERE id = $1 AND uid = (SELECT uid FROM users WHERE id = $2)",
    )
    .bind(id)
    .bind(user.as_str())
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(n > 0)
}
