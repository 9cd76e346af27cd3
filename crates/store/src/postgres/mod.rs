//! The PostgreSQL backend, for running several Belfry nodes on one
//! database. The model and every behaviour are those of the SQLite backend;
//! what differs is how concurrency is handled:
//!
//! - Publishing (a send, or a scheduled send that became due) is the only
//!   write that assigns `seq`. Each send is resolved in its caller's task,
//!   then goes to this node's writer task, which groups the sends waiting
//!   into one transaction (multi-row statements for all of them; a batch the
//!   database refuses is written again send by send, each inside its own
//!   savepoint, so one bad send fails alone), and assigns seqs from the
//!   one-row `seq_counter` table. The row is locked only for the rows that
//!   carry a seq and the commit (see `publish`), so transactions that
//!   assign seqs commit one after the other, in seq order, on every node: a
//!   lower seq is always visible before a higher one.
//! - Every other write runs in its own short transaction on a pooled
//!   connection; readers read committed data.
//! - Jobs are claimed with `FOR UPDATE SKIP LOCKED` and a lease.
//!
//! Events (`events()`) are this node's commits only, sent after each commit;
//! other nodes learn of them through the bus.

mod access;
mod admin;
mod answer;
mod chat;
mod documents;
mod durable;
mod jobs;
mod mailbox;
mod mobile;
mod prefs;
mod publish;
mod push;
mod read;
mod retention;
mod webhooks;
mod write;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_trouble_is_unavailable_and_wrong_requests_are_not() {
        assert_eq!(unavailable("53100"), Some(Unavailable::Full));
        assert_eq!(unavailable("53300"), Some(Unavailable::Busy));
        assert_eq!(unavailable("55P03"), Some(Unavailable::Busy));
        assert_eq!(unavailable("40001"), Some(Unavailable::Busy));
        assert_eq!(unavailable("57P01"), Some(Unavailable::Unreachable));
        assert_eq!(unavailable("08006"), Some(Unavailable::Unreachable));
        assert_eq!(unavailable("42P01"), None, "undefined table: a fault");
        assert_eq!(unavailable("22P02"), None, "bad input: a fault");
        for (e, kind) in [
            (sqlx::Error::PoolTimedOut, Unavailable::Unreachable),
            (
                sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
                Unavailable::Unreachable,
            ),
        ] {
            match StoreError::from(e) {
                StoreError::Unavailable { kind: k, source } => {
                    assert_eq!(k, kind);
                    assert!(source.is_some(), "the cause is kept for the log");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            StoreError::from(sqlx::Error::Protocol(
                "unexpected response from SSLRequest: 0x00".into()
            )),
            StoreError::Unavailable {
                kind: Unavailable::Unreachable,
                ..
            }
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolClosed),
            StoreError::Closed
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}

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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast, mpsc};

/// Ordered migrations; all that are missing run in one transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_stack_members.sql")),
    (
        3,
        include_str!("migrations/0003_tokens_and_fingerprints.sql"),
    ),
    (4, include_str!("migrations/0004_preferences.sql")),
    (5, include_str!("migrations/0005_digest.sql")),
    (6, include_str!("migrations/0006_push.sql")),
    (7, include_str!("migrations/0007_chat.sql")),
    (8, include_str!("migrations/0008_mobile.sql")),
    (9, include_str!("migrations/0009_webhooks.sql")),
    (10, include_str!("migrations/0010_access.sql")),
    (11, include_str!("migrations/0011_actions.sql")),
    (12, include_str!("migrations/0012_documents.sql")),
    (13, include_str!("migrations/0013_sources.sql")),
    (14, include_str!("migrations/0014_admin_console.sql")),
    (15, include_str!("migrations/0015_inbox_counts.sql")),
    (16, include_str!("migrations/0016_seq_guard.sql")),
];

