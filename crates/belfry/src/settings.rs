//! Configuration: defaults, then an optional TOML file, then `BELFRY_*`
//! environment variables, then command-line flags (clap reads the last two,
//! flags first). Invalid settings stop the start with a message naming them.
//! Secrets (database and SMTP URLs, which may carry passwords, and the admin
//! key) are held as [`SecretString`]s, so `Debug` output never shows them.

use anyhow::{Context as _, bail};
use clap::Args;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the data lives; shared by every command that opens the database.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// TOML file with any of the settings below (keys as the flags, with _ for -).
    #[arg(long, env = "BELFRY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the SQLite database and other local files [default: ./belfry-data]
    #[arg(long, env = "BELFRY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL: empty means SQLite in the data directory (sqlite:///path/file.db also
    /// works); postgres://user:password@host:5432/db (or postgresql://…) uses PostgreSQL,
    /// for running several nodes [default: SQLite at <data-dir>/belfry.db]
    #[arg(
        long = "database",
        env = "BELFRY_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<SecretString>,

    /// Connections to PostgreSQL kept by this process [default: 16]
    #[arg(long, env = "BELFRY_PG_POOL_SIZE", value_name = "N")]
    pub pg_pool_size: Option<u32>,

    /// Pooled connections that resolve sends' audiences at once; each takes
    /// every send waiting, so one makes the biggest groups. More help only
    /// where round trips to PostgreSQL are long [default: 1]
    #[arg(long, env = "BELFRY_PG_RESOLVERS", value_name = "N")]
    pub pg_resolvers: Option<u32>,

    /// SQLite: once the write-ahead log holds this many MiB, the writer
    /// restarts it (and truncates the file back to this size) [default: 16]
    #[arg(long, env = "BELFRY_SQLITE_WAL_LIMIT_MB", value_name = "MIB")]
    pub sqlite_wal_limit_mb: Option<u64>,

    /// SQLite group commit: while writes queue up behind a commit, the next
    /// one begins this many milliseconds after it at the earliest, and what
    /// arrives meanwhile shares one transaction and one fsync; a write that
    /// finds no queue is never delayed; 0 commits every batch at once
    /// [default: 0]
    #[arg(long, env = "BELFRY_SQLITE_COMMIT_INTERVAL_MS", value_name = "MS")]
    pub sqlite_commit_interval_ms: Option<u64>,

    /// SQLite: how often the checkpointer copies the write-ahead log back
    /// into the database (and syncs it), in milliseconds; shorter means
    /// smaller bursts of writes for the disk [default: 500]
    #[arg(long, env = "BELFRY_SQLITE_CHECKPOINT_INTERVAL_MS", value_name = "MS")]
    pub sqlite_checkpoint_interval_ms: Option<u64>,
}

