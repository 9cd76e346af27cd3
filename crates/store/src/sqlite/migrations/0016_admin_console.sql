-- Issue 17: the administration console.

-- Console administrators; the password only as its argon2id hash.
CREATE TABLE admins (
    id            TEXT PRIMARY KEY,        -- adm_<16 hex>
    email         TEXT NOT NULL UNIQUE,    -- lower-case
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,           -- PHC string
    created_at    INTEGER NOT NULL
);

-- Console sessions; only the SHA-256 of the cookie value is kept, so a
-- session works on every node and a stolen database reveals no cookie.
CREATE TABLE admin_sessions (
    hash         BLOB PRIMARY KEY,
    admin_id     TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL          -- idle expiry, moved on by use
) WITHOUT ROWID;
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);

-- Failed sign-ins per (lower-case) address, for the lock-out; kept only
-- for the lock-out window.
CREATE TABLE admin_login_failures (
    email TEXT NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX admin_login_failures_email ON admin_login_failures (email, at);

-- Settings changed at run time (PUT /v1/settings): JSON per key.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The delivery log across notifications: one recipient's lines newest
-- first, and the lines of a time range (the per-hour chart).
CREATE INDEX deliveries_recipient ON deliveries (recipient, id);
CREATE INDEX deliveries_at ON deliveries (at, channel, status);

-- The user search: prefixes of the name, case-insensitive (ids and emails
-- have their unique indexes; emails are stored lower-case).
CREATE INDEX users_name_lower ON users (lower(name)) WHERE name IS NOT NULL;

-- Current members per group, kept by triggers, so that the console's
-- audience size of a group is one row read however large the group.
CREATE TABLE group_sizes (
    gid     INTEGER PRIMARY KEY,
    members INTEGER NOT NULL
);
INSERT INTO group_sizes (gid, members)
    SELECT gid, COUNT(*) FROM memberships WHERE left_seq IS NULL GROUP BY gid;
CREATE TRIGGER group_sizes_join AFTER INSERT ON memberships WHEN NEW.left_seq IS NULL
BEGIN
    INSERT INTO group_sizes (gid, members) VALUES (NEW.gid, 1)
        ON CONFLICT (gid) DO UPDATE SET members = members + 1;
END;
CREATE TRIGGER group_sizes_leave AFTER UPDATE OF left_seq ON memberships
    WHEN OLD.left_seq IS NULL AND NEW.left_seq IS NOT NULL
BEGIN
    UPDATE group_sizes SET members = members - 1 WHERE gid = OLD.gid;
END;
CREATE TRIGGER group_sizes_rejoin AFTER UPDATE OF left_seq ON memberships
    WHEN OLD.left_seq IS NOT NULL AND NEW.left_seq IS NULL
BEGIN
    INSERT INTO group_sizes (gid, members) VALUES (NEW.gid, 1)
        ON CONFLICT (gid) DO UPDATE SET members = members + 1;
END;
CREATE TRIGGER group_sizes_delete AFTER DELETE ON memberships WHEN OLD.left_seq IS NULL
BEGIN
    UPDATE group_sizes SET members = members - 1 WHERE gid = OLD.gid;
END;
