//! The embedded SQLite backend. One writer thread owns the only writing
//! connection and commits every operation that is waiting in one transaction
//! (group commit), each operation inside its own savepoint so that one
//! failure does not undo the others; callers are answered after the commit.
//! Reads run on a small pool of read-only connections (WAL lets them proceed
//! while the writer commits).

mod access;
mod admin;
mod answer;
pub mod backup;
mod chat;
mod documents;
pub mod fixture;
mod jobs;
mod mailbox;
mod mobile;
mod prefs;
mod publish;
mod push;
mod read;
mod retention;
mod wal;
mod webhooks;
mod write;

pub use wal::{WalOptions, WalState};

use crate::{
    AccessRevocation, AccessTokenRef, AnswerReceipt, ApiKeyInfo, ChatKind, ChatOwner, ChatTarget,
    Constraint, ContactProfile, DeliveryContext, DeliveryPage, DeliveryQuery, DevMail, Group,
    InboxChange, InboxPage, Job, JobOutcome, JobStats, MobileDevice, NewAnswer, NewApiKey,
    NewDevMail, NewMobileDevice, NewPushSubscription, NotificationRecord, PoolStats,
    PushSubscription, Recipient, Result, SendContext, SendReceipt, Store, StoreError, StoreEvent,
    Subscriber, Subscription, Unavailable,
};
use async_trait::async_trait;
use belfry_core::{
    Counts, EmailAddress, EntityRef, GroupId, InboxQuery, Millis, NewNotification, User, UserId,
    UserPatch,
};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};

/// Ordered migrations; each runs once, in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_subscriptions.sql")),
    (3, include_str!("migrations/0003_delivery.sql")),
    (4, include_str!("migrations/0004_stack_members.sql")),
    (
        5,
        include_str!("migrations/0005_tokens_and_fingerprints.sql"),
    ),
    (6, include_str!("migrations/0006_preferences.sql")),
    (7, include_str!("migrations/0007_digest.sql")),
    (8, include_str!("migrations/0008_push.sql")),
    (9, include_str!("migrations/0009_chat.sql")),
    (10, include_str!("migrations/0010_mobile.sql")),
    (11, include_str!("migrations/0011_webhooks.sql")),
    (12, include_str!("migrations/0012_access.sql")),
    (13, include_str!("migrations/0013_actions.sql")),
    (14, include_str!("migrations/0014_documents.sql")),
    (15, include_str!("migrations/0015_sources.sql")),
    (16, include_str!("migrations/0016_admin_console.sql")),
    (17, include_str!("migrations/0017_inbox_counts.sql")),
];

/// How many operations the writer commits together at most.
const MAX_BATCH: usize = 512;

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file; created with its directory if missing.
    pub path: PathBuf,
    /// Read-only connections in the pool.
    pub readers: usize,
    /// `synchronous=FULL` (fsync on every commit, the default) or NORMAL
    /// (durable against a crash of the process, not of the machine).
    pub fsync_every_commit: bool,
    /// How the write-ahead log is kept small.
    pub wal: WalOptions,
    /// Writes waiting for the writer at most. A request that finds the
    /// queue full is answered at once with `Unavailable::Overloaded` (503)
    /// instead of waiting; the job engine's own writes wait for room.
    pub write_queue: usize,
    /// How long the writer waits for a lock another process holds before it
    /// answers `Unavailable::Busy` (503); 5 s by default.
    pub busy_timeout: std::time::Duration,
    /// Group commit: while writes from several callers queue up behind a
    /// commit, the next commit begins this long after the previous one at
    /// the earliest, and gathers what arrives meanwhile into one
    /// transaction: a steady stream of single sends then costs one WAL
    /// write and one fsync per interval instead of one per send. A write
    /// that finds the queue empty (an isolated write, or one caller writing
    /// one request after another) is never delayed. Zero: commit each batch
    /// at once.
    pub commit_interval: std::time::Duration,
    /// A read of the counts that had to count more unread entries than
    /// this above the user's kept counts asks the writer to fold them in
    /// (migration 0017), so the next reads count none of them.
    pub fold_counts_after: i64,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readers: 4,
            fsync_every_commit: true,
            wal: WalOptions::default(),
            write_queue: 8192,
            busy_timeout: std::time::Duration::from_secs(5),
            commit_interval: std::time::Duration::ZERO,
            fold_counts_after: 64,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let rusqlite::Error::SqliteFailure(f, msg) = &e else {
            return StoreError::backend(e);
        };
        let kind = match f.code {
            ErrorCode::ConstraintViolation => {
                return StoreError::conflict(Constraint::Database(
                    msg.clone().unwrap_or_else(|| e.to_string()),
                ));
            }
            // Another connection held the lock past the busy timeout.
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Unavailable::Busy,
            // SQLITE_FULL: the disk (or max_page_count) is full.
            ErrorCode::DiskFull => Unavailable::Full,
            // The file cannot be opened (gone, its directory unmounted).
            ErrorCode::CannotOpen => Unavailable::Unreachable,
            _ => return StoreError::backend(e),
        };
        StoreError::unavailable(kind, e)
    }
}

/// State owned by the writer thread.
pub(crate) struct Writer {
    pub conn: Connection,
    /// The highest `seq` handed out (committed or in the open transaction).
    pub last_seq: i64,
    /// Events of the open transaction, published after it commits.
    pub events: Vec<StoreEvent>,
    publish: broadcast::Sender<Arc<Vec<StoreEvent>>>,
    committed_seq: Arc<AtomicI64>,
    /// The open transaction queued jobs: wake the workers after commit.
    pub jobs_added: bool,
    jobs_wakeup: Arc<tokio::sync::Notify>,
    wal: wal::Restarter,
    disk_full: Arc<DiskFull>,
    /// The administrators' preference defaults, read once for many sends
    /// (publishing reads them to find who opted in); only the writer
    /// changes them, and forgets this copy when it does.
    pub preference_defaults: Option<belfry_core::preferences::Overrides>,
    /// Which events enabled producer webhooks subscribe to (`webhooks`):
    /// what keeps mark-read and a delivery's completion free of webhook
    /// work when none does. Only the writer changes webhooks, and forgets
    /// this copy when it does (or when a batch is rolled back).
    pub webhooks: Option<crate::webhooks::Subscribed>,
}

/// When a write last failed for lack of space. Readiness reports it for
/// `DiskFull::HOLD` afterwards, or until a write that changes rows
/// succeeds: an empty operation (what `ping` writes) needs no new page and
/// would succeed on a full disk.
#[derive(Debug, Default)]
struct DiskFull {
    /// Set with `at`; lets every other write skip the lock.
    marked: std::sync::atomic::AtomicBool,
    at: Mutex<Option<std::time::Instant>>,
}

impl DiskFull {
    const HOLD: std::time::Duration = std::time::Duration::from_secs(30);

    fn marked(&self) -> bool {
        self.marked.load(Ordering::Relaxed)
    }

    fn note_full(&self) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        self.marked.store(true, Ordering::Relaxed);
    }

    fn clear(&self) {
        self.marked.store(false, Ordering::Relaxed);
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn recently(&self) -> bool {
        self.marked()
            && self
                .at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() < Self::HOLD)
    }
}

