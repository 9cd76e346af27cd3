//! Categories and preferences in PostgreSQL: rows of JSON documents, read
//! whole (the planner and the server decide what they mean).

use crate::{Result, StoreError, UserPreferences};
use belfry_core::preferences::Overrides;
use belfry_core::{Category, CategoryDef, Millis, TimeZoneName, UserId};
use sqlx::PgConnection;

fn parse_def(json: &str) -> Result<CategoryDef> {
    serde_json::from_str(json).map_err(StoreError::backend)
}

pub(crate) async fn categories(c: &mut PgConnection) -> Result<Vec<CategoryDef>> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT def FROM categories ORDER BY id")
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(|json| parse_def(json)).collect()
}

pub(crate) async fn category(c: &mut PgConnection, id: &Category) -> Result<Option<CategoryDef>> {
    let row: Option<String> = sqlx::query_scalar("SELECT def FROM categories WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *c)
        .await?;
    row.map(|json| parse_def(&json)).transpose()
}

pub(crate) async fn put_category(
    c: &mut PgConnection,
    def: &CategoryDef,
    now: Millis,
) -> Result<bool> {
    let json = serde_json::to_string(def).map_err(StoreError::backend)?;
    Ok(sqlx::query_scalar(
        "INSERT INTO categories (id, def, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (id) DO UPDATE SET def = excluded.def, updated_at = excluded.updated_at
         RETURNING (xmax = 0)",
    )
    .bind(def.id.as_str())
    .bind(json)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?)
}

pub(crate) async fn delete_category(c: &mut PgConnection, id: &Category) -> Result<bool> {
    Ok(sqlx::query("DELETE FROM categories WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
        > 0)
}

pub(crate) async fn ensure_categories(
    c: &mut PgConnection,
    ids: &[Category],
    now: Millis,
) -> Result<()> {
    for id in ids {
        let json =
            serde_json::to_string(&CategoryDef::new(id.clone())).map_err(StoreError::backend)?;
        sqlx::query(
            "INSERT INTO categories (id, def, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(json)
        .bind(now.0)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

fn parse_overrides(json: &str) -> Result<Overrides> {
    serde_json::from_str(json).map_err(StoreError::backend)
}

pub(crate) async fn preference_defaults(c: &mut PgConnection) -> Result<Overrides> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT prefs FROM preference_defaults WHERE id = 1")
            .fetch_optional(&mut *c)
            .await?;
    parse_defaults(json.as_deref())
}

/// The defaults as stored (None: no row, the built-in defaults).
pub(crate) fn parse_defaults(json: Option<&str>) -> Result<Overrides> {
    json.map(parse_overrides)
        .transpose()
        .map(Option::unwrap_or_default)
}

pub(crate) async fn put_preference_defaults(
    c: &mut PgConnection,
    o: &Overrides,
    now: Millis,
) -> Result<()> {
    let json = serde_json::to_string(o).map_err(StoreError::backend)?;
    sqlx::query(
        "INSERT INTO preference_defaults (id, prefs, updated_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET prefs = excluded.prefs, updated_at = excluded.updated_at",
    )
    .bind(json)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn preferences(c: &mut PgConnection, user: &UserId) -> Result<UserPreferences> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT u.timezone, p.prefs FROM users u LEFT JOIN user_preferences p ON p.uid = u.uid
         WHERE u.id = $1",
    )
    .bind(user.as_str())
    .fetch_optional(&mut *c)
    .await?;
    let (timezone, own) = row.ok_or(StoreError::NotFound)?;
    Ok(UserPreferences {
        overrides: own
            .map(|j| parse_overrides(&j))
            .transpose()?
            .unwrap_or_default(),
        defaults: preference_defaults(c).await?,
        timezone: timezone.and_then(|t| TimeZoneName::parse(&t).ok()),
    })
}

pub(crate) async fn put_preferences(
    c: &mut PgConnection,
    user: &UserId,
    o: &Overrides,
    now: Millis,
) -> Result<()> {
    let uid: i64 = sqlx::query_scalar("SELECT uid FROM users WHERE id = $1")
        .bind(user.as_str())
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    if *o == Overrides::default() {
        // No overrides: no row, so that such users cost nothing.
        sqlx::query("DELETE FROM user_preferences WHERE uid = $1")
            .bind(uid)
            .execute(&mut *c)
            .await?;
        return Ok(());
    }
    let json = serde_json::to_string(o).map_err(StoreError::backend)?;
    sqlx::query(
        "INSERT INTO user_preferences (uid, prefs, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (uid) DO UPDATE SET prefs = excluded.prefs, updated_at = excluded.updated_at",
    )
    .bind(uid)
    .bind(json)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}