/// Settings of `belfry serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Address and port to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "BELFRY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// URL under which users reach this server, used in links [default: http://<listen>]
    #[arg(long, env = "BELFRY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Largest request body in bytes (the batch endpoint allows 16 times this) [default: 262144]
    #[arg(long, env = "BELFRY_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,

    /// Comma-separated origins allowed to call from browsers; * or empty allows any [default: *]
    #[arg(
        long,
        env = "BELFRY_CORS_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Option<Vec<String>>,

    /// Default lifetime of user tokens, in seconds [default: 3600]
    #[arg(long, env = "BELFRY_TOKEN_TTL", value_name = "SECONDS")]
    pub token_ttl: Option<i64>,

    /// Most named recipients (users and emails, summed over a batch) in one send
    /// request; groups and `all` are stored once and do not count [default: 10000]
    #[arg(long, env = "BELFRY_MAX_RECIPIENTS", value_name = "N")]
    pub max_recipients: Option<usize>,

    /// Most open streams (SSE and WebSocket) per user on this node; opening one
    /// more closes that user's oldest [default: 20]
    #[arg(long, env = "BELFRY_MAX_STREAMS_PER_USER", value_name = "N")]
    pub max_streams_per_user: Option<usize>,

    /// Log format: text or json [default: text]
    #[arg(long, env = "BELFRY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// fsync the SQLite database on every commit (true) or leave it to the OS
    /// (false: survives a crash of Belfry, not of the machine) [default: true]
    #[arg(long, env = "BELFRY_SQLITE_FSYNC", value_name = "BOOL")]
    pub sqlite_fsync: Option<bool>,

    /// Do not apply database migrations on start (apply them with `belfry migrate`
    /// first); the server refuses to start on a PostgreSQL schema that is behind.
    /// SQLite databases are always migrated [default: false, migrations are applied]
    #[arg(
        long,
        env = "BELFRY_NO_MIGRATE",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub no_migrate: Option<bool>,

    /// SMTP server for email: smtp://host:25, smtp://user:pass@host:587?tls=required
    /// (STARTTLS) or smtps://user:pass@host:465 (TLS) [default: none, emails go to the
    /// development mailbox, GET /v1/dev/mailbox]
    #[arg(
        long,
        env = "BELFRY_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<SecretString>,

    /// The From of emails [default: Belfry <belfry@localhost>]
    #[arg(long, env = "BELFRY_EMAIL_FROM", value_name = "MAILBOX")]
    pub email_from: Option<String>,

    /// Base URL of the host application; relative notification links (/tickets/1)
    /// become absolute with it in emails [default: none, relative links are left out]
    #[arg(long, env = "BELFRY_APP_URL", value_name = "URL")]
    pub app_url: Option<String>,

    /// The host application's page listing all notifications; the daily digest's
    /// "see all" link is the app URL followed by it [default: /notifications]
    #[arg(long, env = "BELFRY_NOTIFICATIONS_PATH", value_name = "PATH")]
    pub notifications_path: Option<String>,

    /// Jobs (emails, scheduled sends) run at the same time; 0 runs no workers on
    /// this node [default: 8]
    #[arg(long, env = "BELFRY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Attempts of a delivery before it is marked failed [default: 6]
    #[arg(long, env = "BELFRY_MAX_ATTEMPTS", value_name = "N")]
    pub max_attempts: Option<i64>,

    /// Wait before the first retry; doubled for each further one [default: 30]
    #[arg(long, env = "BELFRY_RETRY_BASE_SECS", value_name = "SECONDS")]
    pub retry_base_secs: Option<u64>,

    /// How long a claimed job stays reserved for its worker; after a crash the job
    /// runs again this long later [default: 120]
    #[arg(long, env = "BELFRY_JOB_LEASE_SECS", value_name = "SECONDS")]
    pub job_lease_secs: Option<u64>,

    /// Demo mode, for trying Belfry (never in production): a fictional help
    /// desk at / signed in as a demo user, with buttons that send sample
    /// notifications. Anyone who reaches the server can use them [default: false]
    #[arg(
        long,
        env = "BELFRY_DEMO",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub demo: Option<bool>,

    /// A send naming a category that does not exist creates it (with default
    /// settings) instead of being refused with 422 unknown_category [default: false]
    #[arg(
        long,
        env = "BELFRY_AUTO_CATEGORIES",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub auto_categories: Option<bool>,

    /// Install the built-in starter rules and templates (English and German:
    /// ticket assigned, @mention, customer reply, reopened, record created or
    /// changed) on the first start of a new database; once deleted or edited
    /// they stay so [default: true]
    #[arg(
        long,
        env = "BELFRY_STARTER_RULES",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub starter_rules: Option<bool>,

    /// The same as --starter-rules=false
    #[arg(long, conflicts_with = "starter_rules")]
    pub no_starter_rules: bool,

    /// Requests per second each secret key may make on this node (bursts of
    /// as many); more are answered 429 rate_limited with Retry-After.
    /// 0: no limit [default: 0]
    #[arg(long, env = "BELFRY_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,

    /// Emails (and pushes) one user may get per channel within the
    /// recipient window; further ones are held and go out as one summary
    /// when the window ends (the inbox still gets everything). Counted on
    /// each node. 0: no limit [default: 20]
    #[arg(long, env = "BELFRY_RECIPIENT_RATE_LIMIT", value_name = "COUNT")]
    pub recipient_rate_limit: Option<u32>,

    /// The window of --recipient-rate-limit, in seconds [default: 60]
    #[arg(long, env = "BELFRY_RECIPIENT_RATE_WINDOW", value_name = "SECONDS")]
    pub recipient_rate_window: Option<u64>,

    /// Read or archived inbox entries of notifications older than this many
    /// days are deleted by the daily retention job, and with them
    /// notifications no one can see any longer; unread ones stay.
    /// 0: keep them [default: 90]
    #[arg(long, env = "BELFRY_RETENTION_DAYS", value_name = "DAYS")]
    pub retention_days: Option<u32>,

    /// Delivery-log lines older than this many days are deleted by the
    /// retention job. 0: keep them [default: 30]
    #[arg(long, env = "BELFRY_DELIVERY_LOG_RETENTION_DAYS", value_name = "DAYS")]
    pub delivery_log_retention_days: Option<u32>,

    /// Development mailbox entries older than this many days are deleted by
    /// the retention job. 0: keep them [default: 7]
    #[arg(long, env = "BELFRY_MAILBOX_RETENTION_DAYS", value_name = "DAYS")]
    pub mailbox_retention_days: Option<u32>,

    /// NATS server that joins this node to a cluster (all nodes on one
    /// PostgreSQL database and one NATS) [default: none, a single node]
    #[arg(long = "nats", env = "BELFRY_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,

    /// The NATS subject of this cluster's events (one per cluster) [default: belfry.events]
    #[arg(long, env = "BELFRY_NATS_SUBJECT", value_name = "SUBJECT")]
    pub nats_subject: Option<String>,

    /// Write the admin key generated on first start to this file (created
    /// with mode 0600, never overwritten) instead of printing it [default:
    /// none, it is printed once]
    #[arg(long, env = "BELFRY_ADMIN_KEY_FILE", value_name = "FILE")]
    pub admin_key_file: Option<PathBuf>,

    /// Web push: the VAPID private key, the 32-byte P-256 scalar as base64url
    /// (what `npx web-push generate-vapid-keys` prints as the private key)
    /// [default: none, a key pair is generated on first start and kept in the
    /// database; GET /v1/push/vapid-public-key shows its public key]
    #[arg(
        long,
        env = "BELFRY_VAPID_PRIVATE_KEY",
        value_name = "BASE64URL",
        hide_env_values = true
    )]
    pub vapid_private_key: Option<SecretString>,

    /// Web push: the contact push services see in every request (VAPID
    /// `sub`), mailto:ops@example.com or https://example.com [default:
    /// mailto:belfry@<public URL's host>]
    #[arg(long, env = "BELFRY_VAPID_SUBJECT", value_name = "URI")]
    pub vapid_subject: Option<String>,

    /// Outgoing requests (web push) to loopback, link-local and private
    /// addresses are refused; this comma-separated list of hosts, addresses
    /// and networks allows them (e.g. 127.0.0.1,10.0.0.0/8,push.intranet)
    /// [default: none]
    #[arg(long, env = "BELFRY_OUTBOUND_ALLOW", value_name = "LIST")]
    pub outbound_allow: Option<String>,

    /// Access tokens of external contacts: the ES256 private key, the
    /// 32-byte P-256 scalar as base64url [default: none, a key pair is
    /// generated on first start and kept in the database; GET
    /// /.well-known/jwks.json shows its public key]
    #[arg(
        long,
        env = "BELFRY_ACCESS_TOKEN_PRIVATE_KEY",
        value_name = "BASE64URL",
        hide_env_values = true
    )]
    pub access_token_private_key: Option<SecretString>,

    /// Where an external contact's email links to, with a fresh access
    /// token: an http(s) URL with {token} and optionally {entity_type} and
    /// {entity_id}, e.g.
    /// https://desk.example.com/portal/tickets/{entity_id}?access_token={token}
    /// [default: none, the notification's url with access_token=<token> added]
    #[arg(long, env = "BELFRY_CONTACT_LINK_URL", value_name = "URL")]
    pub contact_link_url: Option<String>,
    /// Mobile push through FCM: the Firebase service account's JSON key
    /// file (Project settings → Service accounts → Generate new private
    /// key) [default: none, FCM devices cannot be registered]
    #[arg(long, env = "BELFRY_FCM_SERVICE_ACCOUNT", value_name = "FILE")]
    pub fcm_service_account: Option<PathBuf>,

    /// Mobile push: FCM's base URL [default: https://fcm.googleapis.com]
    #[arg(long, env = "BELFRY_FCM_BASE_URL", value_name = "URL")]
    pub fcm_base_url: Option<String>,

    /// Mobile push through APNs: the signing key's .p8 file (Apple
    /// developer account → Keys, with Apple Push Notifications service)
    /// [default: none, APNs devices cannot be registered]
    #[arg(long, env = "BELFRY_APNS_KEY", value_name = "FILE")]
    pub apns_key: Option<PathBuf>,

    /// Mobile push: the APNs key's id (10 characters, as shown beside the key)
    #[arg(long, env = "BELFRY_APNS_KEY_ID", value_name = "ID")]
    pub apns_key_id: Option<String>,

    /// Mobile push: the Apple developer team id (10 characters)
    #[arg(long, env = "BELFRY_APNS_TEAM_ID", value_name = "ID")]
    pub apns_team_id: Option<String>,

    /// Mobile push: APNs' base URL; https://api.sandbox.push.apple.com for
    /// development builds of the app [default: https://api.push.apple.com]
    #[arg(long, env = "BELFRY_APNS_BASE_URL", value_name = "URL")]
    pub apns_base_url: Option<String>,
}