impl Writer {
    pub fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }

    pub fn emit(&mut self, event: StoreEvent) {
        self.events.push(event);
    }
}

/// One queued write: runs inside the batch transaction, answers after commit.
trait Op: Send {
    /// Runs the operation; its error, if it failed (the reply gets it after
    /// the batch ends).
    fn run(&mut self, w: &mut Writer) -> std::result::Result<(), StoreError>;
    /// Whether it runs in a savepoint of its own, so that a failure undoes
    /// its writes alone (see [`SqliteStore::write_unguarded`]).
    fn savepoint(&self) -> bool;
    fn finish(self: Box<Self>, commit: std::result::Result<(), StoreError>);
    /// A request's write (answered at once when the database refuses the
    /// batch before it), not one of the job engine's (which wait).
    fn sheddable(&self) -> bool;
}

struct FnOp<R, F> {
    f: Option<F>,
    result: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
    /// False for the job engine's writes, which must be recorded however
    /// long they wait.
    sheddable: bool,
    savepoint: bool,
}

impl<R, F> Op for FnOp<R, F>
where
    R: Send,
    F: FnOnce(&mut Writer) -> Result<R> + Send,
{
    fn run(&mut self, w: &mut Writer) -> std::result::Result<(), StoreError> {
        let f = self.f.take().expect("an op runs once");
        // Only while the disk is marked full: did this write change rows?
        let changes = w.disk_full.marked().then(|| w.conn.total_changes());
        let result = f(w);
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        match &result {
            Err(StoreError::Unavailable {
                kind: Unavailable::Full,
                ..
            }) => w.disk_full.note_full(),
            // A write that changed rows: there is room again.
            Ok(_) if changes.is_some_and(|c| w.conn.total_changes() > c) => w.disk_full.clear(),
            _ => {}
        }
        self.result = Some(result);
        outcome
    }

    fn savepoint(&self) -> bool {
        self.savepoint
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), StoreError>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::backend("operation did not run")),
            // Its own error is more telling than the batch's.
            (Err(_), Some(Err(own))) => Err(own),
            (Err(e), _) => Err(e),
        };
        let _ = self.reply.send(result);
    }

    fn sheddable(&self) -> bool {
        self.sheddable
    }
}

/// The answer to a write that was shed: the queue is full.
fn overloaded() -> StoreError {
    metrics::counter!("belfry_sqlite_writes_shed_total").increment(1);
    StoreError::unavailable(Unavailable::Overloaded, "the write queue is full")
}

/// A pool of read-only connections used from blocking threads.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    size: usize,
    /// Reads waiting for a connection.
    waiting: std::sync::atomic::AtomicU64,
}

impl Readers {
    fn take(&self) -> Result<Connection> {
        let conn = self.idle.lock().expect("reader pool").pop();
        match conn {
            Some(c) => Ok(c),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().expect("reader pool").push(conn);
    }
}

/// The SQLite store. Cheap to share behind an `Arc`; dropping the last
/// reference lets the writer finish what is queued and stop.
pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Op>>,
    readers: Arc<Readers>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Dropping it stops the checkpointer thread.
    checkpointer: Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    events: broadcast::Sender<Arc<Vec<StoreEvent>>>,
    committed_seq: Arc<AtomicI64>,
    jobs_wakeup: Arc<tokio::sync::Notify>,
    wal: Arc<WalState>,
    path: PathBuf,
    disk_full: Arc<DiskFull>,
    fold_counts_after: i64,
}

/// Commits buffered in the event channel before a slow consumer lags.
const EVENT_BUFFER: usize = 16 * 1024;

/// How long the read-only and checkpoint connections wait for a lock (the
/// writer has its own, `SqliteOptions::busy_timeout`).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Page cache of the writer, in KiB: its pages stay valid from one
/// transaction to the next, so the hot parts of the indexes it inserts into
/// stay in memory.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// Page cache of a read-only connection, in KiB. SQLite drops a
/// connection's whole cache when its next read transaction finds that the
/// WAL has changed, which under a steady stream of sends is nearly every
/// time: a large cache would only fill up with pages that are thrown away
/// (and grow the process's memory for nothing); the operating system's
/// page cache serves the re-reads.
const READER_CACHE_KIB: i64 = 2 * 1024;

fn configure(conn: &Connection, cache_kib: i64) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib};"
    ))?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn, READER_CACHE_KIB)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch() * 1000)",
            [version],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database, applies migrations and starts
    /// the writer thread.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore> {
        if let Some(dir) = options.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut conn = Connection::open(&options.path)?;
        configure(&conn, WRITER_CACHE_KIB)?;
        conn.busy_timeout(options.busy_timeout)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::backend(format!(
                "could not switch {} to WAL mode (got {mode})",
                options.path.display()
            )));
        }
        conn.execute_batch(if options.fsync_every_commit {
            "PRAGMA synchronous = FULL;"
        } else {
            "PRAGMA synchronous = NORMAL;"
        })?;
        // Checkpoints never run inside a commit (on a large database one
        // takes tens of milliseconds): the checkpointer thread copies frames
        // back, the writer restarts the log between batches (see `wal`).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        conn.execute_batch(&format!(
            "PRAGMA journal_size_limit = {};",
            options.wal.journal_size_limit
        ))?;
        let wal_state = Arc::new(WalState::default());
        wal::install_hook(&mut conn, wal_state.clone())?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        migrate(&mut conn)?;
        let last_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM notifications", [], |r| {
                r.get(0)
            })?;

        let readers = (0..options.readers.max(1))
            .map(|_| open_reader(&options.path))
            .collect::<Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel::<Box<dyn Op>>(options.write_queue.max(1));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let committed_seq = Arc::new(AtomicI64::new(last_seq));
        let jobs_wakeup = Arc::new(tokio::sync::Notify::new());
        let disk_full = Arc::new(DiskFull::default());
        let writer = Writer {
            conn,
            last_seq,
            events: Vec::new(),
            publish: events.clone(),
            committed_seq: committed_seq.clone(),
            jobs_added: false,
            jobs_wakeup: jobs_wakeup.clone(),
            wal: wal::Restarter::new(
                options.wal.clone(),
                wal_state.clone(),
                options.path.clone(),
                page_size,
            ),
            disk_full: disk_full.clone(),
            preference_defaults: None,
            webhooks: None,
        };
        let thread = std::thread::Builder::new()
            .name("belfry-sqlite-writer".into())
            .spawn({
                let (busy_timeout, commit_interval) =
                    (options.busy_timeout, options.commit_interval);
                move || writer_loop(writer, rx, busy_timeout, commit_interval)
            })
            .map_err(|e| StoreError::backend(format!("cannot start the writer thread: {e}")))?;
        let checkpointer = start_checkpointer(&options.path, &options.wal, &wal_state, page_size)?;

        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(Readers {
                path: options.path.clone(),
                permits: Semaphore::new(options.readers.max(1)),
                size: options.readers.max(1),
                waiting: Default::default(),
                idle: Mutex::new(readers),
            }),
            thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(Some(checkpointer)),
            events,
            committed_seq,
            jobs_wakeup,
            wal: wal_state,
            fold_counts_after: options.fold_counts_after,
            path: options.path,
            disk_full,
        })
    }

    /// What the writer and the checkpointer know about the write-ahead log.
    pub fn wal_state(&self) -> Arc<WalState> {
        self.wal.clone()
    }

    /// The size of the write-ahead log file on disk.
    pub fn wal_bytes(&self) -> u64 {
        wal::wal_bytes(&self.path)
    }

    /// Runs `f` in the writer's next transaction and returns its result
    /// once committed: a request's write. When the queue is full it is shed
    /// at once (`Unavailable::Overloaded`) instead of waiting for room.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<R> + Send + 'static,
    {
        self.request_write(f, true).await
    }

    /// Like [`SqliteStore::write`], for a write that makes every check that
    /// can refuse it before its first change of a row, so that afterwards
    /// only the database itself can fail it (a full disk, an I/O error). It
    /// runs without a savepoint of its own: with one, SQLite copies every
    /// page the write changes that the batch had changed already into the
    /// savepoint's journal, about 7 % of the server's CPU when accepting
    /// notifications one per request. Refused before changing a row, it
    /// leaves the batch as it was; failing after that, it fails its whole
    /// batch, as a failed commit does.
    async fn write_unguarded<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<R> + Send + 'static,
    {
        self.request_write(f, false).await
    }

    async fn request_write<R, F>(&self, f: F, savepoint: bool) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(FnOp {
            f: Some(f),
            result: None,
            reply,
            sheddable: true,
            savepoint,
        });
        self.writer.try_send(op).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => overloaded(),
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the writer to fold a user's newer unread entries into their
    /// kept counts, without waiting for it: the counts read the same
    /// before and after, only cheaper. Skipped when the queue is full.
    fn fold_counts(&self, uid: i64) {
        let (reply, _) = oneshot::channel();
        let op = Box::new(FnOp {
            f: Some(move |w: &mut Writer| write::fold_counts(&w.conn, uid)),
            result: None,
            reply,
            sheddable: true,
            savepoint: true,
        });
        let _ = self.writer.try_send(op);
    }

    /// Like [`SqliteStore::write`], for the job engine: waits for room in
    /// the queue and is never shed, so that an outcome (an email that went
    /// out) is always recorded.
    async fn write_waiting<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(FnOp {
            f: Some(f),
            result: None,
            reply,
            sheddable: false,
            savepoint: true,
        });
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read-only connection on a blocking thread.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let _permit = match self.readers.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.readers.waiting.fetch_add(1, Ordering::Relaxed);
                let waited = std::time::Instant::now();
                let permit = self.readers.permits.acquire().await;
                self.readers.waiting.fetch_sub(1, Ordering::Relaxed);
                metrics::histogram!("belfry_db_pool_wait_duration_seconds")
                    .record(waited.elapsed().as_secs_f64());
                permit.map_err(|_| StoreError::Closed)?
            }
        };
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let began = std::time::Instant::now();
            let result = f(&conn);
            metrics::histogram!("belfry_sqlite_read_duration_seconds")
                .record(began.elapsed().as_secs_f64());
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::backend(format!("reader task failed: {e}")))?
    }
}

