-- Entity subscriptions: who follows ticket 123. A user follows by user id;
-- an email subscription is resolved at send time like `to.emails` (the user
-- with that address, else an external contact).
CREATE TABLE subscriptions (
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,         -- 'user' or 'email'
    subscriber  TEXT NOT NULL,         -- the user id or the (lower-case) email address
    uid         INTEGER,               -- the user's internal key (kind = 'user')
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (entity_type, entity_id, kind, subscriber)
) WITHOUT ROWID;
CREATE INDEX subscriptions_user ON subscriptions (uid) WHERE uid IS NOT NULL;
CREATE INDEX subscriptions_email ON subscriptions (subscriber) WHERE kind = 'email';
