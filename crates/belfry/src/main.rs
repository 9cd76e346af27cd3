//! The `belfry` command: runs the server and administers it from the shell.
#![forbid(unsafe_code)]

mod check;
mod ops;
mod rules;
mod send;
mod settings;

use anyhow::{Context as _, bail};
use belfry_core::{Clock, SystemClock, UserId};
use belfry_server::{Application, auth};
use belfry_store::{PgOptions, PgStore, Scope, SharedStore, SqliteOptions, SqliteStore};
use clap::{Parser, Subcommand};
use settings::{Database, ServeArgs, Storage, StorageArgs};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

// A measured 15-20 % of the server's CPU went to glibc's malloc and free on
// the send path; mimalloc does the same work for much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The version and the git commit the binary was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BELFRY_GIT_COMMIT"),
    ")"
);

/// Belfry: a self-hosted notification center in one binary.
#[derive(Debug, Parser)]
#[command(name = "belfry", version = VERSION, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// Every setting can also come from a BELFRY_* environment variable or
    /// the TOML file given with --config (flags win over the environment,
    /// the environment over the file). BELFRY_ADMIN_KEY (environment only)
    /// sets the admin key instead of generating one on first start.
    Serve(Box<ServeArgs>),
    /// Check a configuration without starting: read the settings as serve
    /// does, try the database, the listen address, SMTP and NATS they name,
    /// and print what works and what does not, with the fix. Exits with
    /// status 1 when something does not work. Changes nothing.
    CheckConfig(Box<ServeArgs>),
    /// Send a notification through a running server.
    Send(send::SendArgs),
    /// Manage secret keys (works on the database directly).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Export rules and templates as files for version control, and import
    /// them back (works on the database directly).
    Rules {
        #[command(subcommand)]
        action: rules::RulesAction,
    },
    /// Manage the console's administrators (works on the database directly).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Issue user tokens (works on the database directly).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Apply database migrations and exit (serve also applies them on start,
    /// unless --no-migrate).
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Copy the SQLite database to a file while Belfry runs: a consistent
    /// snapshot of the moment the backup starts, checked before it is
    /// kept. (PostgreSQL: use pg_dump.)
    Backup(ops::BackupArgs),
    /// Replace the SQLite database by a backup. Belfry must be stopped: the
    /// restore refuses while anything has the database open.
    Restore(ops::RestoreArgs),
    /// Tools for development and benchmarks.
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        action: DevAction,
    },
}

