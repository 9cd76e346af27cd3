-- Each user's unread and unseen direct entries up to a seq, as on SQLite
-- (its migration 0017 explains the columns): the counts read these plus the
-- unread entries above `upto` plus the live entries that expire. A new entry
-- always gets a seq above every `upto` (seqs are taken in commit order under
-- the counter's lock), so publishing never writes this table.
CREATE TABLE inbox_counts (
    uid    BIGINT PRIMARY KEY,
    upto   BIGINT NOT NULL,
    unread BIGINT NOT NULL,
    unseen BIGINT NOT NULL
);

CREATE INDEX inbox_unread_expiring ON inbox (uid, expires_at, seq)
    WHERE read_at IS NULL AND archived_at IS NULL AND expires_at IS NOT NULL;

-- A change of an entry up to `upto` moves the kept counts. The shared
-- advisory lock on the user makes a fold (which takes it exclusively) wait
-- for every transaction that changed the user's entries before it counts,
-- and a change after the fold began wait for it and see its `upto`: the
-- fold never counts a change that the trigger then misses, or the reverse.
-- Row triggers fire at the end of their statement, after its row locks.
CREATE FUNCTION inbox_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    who BIGINT;
    wm  BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN who := OLD.uid; ELSE who := NEW.uid; END IF;
    PERFORM pg_advisory_xact_lock_shared(hashtext('belfry-counts'), (who % 2147483647)::int4);
    SELECT seen_wm INTO wm FROM users WHERE uid = who;
    wm := COALESCE(wm, 0);
    IF OLD.read_at IS NULL AND OLD.archived_at IS NULL AND OLD.expires_at IS NULL THEN
        UPDATE inbox_counts SET unread = unread - 1, unseen = unseen - (OLD.seq > wm)::int
        WHERE uid = who AND OLD.seq <= upto;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.read_at IS NULL AND NEW.archived_at IS NULL AND NEW.expires_at IS NULL THEN
        UPDATE inbox_counts SET unread = unread + 1, unseen = unseen + (NEW.seq > wm)::int
        WHERE uid = who AND NEW.seq <= upto;
    END IF;
    RETURN NULL;
END $$;

-- Only rows that are, or become, unread without an expiry: retention's bulk
-- deletes of read entries and archiving read ones pay nothing.
CREATE TRIGGER inbox_counts_delete
    AFTER DELETE ON inbox
    FOR EACH ROW
    WHEN (OLD.read_at IS NULL AND OLD.archived_at IS NULL AND OLD.expires_at IS NULL)
    EXECUTE FUNCTION inbox_counts_change();

CREATE TRIGGER inbox_counts_update
    AFTER UPDATE OF read_at, archived_at, expires_at, seq ON inbox
    FOR EACH ROW
    WHEN ((OLD.read_at IS NULL AND OLD.archived_at IS NULL AND OLD.expires_at IS NULL)
       OR (NEW.read_at IS NULL AND NEW.archived_at IS NULL AND NEW.expires_at IS NULL))
    EXECUTE FUNCTION inbox_counts_change();

-- The seen watermark only rises, usually to the newest seq: recounting the
-- unread entries between it and `upto` reads the few (mostly none) left.
-- Exclusive, like a fold: a concurrent change of an entry is either counted
-- here or sees the new watermark.
CREATE FUNCTION inbox_counts_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('belfry-counts'), (NEW.uid % 2147483647)::int4);
    UPDATE inbox_counts c
    SET unseen = (SELECT COUNT(*) FROM inbox i
                  WHERE i.uid = NEW.uid AND i.seq > NEW.seen_wm AND i.seq <= c.upto
                    AND i.read_at IS NULL AND i.archived_at IS NULL AND i.expires_at IS NULL)
    WHERE c.uid = NEW.uid;
    RETURN NULL;
END $$;

CREATE TRIGGER inbox_counts_seen
    AFTER UPDATE OF seen_wm ON users
    FOR EACH ROW WHEN (NEW.seen_wm <> OLD.seen_wm)
    EXECUTE FUNCTION inbox_counts_seen();

CREATE FUNCTION inbox_counts_user_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM inbox_counts WHERE uid = OLD.uid;
    RETURN NULL;
END $$;

CREATE TRIGGER inbox_counts_user_gone
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION inbox_counts_user_gone();