/// Copies the WAL back into the database every `checkpoint_interval`
/// without blocking the writer or readers (PASSIVE), so that commits never
/// pay for the copying; restarting the log is the writer's (see `wal`).
fn start_checkpointer(
    path: &Path,
    options: &WalOptions,
    state: &Arc<WalState>,
    page_size: i64,
) -> Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let conn = Connection::open(path)?;
    // Checkpoints copy frames from the log to the file without the cache.
    configure(&conn, READER_CACHE_KIB)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (options, state, db) = (options.clone(), state.clone(), path.to_path_buf());
    let handle = std::thread::Builder::new()
        .name("belfry-sqlite-checkpoint".into())
        .spawn(move || wal::checkpointer_loop(conn, options, state, page_size, db, stopped))
        .map_err(|e| StoreError::backend(format!("cannot start the checkpoint thread: {e}")))?;
    Ok((stop, handle))
}

fn writer_loop(
    mut w: Writer,
    mut rx: mpsc::Receiver<Box<dyn Op>>,
    busy_timeout: std::time::Duration,
    commit_interval: std::time::Duration,
) {
    let mut batch: Vec<Box<dyn Op>> = Vec::with_capacity(MAX_BATCH);
    // When the last batch began, and whether writes queued up while it ran
    // (other callers are writing concurrently): then the next batch begins
    // `commit_interval` after it at the earliest. A caller writing one
    // request after another never finds the queue busy and is not delayed.
    let mut last_begin: Option<std::time::Instant> = None;
    let mut busy = false;
    // The engine's writes kept back when a refused batch answered the
    // requests queued behind it.
    let mut carried: Vec<Box<dyn Op>> = Vec::new();
    loop {
        if carried.is_empty() {
            match rx.blocking_recv() {
                Some(op) => batch.push(op),
                None => break,
            }
        } else {
            batch.append(&mut carried);
        }
        drain(&mut rx, &mut batch);
        // Group commit: a write that comes right after a commit began waits
        // for the rest of the interval and shares the next transaction (and
        // its fsync) with whatever else arrives meanwhile.
        if let Some(due) = last_begin.map(|t| t + commit_interval).filter(|_| busy) {
            let now = std::time::Instant::now();
            if due > now && batch.len() < MAX_BATCH {
                std::thread::sleep(due - now);
                drain(&mut rx, &mut batch);
            }
        }
        let start_seq = w.last_seq;
        let began = std::time::Instant::now();
        last_begin = Some(began);
        let outcome = run_batch(&mut w, &mut batch);
        metrics::histogram!("belfry_sqlite_write_batch_duration_seconds")
            .record(began.elapsed().as_secs_f64());
        let jobs_added = std::mem::take(&mut w.jobs_added);
        if outcome.is_err() {
            w.last_seq = start_seq;
            w.events.clear();
            // It may have been read from changes that were rolled back.
            w.webhooks = None;
        } else {
            if jobs_added {
                w.jobs_wakeup.notify_one();
            }
            w.committed_seq.store(w.last_seq, Ordering::Release);
            if !w.events.is_empty() {
                // No receiver (e.g. the CLI) is not an error.
                let _ = w.publish.send(Arc::new(std::mem::take(&mut w.events)));
            }
        }
        // Writes that queued up during this batch came from other callers:
        // looked at before answering, so that a caller who writes again as
        // soon as it has its answer does not count.
        busy = !rx.is_empty();
        // The database refused the whole batch (locked past the busy
        // timeout, full): what is queued behind it would wait as long and
        // fail the same way, so the requests among it are answered now.
        // Each caller waits at most about one busy timeout, not one per
        // batch ahead of it. The engine's writes stay queued. Taken from
        // the queue before the batch is answered: a caller who writes
        // again as soon as it has its answer (the database may be free by
        // then) is not answered with this batch's error.
        let mut shed = Vec::new();
        if let Err(StoreError::Unavailable { .. }) = &outcome {
            while let Ok(op) = rx.try_recv() {
                if op.sheddable() {
                    shed.push(op);
                } else {
                    carried.push(op);
                }
            }
        }
        for op in batch.drain(..).chain(shed) {
            op.finish(outcome.clone());
        }
        // Callers have their answers; now the log may be restarted.
        w.wal.after_commit(&w.conn, busy_timeout);
    }
    if let Err(e) = w.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
}

