//! Keeps the write-ahead log bounded.
//!
//! Two parties checkpoint. The checkpointer thread copies committed frames
//! back into the database every `checkpoint_interval` with a PASSIVE
//! checkpoint, which never blocks the writer or readers, so that the copying
//! (and the database's fsync) happens off the write path. But a PASSIVE
//! checkpoint never *restarts* the log: SQLite only starts writing the WAL
//! from its beginning again when a writer begins a transaction at a moment
//! when every frame has been copied back and no reader still uses them, and
//! under a steady stream of commits that moment never comes: each commit
//! appends frames while the checkpoint is copying the earlier ones.
//!
//! So the writer itself takes care of the restart: after a commit leaves
//! more than `restart_bytes` in the log (it learns the size from SQLite's
//! WAL hook at no cost), it runs a RESTART checkpoint between two batches.
//! That takes the writer's turn for the few milliseconds needed to copy what
//! the checkpointer thread has not copied yet and to wait for readers still
//! on an older snapshot (reads are single statements, so they are short; the
//! wait is capped by `restart_wait`, after which it tries again later). The
//! next commit then writes the WAL from its start, and `journal_size_limit`
//! truncates the file back to that size if a burst made it larger.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How the log is kept small (see the module documentation).
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A commit that leaves more than this many bytes in the log makes the
    /// writer restart it.
    pub restart_bytes: u64,
    /// After a restart, the WAL file is truncated to at most this size.
    pub journal_size_limit: u64,
    /// How often the checkpointer thread copies frames back (PASSIVE).
    pub checkpoint_interval: Duration,
    /// How long the writer waits for readers on an older snapshot before it
    /// gives up a restart and tries again later.
    pub restart_wait: Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            restart_bytes: 16 * 1024 * 1024,
            journal_size_limit: 16 * 1024 * 1024,
            checkpoint_interval: Duration::from_millis(500),
            restart_wait: Duration::from_millis(50),
        }
    }
}

/// What the writer and the checkpointer know about the log, shared with
/// whoever reports it (metrics, tests).
#[derive(Debug, Default)]
pub struct WalState {
    /// Frames in the log after the last commit (from the WAL hook).
    pub frames: AtomicI64,
    /// Completed restarts of the log.
    pub restarts: AtomicU64,
    /// Restart attempts that readers kept from completing.
    pub restarts_busy: AtomicU64,
    /// Held while a checkpoint runs: SQLite lets one checkpoint run at a
    /// time and answers another with "busy" before doing anything, so the
    /// two parties take turns here instead.
    pub turn: std::sync::Mutex<()>,
    /// Set by the checkpointer when it has just copied back a log that is
    /// due for a restart: the writer's restart is cheap now.
    pub ready: std::sync::atomic::AtomicBool,
}

/// The outcome of one `PRAGMA wal_checkpoint`.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    /// Readers or a writer kept it from completing.
    pub busy: bool,
    /// Frames in the log when it ran.
    pub log: i64,
    /// Frames copied back so far (of `log`).
    pub copied: i64,
}

/// Which checkpoint ran, for the metrics.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Passive,
    Restart,
}

impl Mode {
    fn pragma(self) -> &'static str {
        match self {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Passive => "passive",
            Mode::Restart => "restart",
        }
    }
}

/// Runs one checkpoint and records it: duration, outcome and frames copied.
pub fn checkpoint(conn: &Connection, mode: Mode) -> rusqlite::Result<Checkpoint> {
    let start = Instant::now();
    let result = conn.query_row(mode.pragma(), [], |r| {
        Ok(Checkpoint {
            busy: r.get::<_, i64>(0)? != 0,
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    });
    let outcome = match &result {
        Ok(c) if c.busy => "busy",
        Ok(c) if c.copied < c.log => "partial",
        Ok(_) => "complete",
        Err(_) => "error",
    };
    metrics::histogram!("belfry_sqlite_checkpoint_duration_seconds", "mode" => mode.label())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("belfry_sqlite_checkpoints_total", "mode" => mode.label(), "outcome" => outcome)
        .increment(1);
    if let Ok(c) = &result {
        metrics::gauge!("belfry_sqlite_wal_frames").set(c.log.max(0) as f64);
    }
    result
}

/// The WAL file beside the database.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The size of the WAL file on disk (0 if there is none).
pub fn wal_bytes(db: &Path) -> u64 {
    std::fs::metadata(wal_path(db))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Reports the WAL file's size as `belfry_sqlite_wal_bytes`.
pub fn report_size(db: &Path) {
    metrics::gauge!("belfry_sqlite_wal_bytes").set(wal_bytes(db) as f64);
}

/// Installs the WAL hook that tells `state` how many frames the log holds
/// after each commit. Must run after `wal_autocheckpoint` is set, which
/// replaces the hook.
pub fn install_hook(conn: &mut Connection, state: Arc<WalState>) -> rusqlite::Result<()> {
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
        state.frames.store(i64::from(pages), Ordering::Relaxed);
        Ok(())
    }))
}

