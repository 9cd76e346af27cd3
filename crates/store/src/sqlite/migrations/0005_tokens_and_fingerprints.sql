-- Revoked user tokens: a user's tokens issued at or before `after` (millis)
-- are refused (DELETE /v1/users/{id}/tokens, and deleting the user). Keyed
-- by the host application's user id, not the uid, because the row must
-- outlive a deleted user: a user re-created with the same id must not
-- accept the old user's tokens. Rows older than the longest token lifetime
-- say nothing any more (every token they refuse has expired) and are
-- deleted by the next revocation (see crates/store/src/plan/users.rs).
CREATE TABLE token_revocations (
    user_id TEXT PRIMARY KEY,
    after   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX token_revocations_after ON token_revocations (after);

-- The SHA-256 of the request that used an idempotency key, so that the
-- same key with a different request is refused (422) instead of replayed
-- (see crates/store/src/plan/send.rs). NULL for keys stored before this
-- migration: they replay as before.
ALTER TABLE idempotency ADD COLUMN fingerprint BLOB;
