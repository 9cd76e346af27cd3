-- Each user's unread and unseen direct entries up to a seq, so that reading
-- the counts costs the same for a user with 15,000 unread entries as for one
-- with none, without a write per delivered notification.
--
--   upto:   the entries with seq <= upto are in the counts below; those
--           above are counted when read. An entry is only ever inserted
--           with a new seq, above every `upto`, so inserting needs no
--           trigger and publishing never writes this table (stacks move
--           their seq by UPDATE, which the triggers see).
--   unread: entries up to `upto` with read_at, archived_at and expires_at
--           all NULL
--   unseen: of those, the ones above the user's seen watermark
--
-- A read that counts more than a few entries above `upto` asks the writer to
-- fold them in (`write::fold_counts`). Entries that expire are never in the
-- counts, because they leave them without a write: they are counted when
-- read, from `inbox_unread_expiring`. A user without a row has everything
-- above 0, counted when read until the first fold. Broadcasts are never
-- counted per user (a broadcast writes no row per recipient).
--
-- Every statement that changes an entry up to `upto` (read/unread, archive,
-- delete, mark-all-read, read-entity, a stack that grows or shrinks,
-- retention, deleting a notification or a user) goes through the triggers
-- below, so no code path can leave the counts behind.
CREATE TABLE inbox_counts (
    uid    INTEGER PRIMARY KEY,
    upto   INTEGER NOT NULL,
    unread INTEGER NOT NULL,
    unseen INTEGER NOT NULL
);

CREATE INDEX inbox_unread_expiring ON inbox (uid, expires_at, seq)
    WHERE read_at IS NULL AND archived_at IS NULL AND expires_at IS NOT NULL;

CREATE TRIGGER inbox_counts_delete AFTER DELETE ON inbox
WHEN OLD.read_at IS NULL AND OLD.archived_at IS NULL AND OLD.expires_at IS NULL
BEGIN
    UPDATE inbox_counts
    SET unread = unread - 1,
        unseen = unseen - (OLD.seq > COALESCE((SELECT seen_wm FROM users WHERE uid = OLD.uid), 0))
    WHERE uid = OLD.uid AND OLD.seq <= upto;
END;

-- An update is the old row leaving the counts and the new one entering them.
CREATE TRIGGER inbox_counts_update_old AFTER UPDATE OF read_at, archived_at, expires_at, seq ON inbox
WHEN OLD.read_at IS NULL AND OLD.archived_at IS NULL AND OLD.expires_at IS NULL
BEGIN
    UPDATE inbox_counts
    SET unread = unread - 1,
        unseen = unseen - (OLD.seq > COALESCE((SELECT seen_wm FROM users WHERE uid = OLD.uid), 0))
    WHERE uid = OLD.uid AND OLD.seq <= upto;
END;

CREATE TRIGGER inbox_counts_update_new AFTER UPDATE OF read_at, archived_at, expires_at, seq ON inbox
WHEN NEW.read_at IS NULL AND NEW.archived_at IS NULL AND NEW.expires_at IS NULL
BEGIN
    UPDATE inbox_counts
    SET unread = unread + 1,
        unseen = unseen + (NEW.seq > COALESCE((SELECT seen_wm FROM users WHERE uid = NEW.uid), 0))
    WHERE uid = NEW.uid AND NEW.seq <= upto;
END;

-- The seen watermark only rises, usually to the newest seq: recounting the
-- unread entries between it and `upto` reads the few (mostly none) left.
CREATE TRIGGER inbox_counts_seen AFTER UPDATE OF seen_wm ON users
WHEN NEW.seen_wm <> OLD.seen_wm
BEGIN
    UPDATE inbox_counts
    SET unseen = (SELECT COUNT(*) FROM inbox
                  WHERE uid = NEW.uid AND seq > NEW.seen_wm AND seq <= inbox_counts.upto
                    AND read_at IS NULL AND archived_at IS NULL AND expires_at IS NULL)
    WHERE uid = NEW.uid;
END;

CREATE TRIGGER inbox_counts_user_gone AFTER DELETE ON users
BEGIN
    DELETE FROM inbox_counts WHERE uid = OLD.uid;
END;