/// Commits buffered in the event channel before a slow consumer lags.
const EVENT_BUFFER: usize = 16 * 1024;

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database?sslmode=…`
    pub url: String,
    /// Connections in the pool (the writer takes one of them while it commits).
    pub pool_size: u32,
    /// Phase 1 of publishing (resolving audiences) on this many pooled
    /// connections at once, at most. Each takes every request waiting when
    /// it starts, so fewer of them make bigger groups and fewer statements
    /// per send (measured in docs/benchmarks.md, "Resolvers"); more help
    /// only where round trips to the database are long.
    pub resolvers: usize,
    /// Apply missing migrations when opening. Without it, opening a
    /// database whose schema is behind this version fails.
    pub migrate: bool,
    /// The schema that holds Belfry's tables (created when migrating);
    /// None: the connection's default `search_path` (normally `public`).
    pub schema: Option<String>,
    /// How long a request waits for a pooled connection (connecting
    /// included) before it is answered `Unavailable::Unreachable` (503):
    /// a database that does not answer never hangs a request.
    pub acquire_timeout: std::time::Duration,
    /// Sends waiting for this node's publishing writer at most; a send that
    /// finds the queue full is answered `Unavailable::Overloaded` (503).
    pub write_queue: usize,
    /// A read of the counts that had to count more unread entries than
    /// this above the user's kept counts folds them in (migration 0015).
    pub fold_counts_after: i64,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            resolvers: 1,
            migrate: true,
            schema: None,
            acquire_timeout: std::time::Duration::from_secs(5),
            write_queue: 8192,
            fold_counts_after: 64,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let kind = match &e {
            // Class 23: integrity constraint violations (unique, foreign key, check …).
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("23")) => {
                return StoreError::conflict(Constraint::Database(
                    db.constraint().unwrap_or(db.message()).to_string(),
                ));
            }
            sqlx::Error::Database(db) => match db.code().as_deref().and_then(unavailable) {
                Some(kind) => kind,
                None => return StoreError::backend(e),
            },
            sqlx::Error::PoolClosed => return StoreError::Closed,
            // No connection within the acquire timeout: the server refuses
            // connections (sqlx retries those until the timeout) or every
            // connection is taken.
            sqlx::Error::PoolTimedOut => Unavailable::Unreachable,
            // The connection broke (server gone, network down), or what
            // answered is not (or no longer) PostgreSQL: a connection
            // closed during the handshake shows as a protocol or TLS error
            // ("unexpected response from SSLRequest"). sqlx closes such a
            // connection; the next one may work.
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Unavailable::Unreachable,
            _ => return StoreError::backend(e),
        };
        StoreError::unavailable(kind, e)
    }
}

/// SQLSTATEs that mean "not now" rather than "wrong".
fn unavailable(sqlstate: &str) -> Option<Unavailable> {
    match sqlstate {
        // disk_full
        "53100" => Some(Unavailable::Full),
        // Class 53, insufficient resources: out of memory, too many connections.
        s if s.starts_with("53") => Some(Unavailable::Busy),
        // Lock not available, query cancelled (statement or lock timeout),
        // serialization failure, deadlock.
        "55P03" | "57014" | "40001" | "40P01" => Some(Unavailable::Busy),
        // Shutting down, crashed, starting up.
        "57P01" | "57P02" | "57P03" => Some(Unavailable::Unreachable),
        // Class 08: connection exceptions.
        s if s.starts_with("08") => Some(Unavailable::Unreachable),
        _ => None,
    }
}

fn check_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "the schema name '{schema}' must be lower-case letters, digits and _ (at most 63)"
        )))
    }
}

fn connect_options(options: &PgOptions) -> Result<PgConnectOptions> {
    let mut connect = PgConnectOptions::from_str(&options.url)
        .map_err(|e| StoreError::Invalid(format!("invalid PostgreSQL URL: {e}")))?
        .application_name("belfry");
    if let Some(schema) = &options.schema {
        check_schema_name(schema)?;
        connect = connect.options([("search_path", schema.as_str())]);
    }
    Ok(connect)
}

/// Applies the migrations that are missing; returns how many ran. Safe to
/// run from several nodes at once (an advisory lock per schema serialises
/// them).
pub async fn migrate(options: &PgOptions) -> Result<usize> {
    let mut conn = PgConnection::connect_with(&connect_options(options)?).await?;
    let applied = migrate_conn(&mut conn, options.schema.as_deref()).await;
    let _ = conn.close().await;
    applied
}

async fn migrate_conn(conn: &mut PgConnection, schema: Option<&str>) -> Result<usize> {
    if let Some(schema) = schema {
        check_schema_name(schema)?;
        // Two nodes creating the schema at once: the loser gets a unique
        // violation on the catalog; the schema exists then, which is all we need.
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut *conn)
            .await
        {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(schema)
                    .fetch_one(&mut *conn)
                    .await?;
            if !exists {
                return Err(e.into());
            }
        }
    }
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('belfry-migrate:' || current_schema()))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES ($1, (extract(epoch from clock_timestamp()) * 1000)::bigint)",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tracing::info!(version, "applied PostgreSQL migration");
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}

/// The schema version of the database (0 when never migrated) and the
/// newest this binary knows, without changing anything.
pub async fn schema_status(options: &PgOptions) -> Result<(i64, i64)> {
    let mut conn = PgConnection::connect_with(&connect_options(options)?).await?;
    let current =
        match sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
        {
            Ok(v) => v.unwrap_or(0),
            // 42P01: undefined table — never migrated.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => 0,
            Err(e) => return Err(e.into()),
        };
    let _ = conn.close().await;
    Ok((current, MIGRATIONS.last().map(|m| m.0).unwrap_or(0)))
}

/// Fails unless every migration this version knows was applied.
async fn check_migrated(pool: &PgPool) -> Result<()> {
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let current: Option<i64> =
        match sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(pool)
            .await
        {
            Ok(v) => v,
            // 42P01: undefined table — never migrated.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => None,
            Err(e) => return Err(e.into()),
        };
    let current = current.unwrap_or(0);
    if current < latest {
        return Err(StoreError::backend(format!(
            "the PostgreSQL schema is at version {current}, this Belfry needs {latest}: \
             run `belfry migrate` (or start without --no-migrate)"
        )));
    }
    if current > latest {
        tracing::warn!(
            current,
            latest,
            "the PostgreSQL schema is newer than this Belfry"
        );
    }
    Ok(())
}

/// What the writer and the pooled writes share.
struct Shared {
    pool: PgPool,
    events: broadcast::Sender<Arc<Vec<StoreEvent>>>,
    /// The highest seq known to be committed (by this node, or read from
    /// the counter).
    committed_seq: AtomicI64,
    jobs_wakeup: Arc<Notify>,
    /// Which events enabled producer webhooks subscribe to.
    webhooks: crate::webhooks::Snapshot,
    fold_counts_after: i64,
}

impl Shared {
    /// Publishes the events of one commit (after it).
    fn emit(&self, events: Vec<StoreEvent>) {
        if !events.is_empty() {
            // No receiver (e.g. the CLI) is not an error.
            let _ = self.events.send(Arc::new(events));
        }
    }

    fn committed(&self, seq: i64) {
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
    }
}

impl durable::Publish for Arc<Shared> {
    fn durable(&self, last_seq: i64, jobs_added: bool, events: Vec<StoreEvent>) {
        self.committed(last_seq);
        if jobs_added {
            self.jobs_wakeup.notify_one();
        }
        self.emit(events);
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    shared: Arc<Shared>,
    /// Phase 1 of publishing (`publish::resolver_loop`), which hands on to
    /// the writer.
    resolver: mpsc::Sender<publish::WriteOp>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl PgStore {
    /// Connects, applies migrations (unless told not to, then checks that
    /// none is missing) and starts the writer task.
    pub async fn open(options: PgOptions) -> Result<PgStore> {
        let connect = connect_options(&options)?;
        if options.migrate {
            let mut conn = PgConnection::connect_with(&connect).await?;
            let migrated = migrate_conn(&mut conn, options.schema.as_deref()).await;
            let _ = conn.close().await;
            migrated?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        if !options.migrate {
            check_migrated(&pool).await?;
        }
        let last_seq: i64 = sqlx::query_scalar("SELECT value FROM seq_counter")
            .fetch_one(&pool)
            .await?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            pool,
            events,
            committed_seq: AtomicI64::new(last_seq),
            jobs_wakeup: Arc::new(Notify::new()),
            webhooks: Default::default(),
            fold_counts_after: options.fold_counts_after,
        });
        // The writer's commits wait here for their WAL flush (`durable`).
        let (durable, rx) = mpsc::channel(64);
        let durable_task = tokio::spawn(durable::durable_loop(
            rx,
            durable::PgBarrier::new(connect, options.acquire_timeout),
            shared.clone(),
        ));
        let (writer, rx) = mpsc::channel(options.write_queue.max(1));
        let writer_task = tokio::spawn(publish::writer_loop(shared.clone(), rx, durable.clone()));
        let (resolver, rx) = mpsc::channel(options.write_queue.max(1));
        // At most half the pool: the writer holds one, and reads and the
        // delivery workers need the rest.
        let resolvers = options
            .resolvers
            .clamp(1, (options.pool_size as usize / 2).max(1));
        let resolver_task = tokio::spawn(publish::resolver_loop(
            shared.clone(),
            rx,
            writer,
            durable,
            resolvers,
        ));
        Ok(PgStore {
            shared,
            resolver,
            tasks: Mutex::new(vec![resolver_task, writer_task, durable_task]),
        })
    }

    /// This node changed the webhooks (committed): its snapshot is read
    /// again, and every node hears of it.
    fn webhooks_updated(&self) {
        self.shared.webhooks.forget();
        self.shared.emit(vec![StoreEvent::WebhooksChanged]);
    }

    /// The connection pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Stops the resolver and the writer and closes the pool.
    pub async fn close(&self) {
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        self.shared.pool.close().await;
    }

    /// Queues a publishing request for phase 1 (`publish::resolver_loop`,
    /// which resolves waiting requests together and hands them to the
    /// writer); the caller awaits its reply.
    ///
    /// A request's send (`shed`) finding the queue full is answered
    /// `Overloaded` at once; a scheduled send becoming due waits for room.
    async fn write(&self, op: publish::WriteOp, shed: bool) -> Result<()> {
        if shed {
            self.resolver.try_send(op).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("belfry_pg_writes_shed_total").increment(1);
                    StoreError::unavailable(Unavailable::Overloaded, "the publishing queue is full")
                }
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })
        } else {
            self.resolver.send(op).await.map_err(|_| StoreError::Closed)
        }
    }

    fn pool_ref(&self) -> &PgPool {
        &self.shared.pool
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.shared.pool.acquire().await?)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.shared.pool.begin().await?)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.pool_ref()).await?;
        Ok(())
    }

    async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let key = format!("secret:{name}");
        let mut c = self.conn().await?;
        if let Some(v) = read::meta(&mut c, &key).await? {
            return Ok(v);
        }
        let fresh: Vec<u8> = ulid::Ulid::new()
            .to_bytes()
            .into_iter()
            .chain(ulid::Ulid::new().to_bytes())
            .collect();
        // Two nodes creating it at once: the first one wins, both read it back.
        write::meta_init(&mut c, &key, &fresh).await
    }

    async fn create_api_key(&self, key: NewApiKey, now: Millis) -> Result<ApiKeyInfo> {
        let mut c = self.conn().await?;
        write::create_api_key(&mut c, &key, now).await
    }

    async fn create_first_api_key(&self, key: NewApiKey, now: Millis) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Two nodes starting on an empty database: only one creates a key.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('belfry-first-key:' || current_schema()))",
        )
        .execute(&mut *tx)
        .await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&mut *tx)
            .await?;
        if count > 0 {
            return Ok(false);
        }
        write::create_api_key(&mut tx, &key, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ensure_api_key(&self, key: NewApiKey, now: Millis) -> Result<()> {
        let mut c = self.conn().await?;
        write::ensure_api_key(&mut c, &key, now).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        read::api_keys(&mut *self.conn().await?).await
    }

    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<ApiKeyInfo> {
        write::revoke_api_key(&mut *self.conn().await?, id, now).await
    }

    async fn revoke_source_keys(&self, source: &str, now: Millis) -> Result<Vec<String>> {
        write::revoke_source_keys(&mut *self.conn().await?, source, now).await
    }

    async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyInfo>> {
        read::api_key_by_hash(&mut *self.conn().await?, &hash).await
    }

    async fn create_admin(&self, a: crate::NewAdmin, now: Millis) -> Result<crate::Admin> {
        admin::create_admin(&mut *self.conn().await?, &a, now).await
    }

    async fn list_admins(&self) -> Result<Vec<crate::Admin>> {
        admin::list_admins(&mut *self.conn().await?).await
    }

    async fn admin_by_email(&self, email: &str) -> Result<Option<(crate::Admin, String)>> {
        admin::admin_by_email(&mut *self.conn().await?, email).await
    }

    async fn delete_admin(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        admin::delete_admin(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn admin_login_failures(&self, email: &str, since: Millis) -> Result<Vec<Millis>> {
        admin::login_failures(&mut *self.conn().await?, email, since).await
    }

    async fn record_admin_login_failure(
        &self,
        email: &str,
        now: Millis,
        forget_before: Millis,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        admin::record_login_failure(&mut tx, email, now, forget_before).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_admin_login_failures(&self, email: &str) -> Result<()> {
        admin::clear_login_failures(&mut *self.conn().await?, email).await
    }

    async fn create_admin_session(
        &self,
        session: crate::NewAdminSession,
        now: Millis,
    ) -> Result<()> {
        admin::create_session(&mut *self.conn().await?, &session, now).await
    }

    async fn admin_session(
        &self,
        hash: [u8; 32],
        now: Millis,
    ) -> Result<Option<crate::AdminSession>> {
        admin::session(&mut *self.conn().await?, &hash, now).await
    }

    async fn touch_admin_session(
        &self,
        hash: [u8; 32],
        now: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        admin::touch_session(&mut *self.conn().await?, &hash, now, expires_at).await
    }

    async fn delete_admin_session(&self, hash: [u8; 32]) -> Result<()> {
        admin::delete_session(&mut *self.conn().await?, &hash).await
    }

    async fn runtime_settings(&self) -> Result<crate::RuntimeSettings> {
        admin::runtime_settings(&mut *self.conn().await?).await
    }

    async fn put_runtime_settings(
        &self,
        settings: crate::RuntimeSettings,
        now: Millis,
    ) -> Result<()> {
        admin::put_runtime_settings(&mut *self.conn().await?, &settings, now).await
    }

    async fn list_notifications(
        &self,
        query: crate::NotificationListQuery,
    ) -> Result<Vec<crate::NotificationRow>> {
        admin::list_notifications(&mut *self.conn().await?, &query).await
    }

    async fn delivery_log(&self, filter: crate::LogFilter) -> Result<Vec<crate::LogLine>> {
        admin::delivery_log(&mut *self.conn().await?, &filter).await
    }

    async fn delivery_stats(
        &self,
        since: Millis,
        until: Millis,
        bucket_ms: i64,
    ) -> Result<Vec<crate::StatBucket>> {
        admin::delivery_stats(&mut *self.conn().await?, since, until, bucket_ms).await
    }

    async fn audience_size(&self, audience: &belfry_core::Audience) -> Result<i64> {
        admin::audience_size(&mut *self.conn().await?, audience).await
    }

    async fn list_users(&self, query: crate::UserListQuery) -> Result<Vec<(i64, User)>> {
        admin::list_users(&mut *self.conn().await?, &query).await
    }

    async fn put_user(&self, id: &UserId, patch: UserPatch, now: Millis) -> Result<(User, bool)> {
        let mut tx = self.begin().await?;
        let (user, created, event) = write::put_user(&mut tx, id, patch, now).await?;
        tx.commit().await?;
        self.shared.emit(event.into_iter().collect());
        Ok((user, created))
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let mut c = self.conn().await?;
        match read::uid(&mut c, id).await? {
            Some(uid) => read::user(&mut c, uid).await.map(Some),
            None => Ok(None),
        }
    }

    async fn delete_user(&self, id: &UserId, now: Millis) -> Result<()> {
        let mut tx = self.begin().await?;
        let events = write::delete_user(&mut tx, id, now).await?;
        tx.commit().await?;
        self.shared.emit(events);
        Ok(())
    }

    async fn revoke_tokens(&self, id: &UserId, now: Millis) -> Result<Millis> {
        let mut tx = self.begin().await?;
        let (after, event) = write::revoke_tokens(&mut tx, id, now).await?;
        tx.commit().await?;
        self.shared.emit(vec![event]);
        Ok(after)
    }

    async fn token_revocations(&self, since: Millis) -> Result<Vec<(UserId, Millis)>> {
        read::token_revocations(&mut *self.conn().await?, since).await
    }

    async fn put_group(
        &self,
        id: &GroupId,
        name: Option<String>,
        now: Millis,
    ) -> Result<(Group, bool)> {
        let mut tx = self.begin().await?;
        let out = write::put_group(&mut tx, id, name, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        read::groups(&mut *self.conn().await?).await
    }

    async fn list_categories(&self) -> Result<Vec<belfry_core::CategoryDef>> {
        prefs::categories(&mut *self.conn().await?).await
    }

    async fn get_category(
        &self,
        id: &belfry_core::Category,
    ) -> Result<Option<belfry_core::CategoryDef>> {
        prefs::category(&mut *self.conn().await?, id).await
    }

    async fn put_category(&self, def: belfry_core::CategoryDef, now: Millis) -> Result<bool> {
        prefs::put_category(&mut *self.conn().await?, &def, now).await
    }

    async fn delete_category(&self, id: &belfry_core::Category) -> Result<bool> {
        prefs::delete_category(&mut *self.conn().await?, id).await
    }

    async fn ensure_categories(&self, ids: Vec<belfry_core::Category>, now: Millis) -> Result<()> {
        prefs::ensure_categories(&mut *self.conn().await?, &ids, now).await
    }

    async fn put_document(
        &self,
        kind: crate::DocKind,
        id: &str,
        doc: String,
        now: Millis,
    ) -> Result<bool> {
        documents::put(&mut *self.conn().await?, kind, id, &doc, now).await
    }

    async fn get_document(
        &self,
        kind: crate::DocKind,
        id: &str,
    ) -> Result<Option<crate::Document>> {
        documents::get(&mut *self.conn().await?, kind, id).await
    }

    async fn list_documents(&self, kind: crate::DocKind) -> Result<Vec<crate::Document>> {
        documents::list(&mut *self.conn().await?, kind).await
    }

    async fn delete_document(&self, kind: crate::DocKind, id: &str) -> Result<bool> {
        documents::delete(&mut *self.conn().await?, kind, id).await
    }

    async fn write_documents(
        &self,
        put: Vec<crate::NewDocument>,
        delete: Vec<(crate::DocKind, String)>,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        documents::write_all(&mut tx, &put, &delete, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn install_documents_once(
        &self,
        marker: &str,
        docs: Vec<crate::NewDocument>,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let installed = documents::install_once(&mut tx, marker, &docs, now).await?;
        tx.commit().await?;
        Ok(installed)
    }

    async fn preferences(&self, user: &UserId) -> Result<crate::UserPreferences> {
        prefs::preferences(&mut *self.conn().await?, user).await
    }

    async fn put_preferences(
        &self,
        user: &UserId,
        overrides: belfry_core::preferences::Overrides,
        now: Millis,
    ) -> Result<()> {
        prefs::put_preferences(&mut *self.conn().await?, user, &overrides, now).await
    }

    async fn preference_defaults(&self) -> Result<belfry_core::preferences::Overrides> {
        prefs::preference_defaults(&mut *self.conn().await?).await
    }

    async fn put_preference_defaults(
        &self,
        defaults: belfry_core::preferences::Overrides,
        now: Millis,
    ) -> Result<()> {
        prefs::put_preference_defaults(&mut *self.conn().await?, &defaults, now).await
    }

    async fn subscribe(&self, entity: &EntityRef, who: Subscriber, now: Millis) -> Result<bool> {
        write::subscribe(&mut *self.conn().await?, entity, &who, now).await
    }

    async fn unsubscribe(&self, entity: &EntityRef, who: Subscriber) -> Result<bool> {
        write::unsubscribe(&mut *self.conn().await?, entity, &who).await
    }

    async fn subscribers(&self, entity: &EntityRef) -> Result<Vec<Subscription>> {
        read::subscribers(&mut *self.conn().await?, entity).await
    }

    async fn subscriptions_of(&self, user: &UserId) -> Result<Vec<Subscription>> {
        read::subscriptions_of(&mut *self.conn().await?, user).await
    }

    async fn put_push_subscription(
        &self,
        user: &UserId,
        subscription: NewPushSubscription,
        cap: usize,
        now: Millis,
    ) -> Result<(PushSubscription, bool)> {
        let mut tx = self.begin().await?;
        let stored = push::put(&mut tx, user, &subscription, cap, now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscription>> {
        push::list(&mut *self.conn().await?, user).await
    }

    async fn delete_push_subscription(&self, user: &UserId, id: &str) -> Result<bool> {
        push::delete(&mut *self.conn().await?, user, id).await
    }

    async fn put_contact(
        &self,
        email: &EmailAddress,
        profile: ContactProfile,
        now: Millis,
    ) -> Result<()> {
        access::put_contact(&mut *self.conn().await?, email, &profile, now).await
    }

    async fn revoke_access(&self, revocation: AccessRevocation, now: Millis) -> Result<()> {
        access::revoke(&mut *self.conn().await?, &revocation, now).await
    }

    async fn access_revoked(&self, token: &AccessTokenRef) -> Result<bool> {
        access::revoked(&mut *self.conn().await?, token).await
    }

    async fn put_mobile_device(
        &self,
        user: &UserId,
        device: NewMobileDevice,
        cap: usize,
        now: Millis,
    ) -> Result<(MobileDevice, bool)> {
        let mut tx = self.begin().await?;
        let stored = mobile::put(&mut tx, user, &device, cap, now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn mobile_devices(&self, user: &UserId) -> Result<Vec<MobileDevice>> {
        mobile::list(&mut *self.conn().await?, user).await
    }

    async fn delete_mobile_device(&self, user: &UserId, id: &str) -> Result<bool> {
        mobile::delete(&mut *self.conn().await?, user, id).await
    }

    async fn put_chat_target(
        &self,
        owner: &ChatOwner,
        kind: ChatKind,
        url: String,
        secret: Option<secrecy::SecretString>,
        now: Millis,
    ) -> Result<(ChatTarget, bool)> {
        chat::put(
            &mut *self.conn().await?,
            owner,
            kind,
            &url,
            secret.as_ref(),
            now,
        )
        .await
    }

    async fn chat_targets(&self, owner: &ChatOwner) -> Result<Vec<ChatTarget>> {
        chat::list(&mut *self.conn().await?, owner).await
    }

    async fn delete_chat_target(&self, owner: &ChatOwner, kind: ChatKind) -> Result<bool> {
        chat::delete(&mut *self.conn().await?, owner, kind).await
    }

    async fn put_webhook(
        &self,
        hook: crate::NewWebhook,
        now: Millis,
    ) -> Result<(crate::Webhook, bool)> {
        let mut tx = self.begin().await?;
        let out = webhooks::put(&mut tx, &hook, now).await?;
        tx.commit().await?;
        self.webhooks_updated();
        Ok(out)
    }

    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: secrecy::SecretString,
        now: Millis,
    ) -> Result<crate::Webhook> {
        webhooks::rotate(&mut *self.conn().await?, id, &secret, now).await
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<crate::Webhook>> {
        webhooks::get(&mut *self.conn().await?, id).await
    }

    async fn list_webhooks(&self) -> Result<Vec<crate::Webhook>> {
        webhooks::list(&mut *self.conn().await?).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let found = webhooks::delete(&mut tx, id).await?;
        tx.commit().await?;
        if found {
            self.webhooks_updated();
        }
        Ok(found)
    }

    async fn webhook_target(&self, id: &str) -> Result<Option<crate::WebhookTarget>> {
        webhooks::target(&mut *self.conn().await?, id).await
    }

    async fn webhook_attempts(
        &self,
        id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<crate::AttemptPage> {
        webhooks::attempts(&mut *self.conn().await?, id, before, limit).await
    }

    fn webhooks_changed(&self) {
        self.shared.webhooks.forget();
    }

    async fn send(
        &self,
        ctx: SendContext,
        batch: Vec<NewNotification>,
    ) -> Result<Vec<SendReceipt>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.write(publish::WriteOp::Send { ctx, batch, reply }, true)
            .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>> {
        read::notification(&mut *self.conn().await?, id).await
    }

    async fn delete_notification(&self, id: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin().await?;
        let event = write::delete_notification(&mut tx, id, now).await?;
        tx.commit().await?;
        if let Some(event) = event {
            self.shared.emit(vec![event]);
        }
        Ok(())
    }

    async fn answer_action(&self, user: &UserId, answer: NewAnswer) -> Result<AnswerReceipt> {
        let mut tx = self.begin().await?;
        let (receipt, event, queued) =
            answer::answer(&mut tx, &self.shared.webhooks, user, &answer).await?;
        tx.commit().await?;
        if let Some(event) = event {
            self.shared.emit(vec![event]);
        }
        if queued {
            self.shared.jobs_wakeup.notify_one();
        }
        Ok(receipt)
    }

    async fn inbox_change(&self, user: &UserId, change: InboxChange, now: Millis) -> Result<i64> {
        let mut tx = self.begin().await?;
        let u = read::inbox_user(&mut tx, user)
            .await?
            .ok_or(StoreError::NotFound)?;
        let (n, event, queued) =
            write::inbox_change(&mut tx, &self.shared.webhooks, &u, user, change, now).await?;
        tx.commit().await?;
        if let Some(event) = event {
            self.shared.emit(vec![event]);
        }
        if queued {
            self.shared.jobs_wakeup.notify_one();
        }
        Ok(n)
    }

    async fn list_inbox(&self, user: &UserId, query: InboxQuery, now: Millis) -> Result<InboxPage> {
        let mut c = self.conn().await?;
        let u = read::inbox_user(&mut c, user)
            .await?
            .ok_or(StoreError::NotFound)?;
        read::list_inbox(&mut c, &u, &query, now).await
    }

    async fn counts_at(&self, user: &UserId, now: Millis) -> Result<(Counts, i64)> {
        let mut c = self.conn().await?;
        let u = read::inbox_user(&mut c, user)
            .await?
            .ok_or(StoreError::NotFound)?;
        let (counts, seq, above) = read::counts(&mut c, &u, now).await?;
        if above > self.shared.fold_counts_after {
            // Fire and forget: the counts read the same before and after.
            let pool = self.shared.pool.clone();
            tokio::spawn(async move {
                if let Err(e) = write::fold_counts(&pool, u.uid).await {
                    tracing::debug!(error = %e, "folding the counts failed");
                }
            });
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
        jobs::claim(self.pool_ref(), now, lease_ms, limit, owner).await
    }

    async fn finish_job(&self, job: i64, outcome: JobOutcome, now: Millis) -> Result<()> {
        let mut tx = self.begin().await?;
        let mut changed = false;
        let wake = jobs::finish(
            &mut tx,
            &self.shared.webhooks,
            job,
            outcome,
            now,
            &mut changed,
        )
        .await?;
        tx.commit().await?;
        if wake {
            self.shared.jobs_wakeup.notify_one();
        }
        if changed {
            self.webhooks_updated();
        }
        Ok(())
    }

    async fn next_job_at(&self) -> Result<Option<Millis>> {
        jobs::next_job_at(self.pool_ref()).await
    }

    async fn schedule_digest(
        &self,
        user: &UserId,
        at: Millis,
        reschedule: bool,
        now: Millis,
    ) -> Result<()> {
        if jobs::schedule_digest(self.pool_ref(), user, at, reschedule, now).await? {
            self.shared.jobs_wakeup.notify_one();
        }
        Ok(())
    }

    fn jobs_wakeup(&self) -> Arc<Notify> {
        self.shared.jobs_wakeup.clone()
    }

    async fn publish_due(&self, nid: i64, now: Millis) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.write(publish::WriteOp::PublishDue { nid, now, reply }, false)
            .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn expand_broadcast(
        &self,
        nid: i64,
        channel: belfry_core::Channel,
        after_uid: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let (next, added) = jobs::expand(&mut tx, nid, channel, after_uid, limit, now).await?;
        tx.commit().await?;
        if added {
            self.shared.jobs_wakeup.notify_one();
        }
        Ok(next)
    }

    async fn delivery_context(
        &self,
        nid: i64,
        recipient: &Recipient,
        channel: belfry_core::Channel,
        now: Millis,
        fallback: bool,
    ) -> Result<Option<DeliveryContext>> {
        jobs::delivery_context(
            &mut *self.conn().await?,
            nid,
            recipient,
            channel,
            now,
            fallback,
        )
        .await
    }

    async fn deliveries(
        &self,
        notification_id: &str,
        query: DeliveryQuery,
    ) -> Result<DeliveryPage> {
        jobs::deliveries(&mut *self.conn().await?, notification_id, query).await
    }

    async fn job_stats(&self, now: Millis) -> Result<JobStats> {
        jobs::stats(self.pool_ref(), now).await
    }

    fn pool_stats(&self) -> PoolStats {
        let pool = &self.shared.pool;
        let idle = pool.num_idle() as u64;
        PoolStats {
            in_use: u64::from(pool.size()).saturating_sub(idle),
            idle,
            max: u64::from(pool.options().get_max_connections()),
            // sqlx does not count the tasks waiting for a connection.
            waiting: None,
        }
    }

    async fn mailbox_put(&self, mail: NewDevMail, now: Millis) -> Result<DevMail> {
        mailbox::mailbox_put(self.pool_ref(), &mail, now).await
    }

    async fn mailbox_list(&self, limit: usize) -> Result<Vec<DevMail>> {
        mailbox::mailbox_list(self.pool_ref(), limit).await
    }

    async fn mailbox_get(&self, id: &str) -> Result<Option<DevMail>> {
        mailbox::mailbox_get(self.pool_ref(), id).await
    }

    async fn mailbox_clear(&self) -> Result<i64> {
        mailbox::mailbox_clear(self.pool_ref()).await
    }

    async fn retention_step(
        &self,
        cursor: crate::retention::RetentionCursor,
        policy: crate::retention::RetentionPolicy,
        now: Millis,
    ) -> Result<crate::retention::RetentionStep> {
        let mut tx = self.begin().await?;
        let step = retention::step(&mut tx, cursor, policy, now).await?;
        tx.commit().await?;
        Ok(step)
    }

    async fn ensure_retention_job(&self, first_run: Millis, now: Millis) -> Result<bool> {
        let mut tx = self.begin().await?;
        let added = retention::ensure_job(&mut tx, first_run, now).await?;
        tx.commit().await?;
        Ok(added)
    }

    fn events(&self) -> broadcast::Receiver<Arc<Vec<StoreEvent>>> {
        self.shared.events.subscribe()
    }

    fn last_seq(&self) -> i64 {
        self.shared.committed_seq.load(Ordering::Acquire)
    }

    async fn refresh_last_seq(&self) -> Result<i64> {
        let seq: i64 = sqlx::query_scalar("SELECT value FROM seq_counter")
            .fetch_one(self.pool_ref())
            .await?;
        self.shared.committed(seq);
        Ok(self.last_seq())
    }

    async fn replay(
        &self,
        user: &UserId,
        after_seq: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<(i64, String)>> {
        let mut c = self.conn().await?;
        let u = read::inbox_user(&mut c, user)
            .await?
            .ok_or(StoreError::NotFound)?;
        read::replay(&mut c, &u, after_seq, limit, now).await
    }
}
