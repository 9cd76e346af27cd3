//! External contacts and access-token revocations on PostgreSQL (C9, S3):
//! a contact's name and language, and the revocations online verification
//! checks (see the migration `0010_access.sql` for the rule). Every node
//! reads the same table, so a revocation holds at once everywhere.

use crate::{AccessRevocation, AccessTokenRef, ContactProfile, Result};
use belfry_core::{EmailAddress, Millis};
use sqlx::PgConnection;

pub(crate) async fn put_contact(
    c: &mut PgConnection,
    email: &EmailAddress,
    profile: &ContactProfile,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO contacts (email, name, locale, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (email) DO UPDATE SET
             name = COALESCE(excluded.name, contacts.name),
             locale = COALESCE(excluded.locale, contacts.locale)",
    )
    .bind(email.to_string())
    .bind(profile.name.as_deref())
    .bind(profile.locale.as_ref().map(|l| l.as_str()))
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// A contact's (name, locale) as stored, if any.
pub(crate) async fn contact(
    c: &mut PgConnection,
    email: &EmailAddress,
) -> Result<Option<(Option<String>, Option<String>)>> {
    Ok(
        sqlx::query_as("SELECT name, locale FROM contacts WHERE email = $1")
            .bind(email.to_string())
            .fetch_optional(&mut *c)
            .await?,
    )
}

pub(crate) async fn revoke(
    c: &mut PgConnection,
    revocation: &AccessRevocation,
    now: Millis,
) -> Result<()> {
    // Revocations older than the longest token lifetime refuse nothing
    // unexpired: forgotten, so the table holds at most a year of them.
    sqlx::query("DELETE FROM access_revocations WHERE until_ms < $1")
        .bind(AccessRevocation::forget_before(now).0)
        .execute(&mut *c)
        .await?;
    let (kind, value) = revocation.key();
    sqlx::query(
        "INSERT INTO access_revocations (kind, value, until_ms) VALUES ($1, $2, $3)
         ON CONFLICT (kind, value) DO UPDATE SET
             until_ms = GREATEST(access_revocations.until_ms, excluded.until_ms)",
    )
    .bind(kind)
    .bind(value)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn revoked(c: &mut PgConnection, token: &AccessTokenRef) -> Result<bool> {
    let [(_, id), (_, email), (_, entity)] = token.keys();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM access_revocations
            WHERE (kind = 'token' AND value = $1)
               OR (kind = 'email' AND value = $2 AND until_ms >= $4)
               OR (kind = 'entity' AND value = $3 AND until_ms >= $4))",
    )
    .bind(id)
    .bind(email)
    .bind(entity)
    .bind(token.issued_at.0)
    .fetch_one(&mut *c)
    .await?)
}
