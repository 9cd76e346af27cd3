-- The notifications behind each stacked inbox entry: one row per user and
-- stacked notification. An entry with stack_count c stands for the user's
-- c newest members of its stack key; cancelling one of them shrinks the
-- entry (and shows the newest that remains) instead of removing it
-- (see crates/store/src/plan/stack.rs). Written only for sends with a
-- stack key.
CREATE TABLE stack_members (
    uid       INTEGER NOT NULL,
    stack_key TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    nid       INTEGER NOT NULL,
    PRIMARY KEY (uid, stack_key, seq)
) WITHOUT ROWID;
CREATE INDEX stack_members_nid ON stack_members (nid);
