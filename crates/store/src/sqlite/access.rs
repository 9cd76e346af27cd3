//! External contacts and access-token revocations on SQLite (C9, S3): a
//! contact's name and language, and the revocations online verification
//! checks (see the migration `0012_access.sql` for the rule).

use crate::{AccessRevocation, AccessTokenRef, ContactProfile, Result};
use belfry_core::{EmailAddress, Millis};
use rusqlite::{Connection, OptionalExtension as _, params};

pub(crate) fn put_contact(
    c: &Connection,
    email: &EmailAddress,
    profile: &ContactProfile,
    now: Millis,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO contacts (email, name, locale, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (email) DO UPDATE SET
             name = COALESCE(excluded.name, contacts.name),
             locale = COALESCE(excluded.locale, contacts.locale)",
    )?
    .execute(params![
        email.to_string(),
        profile.name,
        profile.locale.as_ref().map(|l| l.as_str()),
        now.0
    ])?;
    Ok(())
}

/// A contact's (name, locale) as stored, if any.
pub(crate) fn contact(
    c: &Connection,
    email: &EmailAddress,
) -> Result<Option<(Option<String>, Option<String>)>> {
    Ok(
        c.prepare_cached("SELECT name, locale FROM contacts WHERE email = ?1")?
            .query_row([email.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    )
}

pub(crate) fn revoke(c: &Connection, revocation: &AccessRevocation, now: Millis) -> Result<()> {
    let (kind, value) = revocation.key();
    c.prepare_cached(
        "INSERT INTO access_revocations (kind, value, until_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (kind, value) DO UPDATE SET
             until_ms = MAX(access_revocations.until_ms, excluded.until_ms)",
    )?
    .execute(params![kind, value, now.0])?;
    Ok(())
}

pub(crate) fn revoked(c: &Connection, token: &AccessTokenRef) -> Result<bool> {
    let [(_, id), (_, email), (_, entity)] = token.keys();
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM access_revocations
                WHERE (kind = 'token' AND value = ?1)
                   OR (kind = 'email' AND value = ?2 AND until_ms >= ?4)
                   OR (kind = 'entity' AND value = ?3 AND until_ms >= ?4))",
    )?
    .query_row(params![id, email, entity, token.issued_at.0], |r| r.get(0))?)
}
