//! Backup and restore of the SQLite database file.
//!
//! A backup is taken while Belfry serves, from a connection of its own (the
//! `belfry backup` process). It copies pages with SQLite's online backup API
//! inside one read transaction: in WAL mode a reader never blocks the writer,
//! and the open transaction pins the snapshot, so the copy is the database as
//! it was when the backup began however much is written meanwhile (without
//! it, every commit of the server between two steps would make SQLite start
//! the copy over). The copy goes to `<file>.partial`, is checked
//! (`PRAGMA quick_check`) and only then renamed to `<file>`, so a backup that
//! fails leaves nothing that looks like a backup.
//!
//! The cost to the server: while the snapshot is pinned, the write-ahead log
//! cannot be restarted, so it grows by what is written during the copy, and
//! the writer tries a restart (up to `WalOptions::restart_wait`) now and then.
//! Copying in steps of a few MiB keeps each step short; the whole copy runs
//! at disk speed.
//!
//! A restore writes into a database no one else has open: it takes SQLite's
//! exclusive lock on the target first and refuses when another connection
//! (a running server, a `belfry` command) holds it. The pages are copied
//! inside SQLite's own transaction, so an interrupted restore leaves the old
//! database as it was.

use super::MIGRATIONS;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a backup or restore did not happen, in words an administrator acts on.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("there is no database at {0}")]
    Missing(PathBuf),
    #[error("{0} already exists: choose another file name or remove it first")]
    DestinationExists(PathBuf),
    #[error("{path} is not a Belfry database: {reason}")]
    NotBelfry { path: PathBuf, reason: String },
    #[error(
        "{path} was made by a newer Belfry (schema version {found}; this binary knows up to \
         {known}): use a Belfry at least as new as the one that made it"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "the database {0} is in use (a running Belfry or another belfry command has it open): \
         stop Belfry first, e.g. `systemctl stop belfry`"
    )]
    InUse(PathBuf),
    #[error(
        "{0} already holds a Belfry database; add --force to replace it (what it holds is lost: \
         back it up first)"
    )]
    TargetNotEmpty(PathBuf),
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, BackupError>;

fn sql<T>(context: impl FnOnce() -> String, r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(|source| BackupError::Sqlite {
        context: context(),
        source,
    })
}

fn io<T>(context: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| BackupError::Io {
        context: context(),
        source,
    })
}

/// The newest schema version this binary knows.
pub fn known_schema_version() -> i64 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

/// What a backup or restore copied.
#[derive(Debug, Clone)]
pub struct Copied {
    /// Pages of the database (its size is `pages * page_size`).
    pub pages: i64,
    pub page_size: i64,
    /// The schema version (the last migration applied).
    pub schema_version: i64,
    /// The highest notification seq in the copy.
    pub last_seq: i64,
    /// Steps the copy took.
    pub steps: u64,
    pub elapsed: Duration,
}

impl Copied {
    pub fn bytes(&self) -> u64 {
        (self.pages * self.page_size).max(0) as u64
    }
}

/// Settings of [`backup`].
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Pages copied per step (4096 pages of 4 KiB: 16 MiB).
    pub pages_per_step: i32,
    /// How long a step may wait for a lock before the backup gives up.
    pub busy_timeout: Duration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            pages_per_step: 4096,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens an existing database file without creating it (a read-write
/// connection: a WAL database needs its `-shm` file, which only such a
/// connection may create; nothing is written through it).
fn open_existing(path: &Path, timeout: Duration) -> Result<Connection> {
    if !path.is_file() {
        return Err(BackupError::Missing(path.to_path_buf()));
    }
    let conn = sql(
        || format!("cannot open {}", path.display()),
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
    )?;
    sql(
        || format!("cannot open {}", path.display()),
        conn.busy_timeout(timeout),
    )?;
    Ok(conn)
}

/// The schema version of a Belfry database, or why it is not one.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    let not_belfry = |reason: String| BackupError::NotBelfry {
        path: path.to_path_buf(),
        reason,
    };
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| not_belfry(e.to_string()))?;
    for needed in ["schema_migrations", "notifications", "users"] {
        if !tables.iter().any(|t| t == needed) {
            return Err(not_belfry(format!("it has no table {needed}")));
        }
    }
    let version: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_belfry(e.to_string()))?;
    if version > known_schema_version() {
        return Err(BackupError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            known: known_schema_version(),
        });
    }
    Ok(version)
}

fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let result: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| BackupError::NotBelfry {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if result != "ok" {
        return Err(BackupError::NotBelfry {
            path: path.to_path_buf(),
            reason: format!("it is damaged (quick_check: {result})"),
        });
    }
    Ok(())
}

fn facts(conn: &Connection, path: &Path) -> Result<(i64, i64, i64)> {
    let ctx = || format!("reading {}", path.display());
    let pages = sql(ctx, conn.query_row("PRAGMA page_count", [], |r| r.get(0)))?;
    let page_size = sql(ctx, conn.query_row("PRAGMA page_size", [], |r| r.get(0)))?;
    let last_seq = sql(
        ctx,
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM notifications", [], |r| {
            r.get(0)
        }),
    )?;
    Ok((pages, page_size, last_seq))
}

/// Copies all pages from `from` to `to` in steps of `pages` (negative: all
/// at once), calling `between` after every step that left some to copy.
fn copy(
    from: &Connection,
    to: &mut Connection,
    pages: i32,
    busy_timeout: Duration,
    mut between: impl FnMut(i64, i64),
) -> rusqlite::Result<u64> {
    let backup = Backup::new(from, to)?;
    let mut steps = 0;
    let mut waiting_since: Option<Instant> = None;
    loop {
        let r = backup.step(pages)?;
        steps += 1;
        match r {
            StepResult::Done => return Ok(steps),
            StepResult::More => {
                waiting_since = None;
                let p = backup.progress();
                between(i64::from(p.pagecount - p.remaining), i64::from(p.pagecount));
            }
            // A lock held by another connection (for a backup: a writer in
            // rollback-journal mode; never in WAL mode, where readers do
            // not wait): try again, for at most the busy timeout.
            _ => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > busy_timeout {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed locked".into()),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// `<file>.partial`, where a backup is written before it is complete.
fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Makes a consistent copy of the database at `source` (which may be in use
/// by a running server) at `dest`, which must not exist. `between` is called
/// after each step with pages copied and pages in all.
pub fn backup(
    source: &Path,
    dest: &Path,
    options: &BackupOptions,
    between: impl FnMut(i64, i64),
) -> Result<Copied> {
    let started = Instant::now();
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_path_buf()));
    }
    let src = open_existing(source, options.busy_timeout)?;
    // The read transaction that pins the snapshot for the whole copy.
    sql(
        || format!("cannot read {}", source.display()),
        src.execute_batch("BEGIN DEFERRED"),
    )?;
    let schema_version = schema_version(&src, source)?;
    let (_, page_size, last_seq) = facts(&src, source)?;

    let partial = partial_path(dest);
    if partial.exists() {
        io(
            || format!("cannot remove the unfinished {}", partial.display()),
            std::fs::remove_file(&partial),
        )?;
    }
    let result = (|| -> Result<(i64, u64)> {
        let mut dst = sql(
            || format!("cannot create {}", partial.display()),
            Connection::open(&partial),
        )?;
        let steps = sql(
            || format!("copying {} to {}", source.display(), partial.display()),
            copy(
                &src,
                &mut dst,
                options.pages_per_step,
                options.busy_timeout,
                between,
            ),
        )?;
        // The copy carries the source's WAL flag; a backup is one
        // self-contained file (Belfry switches back to WAL when it opens it).
        sql(
            || format!("finishing {}", partial.display()),
            dst.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(())),
        )?;
        quick_check(&dst, &partial)?;
        let (pages, _, _) = facts(&dst, &partial)?;
        drop(dst);
        sync(&partial)?;
        io(
            || format!("cannot rename {} to {}", partial.display(), dest.display()),
            std::fs::rename(&partial, dest),
        )?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself is durable once the directory is.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok((pages, steps))
    })();
    let _ = src.execute_batch("COMMIT");
    match result {
        Ok((pages, steps)) => Ok(Copied {
            pages,
            page_size,
            schema_version,
            last_seq,
            steps,
            elapsed: started.elapsed(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn sync(path: &Path) -> Result<()> {
    io(
        || format!("cannot flush {} to disk", path.display()),
        std::fs::File::open(path).and_then(|f| f.sync_all()),
    )
}

/// Checks that `file` is an intact Belfry database this binary can open,
/// returning what it holds.
pub fn verify(file: &Path) -> Result<Copied> {
    let started = Instant::now();
    let conn = open_existing(file, Duration::from_secs(1))?;
    quick_check(&conn, file)?;
    let schema_version = schema_version(&conn, file)?;
    let (pages, page_size, last_seq) = facts(&conn, file)?;
    Ok(Copied {
        pages,
        page_size,
        schema_version,
        last_seq,
        steps: 0,
        elapsed: started.elapsed(),
    })
}

/// The schema version of the Belfry database at `file`, read without
/// changing it (no integrity check: quick on a large file).
pub fn schema_version_of(file: &Path) -> Result<i64> {
    let conn = open_existing(file, Duration::from_secs(1))?;
    schema_version(&conn, file)
}

/// Replaces the database at `target` (created if missing) by the backup
/// `file`. Refuses when anything has `target` open, and when it already
/// holds a Belfry database unless `force`.
pub fn restore(file: &Path, target: &Path, force: bool) -> Result<Copied> {
    let started = Instant::now();
    let checked = verify(file)?;
    let src = open_existing(file, Duration::from_secs(1))?;
    let existed = target.is_file();
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        io(
            || format!("cannot create {}", dir.display()),
            std::fs::create_dir_all(dir),
        )?;
    }
    let mut dst = sql(
        || format!("cannot open {}", target.display()),
        Connection::open(target),
    )?;
    // Exclusive locking mode keeps the lock taken below until the
    // connection closes; any other connection, even an idle one, keeps it
    // from being taken.
    let ctx = || format!("cannot lock {}", target.display());
    sql(ctx, dst.busy_timeout(Duration::from_millis(200)))?;
    sql(
        ctx,
        dst.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |_| Ok(())),
    )?;
    match dst.execute_batch("BEGIN EXCLUSIVE") {
        Ok(()) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            return Err(BackupError::InUse(target.to_path_buf()));
        }
        Err(source) => {
            return Err(BackupError::Sqlite {
                context: ctx(),
                source,
            });
        }
    }
    if existed && !force {
        let tables: i64 = sql(
            || format!("reading {}", target.display()),
            dst.query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            ),
        )?;
        if tables > 0 {
            let _ = dst.execute_batch("ROLLBACK");
            return Err(BackupError::TargetNotEmpty(target.to_path_buf()));
        }
    }
    sql(ctx, dst.execute_batch("COMMIT"))?;
    let steps = sql(
        || format!("copying {} into {}", file.display(), target.display()),
        copy(&src, &mut dst, -1, Duration::from_secs(1), |_, _| {}),
    )?;
    quick_check(&dst, target)?;
    drop(dst);
    Ok(Copied {
        steps,
        elapsed: started.elapsed(),
        ..checked
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteOptions, SqliteStore, Store};
    use belfry_core::{GroupId, Millis};

    async fn store_with_groups(path: &Path, prefix: &str, n: usize) -> SqliteStore {
        let store = SqliteStore::open(SqliteOptions::new(path)).unwrap();
        for i in 0..n {
            let g = GroupId::parse(&format!("{prefix}-{i}")).unwrap();
            store
                .put_group(&g, Some("x".repeat(3000)), Millis(1))
                .await
                .unwrap();
        }
        store
    }

    fn count_groups(path: &Path) -> i64 {
        let c = Connection::open(path).unwrap();
        c.query_row("SELECT COUNT(*) FROM groups", [], |r| r.get(0))
            .unwrap()
    }

    /// Writes committed between the steps of a backup are not in it, and do
    /// not make it start over: the copy is the snapshot of its start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_in_steps_is_the_snapshot_of_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("belfry.db");
        let store = std::sync::Arc::new(store_with_groups(&db, "g", 200).await);
        let dest = dir.path().join("backup.db");
        let handle = tokio::runtime::Handle::current();
        let (db2, dest2, writer) = (db.clone(), dest.clone(), store.clone());
        let (copied, steps_seen) = tokio::task::spawn_blocking(move || {
            let mut steps_seen = 0;
            let mut n = 0;
            let options = BackupOptions {
                pages_per_step: 8,
                ..Default::default()
            };
            let copied = backup(&db2, &dest2, &options, |_, _| {
                steps_seen += 1;
                // The server commits between two steps.
                n += 1;
                let g = GroupId::parse(&format!("later-{n}")).unwrap();
                handle
                    .block_on(writer.put_group(&g, Some("y".repeat(3000)), Millis(2)))
                    .unwrap();
            })
            .unwrap();
            (copied, steps_seen)
        })
        .await
        .unwrap();
        assert!(steps_seen > 10, "copied in steps: {steps_seen}");
        assert_eq!(copied.steps, steps_seen + 1);
        assert_eq!(count_groups(&dest), 200, "only what was there at the start");
        assert_eq!(copied.schema_version, known_schema_version());
        assert!(!partial_path(&dest).exists());
        drop(store);
        assert_eq!(count_groups(&db), 200 + steps_seen as i64);

        let again = backup(&db, &dest, &BackupOptions::default(), |_, _| {}).unwrap_err();
        assert!(
            matches!(again, BackupError::DestinationExists(_)),
            "{again}"
        );
    }

    #[tokio::test]
    async fn restore_refuses_a_database_in_use_and_replaces_only_when_forced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a/belfry.db");
        let store = store_with_groups(&db, "g", 3).await;
        let file = dir.path().join("backup.db");
        backup(&db, &file, &BackupOptions::default(), |_, _| {}).unwrap();

        // Into a new place.
        let fresh = dir.path().join("b/belfry.db");
        let restored = restore(&file, &fresh, false).unwrap();
        assert_eq!(restored.schema_version, known_schema_version());
        assert_eq!(count_groups(&fresh), 3);

        // Over the database a store has open: refused, whatever the flag.
        let e = restore(&file, &db, true).unwrap_err();
        assert!(matches!(e, BackupError::InUse(_)), "{e}");
        assert!(e.to_string().contains("stop Belfry"), "{e}");
        drop(store);

        // Over an existing database: only with force.
        let other = store_with_groups(&fresh, "other", 5).await;
        drop(other);
        assert_eq!(count_groups(&fresh), 8);
        let e = restore(&file, &fresh, false).unwrap_err();
        assert!(matches!(e, BackupError::TargetNotEmpty(_)), "{e}");
        assert_eq!(count_groups(&fresh), 8, "left as it was");
        restore(&file, &fresh, true).unwrap();
        assert_eq!(count_groups(&fresh), 3);
        // And it opens as a store again.
        let reopened = SqliteStore::open(SqliteOptions::new(&fresh)).unwrap();
        assert_eq!(reopened.list_groups().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn only_intact_belfry_databases_of_a_known_schema_are_restored() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("belfry.db");

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all, just some text. ".repeat(200)).unwrap();
        let e = restore(&text, &target, false).unwrap_err();
        assert!(matches!(e, BackupError::NotBelfry { .. }), "{e}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = restore(&other, &target, false).unwrap_err();
        assert!(e.to_string().contains("no table schema_migrations"), "{e}");

        let newer = dir.path().join("newer.db");
        drop(store_with_groups(&newer, "g", 1).await);
        Connection::open(&newer)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations VALUES (?1, 0)",
                [known_schema_version() + 1],
            )
            .unwrap();
        let e = restore(&newer, &target, false).unwrap_err();
        assert!(matches!(e, BackupError::NewerSchema { .. }), "{e}");

        let e = restore(&dir.path().join("nothing.db"), &target, false).unwrap_err();
        assert!(matches!(e, BackupError::Missing(_)), "{e}");
        assert!(!target.exists(), "nothing was created");
    }
}
