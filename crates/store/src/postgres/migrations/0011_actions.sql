-- Issue 15: actions, forms and approvals (I7); reminders that stay (I5).

-- The first answer to a `once` action of the notification, as every
-- recipient's item shows it (JSON text: {"action", "label", "by": {"id",
-- "name"}, "at"}); NULL while nobody answered. Set with
-- `WHERE answered IS NULL`, so the first answer wins atomically (the row
-- lock orders concurrent answers from several nodes).
ALTER TABLE notifications ADD COLUMN answered TEXT;

-- Every answer to a callback action, as the producer gets it (the
-- `action.submitted` webhook). Goes with its notification and its user.
CREATE TABLE action_responses (
    id         TEXT PRIMARY KEY,
    nid        BIGINT NOT NULL REFERENCES notifications (nid) ON DELETE CASCADE,
    action     TEXT NOT NULL,
    uid        BIGINT NOT NULL REFERENCES users (uid) ON DELETE CASCADE,
    "values"   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX action_responses_nid ON action_responses (nid, created_at);
CREATE INDEX action_responses_uid ON action_responses (uid);

-- When the user closed a sticky notification (shown again on every page
-- until then): per direct inbox row and per broadcast state.
ALTER TABLE inbox ADD COLUMN dismissed_at BIGINT;
ALTER TABLE broadcast_state ADD COLUMN dismissed_at BIGINT;
