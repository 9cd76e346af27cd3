-- Issue 14: chat and personal webhooks (C7).

-- Where the chat channel posts for one user or one group: a Slack incoming
-- webhook, a Microsoft Teams incoming webhook (or workflow URL), or a
-- generic webhook signed per the Standard Webhooks specification. A row
-- belongs to exactly one user (uid) or one group (gid); each owner has at
-- most one target per kind (PUT replaces it). `secret` is the webhook's
-- signing secret (`whsec_…`, kind 'webhook' only), shown to the
-- administrator once when the target is stored. A user's rows go when the
-- user is deleted (write.rs; SQLite has no foreign keys here).
CREATE TABLE chat_targets (
    uid        INTEGER,                -- users.uid, or NULL for a group's
    gid        INTEGER,                -- groups.gid, or NULL for a user's
    kind       TEXT NOT NULL CHECK (kind IN ('slack', 'teams', 'webhook')),
    url        TEXT NOT NULL,
    secret     TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((uid IS NULL) <> (gid IS NULL)),
    CHECK ((kind = 'webhook') = (secret IS NOT NULL))
);
-- One target per owner and kind; publishing asks which recipients (and
-- which targeted groups) have any, the delivery reads them.
CREATE UNIQUE INDEX chat_targets_user ON chat_targets (uid, kind) WHERE uid IS NOT NULL;
CREATE UNIQUE INDEX chat_targets_group ON chat_targets (gid, kind) WHERE gid IS NOT NULL;
