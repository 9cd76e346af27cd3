-- Issue 15: actions, forms and approvals (I7); reminders that stay (I5).

-- The first answer to a `once` action of the notification, as every
-- recipient's item shows it (JSON: {"action", "label", "by": {"id",
-- "name"}, "at"}); NULL while nobody answered. Set with
-- `WHERE answered IS NULL`, so the first answer wins atomically.
ALTER TABLE notifications ADD COLUMN answered TEXT;

-- Every answer to a callback action, as the producer gets it (the
-- `action.submitted` webhook): which notification and action, who, the
-- form's values (JSON object) and when. Goes with its notification
-- (retention) and with its user.
CREATE TABLE action_responses (
    id         TEXT PRIMARY KEY,       -- ULID, the API's response_id
    nid        INTEGER NOT NULL,       -- notifications.nid
    action     TEXT NOT NULL,          -- the action's id
    uid        INTEGER NOT NULL,       -- users.uid: who answered
    "values"   TEXT NOT NULL,          -- JSON object
    created_at INTEGER NOT NULL
);
CREATE INDEX action_responses_nid ON action_responses (nid, created_at);
CREATE INDEX action_responses_uid ON action_responses (uid);

-- When the user closed a sticky notification (it is shown again on every
-- page until then): per direct inbox row and per broadcast state.
ALTER TABLE inbox ADD COLUMN dismissed_at INTEGER;
ALTER TABLE broadcast_state ADD COLUMN dismissed_at INTEGER;
