-- Issue 13: the daily email digest.

-- A job that must exist at most once carries a key (`JobPayload::dedup`):
-- `digest:<user id>` for a user's daily digest job. The unique index makes
-- creating it idempotent (INSERT … ON CONFLICT), so a second node, a
-- restart or a repeated request never queues a second digest for a user;
-- after it runs the same row is moved to the next day. NULL for every
-- other job (they are not unique).
ALTER TABLE jobs ADD COLUMN dedup TEXT;
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup) WHERE dedup IS NOT NULL;
