//! Categories and preferences in SQLite: rows of JSON documents, read
//! whole (the planner and the server decide what they mean).

use crate::{Result, StoreError, UserPreferences};
use belfry_core::preferences::Overrides;
use belfry_core::{Category, CategoryDef, Millis, TimeZoneName, UserId};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn parse_def(json: &str) -> Result<CategoryDef> {
    serde_json::from_str(json).map_err(StoreError::backend)
}

pub(crate) fn categories(c: &Connection) -> Result<Vec<CategoryDef>> {
    let mut stmt = c.prepare_cached("SELECT def FROM categories ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|json| parse_def(&json?)).collect()
}

pub(crate) fn category(c: &Connection, id: &Category) -> Result<Option<CategoryDef>> {
    c.prepare_cached("SELECT def FROM categories WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get::<_, String>(0))
        .optional()?
        .map(|json| parse_def(&json))
        .transpose()
}

pub(crate) fn put_category(c: &Connection, def: &CategoryDef, now: Millis) -> Result<bool> {
    let json = serde_json::to_string(def).map_err(StoreError::backend)?;
    let created = category(c, &def.id)?.is_none();
    c.prepare_cached(
        "INSERT INTO categories (id, def, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (id) DO UPDATE SET def = excluded.def, updated_at = excluded.updated_at",
    )?
    .execute(params![def.id.as_str(), json, now.0])?;
    Ok(created)
}

pub(crate) fn delete_category(c: &Connection, id: &Category) -> Result<bool> {
    Ok(c.prepare_cached("DELETE FROM categories WHERE id = ?1")?
        .execute([id.as_str()])?
        > 0)
}

pub(crate) fn ensure_categories(c: &Connection, ids: &[Category], now: Millis) -> Result<()> {
    for id in ids {
        let json =
            serde_json::to_string(&CategoryDef::new(id.clone())).map_err(StoreError::backend)?;
        c.prepare_cached(
            "INSERT INTO categories (id, def, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![id.as_str(), json, now.0])?;
    }
    Ok(())
}

fn parse_overrides(json: &str) -> Result<Overrides> {
    serde_json::from_str(json).map_err(StoreError::backend)
}

pub(crate) fn preference_defaults(c: &Connection) -> Result<Overrides> {
    let json: Option<String> = c
        .prepare_cached("SELECT prefs FROM preference_defaults WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    json.map(|j| parse_overrides(&j))
        .transpose()
        .map(Option::unwrap_or_default)
}

pub(crate) fn put_preference_defaults(c: &Connection, o: &Overrides, now: Millis) -> Result<()> {
    let json = serde_json::to_string(o).map_err(StoreError::backend)?;
    c.prepare_cached(
        "INSERT INTO preference_defaults (id, prefs, updated_at) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET prefs = excluded.prefs, updated_at = excluded.updated_at",
    )?
    .execute(params![json, now.0])?;
    Ok(())
}

pub(crate) fn preferences(c: &Connection, user: &UserId) -> Result<UserPreferences> {
    let (uid, timezone): (i64, Option<String>) = c
        .prepare_cached("SELECT uid, timezone FROM users WHERE id = ?1")?
        .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or(StoreError::NotFound)?;
    let own: Option<String> = c
        .prepare_cached("SELECT prefs FROM user_preferences WHERE uid = ?1")?
        .query_row([uid], |r| r.get(0))
        .optional()?;
    Ok(UserPreferences {
        overrides: own
            .map(|j| parse_overrides(&j))
            .transpose()?
            .unwrap_or_default(),
        defaults: preference_defaults(c)?,
        timezone: timezone.and_then(|t| TimeZoneName::parse(&t).ok()),
    })
}

pub(crate) fn put_preferences(
    c: &Connection,
    user: &UserId,
    o: &Overrides,
    now: Millis,
) -> Result<()> {
    let uid: i64 = c
        .prepare_cached("SELECT uid FROM users WHERE id = ?1")?
        .query_row([user.as_str()], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound)?;
    if *o == Overrides::default() {
        // No overrides: no row, so that such users cost nothing.
        c.prepare_cached("DELETE FROM user_preferences WHERE uid = ?1")?
            .execute([uid])?;
        return Ok(());
    }
    let json = serde_json::to_string(o).map_err(StoreError::backend)?;
    c.prepare_cached(
        "INSERT INTO user_preferences (uid, prefs, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (uid) DO UPDATE SET prefs = excluded.prefs, updated_at = excluded.updated_at",
    )?
    .execute(params![uid, json, now.0])?;
    Ok(())
}
