-- The delivery engine: one durable job queue for every timed or retried
-- task, the delivery log, and the development mailbox.

-- Due work. A worker claims a job by setting a lease; a job whose lease ran
-- out (its worker died) is claimed again. Done jobs are deleted.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,         -- publish | deliver | expand
    payload     TEXT NOT NULL,         -- JSON, by kind
    nid         INTEGER,               -- the notification it serves, if any
    run_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,               -- claimed until then
    lease_owner TEXT,
    last_error  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at);
CREATE INDEX jobs_nid ON jobs (nid) WHERE nid IS NOT NULL;

-- What happened to each notification, per recipient and channel: one row per
-- event (queued, scheduled, each attempt's outcome, skipped, cancelled).
CREATE TABLE deliveries (
    id        INTEGER PRIMARY KEY,
    nid       INTEGER NOT NULL,
    recipient TEXT NOT NULL,           -- user:<id>, email:<address>, group:<id>, all
    channel   TEXT NOT NULL,
    status    TEXT NOT NULL,           -- queued scheduled sent failed skipped cancelled
    attempt   INTEGER NOT NULL,
    error     TEXT,
    at        INTEGER NOT NULL         -- when it happened (scheduled: when it is due)
);
CREATE INDEX deliveries_nid ON deliveries (nid, id);

-- Emails kept instead of sent when no SMTP server is configured.
CREATE TABLE mailbox (
    id         INTEGER PRIMARY KEY,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    text       TEXT NOT NULL,
    html       TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The validated request of a scheduled notification, published when due.
ALTER TABLE notifications ADD COLUMN request TEXT;
