-- Issue 14: webhooks to producers (C7).

-- A producer's webhook: where Belfry posts the events it subscribes to
-- (`events`, a JSON array of names such as "delivery.sent"), optionally
-- only those of notifications from one source. `secret` is its Standard
-- Webhooks signing secret (`whsec_…`), shown once when it is created. A
-- PUT of an existing id replaces url, events and source, keeps the secret
-- and enables it again. `failure_streak` counts consecutive failed
-- attempts and `failing_since` says when that run began (both reset by a
-- success); the engine disables a webhook whose every attempt failed for
-- long enough, or at once when it answers 410 Gone (`enabled` false with
-- `disabled_reason` and `disabled_at`).
CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,
    source          TEXT,
    secret          TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    disabled_at     BIGINT,
    failure_streak  BIGINT NOT NULL DEFAULT 0,
    failing_since   BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Every attempt to deliver an event to a webhook: listed newest first per
-- webhook (`aid` is the cursor), pruned by the retention run (older than
-- 30 days, or beyond the newest 1000 of a webhook).
CREATE TABLE webhook_attempts (
    aid           BIGSERIAL PRIMARY KEY,
    webhook_id    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('succeeded', 'retrying', 'failed')),
    response_code BIGINT,
    response      TEXT,
    duration_ms   BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    next_retry_at BIGINT
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, aid);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
