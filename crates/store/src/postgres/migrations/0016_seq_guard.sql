-- A row that says the database has not lost a commit since it was written.
-- Unlogged: PostgreSQL empties the table in crash recovery (and it is empty
-- on a restored base backup and on a promoted standby), never on a clean
-- restart. The publishing writer commits without waiting for the WAL flush
-- and answers only once it is flushed; a crash can still lose commits whose
-- seqs a reader saw. Every transaction that moves `seq_counter` puts this
-- row back if it is missing, and when it was, moves the counter on by a
-- billion as well: no seq is handed out twice. See
-- crates/store/src/postgres/durable.rs.
CREATE UNLOGGED TABLE seq_guard (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id) -- at most one row
);
INSERT INTO seq_guard (id) VALUES (TRUE);
