//! Mobile push devices on SQLite (C6): stored, listed and removed per
//! user; a token is unique per platform (posted again, it is updated and
//! follows the user who posted it).

use super::read;
use crate::{MobileDevice, MobilePlatform, NewMobileDevice, Result, StoreError};
use belfry_core::{Millis, UserId};
use rusqlite::{Connection, params};

type Row = (String, String, String, String, i64, i64);

const COLUMNS: &str = "id, platform, token, app_id, created_at, updated_at";

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

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub(crate) fn put(
    c: &Connection,
    user: &UserId,
    new: &NewMobileDevice,
    cap: usize,
    now: Millis,
) -> Result<(MobileDevice, bool)> {
    let uid = read::uid(c, user)?.ok_or(StoreError::NotFound)?;
    let fresh = ulid::Ulid::new().to_string();
    let stored: Row = c
        .prepare_cached(&format!(
            "INSERT INTO mobile_devices (id, uid, platform, token, app_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (platform, token) DO UPDATE SET uid = excluded.uid,
                 app_id = excluded.app_id, updated_at = excluded.updated_at
             RETURNING {COLUMNS}"
        ))?
        .query_row(
            params![
                fresh,
                uid,
                new.platform.as_str(),
                new.token,
                new.app_id,
                now.0
            ],
            row,
        )?;
    // The cap: the least recently posted go first.
    c.prepare_cached(
        "DELETE FROM mobile_devices WHERE uid = ?1 AND id NOT IN
             (SELECT id FROM mobile_devices WHERE uid = ?1
              ORDER BY updated_at DESC, id DESC LIMIT ?2)",
    )?
    .execute(params![uid, cap.max(1) as i64])?;
    let created = stored.0 == fresh;
    Ok((device(stored)?, created))
}

pub(crate) fn list(c: &Connection, user: &UserId) -> Result<Vec<MobileDevice>> {
    let uid = read::uid(c, user)?.ok_or(StoreError::NotFound)?;
    let rows = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM mobile_devices
             WHERE uid = ?1 ORDER BY updated_at DESC, id DESC"
        ))?
        .query_map([uid], row)?
        .collect::<rusqlite::Result<Vec<Row>>>()?;
    rows.into_iter().map(device).collect()
}

pub(crate) fn delete(c: &Connection, user: &UserId, id: &str) -> Result<bool> {
    let n = c
        .prepare_cached(
            "DELETE FROM mobile_devices
             WHERE id = ?1 AND uid = (SELECT uid FROM users WHERE id = ?2)",
        )?
        .execute(params![id, user.as_str()])?;
    Ok(n > 0)
}

/// Whether user `uid` has a mobile device (one probe of the uid index).
pub(crate) fn has_device(c: &Connection, uid: i64) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM mobile_devices WHERE uid = ?1 LIMIT 1")?
            .exists([uid])?,
    )
}
