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
    // Revocations older than the longest token lifetime refuse nothing
    // unexpired: forgotten, so the table holds at most a year of them.
    c.prepare_cached("DELETE FROM access_revocations WHERE until_ms < ?1")?
        .execute([AccessRevocation::forget_before(now).0])?;
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

#[cfg(test)]
mod tests {
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{AccessRevocation, AccessTokenRef, Store as _};
    use belfry_core::{EmailAddress, EntityRef, Millis};

    #[tokio::test]
    async fn revocations_cover_earlier_tokens_and_are_forgotten_after_a_year() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteOptions::new(dir.path().join("a.db"))).unwrap();
        let day = 24 * 3600 * 1000;
        let token = |id: &str, email: &str, at: i64| AccessTokenRef {
            id: id.into(),
            email: EmailAddress::parse(email).unwrap(),
            entity: EntityRef::parse("ticket", "9").unwrap(),
            issued_at: Millis(at),
        };
        let email = AccessRevocation::Email(EmailAddress::parse("a@example.org").unwrap());
        store
            .revoke_access(email.clone(), Millis(1000))
            .await
            .unwrap();
        assert!(
            store
                .access_revoked(&token("t1", "a@example.org", 1000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .access_revoked(&token("t2", "a@example.org", 1001))
                .await
                .unwrap()
        );
        assert!(
            !store
                .access_revoked(&token("t1", "b@example.org", 999))
                .await
                .unwrap()
        );
        // An earlier revocation never moves the line back.
        store.revoke_access(email, Millis(500)).await.unwrap();
        assert!(
            store
                .access_revoked(&token("t1", "a@example.org", 1000))
                .await
                .unwrap()
        );
        // A year and a day later, the next revocation forgets it (every
        // token it covered has expired).
        let later = Millis(1000 + 366 * day);
        store
            .revoke_access(AccessRevocation::Token("t9".into()), later)
            .await
            .unwrap();
        assert!(
            !store
                .access_revoked(&token("t1", "a@example.org", 1000))
                .await
                .unwrap()
        );
        assert!(
            store
                .access_revoked(&token("t9", "c@example.org", 0))
                .await
                .unwrap()
        );
    }
}