/// The writer's side: decides after each commit whether to restart the log.
pub struct Restarter {
    pub options: WalOptions,
    pub state: Arc<WalState>,
    pub db: PathBuf,
    page_size: i64,
    /// Set after a restart that readers kept from completing: wait before
    /// the next attempt instead of stalling every batch.
    not_before: Option<Instant>,
}

impl Restarter {
    pub fn new(options: WalOptions, state: Arc<WalState>, db: PathBuf, page_size: i64) -> Self {
        Self {
            options,
            state,
            db,
            page_size: page_size.max(512),
            not_before: None,
        }
    }

    /// Called by the writer between batches, with no transaction open.
    pub fn after_commit(&mut self, conn: &Connection, busy_timeout: Duration) {
        let bytes = self.state.frames.load(Ordering::Relaxed) * self.page_size;
        if bytes < self.options.restart_bytes as i64 {
            return;
        }
        // Normally the restart waits until the checkpointer has just copied
        // the log back (`ready`), so that only the frames committed since
        // are left to copy while the writer waits. Past twice the limit (a
        // checkpointer that cannot keep up) the writer restarts the log
        // itself, after every batch, waiting for its turn if need be.
        let urgent = bytes >= 2 * self.options.restart_bytes as i64;
        if !urgent && !self.state.ready.load(Ordering::Acquire) {
            return;
        }
        if !urgent && self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let state = self.state.clone();
        let _turn = match state.turn.try_lock() {
            Ok(turn) => turn,
            Err(std::sync::TryLockError::WouldBlock) if !urgent => return,
            Err(_) => state.turn.lock().unwrap_or_else(|p| p.into_inner()),
        };
        self.state.ready.store(false, Ordering::Release);
        let _ = conn.busy_timeout(self.options.restart_wait);
        let result = checkpoint(conn, Mode::Restart);
        let _ = conn.busy_timeout(busy_timeout);
        match result {
            Ok(c) if !c.busy => {
                self.not_before = None;
                self.state.restarts.fetch_add(1, Ordering::Relaxed);
                // The next commit writes from the log's start; until then
                // nothing is left to restart.
                self.state.frames.store(0, Ordering::Relaxed);
            }
            Ok(_) => {
                self.state.restarts_busy.fetch_add(1, Ordering::Relaxed);
                self.not_before = Some(Instant::now() + self.options.restart_wait);
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL restart checkpoint failed");
                self.not_before = Some(Instant::now() + self.options.checkpoint_interval);
            }
        }
        report_size(&self.db);
    }
}

/// The checkpointer thread's loop: a PASSIVE checkpoint every
/// `checkpoint_interval`, and at once (checking every few milliseconds)
/// when the log has grown past the restart threshold, after which it tells
/// the writer that the restart is cheap (`ready`). Ends when `stop` is
/// dropped.
pub fn checkpointer_loop(
    conn: Connection,
    options: WalOptions,
    state: Arc<WalState>,
    page_size: i64,
    db: PathBuf,
    stop: std::sync::mpsc::Receiver<()>,
) {
    let tick = options.checkpoint_interval.min(Duration::from_millis(10));
    let mut last = Instant::now();
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
        let due = state.frames.load(Ordering::Relaxed) * page_size.max(512)
            >= options.restart_bytes as i64;
        let waiting = due && state.ready.load(Ordering::Acquire);
        if waiting || (!due && last.elapsed() < options.checkpoint_interval) {
            continue;
        }
        // The writer is restarting the log: it copies what is left.
        let Ok(_turn) = state.turn.try_lock() else {
            continue;
        };
        last = Instant::now();
        match checkpoint(&conn, Mode::Passive) {
            Ok(c) if due && !c.busy && c.copied >= c.log => {
                state.ready.store(true, Ordering::Release);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        report_size(&db);
    }
}
