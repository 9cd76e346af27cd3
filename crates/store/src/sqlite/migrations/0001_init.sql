-- Belfry's model on SQLite. Times are milliseconds since the Unix epoch.
-- `seq` is the global, gap-free order of published notifications: the sort
-- key of every inbox and the resume cursor of every stream.

-- Named values such as the user-token signing secret.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Secret keys; only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,          -- comma-separated: send, admin
    prefix     TEXT NOT NULL,          -- first characters of the secret, for recognition
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE users (
    uid         INTEGER PRIMARY KEY,   -- internal key, joins are on integers
    id          TEXT NOT NULL UNIQUE,  -- the host application's id
    email       TEXT UNIQUE,           -- lower-case; one user per address
    name        TEXT,
    avatar_url  TEXT,
    locale      TEXT,
    timezone    TEXT,
    data        TEXT,                  -- JSON object
    created_seq INTEGER NOT NULL,      -- broadcasts to everyone with a higher seq reach this user
    read_wm     INTEGER NOT NULL DEFAULT 0, -- broadcasts up to this seq are read ("mark all read")
    seen_wm     INTEGER NOT NULL DEFAULT 0, -- everything up to this seq has been seen (drawer opened)
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE groups (
    gid        INTEGER PRIMARY KEY,    -- 0 is reserved for "everyone" in broadcasts
    id         TEXT NOT NULL UNIQUE,
    name       TEXT,
    created_at INTEGER NOT NULL
);

-- Membership history: a group's broadcasts reach a member when
-- joined_seq < seq <= left_seq (left_seq NULL while still a member), so a user
-- who leaves keeps what was sent while they were a member and gets nothing new.
CREATE TABLE memberships (
    uid        INTEGER NOT NULL,
    gid        INTEGER NOT NULL,
    joined_seq INTEGER NOT NULL,
    left_seq   INTEGER,
    PRIMARY KEY (uid, gid, joined_seq)
) WITHOUT ROWID;
CREATE INDEX memberships_current ON memberships (gid, uid) WHERE left_seq IS NULL;

-- Recipients addressed by an email address that belongs to no user.
CREATE TABLE contacts (
    cid        INTEGER PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- One row per notification, however many receive it.
CREATE TABLE notifications (
    nid          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE, -- public id (ULID)
    seq          INTEGER UNIQUE,       -- assigned when published; NULL while scheduled
    status       TEXT NOT NULL,        -- published | scheduled | cancelled
    sender       TEXT NOT NULL,        -- id of the key that sent it
    content      TEXT NOT NULL,        -- JSON object shown to recipients
    audience     TEXT NOT NULL,        -- JSON: the targets as requested
    channels     TEXT,                 -- JSON array; NULL: the defaults
    actor_uid    INTEGER,
    stack_key    TEXT,
    recipients   INTEGER,              -- direct recipients; NULL with a broadcast part
    created_at   INTEGER NOT NULL,
    published_at INTEGER,
    send_at      INTEGER,
    expires_at   INTEGER
);

-- Inbox entries of direct recipients. `seq` is the seq of the newest
-- notification of the entry (a stack moves to the top when it grows).
CREATE TABLE inbox (
    uid         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    nid         INTEGER NOT NULL,
    stack_key   TEXT,
    stack_count INTEGER NOT NULL DEFAULT 1,
    read_at     INTEGER,
    archived_at INTEGER,
    expires_at  INTEGER,
    category    TEXT,
    entity_type TEXT,
    entity_id   TEXT,
    PRIMARY KEY (uid, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX inbox_stack ON inbox (uid, stack_key) WHERE stack_key IS NOT NULL;
-- Counts and the unread listing are range scans of this small index.
CREATE INDEX inbox_unread ON inbox (uid, seq, expires_at) WHERE read_at IS NULL AND archived_at IS NULL;
CREATE INDEX inbox_archived ON inbox (uid, seq) WHERE archived_at IS NOT NULL;
CREATE INDEX inbox_nid ON inbox (nid, uid);
CREATE INDEX inbox_entity ON inbox (uid, entity_type, entity_id) WHERE entity_id IS NOT NULL;

-- Contacts a notification was addressed to (for email delivery).
CREATE TABLE notification_contacts (
    nid INTEGER NOT NULL,
    cid INTEGER NOT NULL,
    PRIMARY KEY (nid, cid)
) WITHOUT ROWID;

-- Broadcasts: one row per targeted group (gid 0: everyone), never per user.
CREATE TABLE broadcasts (
    gid         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    nid         INTEGER NOT NULL,
    actor_uid   INTEGER,
    expires_at  INTEGER,
    category    TEXT,
    entity_type TEXT,
    entity_id   TEXT,
    PRIMARY KEY (gid, seq)
) WITHOUT ROWID;
CREATE INDEX broadcasts_seq ON broadcasts (seq);
CREATE INDEX broadcasts_entity ON broadcasts (entity_type, entity_id) WHERE entity_id IS NOT NULL;

-- A user's state of a broadcast, written only when it changes.
-- read: 1 read, 0 marked unread (overrides the read watermark), NULL: the watermark decides.
CREATE TABLE broadcast_state (
    uid         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    read        INTEGER,
    archived_at INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (uid, seq)
) WITHOUT ROWID;
CREATE INDEX broadcast_state_seq ON broadcast_state (seq);

-- Idempotency keys, per sending key, kept 24 hours.
CREATE TABLE idempotency (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    nid        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
