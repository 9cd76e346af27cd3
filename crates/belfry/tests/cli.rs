//! The `belfry` binary as a user runs it: `serve` in a process, `send`,
//! `keys`, `token` and `migrate` from the shell.

mod common;
use common::{Sink, metric, until};

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::process::{BIN, Server, belfry, http, run, serve, stderr, stdout};

#[tokio::test]
async fn first_start_prints_an_admin_key_once_and_send_works_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let key = server
        .admin_key
        .clone()
        .expect("the admin key is printed on first start");
    let base = server.url.clone();

    let (status, _) = http(
        reqwest::Method::PUT,
        &format!("{base}/v1/users/u-17"),
        &key,
        Some(serde_json::json!({"email": "ana@example.com"})),
    )
    .await;
    assert_eq!(status, 200);

    let out = run(belfry(dir.path()).args([
        "send",
        "--server",
        &base,
        "--key",
        &key,
        "--to",
        "user:u-17",
        "--title",
        "Hello",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let receipt: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(receipt["recipients"], 1);

    let out = run(belfry(dir.path())
        .args([
            "send",
            "--server",
            &base,
            "--to",
            "email:ana@example.com",
            "--to",
            "email:guest@example.org",
            "--title",
            "Hi by email",
        ])
        .env("BELFRY_API_KEY", &key));
    assert!(out.status.success(), "{}", stderr(&out));
    let receipt: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(receipt["recipients"], 2);

    let (_, counts) = http(
        reqwest::Method::GET,
        &format!("{base}/v1/users/u-17/counts"),
        &key,
        None,
    )
    .await;
    assert_eq!(counts["unread"], 2);

    // A refusal is reported with the server's explanation and a failing exit code.
    let out = run(belfry(dir.path()).args([
        "send",
        "--server",
        &base,
        "--key",
        &key,
        "--to",
        "user:nobody",
        "--title",
        "x",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nobody"), "{}", stderr(&out));
    let out = run(belfry(dir.path()).args([
        "send", "--server", &base, "--key", &key, "--to", "bob", "--title", "x",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("user:<id>"), "{}", stderr(&out));

    // Graceful stop on SIGTERM, then a restart prints no key.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let again = serve(dir.path(), &[]);
    assert!(
        again.admin_key.is_none(),
        "the key is shown only on the first start"
    );
    let (_, counts) = http(
        reqwest::Method::GET,
        &format!("{}/v1/users/u-17/counts", again.url),
        &key,
        None,
    )
    .await;
    assert_eq!(counts["unread"], 2, "data survived the restart");
}

#[tokio::test]
async fn keys_and_tokens_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let operator_key = stdout(&run(belfry(dir.path()).args(["keys", "generate"])));
    assert!(operator_key.starts_with("bfy_sk_"));

    let server = serve(dir.path(), &[("BELFRY_ADMIN_KEY", &operator_key)]);
    assert!(
        server.admin_key.is_none(),
        "BELFRY_ADMIN_KEY replaces the generated key"
    );
    let base = server.url.clone();
    let (status, _) = http(
        reqwest::Method::PUT,
        &format!("{base}/v1/users/ana"),
        &operator_key,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200);

    let out =
        run(belfry(dir.path()).args(["keys", "create", "--name", "helpdesk", "--scope", "send"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let send_key = stdout(&out);
    assert!(send_key.starts_with("bfy_sk_"));
    let (status, _) = http(
        reqwest::Method::POST,
        &format!("{base}/v1/notifications"),
        &send_key,
        Some(serde_json::json!({"to": {"users": ["ana"]}, "title": "from helpdesk"})),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _) = http(
        reqwest::Method::GET,
        &format!("{base}/v1/groups"),
        &send_key,
        None,
    )
    .await;
    assert_eq!(status, 403);

    let out = run(belfry(dir.path()).args(["keys", "list"]));
    let listing = stdout(&out);
    assert!(
        listing.contains("helpdesk") && listing.contains("admin (BELFRY_ADMIN_KEY)"),
        "{listing}"
    );
    assert!(!listing.contains(&send_key), "secrets are never listed");
    let id = listing
        .lines()
        .find(|l| l.contains("helpdesk"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let out = run(belfry(dir.path()).args(["keys", "revoke", &id]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(belfry(dir.path()).args(["keys", "revoke", "key_nope"]));
    assert!(!out.status.success());
    let out = run(belfry(dir.path()).args(["keys", "create", "--name", "x", "--scope", "root"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("send or admin"));

    let out = run(belfry(dir.path()).args(["token", "issue", "--user", "ana", "--ttl", "600"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    let (status, counts) = http(
        reqwest::Method::GET,
        &format!("{base}/v1/me/counts"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(counts["unread"], 1);
    let out = run(belfry(dir.path()).args(["token", "issue", "--user", "ghost"]));
    assert!(!out.status.success());
}

/// `belfry admin create` with the password on standard input.
fn admin_create(data: &Path, email: &str, password: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = belfry(data)
        .args([
            "admin",
            "create",
            "--email",
            email,
            "--name",
            "Ana Admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run belfry");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn an_admin_created_from_the_shell_signs_in_to_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let out = admin_create(dir.path(), "Ana@Example.com", "correct horse battery");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    assert!(id.starts_with("adm_") && id.len() == 20, "{id}");
    // The same address again, or a short password: refused, said why.
    let out = admin_create(dir.path(), "ana@example.com", "another password");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already an admin"),
        "{}",
        stderr(&out)
    );
    let out = admin_create(dir.path(), "bo@example.com", "short");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at least 12 characters"),
        "{}",
        stderr(&out)
    );
    let out = run(belfry(dir.path()).args([
        "admin",
        "create",
        "--email",
        "x@example.com",
        "--name",
        "X",
    ]));
    assert!(!out.status.success(), "--password-stdin is required");

    let server = serve(dir.path(), &[]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/admin/sessions", server.url))
        .json(&serde_json::json!({"email": "ana@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["admin"]["id"], id.as_str());
}

#[test]
fn help_documents_every_setting_with_its_default() {
    let out = run(Command::new(BIN).args(["serve", "--help"]));
    let help = stdout(&out);
    for needle in [
        "--listen",
        "BELFRY_LISTEN",
        "127.0.0.1:8080",
        "--data-dir",
        "BELFRY_DATA_DIR",
        "./belfry-data",
        "--database",
        "BELFRY_DATABASE_URL",
        "--public-url",
        "BELFRY_PUBLIC_URL",
        "--config",
        "BELFRY_CONFIG",
        "--body-limit",
        "262144",
        "--cors-origins",
        "--token-ttl",
        "3600",
        "--log-format",
        "BELFRY_ADMIN_KEY",
        "postgres://",
        "--no-migrate",
        "BELFRY_NO_MIGRATE",
        "--pg-pool-size",
        "--pg-resolvers",
        "BELFRY_PG_RESOLVERS",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
}

#[test]
fn migrate_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(belfry(dir.path()).arg("migrate"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("belfry.db").exists());

    let out = run(belfry(dir.path()).args(["serve", "--listen", "nonsense"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--listen nonsense"),
        "{}",
        stderr(&out)
    );

    // Resolvers take pooled connections: at most half the pool.
    for (pool, resolvers) in [("16", "9"), ("4", "0")] {
        let out = run(belfry(dir.path()).args([
            "serve",
            "--pg-pool-size",
            pool,
            "--pg-resolvers",
            resolvers,
        ]));
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!("--pg-resolvers {resolvers}: give 1 to half")),
            "{}",
            stderr(&out)
        );
    }

    let config = dir.path().join("belfry.toml");
    std::fs::write(&config, "listen = 5").unwrap();
    let out = run(belfry(dir.path()).args(["serve", "--config"]).arg(&config));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid configuration file"),
        "{}",
        stderr(&out)
    );

    let out = run(belfry(dir.path())
        .arg("serve")
        .env("BELFRY_ADMIN_KEY", "short"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("BELFRY_ADMIN_KEY"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn environment_is_below_flags_and_above_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("belfry.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\n").unwrap();
    // The file's port 1 would fail to bind; the environment's port 0 wins.
    let server = serve_with(
        dir.path(),
        &config,
        &[("BELFRY_LISTEN", "127.0.0.1:0")],
        None,
    );
    assert!(!server.url.ends_with(":1"), "{}", server.url);
    drop(server);
    // And the flag wins over the environment.
    let server = serve_with(
        dir.path(),
        &config,
        &[("BELFRY_LISTEN", "127.0.0.1:1")],
        Some("127.0.0.1:0"),
    );
    assert!(!server.url.ends_with(":1"), "{}", server.url);
}

fn serve_with(data: &Path, config: &Path, env: &[(&str, &str)], listen: Option<&str>) -> Server {
    let mut cmd = belfry(data);
    cmd.arg("serve").arg("--config").arg(config);
    if let Some(l) = listen {
        cmd.args(["--listen", l]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = Server {
        child: cmd.spawn().unwrap(),
        url: String::new(),
        admin_key: None,
    };
    let err = server.child.stderr.take().unwrap();
    for line in BufReader::new(err).lines().map_while(Result::ok) {
        if let Some(rest) = line.split("Belfry listening on ").nth(1) {
            server.url = rest.split_whitespace().next().unwrap().to_string();
            return server;
        }
    }
    panic!("belfry serve exited without listening");
}

#[tokio::test]
async fn killed_mid_delivery_every_email_is_sent_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = "bfy_sk_crash-test-key-0123456789abcdefghijklmnop";
    // The first SMTP server accepts connections and never answers: deliveries hang.
    let stalled = Sink::start("stall");
    let env = |smtp: &Sink| -> Vec<(&'static str, String)> {
        vec![
            ("BELFRY_ADMIN_KEY", key.to_string()),
            ("BELFRY_SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port)),
            ("BELFRY_JOB_LEASE_SECS", "3".to_string()),
            ("BELFRY_RETRY_BASE_SECS", "1".to_string()),
        ]
    };
    let vars = env(&stalled);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = serve(dir.path(), &refs);
    let base = server.url.clone();
    http(
        reqwest::Method::PUT,
        &format!("{base}/v1/users/ana"),
        key,
        Some(serde_json::json!({"email": "ana@example.com"})),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, r) = http(
            reqwest::Method::POST,
            &format!("{base}/v1/notifications"),
            key,
            Some(serde_json::json!({"to": {"users": ["ana"], "emails": [format!("guest{i}@example.org")]},
                                    "channels": ["in_app", "email"], "title": format!("Job {i}")})),
        )
        .await;
        assert_eq!(s, 202);
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    // All six deliveries are claimed and stuck in flight…
    until("six jobs in flight", async || {
        metric(&base, "belfry_jobs_running").await == 6.0
    })
    .await;
    // …when the process dies.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let working = Sink::start("accept");
    let vars = env(&working);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let again = serve(dir.path(), &refs);
    let base = again.url.clone();
    // After the leases run out, the jobs are taken again and finish.
    until("every job done", async || {
        metric(&base, "belfry_jobs_queued").await == 0.0
            && metric(&base, "belfry_jobs_running").await == 0.0
    })
    .await;
    assert_eq!(working.count(), 6, "every email arrived, once");
    for id in &ids {
        let (_, log) = http(
            reqwest::Method::GET,
            &format!("{base}/v1/notifications/{id}/deliveries"),
            key,
            None,
        )
        .await;
        let sent: Vec<&Value> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["channel"] == "email" && l["status"] == "sent")
            .collect();
        assert_eq!(sent.len(), 2, "one sent line per recipient: {log}");
    }
}

/// With `BELFRY_TEST_POSTGRES_URL` set: a fresh schema in that database,
/// and a `--database` URL that selects it. Dropped at the end.
struct PgSchema {
    admin_url: String,
    name: String,
    url: String,
}

impl PgSchema {
    async fn create() -> Option<PgSchema> {
        let Some(admin_url) = std::env::var("BELFRY_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            eprintln!(
                "skipped: set BELFRY_TEST_POSTGRES_URL=postgres://… to run the CLI on PostgreSQL"
            );
            return None;
        };
        use sqlx::Connection;
        let name = format!(
            "belfry_test_{}_{}_cli",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            std::process::id()
        );
        let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut c)
            .await
            .unwrap();
        let _ = c.close().await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema {
            admin_url,
            name,
            url,
        })
    }

    async fn drop(self) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await;
        let _ = c.close().await;
    }
}

#[tokio::test]
async fn postgres_migrate_keys_tokens_and_serve() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let db = schema.url.clone();
    let dir = tempfile::tempdir().unwrap();

    // Told not to migrate, serve refuses a schema that was never migrated.
    let out = run(belfry(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-migrate",
            "--database",
        ])
        .arg(&db));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("belfry migrate"), "{}", stderr(&out));

    let out = run(belfry(dir.path()).args(["migrate", "--database", &db]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("16 PostgreSQL migration(s) applied"),
        "{}",
        stderr(&out)
    );
    let out = run(belfry(dir.path()).args(["migrate", "--database", &db]));
    assert!(stderr(&out).contains("0 PostgreSQL migration(s) applied"));

    let out = run(belfry(dir.path()).args([
        "keys",
        "create",
        "--name",
        "ops",
        "--scope",
        "admin",
        "--database",
        &db,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out);
    assert!(key.starts_with("bfy_sk_"));

    // A key exists already: no admin key is generated; nothing is migrated.
    let server = serve(
        dir.path(),
        &[("BELFRY_DATABASE_URL", &db), ("BELFRY_NO_MIGRATE", "true")],
    );
    assert!(server.admin_key.is_none());
    let base = server.url.clone();
    let (status, _) = http(
        reqwest::Method::PUT,
        &format!("{base}/v1/users/ana"),
        &key,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, receipt) = http(
        reqwest::Method::POST,
        &format!("{base}/v1/notifications"),
        &key,
        Some(serde_json::json!({"to": {"users": ["ana"]}, "title": "On PostgreSQL"})),
    )
    .await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["seq"], 1);

    let out = run(belfry(dir.path()).args([
        "token",
        "issue",
        "--user",
        "ana",
        "--ttl",
        "600",
        "--database",
        &db,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    let (status, page) = http(
        reqwest::Method::GET,
        &format!("{base}/v1/me/notifications"),
        &token,
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "the CLI's token is signed with the server's secret"
    );
    assert_eq!(page["items"][0]["title"], "On PostgreSQL");

    let out = run(belfry(dir.path()).args(["keys", "list", "--database", &db]));
    assert!(stdout(&out).contains("ops"), "{}", stdout(&out));
    drop(server);

    // The starter rules were installed by serve; they export and import on
    // PostgreSQL too.
    let files = dir.path().join("rules");
    let out = run(belfry(dir.path())
        .args(["rules", "export", "--database", &db, "--dir"])
        .arg(&files));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tree(&files).len(), 12);
    let out = run(belfry(dir.path())
        .args(["rules", "import", "--database", &db, "--dir"])
        .arg(&files));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("imported: 0 written, 0 deleted, 12 unchanged"),
        "{}",
        stdout(&out)
    );
    schema.drop().await;
}

/// Every file under `dir` (relative path → content).
fn tree(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for kind in ["rules", "templates"] {
        for entry in std::fs::read_dir(dir.join(kind)).unwrap() {
            let path = entry.unwrap().path();
            out.insert(
                format!("{kind}/{}", path.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
    out
}

#[tokio::test]
async fn starter_rules_once_then_export_edit_import_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();

    // Off: a database without rules.
    let off = dir.path().join("off");
    std::fs::create_dir(&off).unwrap();
    let server = serve(&off, &[("BELFRY_STARTER_RULES", "false")]);
    let (_, rules) = http(
        reqwest::Method::GET,
        &format!("{}/v1/rules", server.url),
        server.admin_key.as_deref().unwrap(),
        None,
    )
    .await;
    assert_eq!(rules["items"], serde_json::json!([]));
    drop(server);

    // On (the default): installed on the first start; a deleted one stays
    // deleted after a restart.
    let server = serve(&data, &[]);
    let key = server.admin_key.clone().unwrap();
    let (status, _) = http(
        reqwest::Method::DELETE,
        &format!("{}/v1/rules/record.created", server.url),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 204);
    drop(server);
    let server = serve(&data, &[]);
    let (_, rules) = http(
        reqwest::Method::GET,
        &format!("{}/v1/rules", server.url),
        &key,
        None,
    )
    .await;
    assert_eq!(rules["items"].as_array().unwrap().len(), 5, "{rules}");
    drop(server);

    // Export: one file per rule and template, the starter files byte for byte.
    let a = dir.path().join("a");
    let out = run(belfry(&data).args(["rules", "export", "--dir"]).arg(&a));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("exported 5 rule(s) and 6 template(s)"),
        "{}",
        stdout(&out)
    );
    let first = tree(&a);
    assert_eq!(first.len(), 11);
    assert_eq!(
        first["templates/ticket.assigned.json"],
        include_str!("../../core/src/starter/templates/ticket.assigned.json")
    );
    assert_eq!(
        first["rules/ticket.mentioned.json"],
        include_str!("../../core/src/starter/rules/ticket.mentioned.json")
    );

    // Edit one file, import, export again: the same files but that edit.
    let edited = first["templates/ticket.assigned.json"].replace(
        "hat Ihnen ein Ticket zugewiesen: ",
        "hat Dir ein Ticket gegeben: ",
    );
    assert_ne!(edited, first["templates/ticket.assigned.json"]);
    std::fs::write(a.join("templates/ticket.assigned.json"), &edited).unwrap();
    let out = run(belfry(&data).args(["rules", "import", "--dir"]).arg(&a));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("imported: 1 written, 0 deleted, 10 unchanged"),
        "{}",
        stdout(&out)
    );
    let b = dir.path().join("b");
    let out = run(belfry(&data).args(["rules", "export", "--dir"]).arg(&b));
    assert!(out.status.success(), "{}", stderr(&out));
    let second = tree(&b);
    let mut expected = first.clone();
    expected.insert("templates/ticket.assigned.json".into(), edited);
    assert_eq!(second, expected);

    // Bad files: each reported with what is wrong, exit status 3, nothing applied.
    std::fs::write(
        a.join("templates/broken.json"),
        r#"{"locales": {"en": {"title": "ok"}, "de": {"title": "Hallo", "body": "line one\n{{ data.x | }}"}}}"#,
    )
    .unwrap();
    std::fs::write(
        a.join("rules/orphan.json"),
        r#"{"event": "x.y", "to": {"users": ["{{ data.who }}"]}, "template": "nope", "category": "nada"}"#,
    )
    .unwrap();
    std::fs::write(a.join("rules/garbled.json"), "{\"event\": ").unwrap();
    std::fs::write(
        a.join("rules/ticket.assigned.json"),
        first["rules/ticket.assigned.json"].replace("\"recipients\"", "\"everyone\""),
    )
    .unwrap();
    let out = run(belfry(&data).args(["rules", "import", "--dir"]).arg(&a));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "templates/broken.json: locales.de.body: line 2, column",
        "rules/orphan.json: template: 'nope' does not exist",
        "rules/orphan.json: category: 'nada' does not exist",
        "rules/garbled.json: EOF while parsing",
        "rules/ticket.assigned.json: subscribe[0]: 'everyone' is not actor or recipients",
        "4 file(s) are wrong: nothing was imported",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    let c = dir.path().join("c");
    let out = run(belfry(&data).args(["rules", "export", "--dir"]).arg(&c));
    assert!(out.status.success());
    assert_eq!(tree(&c), second, "nothing changed");

    // --prune removes what no file names; --dry-run changes nothing.
    std::fs::remove_file(b.join("rules/record.changed.json")).unwrap();
    std::fs::remove_file(b.join("templates/record.changed.json")).unwrap();
    let out = run(belfry(&data)
        .args(["rules", "import", "--prune", "--dry-run", "--dir"])
        .arg(&b));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would import: 0 written, 2 deleted, 9 unchanged"),
        "{}",
        stdout(&out)
    );
    let out = run(belfry(&data)
        .args(["rules", "import", "--prune", "--dir"])
        .arg(&b));
    assert!(out.status.success(), "{}", stderr(&out));
    // Exporting into the old directory removes the files of deleted ones.
    let out = run(belfry(&data).args(["rules", "export", "--dir"]).arg(&c));
    assert!(out.status.success());
    assert!(stdout(&out).contains("2 removed"), "{}", stdout(&out));
    assert_eq!(tree(&c), tree(&b));

    let out = run(belfry(&data)
        .args(["rules", "import", "--dir"])
        .arg(dir.path().join("nothing-here")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has neither rules/ nor templates/"));
}
