-- Issue 15: people without an account (C9, S3).

-- An external contact's own details (`contacts` holds every address
-- that was ever addressed and belongs to no user): the language and name
-- given when they subscribed (`PUT /v1/subscriptions/…/emails/{email}`
-- with `locale` and `name`); the latest subscription that gives one wins.
-- Their emails are written in this language. An address that belongs to a
-- user is reached as that user (with the user's own language) instead.
ALTER TABLE contacts ADD COLUMN name TEXT;
ALTER TABLE contacts ADD COLUMN locale TEXT;

-- Revoked access tokens (`POST /v1/access-tokens/revoke`). kind 'token':
-- one token, `value` its id (jti). kind 'email' / 'entity': every token of
-- that contact (`value` the address) or of that entity (`value`
-- 'type:id') issued at or before `until_ms` (milliseconds) is refused; a
-- later revocation moves `until_ms` forward, never back. Online verification
-- reads this table, so a revocation holds at once on every node. Rows
-- older than the longest token lifetime (365 days) refuse nothing
-- unexpired and are deleted when the next revocation is written.
CREATE TABLE access_revocations (
    kind  TEXT NOT NULL CHECK (kind IN ('token', 'email', 'entity')),
    value TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX access_revocations_until ON access_revocations (until_ms);