/// The keys a TOML file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    database_url: Option<SecretString>,
    pg_pool_size: Option<u32>,
    pg_resolvers: Option<u32>,
    sqlite_wal_limit_mb: Option<u64>,
    sqlite_commit_interval_ms: Option<u64>,
    sqlite_checkpoint_interval_ms: Option<u64>,
    no_migrate: Option<bool>,
    listen: Option<String>,
    public_url: Option<String>,
    body_limit: Option<usize>,
    cors_origins: Option<Vec<String>>,
    token_ttl: Option<i64>,
    max_recipients: Option<usize>,
    max_streams_per_user: Option<usize>,
    log_format: Option<String>,
    sqlite_fsync: Option<bool>,
    smtp_url: Option<SecretString>,
    email_from: Option<String>,
    app_url: Option<String>,
    notifications_path: Option<String>,
    workers: Option<usize>,
    max_attempts: Option<i64>,
    retry_base_secs: Option<u64>,
    job_lease_secs: Option<u64>,
    demo: Option<bool>,
    auto_categories: Option<bool>,
    starter_rules: Option<bool>,
    rate_limit: Option<u32>,
    recipient_rate_limit: Option<u32>,
    recipient_rate_window: Option<u64>,
    retention_days: Option<u32>,
    delivery_log_retention_days: Option<u32>,
    mailbox_retention_days: Option<u32>,
    nats_url: Option<String>,
    nats_subject: Option<String>,
    admin_key_file: Option<PathBuf>,
    vapid_private_key: Option<SecretString>,
    vapid_subject: Option<String>,
    /// A list, or the same comma-separated text as the flag.
    outbound_allow: Option<OutboundAllow>,
    access_token_private_key: Option<SecretString>,
    contact_link_url: Option<String>,
    fcm_service_account: Option<PathBuf>,
    fcm_base_url: Option<String>,
    apns_key: Option<PathBuf>,
    apns_key_id: Option<String>,
    apns_team_id: Option<String>,
    apns_base_url: Option<String>,
}

/// `outbound_allow` in a TOML file: `["127.0.0.1", "10.0.0.0/8"]` or
/// `"127.0.0.1,10.0.0.0/8"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OutboundAllow {
    List(Vec<String>),
    Text(String),
}

impl OutboundAllow {
    fn text(&self) -> String {
        match self {
            OutboundAllow::List(items) => items.join(","),
            OutboundAllow::Text(t) => t.clone(),
        }
    }
}

fn read_file(path: Option<&Path>) -> anyhow::Result<FileSettings> {
    let Some(path) = path else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

/// Which database to use.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

/// Like [`Database::describe`]: the URL's password is never printed.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Database::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&redact_password(url))
                .finish(),
        }
    }
}

impl Database {
    /// How logs and errors name it (without a password).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p) => format!("SQLite {}", p.display()),
            Database::Postgres(url) => format!("PostgreSQL {}", redact_password(url)),
        }
    }
}

/// The URL with its password (if any) replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The resolved storage settings.
#[derive(Debug, Clone)]
pub struct Storage {
    pub database: Database,
    pub sqlite_fsync: bool,
    /// The SQLite WAL's restart threshold and size limit, in MiB.
    pub sqlite_wal_limit_mb: u64,
    /// The SQLite writer's group-commit interval, in milliseconds.
    pub sqlite_commit_interval_ms: u64,
    /// The SQLite checkpointer's interval, in milliseconds.
    pub sqlite_checkpoint_interval_ms: u64,
    /// Apply migrations when opening (PostgreSQL; SQLite always does).
    pub migrate: bool,
    pub pg_pool_size: u32,
    pub pg_resolvers: u32,
}

fn resolve_database(data_dir: &Path, url: Option<&str>) -> anyhow::Result<Database> {
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(Database::Sqlite(data_dir.join("belfry.db"))),
        Some(u) if u.starts_with("sqlite://") => {
            let path = u.trim_start_matches("sqlite://");
            if path.is_empty() {
                bail!("--database {u}: give a file, e.g. sqlite:///var/lib/belfry/belfry.db");
            }
            Ok(Database::Sqlite(PathBuf::from(path)))
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Database::Postgres(u.to_string()))
        }
        Some(u) => bail!(
            "--database {}: unknown database URL; use postgres://user:password@host/db, \
             sqlite:///path/to/file.db or leave it empty",
            redact_password(u)
        ),
    }
}

impl StorageArgs {
    pub fn resolve(&self) -> anyhow::Result<Storage> {
        let file = read_file(self.config.as_deref())?;
        self.resolve_with(&file, None, false)
    }

