-- Issue 17: the administration console.

-- Console administrators; the password only as its argon2id hash.
CREATE TABLE admins (
    id            TEXT PRIMARY KEY,        -- adm_<16 hex>
    email         TEXT NOT NULL UNIQUE,    -- lower-case
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,           -- PHC string
    created_at    BIGINT NOT NULL
);

-- Console sessions; only the SHA-256 of the cookie value is kept, so a
-- session works on every node and a stolen database reveals no cookie.
CREATE TABLE admin_sessions (
    hash         BYTEA PRIMARY KEY,
    admin_id     TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL           -- idle expiry, moved on by use
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);

-- Failed sign-ins per (lower-case) address, for the lock-out; kept only
-- for the lock-out window.
CREATE TABLE admin_login_failures (
    email TEXT NOT NULL,
    at    BIGINT NOT NULL
);
CREATE INDEX admin_login_failures_email ON admin_login_failures (email, at);

-- Settings changed at run time (PUT /v1/settings): JSON per key.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The delivery log across notifications: one recipient's lines newest
-- first, and the lines of a time range (the per-hour chart).
CREATE INDEX deliveries_recipient ON deliveries (recipient, id);
CREATE INDEX deliveries_at ON deliveries (at, channel, status);

-- The user search: prefixes of the id, the email and the name,
-- case-insensitive where the API is (LIKE 'x%' with pattern operators).
CREATE INDEX users_id_pattern ON users (id text_pattern_ops);
CREATE INDEX users_email_pattern ON users (email text_pattern_ops);
CREATE INDEX users_name_lower ON users (lower(name) text_pattern_ops) WHERE name IS NOT NULL;

-- Current members per group, kept by a trigger, so that the console's
-- audience size of a group is one row read however large the group.
CREATE TABLE group_sizes (
    gid     BIGINT PRIMARY KEY,
    members BIGINT NOT NULL
);
INSERT INTO group_sizes (gid, members)
    SELECT gid, COUNT(*) FROM memberships WHERE left_seq IS NULL GROUP BY gid;
CREATE FUNCTION belfry_group_sizes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.left_seq IS NULL THEN
            INSERT INTO group_sizes (gid, members) VALUES (NEW.gid, 1)
                ON CONFLICT (gid) DO UPDATE SET members = group_sizes.members + 1;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.left_seq IS NULL THEN
            UPDATE group_sizes SET members = members - 1 WHERE gid = OLD.gid;
        END IF;
    ELSIF OLD.left_seq IS NULL AND NEW.left_seq IS NOT NULL THEN
        UPDATE group_sizes SET members = members - 1 WHERE gid = OLD.gid;
    ELSIF OLD.left_seq IS NOT NULL AND NEW.left_seq IS NULL THEN
        INSERT INTO group_sizes (gid, members) VALUES (NEW.gid, 1)
            ON CONFLICT (gid) DO UPDATE SET members = group_sizes.members + 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memberships_group_sizes AFTER INSERT OR UPDATE OF left_seq OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION belfry_group_sizes();
