//! Chat targets on SQLite (C7): a user's or a group's Slack, Teams and
//! webhook URLs, one per kind, stored, listed and removed; and which
//! recipients of a send have any (publishing plans chat jobs only for them).

use super::read;
use crate::{ChatKind, ChatOwner, ChatTarget, Result, StoreError};
use belfry_core::Millis;
use rusqlite::{Connection, OptionalExtension as _, params};
use secrecy::{ExposeSecret as _, SecretString};

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

/// The owner's column (`uid` or `gid`) and key; `NotFound` when unknown.
fn owner_key(c: &Connection, owner: &ChatOwner) -> Result<(&'static str, i64)> {
    match owner {
        ChatOwner::User(u) => Ok(("uid", read::uid(c, u)?.ok_or(StoreError::NotFound)?)),
        ChatOwner::Group(g) => Ok(("gid", read::gid(c, g)?.ok_or(StoreError::NotFound)?)),
    }
}

pub(crate) fn put(
    c: &Connection,
    owner: &ChatOwner,
    kind: ChatKind,
    url: &str,
    secret: Option<&SecretString>,
    now: Millis,
) -> Result<(ChatTarget, bool)> {
    let (column, key) = owner_key(c, owner)?;
    let existed = c
        .prepare_cached(&format!(
            "SELECT 1 FROM chat_targets WHERE {column} = ?1 AND kind = ?2"
        ))?
        .exists(params![key, kind.as_str()])?;
    let secret = secret.map(|s| s.expose_secret().to_string());
    let row: Row = c
        .prepare_cached(&format!(
            "INSERT INTO chat_targets ({column}, kind, url, secret, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT ({column}, kind) WHERE {column} IS NOT NULL
             DO UPDATE SET url = excluded.url, secret = excluded.secret,
                 updated_at = excluded.updated_at
             RETURNING kind, url, secret, created_at, updated_at"
        ))?
        .query_row(params![key, kind.as_str(), url, secret, now.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    Ok((target(row)?, !existed))
}

pub(crate) fn list(c: &Connection, owner: &ChatOwner) -> Result<Vec<ChatTarget>> {
    let (column, key) = owner_key(c, owner)?;
    let rows = c
        .prepare_cached(&format!(
            "SELECT kind, url, secret, created_at, updated_at FROM chat_targets
             WHERE {column} = ?1 ORDER BY kind"
        ))?
        .query_map([key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<Vec<Row>>>()?;
    rows.into_iter().map(target).collect()
}

pub(crate) fn delete(c: &Connection, owner: &ChatOwner, kind: ChatKind) -> Result<bool> {
    let (column, key) = owner_key(c, owner)?;
    let n = c
        .prepare_cached(&format!(
            "DELETE FROM chat_targets WHERE {column} = ?1 AND kind = ?2"
        ))?
        .execute(params![key, kind.as_str()])?;
    Ok(n > 0)
}

/// Whether user `uid` has a chat target.
pub(crate) fn user_has_target(c: &Connection, uid: i64) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM chat_targets WHERE uid = ?1 LIMIT 1")?
            .exists([uid])?,
    )
}

/// The id of group `gid` if it has a chat target.
pub(crate) fn group_with_target(c: &Connection, gid: i64) -> Result<Option<String>> {
    Ok(c.prepare_cached(
        "SELECT g.id FROM groups g WHERE g.gid = ?1
               AND EXISTS (SELECT 1 FROM chat_targets t WHERE t.gid = g.gid)",
    )?
    .query_row([gid], |r| r.get(0))
    .optional()?)
}