    fn resolve_with(
        &self,
        file: &FileSettings,
        fsync: Option<bool>,
        no_migrate: bool,
    ) -> anyhow::Result<Storage> {
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./belfry-data"));
        let url = self
            .database_url
            .as_ref()
            .or(file.database_url.as_ref())
            .map(|u| u.expose_secret().to_string());
        let pg_pool_size = self.pg_pool_size.or(file.pg_pool_size).unwrap_or(16);
        if !(2..=1000).contains(&pg_pool_size) {
            bail!("--pg-pool-size {pg_pool_size}: give 2 to 1000");
        }
        let pg_resolvers = self.pg_resolvers.or(file.pg_resolvers).unwrap_or(1);
        if pg_resolvers < 1 || pg_resolvers > pg_pool_size / 2 {
            bail!(
                "--pg-resolvers {pg_resolvers}: give 1 to half of --pg-pool-size ({})",
                pg_pool_size / 2
            );
        }
        let sqlite_wal_limit_mb = self
            .sqlite_wal_limit_mb
            .or(file.sqlite_wal_limit_mb)
            .unwrap_or(16);
        if !(1..=4096).contains(&sqlite_wal_limit_mb) {
            bail!("--sqlite-wal-limit-mb {sqlite_wal_limit_mb}: give 1 to 4096 (MiB)");
        }
        let sqlite_commit_interval_ms = self
            .sqlite_commit_interval_ms
            .or(file.sqlite_commit_interval_ms)
            .unwrap_or(0);
        if sqlite_commit_interval_ms > 100 {
            bail!(
                "--sqlite-commit-interval-ms {sqlite_commit_interval_ms}: give 0 to 100 (milliseconds)"
            );
        }
        let sqlite_checkpoint_interval_ms = self
            .sqlite_checkpoint_interval_ms
            .or(file.sqlite_checkpoint_interval_ms)
            .unwrap_or(500);
        if !(10..=60_000).contains(&sqlite_checkpoint_interval_ms) {
            bail!(
                "--sqlite-checkpoint-interval-ms {sqlite_checkpoint_interval_ms}: give 10 to 60000 (milliseconds)"
            );
        }
        Ok(Storage {
            database: resolve_database(&data_dir, url.as_deref())?,
            sqlite_fsync: fsync.or(file.sqlite_fsync).unwrap_or(true),
            sqlite_wal_limit_mb,
            sqlite_commit_interval_ms,
            sqlite_checkpoint_interval_ms,
            migrate: !no_migrate,
            pg_pool_size,
            pg_resolvers,
        })
    }
}

/// Everything `belfry serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub storage: Storage,
    pub listen: SocketAddr,
    pub log_json: bool,
    /// Where the admin key generated on first start is written.
    pub admin_key_file: Option<PathBuf>,
    pub server: belfry_server::Config,
}

impl ServeArgs {
    /// The retention job's policy from the three `--…-retention-days` flags.
    /// The per-recipient rate limit: 20 per 60 s unless configured.
    fn recipient_limit(
        &self,
        file: &FileSettings,
    ) -> anyhow::Result<Option<belfry_delivery::RecipientLimit>> {
        let max = self
            .recipient_rate_limit
            .or(file.recipient_rate_limit)
            .unwrap_or(20);
        let window = self
            .recipient_rate_window
            .or(file.recipient_rate_window)
            .unwrap_or(60);
        if !(1..=86_400).contains(&window) {
            bail!("--recipient-rate-window {window}: give 1 to 86400 seconds");
        }
        Ok((max > 0).then(|| belfry_delivery::RecipientLimit {
            max,
            window: std::time::Duration::from_secs(window),
        }))
    }

