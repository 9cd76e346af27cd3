//! Chat targets on PostgreSQL (C7): a user's or a group's Slack, Teams and
//! webhook URLs, one per kind, stored, listed and removed; and which
//! recipients of a send have any (publishing plans chat jobs only for them).

use super::read;
use crate::{ChatKind, ChatOwner, ChatTarget, Result, StoreError};
use belfry_core::Millis;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgConnection;

type Row = (String, String, Option<String>, i64, i64);

fn target((kind, url, secret, created, updated): Row) -> Result<ChatTarget> {
    Ok(ChatTarget {
        kind: ChatKind::parse(&kind)
            .ok_or_else(|| StoreError::backend(format!("unknown chat target kind {kind}")))?,
        url,
        secret: secret.map(SecretString::from),
        created_at: Millis(created),
        updated_at: Millis(updated),
    })
}

/// The owner's column (`uid` or `gid`, a constant: the only text put into
/// the SQL) and key; `NotFound` when unknown.
async fn owner_key(c: &mut PgConnection, owner: &ChatOwner) -> Result<(&'static str, i64)> {
    match owner {
        ChatOwner::User(u) => Ok(("uid", read::uid(c, u).await?.ok_or(StoreError::NotFound)?)),
        ChatOwner::Group(g) => Ok(("gid", read::gid(c, g).await?.ok_or(StoreError::NotFound)?)),
    }
}

pub(crate) async fn put(
    c: &mut PgConnection,
    owner: &ChatOwner,
    kind: ChatKind,
    url: &str,
    secret: Option<&SecretString>,
    now: Millis,
) -> Result<(ChatTarget, bool)> {
    let (column, key) = owner_key(c, owner).await?;
    let secret = secret.map(|s| s.expose_secret().to_string());
    // `xmax = 0` tells an inserted row from an updated one.
    let (kind_s, url, secret, created, updated, inserted): (
        String,
        String,
        Option<String>,
        i64,
        i64,
        bool,
    ) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO chat_targets ({column}, kind, url, secret, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT ({column}, kind) WHERE {column} IS NOT NULL
         DO UPDATE SET url = excluded.url, secret = excluded.secret,
             updated_at = excluded.updated_at
         RETURNING kind, url, secret, created_at, updated_at, (xmax = 0)"
    )))
    .bind(key)
    .bind(kind.as_str())
    .bind(url)
    .bind(secret)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?;
    Ok((target((kind_s, url, secret, created, updated))?, inserted))
}

pub(crate) async fn list(c: &mut PgConnection, owner: &ChatOwner) -> Result<Vec<ChatTarget>> {
    let (column, key) = owner_key(c, owner).await?;
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT kind, url, secret, created_at, updated_at FROM chat_targets
         WHERE {column} = $1 ORDER BY kind"
    )))
    .bind(key)
    .fetch_all(&mut *c)
    .await?;
    rows.into_iter().map(target).collect()
}

pub(crate) async fn delete(
    c: &mut PgConnection,
    owner: &ChatOwner,
    kind: ChatKind,
) -> Result<bool> {
    let (column, key) = owner_key(c, owner).await?;
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM chat_targets WHERE {column} = $1 AND kind = $2"
    )))
    .bind(key)
    .bind(kind.as_str())
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(n > 0)
}
