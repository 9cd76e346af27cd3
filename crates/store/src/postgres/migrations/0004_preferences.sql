-- Issue 13: categories, preferences and delivery policies.

-- Categories (PUT /v1/categories/{id}): `def` is the CategoryDef as JSON
-- (crates/core/src/category.rs), read whole; the table is small and every
-- node caches it (crates/server/src/categories.rs).
CREATE TABLE categories (
    id         TEXT PRIMARY KEY,
    def        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The built-in categories of the seeds (the same as belfry_core::category::builtin(),
-- which crates/server/tests/api/preferences.rs compares them with); editable and deletable.
INSERT INTO categories (id, def, created_at, updated_at) VALUES
    ('assignment', '{"id":"assignment","name":"Assignments","icon":"assignment","critical":false,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":false}', 0, 0),
    ('mention', '{"id":"mention","name":"Mentions","icon":"mention","critical":false,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":false}', 0, 0),
    ('customer_reply', '{"id":"customer_reply","name":"Customer replies","icon":"reply","critical":false,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":false}', 0, 0),
    ('reopened', '{"id":"reopened","name":"Reopened tickets","icon":"reopened","critical":false,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":false}', 0, 0),
    ('announcement', '{"id":"announcement","name":"Announcements","icon":"announcement","critical":false,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":false}', 0, 0),
    ('reminder', '{"id":"reminder","name":"Reminders","icon":"reminder","critical":false,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":false}', 0, 0),
    ('system', '{"id":"system","name":"System notices","icon":"system","critical":true,"defaults":{"email":"off","web_push":true,"mobile_push":true,"chat":false},"email_fallback_after":null,"bypass_quiet_hours":true}', 0, 0);

-- A user's preference overrides (crates/core/src/preferences.rs), sparse,
-- as JSON: a user without a row has the defaults. Read once per delivery
-- by the worker, never on the send path.
CREATE TABLE user_preferences (
    uid        BIGINT PRIMARY KEY REFERENCES users (uid) ON DELETE CASCADE,
    prefs      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- What a user without overrides gets (PUT /v1/preferences/defaults): one
-- row, same JSON shape as a user's overrides.
CREATE TABLE preference_defaults (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    prefs      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO preference_defaults (id, prefs, updated_at) VALUES (1, '{}', 0);

-- The delivery log says why something did not go out at once: `reason` of
-- a `suppressed` line (master_switch, channel_off, category_off,
-- source_off, seen_in_app, no_address) and `held_until` of a `held` line (the API calls it `until`).
ALTER TABLE deliveries ADD COLUMN reason TEXT;
ALTER TABLE deliveries ADD COLUMN held_until BIGINT;