    fn retention_policy(
        &self,
        file: &FileSettings,
    ) -> anyhow::Result<belfry_store::retention::RetentionPolicy> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let defaults = belfry_store::retention::RetentionPolicy::default();
        let days = |flag: &str, value: Option<u32>, default: Option<i64>| {
            let Some(d) = value else {
                return Ok(default);
            };
            if d > 36_500 {
                bail!("--{flag} {d}: give 0 (keep) to 36500 days");
            }
            Ok((d > 0).then_some(i64::from(d) * DAY_MS))
        };
        Ok(belfry_store::retention::RetentionPolicy {
            read_items: days(
                "retention-days",
                self.retention_days.or(file.retention_days),
                defaults.read_items,
            )?,
            delivery_log: days(
                "delivery-log-retention-days",
                self.delivery_log_retention_days
                    .or(file.delivery_log_retention_days),
                defaults.delivery_log,
            )?,
            mailbox: days(
                "mailbox-retention-days",
                self.mailbox_retention_days.or(file.mailbox_retention_days),
                defaults.mailbox,
            )?,
            ..defaults
        })
    }

    pub fn resolve(&self, admin_key: Option<SecretString>) -> anyhow::Result<ServeSettings> {
        let file = read_file(self.storage.config.as_deref())?;
        let no_migrate = self.no_migrate.or(file.no_migrate).unwrap_or(false);
        let storage = self
            .storage
            .resolve_with(&file, self.sqlite_fsync, no_migrate)?;
        let listen_text = self
            .listen
            .clone()
            .or(file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("--listen {listen_text}: give an address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        })?;
        let public_url = self.public_url.clone().or(file.public_url.clone());
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("--public-url {u}: give an http(s) URL, e.g. https://belfry.example.com");
        }
        let defaults = belfry_server::Config::default();
        let body_limit = self
            .body_limit
            .or(file.body_limit)
            .unwrap_or(defaults.body_limit);
        if !(1024..=64 * 1024 * 1024).contains(&body_limit) {
            bail!("--body-limit {body_limit}: give a size between 1024 and 67108864 bytes");
        }
        let token_ttl = self
            .token_ttl
            .or(file.token_ttl)
            .unwrap_or(defaults.token_ttl_secs);
        if !(60..=defaults.token_max_ttl_secs).contains(&token_ttl) {
            bail!(
                "--token-ttl {token_ttl}: give between 60 and {} seconds",
                defaults.token_max_ttl_secs
            );
        }
        let log_format = self
            .log_format
            .clone()
            .or(file.log_format.clone())
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("--log-format {other}: use text or json"),
        };
        let cors_origins: Vec<String> = self
            .cors_origins
            .clone()
            .or(file.cors_origins.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
        let smtp_url = self
            .smtp_url
            .clone()
            .or(file.smtp_url.clone())
            .filter(|u| !u.expose_secret().trim().is_empty());
        if let Some(u) = &smtp_url
            && !(u.expose_secret().starts_with("smtp://")
                || u.expose_secret().starts_with("smtps://"))
        {
            bail!(
                "--smtp-url: give smtp://host:port, smtp://user:pass@host:587?tls=required or smtps://…"
            );
        }
        let mut email = defaults.email.clone();
        if let Some(from) = self.email_from.clone().or(file.email_from.clone()) {
            belfry_delivery::mailer::check_mailbox(&from)
                .map_err(|e| anyhow::anyhow!("--email-from {from}: {e}"))?;
            email.from = from;
        }
        email.app_url = self.app_url.clone().or(file.app_url.clone());
        if let Some(u) = &email.app_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("--app-url {u}: give an http(s) URL, e.g. https://desk.example.com");
        }
        if let Some(path) = self
            .notifications_path
            .clone()
            .or(file.notifications_path.clone())
        {
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!(
                    "--notifications-path {path:?}: give a path of the host application starting with /, e.g. /notifications"
                );
            }
            email.notifications_path = path;
        }
        let public = public_url.unwrap_or_else(|| format!("http://{listen}"));
        email.message_id_host = public
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|h| !h.is_empty())
            .unwrap_or("belfry.localhost")
            .to_string();
        let mut delivery = defaults.delivery.clone();
        let workers = self.workers.or(file.workers).unwrap_or(delivery.workers);
        if workers > 1024 {
            bail!("--workers {workers}: at most 1024");
        }
        delivery.workers = workers.max(1);
        delivery.max_attempts = self
            .max_attempts
            .or(file.max_attempts)
            .unwrap_or(delivery.max_attempts);
        if !(1..=100).contains(&delivery.max_attempts) {
            bail!("--max-attempts {}: give 1 to 100", delivery.max_attempts);
        }
        if let Some(s) = self.retry_base_secs.or(file.retry_base_secs) {
            if !(1..=86_400).contains(&s) {
                bail!("--retry-base-secs {s}: give 1 to 86400");
            }
            delivery.retry_base = std::time::Duration::from_secs(s);
        }
        if let Some(s) = self.job_lease_secs.or(file.job_lease_secs) {
            if !(1..=86_400).contains(&s) {
                bail!("--job-lease-secs {s}: give 1 to 86400");
            }
            delivery.lease = std::time::Duration::from_secs(s);
        }
        delivery.owner = format!("{}-{}", email.message_id_host, std::process::id());
        delivery.retention = Some(self.retention_policy(&file)?);
        delivery.recipient_limit = self.recipient_limit(&file)?;
        let max_recipients = self
            .max_recipients
            .or(file.max_recipients)
            .unwrap_or(defaults.max_recipients);
        if !(1..=10_000_000).contains(&max_recipients) {
            bail!("--max-recipients {max_recipients}: give 1 to 10000000");
        }
        let mut streams = defaults.streams.clone();
        streams.max_streams_per_user = self
            .max_streams_per_user
            .or(file.max_streams_per_user)
            .unwrap_or(streams.max_streams_per_user);
        if !(1..=10_000).contains(&streams.max_streams_per_user) {
            bail!(
                "--max-streams-per-user {}: give 1 to 10000",
                streams.max_streams_per_user
            );
        }
        let nats_url = self
            .nats_url
            .clone()
            .or(file.nats_url.clone())
            .filter(|u| !u.trim().is_empty());
        if let Some(u) = &nats_url
            && !(u.starts_with("nats://") || u.starts_with("tls://"))
        {
            bail!("--nats {u}: give a NATS URL, e.g. nats://127.0.0.1:4222");
        }
        let nats_subject = self
            .nats_subject
            .clone()
            .or(file.nats_subject.clone())
            .unwrap_or_else(|| "belfry.events".into());
        if nats_subject.is_empty()
            || nats_subject.contains([' ', '*', '>'])
            || nats_subject.starts_with('.')
            || nats_subject.ends_with('.')
        {
            bail!("--nats-subject {nats_subject}: give a plain subject such as belfry.events");
        }
        let vapid_private_key = self
            .vapid_private_key
            .clone()
            .or(file.vapid_private_key.clone())
            .filter(|k| !k.expose_secret().trim().is_empty());
        if let Some(k) = &vapid_private_key {
            belfry_delivery::VapidKey::from_base64url(k)
                .map_err(|e| anyhow::anyhow!("--vapid-private-key {e}"))?;
        }
        let mut web_push = defaults.web_push.clone();
        web_push.subject = match self.vapid_subject.clone().or(file.vapid_subject.clone()) {
            Some(subject) => {
                belfry_delivery::webpush::check_subject(&subject)
                    .map_err(|e| anyhow::anyhow!("--vapid-subject {subject}: {e}"))?;
                subject
            }
            None => format!("mailto:belfry@{}", email.message_id_host),
        };
        let outbound_text = self
            .outbound_allow
            .clone()
            .or(file.outbound_allow.as_ref().map(OutboundAllow::text))
            .unwrap_or_default();
        let outbound = belfry_delivery::OutboundPolicy::parse(&outbound_text)
            .map_err(|e| anyhow::anyhow!("--outbound-allow: {e}"))?;
        let access_token_private_key = self
            .access_token_private_key
            .clone()
            .or(file.access_token_private_key.clone())
            .filter(|k| !k.expose_secret().trim().is_empty());
        if let Some(k) = &access_token_private_key {
            belfry_delivery::AccessKey::from_base64url(k)
                .map_err(|e| anyhow::anyhow!("--access-token-private-key {e}"))?;
        }
        let contact_link_url = self
            .contact_link_url
            .clone()
            .or(file.contact_link_url.clone())
            .filter(|u| !u.trim().is_empty());
        if let Some(u) = &contact_link_url {
            belfry_delivery::access::check_link_pattern(u)
                .map_err(|e| anyhow::anyhow!("--contact-link-url {u}: {e}"))?;
        }
        let mobile = self.mobile(&file, &defaults.mobile)?;
        let admin_key_file = self
            .admin_key_file
            .clone()
            .or(file.admin_key_file.clone())
            .filter(|p| !p.as_os_str().is_empty());
        Ok(ServeSettings {
            storage,
            listen,
            log_json,
            admin_key_file,
            server: belfry_server::Config {
                public_url: Some(public),
                body_limit,
                cors_origins,
                admin_key: admin_key.filter(|k| !k.expose_secret().is_empty()),
                token_ttl_secs: token_ttl,
                max_recipients,
                streams,
                smtp_url,
                email,
                delivery,
                run_workers: workers > 0,
                demo: self.demo.or(file.demo).unwrap_or(false),
                auto_categories: self
                    .auto_categories
                    .or(file.auto_categories)
                    .unwrap_or(false),
                starter_rules: !self.no_starter_rules
                    && self.starter_rules.or(file.starter_rules).unwrap_or(true),
                rate_limit: self.rate_limit.or(file.rate_limit).unwrap_or(0),
                nats_url,
                nats_subject,
                web_push,
                vapid_private_key,
                outbound,
                access_token_private_key,
                contact_link_url,
                mobile,
                ..defaults
            },
        })
    }
}

/// A base URL setting: http(s) with a host, no path beyond `/`.
fn base_url(flag: &str, value: Option<String>, default: &str) -> anyhow::Result<reqwest::Url> {
    let text = value
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("{flag} {text}: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("{flag} {text}: give an http(s) URL such as {default}");
    }
    if url.path() != "/" || url.query().is_some() {
        bail!("{flag} {text}: give the base URL only (scheme, host and port), such as {default}");
    }
    Ok(url)
}

/// Reads a key file named by `flag`.
fn read_secret_file(flag: &str, path: &Path) -> anyhow::Result<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot be read: {e}", path.display()))
}