/// Moves queued writes into `batch`, up to `MAX_BATCH`.
fn drain(rx: &mut mpsc::Receiver<Box<dyn Op>>, batch: &mut Vec<Box<dyn Op>>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

fn run_batch(w: &mut Writer, batch: &mut [Box<dyn Op>]) -> std::result::Result<(), StoreError> {
    w.conn.execute_batch("BEGIN IMMEDIATE")?;
    for op in batch.iter_mut() {
        let seq_before = w.last_seq;
        let events_before = w.events.len();
        if !op.savepoint() {
            let changes = w.conn.total_changes();
            if let Err(e) = op.run(w) {
                w.last_seq = seq_before;
                w.events.truncate(events_before);
                // SQLite ends the transaction itself after some errors (a
                // full disk, I/O); a write that changed rows can only be
                // undone with the whole batch.
                if w.conn.is_autocommit() || w.conn.total_changes() != changes {
                    let _ = w.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
            continue;
        }
        if let Err(e) = w.conn.execute_batch("SAVEPOINT op") {
            let _ = w.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        let ok = op.run(w).is_ok();
        let end = if ok {
            "RELEASE op"
        } else {
            w.last_seq = seq_before;
            w.events.truncate(events_before);
            "ROLLBACK TO op; RELEASE op"
        };
        if let Err(e) = w.conn.execute_batch(end) {
            let _ = w.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    if let Err(e) = w.conn.execute_batch("COMMIT") {
        tracing::error!(error = %e, "SQLite commit failed");
        let _ = w.conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await?;
        // The writer answers too: an empty operation in its next batch
        // (no extra commit under load). A full queue, or a database locked
        // past the busy timeout, shows here.
        self.write(|_| Ok(())).await?;
        // A full disk does not: the empty operation needs no space.
        if self.disk_full.recently() {
            return Err(StoreError::unavailable(
                Unavailable::Full,
                "a write failed for lack of space within the last 30 s",
            ));
        }
        Ok(())
    }

    async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let key = format!("secret:{name}");
        let existing = {
            let key = key.clone();
            self.read(move |c| read::meta(c, &key)).await?
        };
        if let Some(v) = existing {
            return Ok(v);
        }
        let fresh: Vec<u8> = ulid::Ulid::new()
            .to_bytes()
            .into_iter()
            .chain(ulid::Ulid::new().to_bytes())
            .collect();
        self.write(move |w| write::meta_init(&w.conn, &key, &fresh))
            .await
    }

    async fn create_api_key(&self, key: NewApiKey, now: Millis) -> Result<ApiKeyInfo> {
        self.write(move |w| write::create_api_key(&w.conn, &key, now))
            .await
    }

    async fn create_first_api_key(&self, key: NewApiKey, now: Millis) -> Result<bool> {
        self.write(move |w| {
            let count: i64 = w
                .conn
                .query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))?;
            if count > 0 {
                return Ok(false);
            }
            write::create_api_key(&w.conn, &key, now).map(|_| true)
        })
        .await
    }

    async fn ensure_api_key(&self, key: NewApiKey, now: Millis) -> Result<()> {
        self.write(move |w| {
            if read::api_key_by_hash(&w.conn, &key.hash)?.is_none() {
                write::create_api_key(&w.conn, &key, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.read(read::api_keys).await
    }

    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<ApiKeyInfo> {
        let id = id.to_string();
        self.write(move |w| write::revoke_api_key(&w.conn, &id, now))
            .await
    }

    async fn revoke_source_keys(&self, source: &str, now: Millis) -> Result<Vec<String>> {
        let source = source.to_string();
        self.write(move |w| write::revoke_source_keys(&w.conn, &source, now))
            .await
    }

    async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyInfo>> {
        self.read(move |c| read::api_key_by_hash(c, &hash)).await
    }

    async fn create_admin(&self, a: crate::NewAdmin, now: Millis) -> Result<crate::Admin> {
        self.write(move |w| admin::create_admin(&w.conn, &a, now))
            .await
    }

    async fn list_admins(&self) -> Result<Vec<crate::Admin>> {
        self.read(admin::list_admins).await
    }

    async fn admin_by_email(&self, email: &str) -> Result<Option<(crate::Admin, String)>> {
        let email = email.to_string();
        self.read(move |c| admin::admin_by_email(c, &email)).await
    }

    async fn delete_admin(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write(move |w| admin::delete_admin(&w.conn, &id)).await
    }

    async fn admin_login_failures(&self, email: &str, since: Millis) -> Result<Vec<Millis>> {
        let email = email.to_string();
        self.read(move |c| admin::login_failures(c, &email, since))
            .await
    }

    async fn record_admin_login_failure(
        &self,
        email: &str,
        now: Millis,
        forget_before: Millis,
    ) -> Result<()> {
        let email = email.to_string();
        self.write(move |w| admin::record_login_failure(&w.conn, &email, now, forget_before))
            .await
    }

    async fn clear_admin_login_failures(&self, email: &str) -> Result<()> {
        let email = email.to_string();
        self.write(move |w| admin::clear_login_failures(&w.conn, &email))
            .await
    }

    async fn create_admin_session(
        &self,
        session: crate::NewAdminSession,
        now: Millis,
    ) -> Result<()> {
        self.write(move |w| admin::create_session(&w.conn, &session, now))
            .await
    }

    async fn admin_session(
        &self,
        hash: [u8; 32],
        now: Millis,
    ) -> Result<Option<crate::AdminSession>> {
        self.read(move |c| admin::session(c, &hash, now)).await
    }

    async fn touch_admin_session(
        &self,
        hash: [u8; 32],
        now: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        self.write(move |w| admin::touch_session(&w.conn, &hash, now, expires_at))
            .await
    }

    async fn delete_admin_session(&self, hash: [u8; 32]) -> Result<()> {
        self.write(move |w| admin::delete_session(&w.conn, &hash))
            .await
    }

    async fn runtime_settings(&self) -> Result<crate::RuntimeSettings> {
        self.read(admin::runtime_settings).await
    }

    async fn put_runtime_settings(
        &self,
        settings: crate::RuntimeSettings,
        now: Millis,
    ) -> Result<()> {
        self.write(move |w| admin::put_runtime_settings(&w.conn, &settings, now))
            .await
    }

    async fn list_notifications(
        &self,
        query: crate::NotificationListQuery,
    ) -> Result<Vec<crate::NotificationRow>> {
        self.read(move |c| admin::list_notifications(c, &query))
            .await
    }

    async fn delivery_log(&self, filter: crate::LogFilter) -> Result<Vec<crate::LogLine>> {
        self.read(move |c| admin::delivery_log(c, &filter)).await
    }

    async fn delivery_stats(
        &self,
        since: Millis,
        until: Millis,
        bucket_ms: i64,
    ) -> Result<Vec<crate::StatBucket>> {
        self.read(move |c| admin::delivery_stats(c, since, until, bucket_ms))
            .await
    }

    async fn audience_size(&self, audience: &belfry_core::Audience) -> Result<i64> {
        let audience = audience.clone();
        self.read(move |c| admin::audience_size(c, &audience)).await
    }

    async fn list_users(&self, query: crate::UserListQuery) -> Result<Vec<(i64, User)>> {
        self.read(move |c| admin::list_users(c, &query)).await
    }

    async fn put_user(&self, id: &UserId, patch: UserPatch, now: Millis) -> Result<(User, bool)> {
        let id = id.clone();
        self.write(move |w| write::put_user(w, &id, patch, now))
            .await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let id = id.clone();
        self.read(move |c| match read::uid(c, &id)? {
            Some(uid) => read::user(c, uid).map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn delete_user(&self, id: &UserId, now: Millis) -> Result<()> {
        let id = id.clone();
        self.write(move |w| write::delete_user(w, &id, now)).await
    }

    async fn revoke_tokens(&self, id: &UserId, now: Millis) -> Result<Millis> {
        let id = id.clone();
        self.write(move |w| write::revoke_tokens(w, &id, now)).await
    }

    async fn token_revocations(&self, since: Millis) -> Result<Vec<(UserId, Millis)>> {
        self.read(move |c| read::token_revocations(c, since)).await
    }

    async fn put_group(
        &self,
        id: &GroupId,
        name: Option<String>,
        now: Millis,
    ) -> Result<(Group, bool)> {
        let id = id.clone();
        self.write(move |w| write::put_group(&w.conn, &id, name, now))
            .await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        self.read(read::groups).await
    }

    async fn list_categories(&self) -> Result<Vec<belfry_core::CategoryDef>> {
        self.read(prefs::categories).await
    }

    async fn get_category(
        &self,
        id: &belfry_core::Category,
    ) -> Result<Option<belfry_core::CategoryDef>> {
        let id = id.clone();
        self.read(move |c| prefs::category(c, &id)).await
    }

    async fn put_category(&self, def: belfry_core::CategoryDef, now: Millis) -> Result<bool> {
        self.write(move |w| prefs::put_category(&w.conn, &def, now))
            .await
    }

    async fn delete_category(&self, id: &belfry_core::Category) -> Result<bool> {
        let id = id.clone();
        self.write(move |w| prefs::delete_category(&w.conn, &id))
            .await
    }

    async fn ensure_categories(&self, ids: Vec<belfry_core::Category>, now: Millis) -> Result<()> {
        self.write(move |w| prefs::ensure_categories(&w.conn, &ids, now))
            .await
    }

    async fn put_document(
        &self,
        kind: crate::DocKind,
        id: &str,
        doc: String,
        now: Millis,
    ) -> Result<bool> {
        let id = id.to_string();
        self.write(move |w| documents::put(&w.conn, kind, &id, &doc, now))
            .await
    }

    async fn get_document(
        &self,
        kind: crate::DocKind,
        id: &str,
    ) -> Result<Option<crate::Document>> {
        let id = id.to_string();
        self.read(move |c| documents::get(c, kind, &id)).await
    }

    async fn list_documents(&self, kind: crate::DocKind) -> Result<Vec<crate::Document>> {
        self.read(move |c| documents::list(c, kind)).await
    }

    async fn delete_document(&self, kind: crate::DocKind, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |w| documents::delete(&w.conn, kind, &id))
            .await
    }

    async fn write_documents(
        &self,
        put: Vec<crate::NewDocument>,
        delete: Vec<(crate::DocKind, String)>,
        now: Millis,
    ) -> Result<()> {
        self.write(move |w| documents::write_all(&w.conn, &put, &delete, now))
            .await
    }

    async fn install_documents_once(
        &self,
        marker: &str,
        docs: Vec<crate::NewDocument>,
        now: Millis,
    ) -> Result<bool> {
        let marker = marker.to_string();
        self.write(move |w| documents::install_once(&w.conn, &marker, &docs, now))
            .await
    }

    async fn preferences(&self, user: &UserId) -> Result<crate::UserPreferences> {
        let user = user.clone();
        self.read(move |c| prefs::preferences(c, &user)).await
    }

    async fn put_preferences(
        &self,
        user: &UserId,
        overrides: belfry_core::preferences::Overrides,
        now: Millis,
    ) -> Result<()> {
        let user = user.clone();
        self.write(move |w| prefs::put_preferences(&w.conn, &user, &overrides, now))
            .await
    }

    async fn preference_defaults(&self) -> Result<belfry_core::preferences::Overrides> {
        self.read(prefs::preference_defaults).await
    }

    async fn put_preference_defaults(
        &self,
        defaults: belfry_core::preferences::Overrides,
        now: Millis,
    ) -> Result<()> {
        self.write(move |w| {
            w.preference_defaults = None;
            prefs::put_preference_defaults(&w.conn, &defaults, now)
        })
        .await
    }

    async fn subscribe(&self, entity: &EntityRef, who: Subscriber, now: Millis) -> Result<bool> {
        let entity = entity.clone();
        self.write(move |w| write::subscribe(&w.conn, &entity, &who, now))
            .await
    }

    async fn unsubscribe(&self, entity: &EntityRef, who: Subscriber) -> Result<bool> {
        let entity = entity.clone();
        self.write(move |w| write::unsubscribe(&w.conn, &entity, &who))
            .await
    }

    async fn subscribers(&self, entity: &EntityRef) -> Result<Vec<Subscription>> {
        let entity = entity.clone();
        self.read(move |c| read::subscribers(c, &entity)).await
    }

    async fn subscriptions_of(&self, user: &UserId) -> Result<Vec<Subscription>> {
        let user = user.clone();
        self.read(move |c| read::subscriptions_of(c, &user)).await
    }

    async fn put_push_subscription(
        &self,
        user: &UserId,
        subscription: NewPushSubscription,
        cap: usize,
        now: Millis,
    ) -> Result<(PushSubscription, bool)> {
        let user = user.clone();
        self.write(move |w| push::put(&w.conn, &user, &subscription, cap, now))
            .await
    }

    async fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscription>> {
        let user = user.clone();
        self.read(move |c| push::list(c, &user)).await
    }

    async fn delete_push_subscription(&self, user: &UserId, id: &str) -> Result<bool> {
        let user = user.clone();
        let id = id.to_string();
        self.write(move |w| push::delete(&w.conn, &user, &id)).await
    }

    async fn put_contact(
        &self,
        email: &EmailAddress,
        profile: ContactProfile,
        now: Millis,
    ) -> Result<()> {
        let email = email.clone();
        self.write(move |w| access::put_contact(&w.conn, &email, &profile, now))
            .await
    }

    async fn revoke_access(&self, revocation: AccessRevocation, now: Millis) -> Result<()> {
        self.write(move |w| access::revoke(&w.conn, &revocation, now))
            .await
    }

    async fn access_revoked(&self, token: &AccessTokenRef) -> Result<bool> {
        let token = token.clone();
        self.read(move |c| access::revoked(c, &token)).await
    }

    async fn put_mobile_device(
        &self,
        user: &UserId,
        device: NewMobileDevice,
        cap: usize,
        now: Millis,
    ) -> Result<(MobileDevice, bool)> {
        let user = user.clone();
        self.write(move |w| mobile::put(&w.conn, &user, &device, cap, now))
            .await
    }

    async fn mobile_devices(&self, user: &UserId) -> Result<Vec<MobileDevice>> {
        let user = user.clone();
        self.read(move |c| mobile::list(c, &user)).await
    }

    async fn delete_mobile_device(&self, user: &UserId, id: &str) -> Result<bool> {
        let user = user.clone();
        let id = id.to_string();
        self.write(move |w| mobile::delete(&w.conn, &user, &id))
            .await
    }

    async fn put_chat_target(
        &self,
        owner: &ChatOwner,
        kind: ChatKind,
        url: String,
        secret: Option<secrecy::SecretString>,
        now: Millis,
    ) -> Result<(ChatTarget, bool)> {
        let owner = owner.clone();
        self.write(move |w| chat::put(&w.conn, &owner, kind, &url, secret.as_ref(), now))
            .await
    }

    async fn chat_targets(&self, owner: &ChatOwner) -> Result<Vec<ChatTarget>> {
        let owner = owner.clone();
        self.read(move |c| chat::list(c, &owner)).await
    }

    async fn delete_chat_target(&self, owner: &ChatOwner, kind: ChatKind) -> Result<bool> {
        let owner = owner.clone();
        self.write(move |w| chat::delete(&w.conn, &owner, kind))
            .await
    }

    async fn put_webhook(
        &self,
        hook: crate::NewWebhook,
        now: Millis,
    ) -> Result<(crate::Webhook, bool)> {
        self.write(move |w| webhooks::put(w, &hook, now)).await
    }

    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: secrecy::SecretString,
        now: Millis,
    ) -> Result<crate::Webhook> {
        let id = id.to_string();
        self.write(move |w| webhooks::rotate(&w.conn, &id, &secret, now))
            .await
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<crate::Webhook>> {
        let id = id.to_string();
        self.read(move |c| webhooks::get(c, &id)).await
    }

    async fn list_webhooks(&self) -> Result<Vec<crate::Webhook>> {
        self.read(webhooks::list).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |w| webhooks::delete(w, &id)).await
    }

    async fn webhook_target(&self, id: &str) -> Result<Option<crate::WebhookTarget>> {
        let id = id.to_string();
        self.read(move |c| webhooks::target(c, &id)).await
    }

    async fn webhook_attempts(
        &self,
        id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<crate::AttemptPage> {
        let id = id.to_string();
        self.read(move |c| webhooks::attempts(c, &id, before, limit))
            .await
    }

    async fn send(
        &self,
        ctx: SendContext,
        batch: Vec<NewNotification>,
    ) -> Result<Vec<SendReceipt>> {
        // One notification is checked whole before anything is written; in
        // a batch, a later item may be refused after earlier ones were
        // written, and its savepoint undoes them.
        if batch.len() == 1 {
            self.write_unguarded(move |w| publish::send_batch(w, &ctx, &batch))
                .await
        } else {
            self.write(move |w| publish::send_batch(w, &ctx, &batch))
                .await
        }
    }

    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>> {
        let id = id.to_string();
        self.read(move |c| read::notification(c, &id)).await
    }

    async fn delete_notification(&self, id: &str, now: Millis) -> Result<()> {
        let id = id.to_string();
        self.write(move |w| write::delete_notification(w, &id, now))
            .await
    }

    async fn answer_action(&self, user: &UserId, answer: NewAnswer) -> Result<AnswerReceipt> {
        let user = user.clone();
        self.write(move |w| answer::answer(w, &user, &answer)).await
    }

    async fn inbox_change(&self, user: &UserId, change: InboxChange, now: Millis) -> Result<i64> {
        let user = user.clone();
        self.write(move |w| write::inbox_change(w, &user, change, now))
            .await
    }

    async fn list_inbox(&self, user: &UserId, query: InboxQuery, now: Millis) -> Result<InboxPage> {
        let user = user.clone();
        self.read(move |c| {
            let u = read::inbox_user(c, &user)?.ok_or(StoreError::NotFound)?;
            read::list_inbox(c, &u, &query, now)
        })
        .await
    }

    async fn counts_at(&self, user: &UserId, now: Millis) -> Result<(Counts, i64)> {
        let user = user.clone();
        let (counts, seq, uid, above) = self
            .read(move |c| {
                let u = read::inbox_user(c, &user)?.ok_or(StoreError::NotFound)?;
                let (counts, seq, above) = read::counts(c, &u, now)?;
                Ok((counts, seq, u.uid, above))
            })
            .await?;
        if above > self.fold_counts_after {
            self.fold_counts(uid);
        }
        Ok((counts, seq))
    }

    async fn claim_jobs(
        &self,
        now: Millis,
        lease_ms: i64,
        limit: usize,
        owner: &str,
    ) -> Result<Vec<Job>> {
        let owner = owner.to_string();
        self.write_waiting(move |w| jobs::claim(w, now, lease_ms, limit, &owner))
            .await
    }

    async fn finish_job(&self, job: i64, outcome: JobOutcome, now: Millis) -> Result<()> {
        self.write_waiting(move |w| jobs::finish(w, job, outcome, now))
            .await
    }

    async fn next_job_at(&self) -> Result<Option<Millis>> {
        self.read(jobs::next_job_at).await
    }

    async fn schedule_digest(
        &self,
        user: &UserId,
        at: Millis,
        reschedule: bool,
        now: Millis,
    ) -> Result<()> {
        let user = user.clone();
        self.write_waiting(move |w| jobs::schedule_digest(w, &user, at, reschedule, now))
            .await
    }

    fn jobs_wakeup(&self) -> Arc<tokio::sync::Notify> {
        self.jobs_wakeup.clone()
    }

    async fn publish_due(&self, nid: i64, now: Millis) -> Result<()> {
        self.write_waiting(move |w| publish::publish_due(w, nid, now))
            .await
    }

    async fn expand_broadcast(
        &self,
        nid: i64,
        channel: belfry_core::Channel,
        after_uid: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Option<i64>> {
        self.write_waiting(move |w| jobs::expand(w, nid, channel, after_uid, limit, now))
            .await
    }

    async fn delivery_context(
        &self,
        nid: i64,
        recipient: &Recipient,
        channel: belfry_core::Channel,
        now: Millis,
        fallback: bool,
    ) -> Result<Option<DeliveryContext>> {
        let recipient = recipient.clone();
        self.read(move |c| jobs::delivery_context(c, nid, &recipient, channel, now, fallback))
            .await
    }

    async fn deliveries(
        &self,
        notification_id: &str,
        query: DeliveryQuery,
    ) -> Result<DeliveryPage> {
        let id = notification_id.to_string();
        self.read(move |c| jobs::deliveries(c, &id, query)).await
    }

    async fn job_stats(&self, now: Millis) -> Result<JobStats> {
        self.read(move |c| jobs::stats(c, now)).await
    }

    fn pool_stats(&self) -> PoolStats {
        let r = &self.readers;
        let in_use = r.size.saturating_sub(r.permits.available_permits()) as u64;
        PoolStats {
            in_use,
            idle: r.idle.lock().map(|i| i.len() as u64).unwrap_or(0),
            max: r.size as u64,
            waiting: Some(r.waiting.load(Ordering::Relaxed)),
        }
    }

    async fn mailbox_put(&self, mail: NewDevMail, now: Millis) -> Result<DevMail> {
        self.write_waiting(move |w| mailbox::mailbox_put(&w.conn, &mail, now))
            .await
    }

    async fn mailbox_list(&self, limit: usize) -> Result<Vec<DevMail>> {
        self.read(move |c| mailbox::mailbox_list(c, limit)).await
    }

    async fn mailbox_get(&self, id: &str) -> Result<Option<DevMail>> {
        let id = id.to_string();
        self.read(move |c| mailbox::mailbox_get(c, &id)).await
    }

    async fn mailbox_clear(&self) -> Result<i64> {
        self.write(|w| mailbox::mailbox_clear(&w.conn)).await
    }

    async fn retention_step(
        &self,
        cursor: crate::retention::RetentionCursor,
        policy: crate::retention::RetentionPolicy,
        now: Millis,
    ) -> Result<crate::retention::RetentionStep> {
        let warm = cursor.clone();
        self.read(move |c| retention::warm(c, &warm, &policy, now))
            .await?;
        self.write_waiting(move |w| retention::step(w, cursor, policy, now))
            .await
    }

    async fn ensure_retention_job(&self, first_run: Millis, now: Millis) -> Result<bool> {
        self.write_waiting(move |w| retention::ensure_job(w, first_run, now))
            .await
    }

    fn events(&self) -> broadcast::Receiver<Arc<Vec<StoreEvent>>> {
        self.events.subscribe()
    }

    fn last_seq(&self) -> i64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    async fn replay(
        &self,
        user: &UserId,
        after_seq: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<(i64, String)>> {
        self.replay_impl(user, after_seq, limit, now).await
    }
}

impl SqliteStore {
    async fn replay_impl(
        &self,
        user: &UserId,
        after_seq: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<(i64, String)>> {
        let user = user.clone();
        self.read(move |c| {
            let u = read::inbox_user(c, &user)?.ok_or(StoreError::NotFound)?;
            read::replay(c, &u, after_seq, limit, now)
        })
        .await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.checkpointer.lock().ok().and_then(|mut c| c.take()) {
            drop(stop);
            let _ = handle.join();
        }
        // The writer stops once this (the only) sender is gone; wait for it so
        // that everything queued is committed before the process goes on.
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let (tx, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut self.writer, tx));
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;
    use std::time::{Duration, Instant};

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("details".into()))
    }

    fn kind(e: StoreError) -> Option<Unavailable> {
        match e {
            StoreError::Unavailable { kind, source } => {
                assert!(source.is_some(), "the cause is kept for the log");
                Some(kind)
            }
            _ => None,
        }
    }

    #[tokio::test]
    async fn only_due_jobs_count_as_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteOptions::new(dir.path().join("b.db"))).unwrap();
        let day = 24 * 3600 * 1000;
        assert!(
            store
                .ensure_retention_job(Millis(day), Millis(0))
                .await
                .unwrap()
        );
        assert!(
            !store
                .ensure_retention_job(Millis(day), Millis(0))
                .await
                .unwrap(),
            "one job"
        );
        assert_eq!(
            store.job_stats(Millis(0)).await.unwrap().queued,
            0,
            "not due yet"
        );
        assert_eq!(store.job_stats(Millis(day)).await.unwrap().queued, 1, "due");
    }

    #[test]
    fn full_busy_and_unopenable_databases_are_unavailable() {
        use rusqlite::ffi;
        let cases = [
            (ffi::SQLITE_FULL, Some(Unavailable::Full)),
            (ffi::SQLITE_BUSY, Some(Unavailable::Busy)),
            (ffi::SQLITE_LOCKED, Some(Unavailable::Busy)),
            (ffi::SQLITE_CANTOPEN, Some(Unavailable::Unreachable)),
            (ffi::SQLITE_CORRUPT, None),
            (ffi::SQLITE_ERROR, None),
        ];
        for (code, expected) in cases {
            assert_eq!(kind(failure(code).into()), expected, "code {code}");
        }
        assert!(matches!(
            StoreError::from(failure(ffi::SQLITE_CONSTRAINT)),
            StoreError::Conflict { .. }
        ));
        assert!(matches!(
            StoreError::from(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Backend(_)
        ));
    }

    /// Another process holds the write lock: the writer gives up after
    /// its busy timeout (503 `database_busy`), and with its queue full,
    /// requests are shed at once while the engine's writes wait their turn.
    /// Each step waits for the state it needs (the writer holding the first
    /// write, the queue full) instead of for time to pass, so a slow machine
    /// changes how long it takes, not what it counts.
    #[tokio::test]
    async fn a_locked_database_is_busy_and_a_full_queue_sheds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.db");
        let mut options = SqliteOptions::new(&path);
        options.write_queue = 2;
        options.busy_timeout = Duration::from_secs(4);
        let store = SqliteStore::open(options).unwrap();
        let lock = Connection::open(&path).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        let groups: Vec<GroupId> = (0..20)
            .map(|i| GroupId::parse(&format!("g{i}")).unwrap())
            .collect();

        // The first write is sent, and taken by the writer, which waits
        // for the lock.
        let started = Instant::now();
        let mut first = store.put_group(&groups[0], None, Millis(1));
        assert!(poll_once(first.as_mut()).await.is_pending());
        while store.writer.capacity() < store.writer.max_capacity() {
            assert!(started.elapsed() < Duration::from_secs(3), "not taken");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Two more fill the queue behind it.
        let mut queued: Vec<_> = groups[1..3]
            .iter()
            .map(|g| store.put_group(g, None, Millis(1)))
            .collect();
        for q in &mut queued {
            assert!(poll_once(q.as_mut()).await.is_pending());
        }
        assert_eq!(store.writer.capacity(), 0);
        // Every further write is shed at once.
        for g in &groups[3..] {
            let r = store.put_group(g, None, Millis(1)).await;
            assert_eq!(
                r.map(|_| ()).map_err(kind),
                Err(Some(Unavailable::Overloaded))
            );
        }
        let shed_by = started.elapsed();
        // The writer gives up after its busy timeout; the two queued behind
        // it are answered with it instead of waiting a timeout each.
        assert_eq!(
            first.await.map(|_| ()).map_err(kind),
            Err(Some(Unavailable::Busy))
        );
        let first_answered = started.elapsed();
        assert!(shed_by < first_answered, "shed before the writer gave up");
        for q in queued {
            assert_eq!(
                q.await.map(|_| ()).map_err(kind),
                Err(Some(Unavailable::Busy))
            );
        }
        assert!(
            started.elapsed() < first_answered + Duration::from_secs(2),
            "the queued writes did not wait a timeout of their own"
        );
        // Reads still answer; readiness does not (the writer is busy).
        assert!(store.list_groups().await.unwrap().is_empty());
        assert_eq!(
            kind(store.ping().await.unwrap_err()),
            Some(Unavailable::Busy)
        );

        lock.execute_batch("COMMIT").unwrap();
        store.ping().await.unwrap();
        let group = GroupId::parse("after").unwrap();
        store.put_group(&group, None, Millis(2)).await.unwrap();
    }

    /// Writes queued behind a slow one run in one batch. A write without a
    /// savepoint that is refused before changing a row leaves its batch as
    /// it was (the others commit, a guarded write that failed after
    /// writing is undone alone); one that fails after changing a row fails
    /// its whole batch, and nothing of the batch is committed.
    #[tokio::test]
    async fn a_write_without_a_savepoint_fails_its_batch_only_after_changing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("belfry.db"));
        options.fsync_every_commit = false;
        let store = SqliteStore::open(options).unwrap();
        store
            .write(|w| Ok(w.conn.execute_batch("CREATE TABLE t (x INTEGER)")?))
            .await
            .unwrap();
        fn insert(w: &mut Writer, x: i64) -> Result<()> {
            w.conn.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
            Ok(())
        }
        let refused = || StoreError::Invalid("refused".into());
        let rows = || -> Vec<i64> {
            let conn = Connection::open(dir.path().join("belfry.db")).unwrap();
            let mut stmt = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(|x| x.unwrap())
                .collect()
        };

        for after_a_change in [false, true] {
            // The writer takes a slow write; the next ones queue behind it.
            let started = Instant::now();
            let mut slow = Box::pin(store.write(|_| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            }));
            assert!(poll_once(slow.as_mut()).await.is_pending());
            while store.writer.capacity() < store.writer.max_capacity() {
                assert!(started.elapsed() < Duration::from_secs(3), "not taken");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let base = if after_a_change { 10 } else { 0 };
            let mut ok = Box::pin(store.write_unguarded(move |w| insert(w, base + 1)));
            let mut failing = Box::pin(store.write_unguarded(move |w| {
                if after_a_change {
                    insert(w, base + 2)?;
                }
                Err::<(), _>(refused())
            }));
            let mut guarded_failing = Box::pin(store.write(move |w| {
                insert(w, base + 3)?;
                Err::<(), _>(refused())
            }));
            let mut guarded_ok = Box::pin(store.write(move |w| insert(w, base + 4)));
            assert!(poll_once(ok.as_mut()).await.is_pending());
            assert!(poll_once(failing.as_mut()).await.is_pending());
            assert!(poll_once(guarded_failing.as_mut()).await.is_pending());
            assert!(poll_once(guarded_ok.as_mut()).await.is_pending());
            assert_eq!(
                store.writer.capacity(),
                store.writer.max_capacity() - 4,
                "queued while the slow write runs"
            );
            slow.await.unwrap();

            let refusal =
                |r: Result<()>| matches!(r, Err(StoreError::Invalid(m)) if m == "refused");
            assert!(refusal(failing.await), "its own error");
            assert!(refusal(guarded_failing.await), "its own error");
            if after_a_change {
                // The batch's error, the one that failed it.
                assert!(refusal(ok.await));
                assert!(refusal(guarded_ok.await));
                assert_eq!(rows(), vec![1, 4], "nothing of the batch");
            } else {
                ok.await.unwrap();
                guarded_ok.await.unwrap();
                assert_eq!(rows(), vec![1, 4]);
            }
        }
        // The writer goes on.
        store.write_unguarded(|w| insert(w, 20)).await.unwrap();
        assert_eq!(rows(), vec![1, 4, 20]);
    }

    /// Polls a future once: whether it finished on its first step.
    async fn poll_once<F: std::future::Future + ?Sized>(
        f: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let mut f = Some(f);
        std::future::poll_fn(|cx| {
            let f = f.take().expect("polled once");
            std::task::Poll::Ready(f.poll(cx))
        })
        .await
    }

    /// A read that counts more unread entries than `fold_counts_after`
    /// above the kept counts has the writer fold them in: afterwards the
    /// counts come from `inbox_counts` and count nothing above it.
    #[tokio::test]
    async fn counts_that_counted_many_entries_are_folded() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("belfry.db"));
        options.fsync_every_commit = false;
        options.fold_counts_after = 3;
        let store = SqliteStore::open(options).unwrap();
        let ana = UserId::parse("ana").unwrap();
        store
            .put_user(&ana, UserPatch::default(), Millis(1))
            .await
            .unwrap();
        let now = belfry_core::Clock::now(&belfry_core::SystemClock);
        let note = || {
            let request: belfry_core::SendRequest = serde_json::from_value(
                serde_json::json!({"to": {"users": ["ana"]}, "title": "Ticket updated"}),
            )
            .unwrap();
            request.validate(now).unwrap()
        };
        let ctx = || crate::SendContext {
            key_id: "k".into(),
            now,
        };
        async fn kept(store: &SqliteStore) -> Result<Option<(i64, i64, i64)>> {
            store
                .read(|c| {
                    Ok(
                        c.query_row("SELECT upto, unread, unseen FROM inbox_counts", [], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()?,
                    )
                })
                .await
        }
        let mut last = 0;
        for _ in 0..3 {
            last = store.send(ctx(), vec![note()]).await.unwrap()[0]
                .seq
                .unwrap();
        }
        assert_eq!(store.counts(&ana, now).await.unwrap().unread, 3);
        // A write behind the (possible) fold: it has run when this returns.
        store
            .put_user(&ana, UserPatch::default(), now)
            .await
            .unwrap();
        assert_eq!(
            kept(&store).await.unwrap(),
            None,
            "three are not more than three"
        );

        last = store.send(ctx(), vec![note()]).await.unwrap()[0]
            .seq
            .unwrap()
            .max(last);
        assert_eq!(store.counts(&ana, now).await.unwrap().unread, 4);
        store
            .put_user(&ana, UserPatch::default(), now)
            .await
            .unwrap();
        assert_eq!(kept(&store).await.unwrap(), Some((last, 4, 4)));

        // Reading them: the triggers take them out of the kept counts.
        store.seen_all(&ana, now).await.unwrap();
        assert_eq!(kept(&store).await.unwrap(), Some((last, 4, 0)));
        store.read_all(&ana, None, now).await.unwrap();
        assert_eq!(kept(&store).await.unwrap(), Some((last, 0, 0)));
        let counts = store.counts(&ana, now).await.unwrap();
        assert_eq!((counts.unread, counts.unseen), (0, 0));
        // Deleting the user deletes their counts.
        store.delete_user(&ana, now).await.unwrap();
        assert_eq!(kept(&store).await.unwrap(), None);
    }

    /// SQLite's own "disk full": a write past `max_page_count` fails with
    /// SQLITE_FULL, which is `Unavailable::Full`; what fits still works.
    #[tokio::test]
    async fn a_full_disk_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.db");
        let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
        store
            .write(|w| {
                let pages: i64 = w.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                w.conn
                    .execute_batch(&format!("PRAGMA max_page_count = {}", pages + 2))?;
                Ok(())
            })
            .await
            .unwrap();
        let mut outcome = Ok(());
        for i in 0..200 {
            let group = GroupId::parse(&format!("group-{i}-{}", "x".repeat(50))).unwrap();
            outcome = store
                .put_group(&group, Some("y".repeat(2000)), Millis(1))
                .await
                .map(|_| ());
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(kind(outcome.unwrap_err()), Some(Unavailable::Full));
        // Readiness says so, although its own empty write needs no space.
        assert_eq!(
            kind(store.ping().await.unwrap_err()),
            Some(Unavailable::Full)
        );
        // Room again: the next write that changes rows clears it.
        store
            .write(|w| {
                w.conn.execute_batch("PRAGMA max_page_count = 1000000")?;
                Ok(())
            })
            .await
            .unwrap();
        store.ping().await.expect_err("no row changed yet");
        let group = GroupId::parse("after-the-cleanup").unwrap();
        store.put_group(&group, None, Millis(2)).await.unwrap();
        store.ping().await.unwrap();
    }
}
