//! `belfry check-config`: reads the configuration as `serve` would, then
//! tries everything it names (the database, the listen address, SMTP, NATS)
//! and prints what works and what does not, with the fix. Changes nothing:
//! it neither creates nor migrates the database.

use crate::settings::{Database, ServeArgs, ServeSettings};
use belfry_store::PgOptions;
use secrecy::ExposeSecret as _;
use std::time::Duration;

/// How long each check may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One line of the report.
struct Finding {
    ok: bool,
    what: &'static str,
    detail: String,
    fix: Option<String>,
}

fn ok(what: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        what,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(what: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        ok: false,
        what,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check and prints the report; the result is whether all passed.
pub async fn run(args: ServeArgs) -> bool {
    let source = match &args.storage.config {
        Some(p) => format!("file {}, environment and flags", p.display()),
        None => "environment and flags (no --config file)".to_string(),
    };
    let admin_key = std::env::var("BELFRY_ADMIN_KEY")
        .ok()
        .map(secrecy::SecretString::from);
    let mut findings = Vec::new();
    match args.resolve(admin_key) {
        Err(e) => findings.push(fail(
            "settings",
            format!("{e:#}"),
            "correct the setting named above (`belfry serve --help` lists them all)",
        )),
        Ok(settings) => {
            findings.push(ok("settings", format!("read from {source}")));
            if let Some(key) = &settings.server.admin_key {
                findings.push(
                    match belfry_server::auth::validate_operator_key(key.expose_secret()) {
                        Ok(()) => ok("admin key", "BELFRY_ADMIN_KEY is set and well-formed"),
                        Err(e) => fail(
                            "admin key",
                            format!("BELFRY_ADMIN_KEY {e}"),
                            "use a value printed by `belfry keys generate`",
                        ),
                    },
                );
            }
            findings.push(database(&settings).await);
            findings.push(listen(&settings).await);
            findings.push(smtp(&settings).await);
            if let Some(f) = nats(&settings).await {
                findings.push(f);
            }
        }
    }
    let mut all_ok = true;
    for f in &findings {
        all_ok &= f.ok;
        println!(
            "{:<4}  {:<10} {}",
            if f.ok { "ok" } else { "FAIL" },
            f.what,
            f.detail
        );
        if let Some(fix) = &f.fix {
            println!("{:<16} fix: {fix}", "");
        }
    }
    if all_ok {
        println!("\nEverything works: `belfry serve` with the same settings will start.");
    } else {
        println!("\nSome checks failed (FAIL above): `belfry serve` would not work as configured.");
    }
    all_ok
}

async fn database(settings: &ServeSettings) -> Finding {
    let storage = &settings.storage;
    match &storage.database {
        Database::Sqlite(path) => {
            if path.exists() {
                let p = path.clone();
                let known = belfry_store::sqlite::backup::known_schema_version();
                match tokio::task::spawn_blocking(move || {
                    belfry_store::sqlite::backup::schema_version_of(&p)
                })
                .await
                {
                    Ok(Ok(v)) if v == known => ok(
                        "database",
                        format!("SQLite {} (schema {v}, up to date)", path.display()),
                    ),
                    Ok(Ok(v)) => ok(
                        "database",
                        format!(
                            "SQLite {} (schema {v}; `serve` applies migrations up to {known})",
                            path.display()
                        ),
                    ),
                    Ok(Err(e)) => fail(
                        "database",
                        e.to_string(),
                        "point data_dir (or --database sqlite:///…) at Belfry's database, or \
                         restore a backup with `belfry restore`",
                    ),
                    Err(e) => fail("database", e.to_string(), "report this as a bug"),
                }
            } else {
                // Created on first start: the nearest existing directory
                // must be writable.
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                let mut existing = dir;
                while !existing.exists() {
                    match existing.parent() {
                        Some(p) if !p.as_os_str().is_empty() => existing = p,
                        _ => {
                            existing = std::path::Path::new(".");
                            break;
                        }
                    }
                }
                let probe = existing.join(format!(".belfry-check-{}", std::process::id()));
                match std::fs::write(&probe, b"") {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&probe);
                        ok(
                            "database",
                            format!(
                                "SQLite {} does not exist yet; `serve` creates it",
                                path.display()
                            ),
                        )
                    }
                    Err(e) => fail(
                        "database",
                        format!(
                            "SQLite {}: cannot create it ({} is not writable: {e})",
                            path.display(),
                            existing.display()
                        ),
                        "set data_dir to a directory the Belfry user may write to",
                    ),
                }
            }
        }
        Database::Postgres(url) => {
            let mut options = PgOptions::new(url);
            options.migrate = storage.migrate;
            let described = storage.database.describe();
            match tokio::time::timeout(TIMEOUT, belfry_store::postgres::schema_status(&options))
                .await
            {
                Err(_) => fail(
                    "database",
                    format!("{described}: no answer within {} s", TIMEOUT.as_secs()),
                    "check the host and port in database_url, and that this machine may reach it",
                ),
                Ok(Err(e)) => fail(
                    "database",
                    format!("{described}: {}", error_chain(&e)),
                    "check database_url: host, port, database name, user and password \
                     (and sslmode), and that the role may connect",
                ),
                Ok(Ok((current, latest))) if current > latest => fail(
                    "database",
                    format!(
                        "{described}: schema {current} was made by a newer Belfry (this one knows up to {latest})"
                    ),
                    "run the Belfry version that migrated it, or a newer one",
                ),
                Ok(Ok((current, latest))) if current < latest && !storage.migrate => fail(
                    "database",
                    format!("{described}: schema {current}, this Belfry needs {latest}"),
                    "run `belfry migrate`, or start without no_migrate",
                ),
                Ok(Ok((current, latest))) if current < latest => ok(
                    "database",
                    format!(
                        "{described} (schema {current}; `serve` applies migrations up to {latest})"
                    ),
                ),
                Ok(Ok((current, _))) => ok(
                    "database",
                    format!("{described} (schema {current}, up to date)"),
                ),
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

async fn listen(settings: &ServeSettings) -> Finding {
    match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(_) => ok("listen", format!("{} is free", settings.listen)),
        Err(e) => fail(
            "listen",
            format!("cannot listen on {}: {e}", settings.listen),
            "choose a free address and port (is Belfry, or another server, already running there?)",
        ),
    }
}

async fn smtp(settings: &ServeSettings) -> Finding {
    let Some(url) = &settings.server.smtp_url else {
        return ok(
            "smtp",
            "not set: emails go to the development mailbox (GET /v1/dev/mailbox), not to people",
        );
    };
    let shown = crate::settings::redact_password(url.expose_secret());
    let mailer = match belfry_delivery::mailer::SmtpMailer::from_url(url, TIMEOUT) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                "smtp",
                format!("{shown}: {e}"),
                "give smtp://host:25, smtp://user:pass@host:587?tls=required or smtps://user:pass@host:465",
            );
        }
    };
    match mailer.check().await {
        Ok(()) => ok("smtp", format!("{shown}: connected and logged in")),
        Err(e) => fail(
            "smtp",
            format!("{shown}: {}", e.message),
            "check the host, port, TLS mode (tls=required, smtps://) and the user and password \
             in smtp_url, and that this machine may reach the server",
        ),
    }
}

async fn nats(settings: &ServeSettings) -> Option<Finding> {
    let url = settings.server.nats_url.as_ref()?;
    let connect = async_nats::ConnectOptions::new()
        .name("belfry-check-config")
        .connection_timeout(TIMEOUT)
        .connect(url.as_str());
    Some(match tokio::time::timeout(TIMEOUT * 2, connect).await {
        Ok(Ok(client)) => {
            let _ = client.flush().await;
            ok(
                "nats",
                format!(
                    "{url}: connected (subject {})",
                    settings.server.nats_subject
                ),
            )
        }
        Ok(Err(e)) => fail(
            "nats",
            format!("{url}: {e}"),
            "check nats_url (host and port, usually 4222) and that the NATS server runs",
        ),
        Err(_) => fail(
            "nats",
            format!("{url}: no answer within {} s", (TIMEOUT * 2).as_secs()),
            "check nats_url and that this machine may reach the NATS server",
        ),
    })
}