impl ServeArgs {
    /// Mobile push (C6): FCM from a service-account file, APNs from a .p8
    /// key with its key id and team id; each checked at start.
    fn mobile(
        &self,
        file: &FileSettings,
        defaults: &belfry_delivery::MobileSettings,
    ) -> anyhow::Result<belfry_delivery::MobileSettings> {
        let mut mobile = defaults.clone();
        let pick = |flag: &Option<String>, from_file: &Option<String>| {
            flag.clone()
                .or(from_file.clone())
                .filter(|v| !v.trim().is_empty())
        };
        let account = self
            .fcm_service_account
            .clone()
            .or(file.fcm_service_account.clone())
            .filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = account {
            let text = read_secret_file("--fcm-service-account", &path)?;
            let credentials = belfry_delivery::FcmCredentials::from_json(&text)
                .map_err(|e| anyhow::anyhow!("--fcm-service-account {}: {e}", path.display()))?;
            mobile.fcm = Some(belfry_delivery::FcmSettings {
                credentials: std::sync::Arc::new(credentials),
                base_url: base_url(
                    "--fcm-base-url",
                    pick(&self.fcm_base_url, &file.fcm_base_url),
                    belfry_delivery::mobile::FCM_BASE_URL,
                )?,
            });
        }
        let key = self
            .apns_key
            .clone()
            .or(file.apns_key.clone())
            .filter(|p| !p.as_os_str().is_empty());
        let key_id = pick(&self.apns_key_id, &file.apns_key_id);
        let team_id = pick(&self.apns_team_id, &file.apns_team_id);
        match (key, key_id, team_id) {
            (None, None, None) => {}
            (Some(path), Some(key_id), Some(team_id)) => {
                let pem = read_secret_file("--apns-key", &path)?;
                let credentials =
                    belfry_delivery::ApnsCredentials::from_p8(&pem, &key_id, &team_id)
                        .map_err(|e| anyhow::anyhow!("--apns-key {}: {e}", path.display()))?;
                mobile.apns = Some(belfry_delivery::ApnsSettings {
                    credentials: std::sync::Arc::new(credentials),
                    base_url: base_url(
                        "--apns-base-url",
                        pick(&self.apns_base_url, &file.apns_base_url),
                        belfry_delivery::mobile::APNS_BASE_URL,
                    )?,
                });
            }
            _ => bail!(
                "--apns-key, --apns-key-id and --apns-team-id go together: give all three \
                 (BELFRY_APNS_KEY, BELFRY_APNS_KEY_ID, BELFRY_APNS_TEAM_ID) or none"
            ),
        }
        Ok(mobile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, config: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            storage: StorageArgs {
                config,
                data_dir: None,
                database_url: None,
                pg_pool_size: None,
                pg_resolvers: None,
                sqlite_wal_limit_mb: None,
                sqlite_commit_interval_ms: None,
                sqlite_checkpoint_interval_ms: None,
            },
            listen: listen.map(String::from),
            public_url: None,
            body_limit: None,
            cors_origins: None,
            token_ttl: None,
            max_recipients: None,
            max_streams_per_user: None,
            log_format: None,
            sqlite_fsync: None,
            no_migrate: None,
            smtp_url: None,
            email_from: None,
            app_url: None,
            notifications_path: None,
            workers: None,
            max_attempts: None,
            retry_base_secs: None,
            job_lease_secs: None,
            demo: None,
            auto_categories: None,
            starter_rules: None,
            no_starter_rules: false,
            rate_limit: None,
            recipient_rate_limit: None,
            recipient_rate_window: None,
            retention_days: None,
            delivery_log_retention_days: None,
            mailbox_retention_days: None,
            nats_url: None,
            nats_subject: None,
            admin_key_file: None,
            vapid_private_key: None,
            vapid_subject: None,
            outbound_allow: None,
            access_token_private_key: None,
            contact_link_url: None,
            fcm_service_account: None,
            fcm_base_url: None,
            apns_key: None,
            apns_key_id: None,
            apns_team_id: None,
            apns_base_url: None,
        }
    }

    #[test]
    fn defaults_apply() {
        let s = args(None, None).resolve(None).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            s.storage.database,
            Database::Sqlite(PathBuf::from("./belfry-data/belfry.db"))
        );
        assert_eq!(
            s.server.public_url.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(s.server.body_limit, 256 * 1024);
    }

    #[test]
    fn sqlite_commit_interval_from_flag_or_file_and_bounded() {
        assert_eq!(
            args(None, None)
                .resolve(None)
                .unwrap()
                .storage
                .sqlite_commit_interval_ms,
            0
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "sqlite_commit_interval_ms = 5\n").unwrap();
        let s = args(None, Some(path.clone())).resolve(None).unwrap();
        assert_eq!(s.storage.sqlite_commit_interval_ms, 5);
        let mut a = args(None, Some(path));
        a.storage.sqlite_commit_interval_ms = Some(101);
        let err = a.resolve(None).unwrap_err().to_string();
        assert!(err.contains("--sqlite-commit-interval-ms 101"), "{err}");
        let mut a = args(None, None);
        a.storage.sqlite_checkpoint_interval_ms = Some(5);
        let err = a.resolve(None).unwrap_err().to_string();
        assert!(err.contains("--sqlite-checkpoint-interval-ms 5"), "{err}");
        a.storage.sqlite_checkpoint_interval_ms = Some(100);
        assert_eq!(
            a.resolve(None)
                .unwrap()
                .storage
                .sqlite_checkpoint_interval_ms,
            100
        );
    }

