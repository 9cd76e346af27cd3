-- Issue 14: web push (C5).

-- One row per browser push subscription (`PushSubscription.toJSON()`): the
-- push service's endpoint URL and the browser's keys for the payload
-- encryption (RFC 8291: p256dh, the uncompressed P-256 point, and auth,
-- 16 bytes; both base64url as the browser gives them). An endpoint belongs
-- to one browser profile, so it is unique: posted again (by the same or
-- another user signed in there) it is updated, never duplicated. The row
-- goes when its user is deleted, when the user removes it, when the push
-- service answers 404/410 (gone), or when the user exceeds the cap (the
-- least recently posted goes first: `updated_at`).
CREATE TABLE push_subscriptions (
    id         TEXT PRIMARY KEY,       -- ULID, the API's id
    uid        BIGINT NOT NULL REFERENCES users (uid) ON DELETE CASCADE,
    endpoint   TEXT NOT NULL UNIQUE,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- A user's subscriptions (the delivery reads them; publishing asks which
-- recipients have any).
CREATE INDEX push_subscriptions_uid ON push_subscriptions (uid, updated_at);