#[derive(Debug, Subcommand)]
enum DevAction {
    /// Write a new SQLite database full of realistic test data (for benchmarks).
    Seed {
        /// The database file to create (must not exist).
        #[arg(long)]
        db: std::path::PathBuf,
        #[arg(long, default_value_t = 1000)]
        users: u64,
        #[arg(long, default_value_t = 20)]
        groups: u64,
        /// Direct notifications.
        #[arg(long, default_value_t = 5000)]
        direct: u64,
        #[arg(long, default_value_t = 200)]
        broadcasts: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key and print its secret (shown only this once).
    Create {
        /// A name that says who uses the key, e.g. "helpdesk".
        #[arg(long)]
        name: String,
        /// send (send and read what it sent) or admin (everything).
        #[arg(long, default_value = "send")]
        scope: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Revoke a key by its id (key_…).
    Revoke {
        id: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print a fresh random secret without storing it (e.g. for BELFRY_ADMIN_KEY).
    Generate,
}

#[derive(Debug, Subcommand)]
enum AdminAction {
    /// Create an administrator of the console at /admin; prints its id.
    Create {
        /// The address the admin signs in with.
        #[arg(long)]
        email: String,
        /// The admin's name, as the console shows it.
        #[arg(long)]
        name: String,
        /// Read the password (at least 12 characters) from the first line
        /// of standard input, e.g. `printf '%s\n' "$PW" | belfry admin create …`.
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Issue a user token for a browser.
    Issue {
        /// The user's id.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::CheckConfig(args) => {
            if check::run(*args).await {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Send(args) => send::run(args).await,
        Command::Keys { action } => keys(action).await,
        Command::Token { action } => token(action).await,
        Command::Rules { action } => {
            init_logging(false);
            rules::run(action).await
        }
        Command::Admin { action } => admin(action).await,
        Command::Backup(args) => {
            init_logging(false);
            ops::backup(args).await
        }
        Command::Restore(args) => {
            init_logging(false);
            ops::restore(args).await
        }
        Command::Dev {
            action:
                DevAction::Seed {
                    db,
                    users,
                    groups,
                    direct,
                    broadcasts,
                    seed,
                },
        } => {
            init_logging(false);
            let started = std::time::Instant::now();
            let spec = belfry_store::sqlite::fixture::FixtureSpec {
                users,
                groups,
                direct,
                broadcasts,
                seed,
            };
            let s = tokio::task::spawn_blocking(move || {
                belfry_store::sqlite::fixture::generate(&db, &spec)
            })
            .await??;
            println!(
                "{}",
                serde_json::json!({
                    "users": s.users, "direct": s.direct, "broadcasts": s.broadcasts,
                    "last_seq": s.last_seq, "busiest_user": s.busiest_user,
                    "busiest_count": s.busiest_count,
                    "seconds": started.elapsed().as_secs_f64(),
                })
            );
            Ok(())
        }
        Command::Migrate { storage } => {
            init_logging(false);
            let storage = storage.resolve()?;
            match &storage.database {
                Database::Sqlite(_) => drop(open_store(&storage).await?),
                Database::Postgres(url) => {
                    let applied = belfry_store::postgres::migrate(&pg_options(&storage, url))
                        .await
                        .with_context(|| format!("migrating {}", storage.database.describe()))?;
                    eprintln!("{applied} PostgreSQL migration(s) applied");
                }
            }
            println!("migrations applied");
            Ok(())
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BELFRY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn pg_options(storage: &Storage, url: &str) -> PgOptions {
    let mut options = PgOptions::new(url);
    options.migrate = storage.migrate;
    options.pool_size = storage.pg_pool_size;
    options.resolvers = storage.pg_resolvers as usize;
    options
}

async fn open_store(storage: &Storage) -> anyhow::Result<SharedStore> {
    match &storage.database {
        Database::Sqlite(path) => {
            let mut options = SqliteOptions::new(path);
            options.fsync_every_commit = storage.sqlite_fsync;
            options.wal.restart_bytes = storage.sqlite_wal_limit_mb * 1024 * 1024;
            options.commit_interval =
                std::time::Duration::from_millis(storage.sqlite_commit_interval_ms);
            options.wal.checkpoint_interval =
                std::time::Duration::from_millis(storage.sqlite_checkpoint_interval_ms);
            options.wal.journal_size_limit = options.wal.restart_bytes;
            let store = SqliteStore::open(options)
                .with_context(|| format!("opening the SQLite database {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Database::Postgres(url) => {
            let store = PgStore::open(pg_options(storage, url))
                .await
                .with_context(|| format!("opening {}", storage.database.describe()))?;
            Ok(Arc::new(store))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let admin_key = std::env::var("BELFRY_ADMIN_KEY")
        .ok()
        .map(secrecy::SecretString::from);
    let settings = args.resolve(admin_key)?;
    init_logging(settings.log_json);
    metrics_describe();
    let store = open_store(&settings.storage).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Application::build(settings.server.clone(), store, clock, listener).await?;
    if let Some(key) = &app.generated_admin_key {
        announce_admin_key(key, settings.admin_key_file.as_deref());
    }
    let db = settings.storage.database.describe();
    tracing::info!("Belfry {VERSION}");
    tracing::info!(
        "Belfry listening on http://{} (database: {db})",
        app.local_addr()
    );
    if settings.server.demo {
        tracing::warn!(
            "demo mode: open http://{}/ to try Belfry. Anyone who reaches this server can \
             read the demo user's inbox and send sample notifications: never use demo mode in production",
            app.local_addr()
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await?;
    tracing::info!("Belfry stopped");
    Ok(())
}

/// Hands the admin key generated on first start to the operator: written to
/// `file` (created with mode 0600, never overwritten) when one is set, so
/// that it stays out of logs; printed once otherwise, or when the file
/// cannot be written.
fn announce_admin_key(key: &str, file: Option<&std::path::Path>) {
    if let Some(path) = file {
        match write_secret_file(path, key) {
            Ok(()) => {
                tracing::info!(
                    "the admin key of this Belfry was written to {} (readable by its owner only)",
                    path.display()
                );
                return;
            }
            Err(e) => tracing::error!(
                "cannot write the admin key to {}: {e:#}; printing it instead",
                path.display()
            ),
        }
    }
    println!(
        "\nThis is the admin key of this Belfry. It is shown only once; keep it safe:\n\n    {key}\n\n\
         Use it as 'Authorization: Bearer <key>'. Create narrower keys with `belfry keys create`.\n"
    );
}

fn write_secret_file(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    Ok(())
}

fn metrics_describe() {
    let _ = belfry_server::metrics::handle();
    metrics::describe_counter!(
        "belfry_notifications_accepted_total",
        "Notifications accepted and stored"
    );
    metrics::describe_counter!(
        "belfry_http_requests_total",
        "HTTP requests by route and status"
    );
    metrics::describe_histogram!(
        "belfry_http_request_duration_seconds",
        "HTTP request latency by route"
    );
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing requests in flight");
    shutdown.cancel();
}

async fn keys(action: KeysAction) -> anyhow::Result<()> {
    init_logging(false);
    match action {
        KeysAction::Generate => {
            let (secret, _) = auth::generate_key("", vec![]);
            println!("{secret}");
            Ok(())
        }
        KeysAction::Create {
            name,
            scope,
            storage,
        } => {
            let scope = Scope::parse(&scope).map_err(anyhow::Error::msg)?;
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let store = open_store(&storage.resolve()?).await?;
            let (secret, record) = auth::generate_key(name.trim(), vec![scope]);
            let info = store.create_api_key(record, SystemClock.now()).await?;
            println!("{secret}");
            eprintln!(
                "created {} '{}' with scope {} (the secret above is shown only once)",
                info.id,
                info.name,
                scope.as_str()
            );
            Ok(())
        }
        KeysAction::List { storage } => {
            let store = open_store(&storage.resolve()?).await?;
            let keys = store.list_api_keys().await?;
            println!(
                "{:<22} {:<24} {:<8} {:<16} {:<25} revoked",
                "id", "name", "scopes", "prefix", "created"
            );
            for k in keys {
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:<22} {:<24} {:<8} {:<16} {:<25} {}",
                    k.id,
                    k.name,
                    scopes.join(","),
                    k.prefix,
                    k.created_at,
                    k.revoked_at
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        KeysAction::Revoke { id, storage } => {
            let store = open_store(&storage.resolve()?).await?;
            match store.revoke_api_key(&id, SystemClock.now()).await {
                Ok(k) => {
                    println!("revoked {} '{}'", k.id, k.name);
                    Ok(())
                }
                Err(belfry_store::StoreError::NotFound) => {
                    bail!("there is no key {id}; `belfry keys list` shows the ids")
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn admin(action: AdminAction) -> anyhow::Result<()> {
    init_logging(false);
    match action {
        AdminAction::Create {
            email,
            name,
            password_stdin: _,
            storage,
        } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            let fields =
                belfry_server::admin::validate_new_admin(Some(&email), Some(&name), Some(password))
                    .map_err(|e| {
                        let list: Vec<String> =
                            e.0.iter()
                                .map(|f| {
                                    let flag = if f.field == "password" {
                                        "the password (standard input)".to_string()
                                    } else {
                                        format!("--{}", f.field)
                                    };
                                    format!("{flag} {}", f.message)
                                })
                                .collect();
                        anyhow::anyhow!("{}", list.join("; "))
                    })?;
            let record = fields.into_record().map_err(anyhow::Error::msg)?;
            let store = open_store(&storage.resolve()?).await?;
            match store.create_admin(record, SystemClock.now()).await {
                Ok(a) => {
                    println!("{}", a.id);
                    eprintln!("created admin {} <{}>: sign in at /admin", a.name, a.email);
                    Ok(())
                }
                Err(belfry_store::StoreError::Conflict { constraint }) => {
                    bail!("{}", constraint.message())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn token(action: TokenAction) -> anyhow::Result<()> {
    init_logging(false);
    match action {
        TokenAction::Issue { user, ttl, storage } => {
            let user = UserId::parse(&user).map_err(anyhow::Error::msg)?;
            if !(1..=30 * 24 * 3600).contains(&ttl) {
                bail!("--ttl must be between 1 and 2592000 seconds");
            }
            let store = open_store(&storage.resolve()?).await?;
            if store.get_user(&user).await?.is_none() {
                bail!("there is no user {user}; create it with PUT /v1/users/{user} first");
            }
            let signer = belfry_server::token_signer(&store).await?;
            // Issued after any revocation of this very millisecond.
            let now = SystemClock.now();
            let revocations = belfry_server::auth::Revocations::default();
            revocations.load(store.token_revocations(now).await?, now);
            let (token, expires) = signer.issue(&user, revocations.issue_time(&user, now), ttl);
            println!("{token}");
            eprintln!("valid until {expires}");
            Ok(())
        }
    }
}