    #[test]
    fn file_is_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nbody_limit = 4096\ndata_dir = \"/tmp/x\"\n",
        )
        .unwrap();
        let s = args(None, Some(path.clone())).resolve(None).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.server.body_limit, 4096);
        assert_eq!(
            s.storage.database,
            Database::Sqlite(PathBuf::from("/tmp/x/belfry.db"))
        );
        let s = args(Some("127.0.0.1:9100"), Some(path))
            .resolve(None)
            .unwrap();
        assert_eq!(s.listen.port(), 9100, "the flag wins over the file");
    }

    #[test]
    fn demo_is_off_unless_asked_for() {
        assert!(!args(None, None).resolve(None).unwrap().server.demo);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "demo = true\n").unwrap();
        assert!(
            args(None, Some(path.clone()))
                .resolve(None)
                .unwrap()
                .server
                .demo
        );
        let mut a = args(None, Some(path));
        a.demo = Some(false);
        assert!(!a.resolve(None).unwrap().server.demo, "the flag wins");
    }

    #[test]
    fn starter_rules_are_on_unless_switched_off() {
        assert!(args(None, None).resolve(None).unwrap().server.starter_rules);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "starter_rules = false\n").unwrap();
        let mut a = args(None, Some(path));
        assert!(!a.resolve(None).unwrap().server.starter_rules);
        a.starter_rules = Some(true);
        assert!(
            a.resolve(None).unwrap().server.starter_rules,
            "the flag wins"
        );
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        for (flags, on) in [
            (&["belfry", "--no-starter-rules"][..], false),
            (&["belfry", "--starter-rules=false"][..], false),
            (&["belfry", "--starter-rules"][..], true),
        ] {
            let c = Cli::try_parse_from(flags).unwrap();
            assert_eq!(
                c.serve.resolve(None).unwrap().server.starter_rules,
                on,
                "{flags:?}"
            );
        }
        assert!(Cli::try_parse_from(["belfry", "--no-starter-rules", "--starter-rules"]).is_err());
    }

    #[test]
    fn auto_categories_and_rate_limit_flags() {
        assert!(
            !args(None, None)
                .resolve(None)
                .unwrap()
                .server
                .auto_categories
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "auto_categories = true\n").unwrap();
        let mut a = args(None, Some(path));
        assert!(a.resolve(None).unwrap().server.auto_categories);
        a.auto_categories = Some(false);
        assert!(
            !a.resolve(None).unwrap().server.auto_categories,
            "the flag wins"
        );
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let c = Cli::try_parse_from(["belfry", "--auto-categories"]).unwrap();
        assert_eq!(c.serve.auto_categories, Some(true));
        assert_eq!(args(None, None).resolve(None).unwrap().server.rate_limit, 0);
        let c = Cli::try_parse_from(["belfry", "--rate-limit", "50"]).unwrap();
        assert_eq!(c.serve.resolve(None).unwrap().server.rate_limit, 50);
    }

    #[test]
    fn the_recipient_rate_limit_defaults_to_20_a_minute() {
        use belfry_delivery::RecipientLimit;
        use std::time::Duration;
        let limit = |a: &ServeArgs| a.resolve(None).unwrap().server.delivery.recipient_limit;
        assert_eq!(
            limit(&args(None, None)),
            Some(RecipientLimit {
                max: 20,
                window: Duration::from_secs(60)
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "recipient_rate_limit = 5\nrecipient_rate_window = 300\n",
        )
        .unwrap();
        let mut a = args(None, Some(path));
        assert_eq!(
            limit(&a),
            Some(RecipientLimit {
                max: 5,
                window: Duration::from_secs(300)
            })
        );
        a.recipient_rate_limit = Some(0);
        assert_eq!(limit(&a), None, "0 switches it off");
        a.recipient_rate_limit = Some(3);
        a.recipient_rate_window = Some(0);
        let e = a.resolve(None).unwrap_err().to_string();
        assert!(e.contains("--recipient-rate-window"), "{e}");
    }

    #[test]
    fn retention_flags_the_file_and_their_limits() {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let policy = |a: &ServeArgs| a.resolve(None).unwrap().server.delivery.retention.unwrap();
        let p = policy(&args(None, None));
        assert_eq!(p.read_items, Some(90 * DAY_MS));
        assert_eq!(p.delivery_log, Some(30 * DAY_MS));
        assert_eq!(p.mailbox, Some(7 * DAY_MS));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "retention_days = 30\ndelivery_log_retention_days = 0\nmailbox_retention_days = 1\n",
        )
        .unwrap();
        let mut a = args(None, Some(path));
        let p = policy(&a);
        assert_eq!(p.read_items, Some(30 * DAY_MS));
        assert_eq!(p.delivery_log, None, "0 keeps the log");
        assert_eq!(p.mailbox, Some(DAY_MS));
        a.retention_days = Some(0);
        assert_eq!(policy(&a).read_items, None, "the flag wins; 0 keeps");
        a.retention_days = Some(40_000);
        let e = a.resolve(None).unwrap_err().to_string();
        assert!(e.contains("--retention-days 40000"), "{e}");
    }

    #[test]
    fn demo_flag_parses_alone_and_with_a_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let c = Cli::try_parse_from(["belfry", "--demo"]).unwrap();
        assert_eq!(c.serve.demo, Some(true));
        let c = Cli::try_parse_from(["belfry", "--demo=false"]).unwrap();
        assert_eq!(c.serve.demo, Some(false));
        let c = Cli::try_parse_from(["belfry", "--demo", "--listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(c.serve.demo, Some(true));
        assert_eq!(c.serve.listen.as_deref(), Some("127.0.0.1:1"));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = args(Some("localhost"), None).resolve(None).unwrap_err();
        assert!(e.to_string().contains("--listen localhost"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let e = args(None, Some(path)).resolve(None).unwrap_err();
        assert!(format!("{e:#}").contains("lisen"), "{e:#}");
        let mut a = args(None, None);
        a.storage.database_url = Some("mysql://u:secret@x/db".into());
        let e = a.resolve(None).unwrap_err().to_string();
        assert!(e.contains("unknown database URL"), "{e}");
        assert!(!e.contains("secret"), "the password is not shown: {e}");
    }

    #[test]
    fn web_push_settings_from_flags_and_file() {
        let s = args(None, None).resolve(None).unwrap();
        assert!(s.server.vapid_private_key.is_none(), "generated");
        assert_eq!(s.server.web_push.subject, "mailto:belfry@127.0.0.1");
        assert!(s.server.outbound.is_strict());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "vapid_subject = \"mailto:ops@example.com\"\noutbound_allow = [\"10.0.0.0/8\", \"push.intranet\"]\n\
             vapid_private_key = \"RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw\"\n",
        )
        .unwrap();
        let s = args(None, Some(path.clone())).resolve(None).unwrap();
        assert_eq!(s.server.web_push.subject, "mailto:ops@example.com");
        assert!(
            s.server
                .outbound
                .ip_allowed(None, "10.1.2.3".parse().unwrap())
        );
        assert!(
            s.server
                .outbound
                .ip_allowed(Some("push.intranet"), "192.168.1.1".parse().unwrap())
        );
        assert!(
            !format!("{:?}", s.server).contains("RS0W"),
            "the key is a secret"
        );
        let mut a = args(None, Some(path.clone()));
        a.outbound_allow = Some("127.0.0.1".into());
        let s = a.resolve(None).unwrap();
        assert!(
            !s.server
                .outbound
                .ip_allowed(None, "10.1.2.3".parse().unwrap()),
            "the flag wins over the file"
        );
        let refused = |a: ServeArgs, named: &str| {
            let e = a.resolve(None).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
            assert!(!e.contains("short"), "the key is not shown: {e}");
        };
        let mut a = args(None, None);
        a.vapid_private_key = Some("short".into());
        refused(a, "--vapid-private-key");
        let mut a = args(None, None);
        a.vapid_subject = Some("ops@example.com".into());
        refused(a, "--vapid-subject");
        let mut a = args(None, None);
        a.outbound_allow = Some("10.0.0.0/99".into());
        refused(a, "--outbound-allow");
        let mut a = args(None, None);
        a.access_token_private_key = Some("short".into());
        refused(a, "--access-token-private-key");
        let mut a = args(None, None);
        a.contact_link_url = Some("https://desk.example.com/portal/tickets/1".into());
        refused(a, "--contact-link-url");
    }

    #[test]
    fn access_token_key_and_contact_link_url() {
        let mut a = args(None, None);
        a.access_token_private_key = Some("RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw".into());
        a.contact_link_url =
            Some("https://desk.example.com/portal/tickets/{entity_id}?access_token={token}".into());
        let s = a.resolve(None).unwrap();
        assert!(s.server.access_token_private_key.is_some());
        assert_eq!(
            s.server.contact_link_url.as_deref(),
            Some("https://desk.example.com/portal/tickets/{entity_id}?access_token={token}")
        );
        assert!(
            !format!("{:?}", s.server).contains("RS0W"),
            "the key is a secret"
        );
        let s = args(None, None).resolve(None).unwrap();
        assert!(s.server.access_token_private_key.is_none(), "generated");
        assert!(s.server.contact_link_url.is_none());
    }

    #[test]
    fn mobile_push_is_off_unless_configured_and_checked_at_start() {
        let s = args(None, None).resolve(None).unwrap();
        assert!(s.server.mobile.fcm.is_none() && s.server.mobile.apns.is_none());
        let dir = tempfile::tempdir().unwrap();
        let refused = |a: ServeArgs, named: &str| {
            let e = a.resolve(None).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
            assert!(!e.contains("MIGH"), "no key material shown: {e}");
        };
        let mut a = args(None, None);
        a.fcm_service_account = Some(dir.path().join("missing.json"));
        refused(a, "--fcm-service-account");
        let account = dir.path().join("account.json");
        std::fs::write(
            &account,
            r#"{"type": "service_account", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
                "private_key": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"}"#,
        )
        .unwrap();
        let mut a = args(None, None);
        a.fcm_service_account = Some(account);
        refused(a, "--fcm-service-account");
        let key = dir.path().join("AuthKey.p8");
        std::fs::write(&key, "not a key").unwrap();
        let mut a = args(None, None);
        a.apns_key = Some(key.clone());
        refused(a, "--apns-key-id and --apns-team-id go together");
        let mut a = args(None, None);
        a.apns_key = Some(key);
        a.apns_key_id = Some("ABCDE12345".into());
        a.apns_team_id = Some("TEAM123456".into());
        refused(a, "--apns-key");
        assert!(base_url("--apns-base-url", Some("http://127.0.0.1:9".into()), "x").is_ok());
        for bad in ["ftp://x.example", "https://x.example/3/device", "nope"] {
            let e = base_url(
                "--apns-base-url",
                Some(bad.into()),
                "https://api.push.apple.com",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("--apns-base-url"), "{e}");
        }
    }

    #[test]
    fn limits_have_defaults_and_can_be_set() {
        let s = args(None, None).resolve(None).unwrap();
        assert_eq!(s.server.max_recipients, 10_000);
        assert_eq!(s.server.streams.max_streams_per_user, 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "max_recipients = 50\nmax_streams_per_user = 3\n").unwrap();
        let s = args(None, Some(path.clone())).resolve(None).unwrap();
        assert_eq!(s.server.max_recipients, 50);
        assert_eq!(s.server.streams.max_streams_per_user, 3);
        let mut a = args(None, Some(path));
        a.max_streams_per_user = Some(0);
        let e = a.resolve(None).unwrap_err().to_string();
        assert!(e.contains("--max-streams-per-user 0"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "smtp_url = \"smtp://mailer:smtp-pa55word@mail.example.com:587?tls=required\"\n",
        )
        .unwrap();
        let mut a = args(None, Some(path));
        a.storage.database_url = Some("postgres://belfry:db-pa55word@db/belfry".into());
        let admin = "bfy_sk_0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
        let s = a.resolve(Some(admin.into())).unwrap();
        assert_eq!(
            s.server.smtp_url.as_ref().map(|u| u.expose_secret()),
            Some("smtp://mailer:smtp-pa55word@mail.example.com:587?tls=required")
        );
        assert_eq!(
            s.server.admin_key.as_ref().map(|k| k.expose_secret()),
            Some(admin)
        );
        for debug in [format!("{a:?}"), format!("{s:?}"), format!("{s:#?}")] {
            assert!(!debug.contains("pa55word"), "{debug}");
            assert!(!debug.contains("0123456789abcdef"), "{debug}");
        }
        let file = read_file(a.storage.config.as_deref()).unwrap();
        assert!(!format!("{file:?}").contains("pa55word"));
    }

    #[test]
    fn postgres_urls_select_postgres() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db?sslmode=require",
        ] {
            let mut a = args(None, None);
            a.storage.database_url = Some(url.into());
            let s = a.resolve(None).unwrap();
            assert_eq!(s.storage.database, Database::Postgres(url.into()));
            assert!(s.storage.migrate, "serve migrates by default");
        }
        assert_eq!(
            redact_password("postgres://belfry:s3cret@db:5432/belfry?sslmode=require"),
            "postgres://belfry:***@db:5432/belfry?sslmode=require"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn no_migrate_comes_from_flag_env_or_file() {
        assert!(args(None, None).resolve(None).unwrap().storage.migrate);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "no_migrate = true\n").unwrap();
        assert!(
            !args(None, Some(path.clone()))
                .resolve(None)
                .unwrap()
                .storage
                .migrate
        );
        let mut a = args(None, Some(path));
        a.no_migrate = Some(false);
        assert!(a.resolve(None).unwrap().storage.migrate, "the flag wins");
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let c = Cli::try_parse_from(["belfry", "--no-migrate"]).unwrap();
        assert_eq!(c.serve.no_migrate, Some(true));
    }
}
