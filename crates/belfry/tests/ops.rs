//! Operating Belfry from the shell with the real binary: `--version`,
//! `backup` and `restore` of a real SQLite database while the server runs,
//! upgrades of the databases kept in tests/fixtures/upgrade, `check-config`
//! and the admin-key file.

mod common;
use common::Sink;
use common::process::{BIN, belfry, http, run, serve, stderr, stdout};

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn version_names_the_version_and_the_commit() {
    let out = run(Command::new(BIN).arg("--version"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("belfry {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // Built from a git checkout (as here), the commit is HEAD's.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 12, "git names HEAD");
    assert!(
        text.contains(&format!("(commit {head})")),
        "{text} vs {head}"
    );
}

/// Sends notifications in a few loops until told to stop, recording each id
/// with the moment its 202 arrived.
struct Load {
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, key: &str, loops: usize) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = reqwest::Client::new();
        let tasks = (0..loops)
            .map(|l| {
                let (acked, stop, client) = (acked.clone(), stop.clone(), client.clone());
                let (url, key) = (format!("{base}/v1/notifications"), key.to_string());
                tokio::spawn(async move {
                    // Bounded whatever happens: at most 5000 sends a loop.
                    for i in 0..5000 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let body = serde_json::json!({
                            "to": {"users": ["u-1"]},
                            "title": format!("load {l}-{i}"),
                        });
                        let r = client
                            .post(&url)
                            .bearer_auth(&key)
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status().as_u16(), 202, "sends go on during the backup");
                        let v: serde_json::Value = r.json().await.unwrap();
                        let id = v["id"].as_str().unwrap().to_string();
                        acked.lock().unwrap().push((id, Instant::now()));
                    }
                })
            })
            .collect();
        Load { acked, stop, tasks }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} sends in 60 s",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<(String, Instant)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// `belfry backup` during a send load, restored into a new data directory:
/// every notification acknowledged before the backup began is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_sends_restores_every_acknowledged_notification() {
    let dir = tempfile::tempdir().unwrap();
    let (data, restored, file) = (
        dir.path().join("data"),
        dir.path().join("restored"),
        dir.path().join("backups/belfry-backup.db"),
    );
    std::fs::create_dir_all(dir.path().join("backups")).unwrap();
    let server = serve(&data, &[]);
    let key = server.admin_key.clone().expect("first start prints a key");
    let base = server.url.clone();
    let (status, _) = http(
        reqwest::Method::PUT,
        &format!("{base}/v1/users/u-1"),
        &key,
        Some(serde_json::json!({"name": "Ana"})),
    )
    .await;
    assert_eq!(status, 200);

    let load = Load::start(&base, &key, 4);
    load.wait_for(300).await;
    let began = Instant::now();
    let out = {
        let mut cmd = belfry(&data);
        cmd.arg("backup").arg(&file);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("backed up"), "{}", stdout(&out));
    let after_backup = load.count();
    load.wait_for(after_backup + 50).await;
    let acked = load.stop().await;
    let before: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id)
        .collect();
    assert!(before.len() >= 300, "{}", before.len());
    assert!(acked.len() > before.len(), "sends went on after the backup");

    // A second backup to the same name is refused; the first is untouched.
    let out = run(belfry(&data).arg("backup").arg(&file));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Restoring over the running server's database is refused.
    let out = run(belfry(&data).arg("restore").arg(&file).arg("--force"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is in use"), "{}", stderr(&out));
    drop(server);

    // Into a new data directory.
    let out = run(belfry(&restored).arg("restore").arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("restored"), "{}", stdout(&out));
    let out = run(belfry(&restored).arg("restore").arg(&file));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));

    let server = serve(&restored, &[]);
    assert!(server.admin_key.is_none(), "the keys came with the backup");
    let base = server.url.clone();
    let client = reqwest::Client::new();
    for id in &before {
        let r = client
            .get(format!("{base}/v1/notifications/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "notification {id} is in the backup"
        );
    }
    let (status, counts) = http(
        reqwest::Method::GET,
        &format!("{base}/v1/users/u-1/counts"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let unread = counts["unread"].as_u64().unwrap() as usize;
    assert!(
        (before.len()..=acked.len()).contains(&unread),
        "{unread} unread: at least the {} sent before the backup, at most all {}",
        before.len(),
        acked.len()
    );
}

#[test]
fn backup_and_restore_explain_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(belfry(&dir.path().join("empty"))
        .arg("backup")
        .arg(dir.path().join("x.db")));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("there is no database"),
        "{}",
        stderr(&out)
    );

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "hello ".repeat(1000)).unwrap();
    let out = run(belfry(&dir.path().join("new")).arg("restore").arg(&junk));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a Belfry database"),
        "{}",
        stderr(&out)
    );

    let out = run(belfry(dir.path())
        .arg("backup")
        .arg(dir.path().join("x.db"))
        .env(
            "BELFRY_DATABASE_URL",
            "postgres://belfry@127.0.0.1:1/belfry",
        ));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
}

/// The daily digest jobs of `user` in a SQLite database.
fn digest_jobs(db: &std::path::Path, user: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'digest' AND dedup = ?1",
        [format!("digest:{user}")],
        |r| r.get(0),
    )
    .unwrap()
}

/// The tables of a SQLite database with their row counts.
fn table_rows(db: &std::path::Path) -> std::collections::BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .map(|t| {
            let n = conn
                .query_row(&format!("SELECT COUNT(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect()
}

/// Every fixture in tests/fixtures/upgrade (a database made by an earlier
/// schema, see scripts/make-upgrade-fixture) opens with this Belfry, which
/// migrates it, and every kind of row in it reads back.
#[tokio::test]
async fn every_upgrade_fixture_opens_migrates_and_reads_back() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upgrade");
    let mut manifests: Vec<_> = std::fs::read_dir(&fixtures)
        .expect("tests/fixtures/upgrade exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    manifests.sort();
    assert!(!manifests.is_empty(), "at least one fixture");
    for manifest in manifests {
        check_fixture(&manifest).await;
    }
}

async fn check_fixture(manifest: &std::path::Path) {
    let name = manifest.file_stem().unwrap().to_string_lossy().to_string();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let fixture = manifest.with_extension("db");
    let before = table_rows(&fixture);
    let schema = m["schema_version"].as_i64().unwrap();
    if schema >= 7 {
        // Cy's daily digest job, unique by its key.
        assert_eq!(digest_jobs(&fixture, "u-cy"), 1, "{name}");
    }
    // The fixture holds every kind of row its schema has (a table added by
    // a migration must be filled by the script that makes its fixture).
    for (table, n) in &before {
        assert!(*n > 0, "{name}: the fixture has no row in {table}");
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(&fixture, data.join("belfry.db")).unwrap();
    let server = serve(&data, &[]);
    assert!(server.admin_key.is_none(), "{name}: its keys are kept");
    let base = server.url.clone();
    let key = m["admin_key"].as_str().unwrap();
    let n = |k: &str| m["notifications"][k].as_str().unwrap().to_string();
    let get = |path: String| {
        let base = base.clone();
        async move { http(reqwest::Method::GET, &format!("{base}{path}"), key, None).await }
    };

    // Users, their groups (one left its group) and data.
    let (status, ana) = get("/v1/users/u-ana".into()).await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(ana["email"], "ana@example.com", "{name}: {ana}");
    assert_eq!(ana["locale"], "de", "{name}");
    assert_eq!(ana["timezone"], "Europe/Berlin", "{name}");
    assert_eq!(ana["data"]["team"], "blue", "{name}");
    let mut groups: Vec<&str> = ana["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, ["admins", "support"], "{name}");
    let (_, cy) = get("/v1/users/u-cy".into()).await;
    assert_eq!(cy["groups"], serde_json::json!([]), "{name}");
    let (_, list) = get("/v1/groups".into()).await;
    let text = list.to_string();
    assert!(
        text.contains("\"support\"") && text.contains("\"Admins\""),
        "{name}: {text}"
    );

    // Subscriptions of a user and of an email contact.
    let (status, subs) = get("/v1/subscriptions/ticket/123".into()).await;
    assert_eq!(status, 200, "{name}");
    let text = subs.to_string();
    assert!(
        text.contains("u-bo") && text.contains("guest@example.org"),
        "{name}: {text}"
    );

    // From schema 8: Ana's browser push subscription.
    if schema >= 8 {
        let (status, push) = get("/v1/users/u-ana/push-subscriptions".into()).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            push["items"][0]["endpoint"], "https://push.example.net/fixture/ana",
            "{name}: {push}"
        );
    }

    // From schema 9: Ana's Slack target and the support group's webhook.
    if schema >= 9 {
        let (status, slack) = get("/v1/users/u-ana/channels/slack".into()).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            slack["url"], "https://hooks.slack.example/services/T0/B0/fixture",
            "{name}: {slack}"
        );
        let (status, hook) = get("/v1/groups/support/channels/webhook".into()).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(hook["kind"], "webhook", "{name}: {hook}");
    }

    // From schema 10: Bo's phone (APNs).
    if schema >= 10 {
        let (status, devices) = get("/v1/users/u-bo/push-subscriptions".into()).await;
        assert_eq!(status, 200, "{name}");
        let device = &devices["items"][0];
        assert_eq!(
            (&device["kind"], &device["platform"], &device["app_id"]),
            (&"mobile".into(), &"apns".into(), &"com.example.desk".into()),
            "{name}: {devices}"
        );
    }

    // From schema 11: the producer webhook and its attempts log.
    if schema >= 11 {
        let (status, hook) = get("/v1/webhooks/producer".into()).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            hook["url"], "https://hooks.example.net/belfry/producer",
            "{name}: {hook}"
        );
        let (status, attempts) = get("/v1/webhooks/producer/attempts".into()).await;
        assert_eq!(status, 200, "{name}");
        assert!(
            !attempts["items"].as_array().unwrap().is_empty(),
            "{name}: {attempts}"
        );
    }

    // From schema 13: the approval Ana answered once, the reminder she closed.
    if schema >= 13 {
        let (status, inbox) = get("/v1/users/u-bo/notifications".into()).await;
        assert_eq!(status, 200, "{name}");
        let approval = inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == n("approval").as_str())
            .unwrap_or_else(|| panic!("{name}: the approval in {inbox}"));
        assert_eq!(approval["answered"]["action"], "approve", "{name}");
        assert_eq!(approval["answered"]["by"]["id"], "u-ana", "{name}");
        let (status, inbox) = get("/v1/users/u-ana/notifications".into()).await;
        assert_eq!(status, 200, "{name}");
        let sticky = inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == n("sticky").as_str())
            .unwrap_or_else(|| panic!("{name}: the reminder in {inbox}"));
        assert_eq!(sticky["dismissed"], true, "{name}");
    }
    // From schema 14: the template and the rule.
    if schema >= 14 {
        let (status, t) = get("/v1/templates/ticket.assigned".into()).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(t["default_locale"], "en", "{name}: {t}");
        let (status, r) = get("/v1/rules/assigned".into()).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(r["template"], "ticket.assigned", "{name}: {r}");
    }

    // Every notification, as its producer sees it, with its status.
    for kind in [
        "direct",
        "read",
        "archived",
        "stack",
        "group_broadcast",
        "all_broadcast",
        "entity",
        "external",
        "batch",
        "scheduled",
    ] {
        let (status, v) = get(format!("/v1/notifications/{}", n(kind))).await;
        assert_eq!(status, 200, "{name}: the {kind} notification: {v}");
    }
    let (_, direct) = get(format!("/v1/notifications/{}", n("direct"))).await;
    assert_eq!(
        direct["title"], "Ticket #123 assigned to you",
        "{name}: {direct}"
    );
    let (status, cancelled) = get(format!("/v1/notifications/{}", n("cancelled"))).await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(cancelled["status"], "cancelled", "{name}: {cancelled}");
    let (_, scheduled) = get(format!("/v1/notifications/{}", n("scheduled"))).await;
    assert_eq!(scheduled["status"], "scheduled", "{name}: {scheduled}");

    // Inbox state: read, archived, stacked, broadcasts.
    let (_, inbox) = get("/v1/users/u-ana/notifications?filter=all&limit=100".into()).await;
    let items = inbox["items"].as_array().unwrap();
    let item = |id: String| {
        items
            .iter()
            .find(|i| i["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{name}: {id} in u-ana's inbox: {inbox}"))
    };
    assert_eq!(item(n("read"))["read"], true, "{name}");
    assert_eq!(item(n("direct"))["read"], false, "{name}");
    assert_eq!(item(n("direct"))["seen"], true, "{name}: seen-all was done");
    assert_eq!(item(n("group_broadcast"))["read"], true, "{name}");
    assert_eq!(item(n("all_broadcast"))["read"], false, "{name}");
    assert!(
        items.iter().any(|i| i["stack_count"] == 3),
        "{name}: the stack of three: {inbox}"
    );
    let (_, archived) = get("/v1/users/u-ana/notifications?filter=archived".into()).await;
    assert_eq!(archived["items"][0]["id"], n("archived").as_str(), "{name}");
    let (_, counts) = get("/v1/users/u-bo/counts".into()).await;
    assert_eq!(
        counts["unread"], 0,
        "{name}: u-bo read everything: {counts}"
    );

    // Deliveries and the development mailbox.
    let (_, log) = get(format!("/v1/notifications/{}/deliveries", n("entity"))).await;
    let text = log.to_string();
    assert!(
        text.contains("guest@example.org") && text.contains("sent"),
        "{name}: {text}"
    );
    // From schema 6 Bo's master switch is off: his email is suppressed.
    let mails = if schema >= 6 { 2 } else { 3 };
    let (_, mailbox) = get("/v1/dev/mailbox".into()).await;
    assert!(
        mailbox["items"].as_array().unwrap().len() >= mails,
        "{name}: {mailbox}"
    );

    // Categories and preferences (schema 6 on).
    if schema >= 6 {
        assert!(
            text.contains("suppressed") && text.contains("master_switch"),
            "{name}: Bo's email logged as suppressed: {text}"
        );
        let (status, c) = get("/v1/categories/invoice.paid".into()).await;
        assert_eq!(status, 200, "{name}: {c}");
        assert_eq!(c["email_fallback_after"], 900, "{name}: {c}");
        assert_eq!(c["defaults"]["email"], "instant", "{name}: {c}");
        let (_, reminder) = get("/v1/categories/reminder".into()).await;
        assert_eq!(reminder["bypass_quiet_hours"], true, "{name}: {reminder}");
        let (_, defaults) = get("/v1/preferences/defaults".into()).await;
        assert_eq!(defaults["digest"]["time"], "17:30", "{name}: {defaults}");
        assert_eq!(defaults["channels"]["chat"], false, "{name}: {defaults}");
        let (_, ana) = get("/v1/users/u-ana/preferences".into()).await;
        assert_eq!(ana["quiet_hours"]["start"], "22:00", "{name}: {ana}");
        assert_eq!(
            ana["categories"]["mention"]["email"], "off",
            "{name}: {ana}"
        );
        assert_eq!(ana["sources"]["helpdesk"]["email"], "off", "{name}: {ana}");
        assert_eq!(ana["channels"]["web_push"], false, "{name}: {ana}");
        let (_, bo) = get("/v1/users/u-bo/preferences".into()).await;
        assert_eq!(bo["enabled"], false, "{name}: {bo}");
    }

    // Keys: the send key works; a token issued after a revocation works.
    let send = |key: String| {
        let base = base.clone();
        async move {
            http(
                reqwest::Method::POST,
                &format!("{base}/v1/notifications"),
                &key,
                Some(serde_json::json!({"to": {"users": ["u-cy"]}, "title": "after the upgrade"})),
            )
            .await
            .0
        }
    };
    assert_eq!(
        send(m["send_key"].as_str().unwrap().into()).await,
        202,
        "{name}"
    );
    let (status, token) = http(
        reqwest::Method::POST,
        &format!("{base}/v1/users/u-cy/tokens"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 201, "{name}");
    let (status, cy_counts) = http(
        reqwest::Method::GET,
        &format!("{base}/v1/me/counts"),
        token["token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{name}: {cy_counts}");
    // The daily digest on an upgraded database: choosing it (twice) leaves
    // one digest job for the user.
    for time in ["08:00", "09:15"] {
        let (status, p) = http(
            reqwest::Method::PUT,
            &format!("{base}/v1/users/u-cy/preferences"),
            key,
            Some(serde_json::json!({"categories": {"reminder": {"email": "digest"}}, "digest": {"time": time}})),
        )
        .await;
        assert_eq!(status, 200, "{name}: {p}");
    }
    drop(server);
    assert_eq!(digest_jobs(&data.join("belfry.db"), "u-cy"), 1, "{name}");
    let out = run(belfry(&data).args(["keys", "list"]));
    let list = stdout(&out);
    let revoked = m["revoked_key_id"].as_str().unwrap();
    let line = list
        .lines()
        .find(|l| l.starts_with(revoked))
        .unwrap_or_else(|| panic!("{name}: {revoked} in {list}"));
    assert!(
        !line.trim_end().ends_with(" -"),
        "{name}: {revoked} stays revoked: {line}"
    );

    // Nothing was lost in the migration: no table has fewer rows, except
    // for idempotency keys older than their 24 hours, which retention
    // removes when the server starts (the fixtures grow older than that).
    let after = table_rows(&data.join("belfry.db"));
    for (table, n) in &before {
        let n = &if table == "idempotency" {
            live_idempotency_keys(&fixture)
        } else {
            *n
        };
        let now = after.get(table).copied().unwrap_or(0);
        assert!(
            now >= *n,
            "{name}: {table} had {n} rows, has {now} after the upgrade"
        );
    }
}

/// Idempotency keys younger than 24 hours (the ones still in force).
fn live_idempotency_keys(db: &std::path::Path) -> i64 {
    let day_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 24 * 3600 * 1000;
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM idempotency WHERE created_at > ?1",
            [day_ago],
            |r| r.get(0),
        )
        .unwrap()
}

/// A port nothing listens on (bound, then closed again).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_says_what_works_and_what_does_not_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start("accept");

    // Everything reachable: a fresh data directory, a free port, a real
    // SMTP server.
    let out = run(belfry(&dir.path().join("data")).args([
        "check-config",
        "--listen",
        "127.0.0.1:0",
        "--smtp-url",
        &sink.url(),
    ]));
    let report = stdout(&out);
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    for line in [
        "ok    settings",
        "ok    database",
        "ok    listen",
        "ok    smtp",
    ] {
        assert!(report.contains(line), "{line}: {report}");
    }
    assert!(report.contains("does not exist yet"), "{report}");
    assert!(
        !dir.path().join("data/belfry.db").exists(),
        "nothing is created"
    );

    // After a first start, the database's schema is reported.
    let out = run(belfry(&dir.path().join("data")).arg("migrate"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out =
        run(belfry(&dir.path().join("data")).args(["check-config", "--listen", "127.0.0.1:0"]));
    assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));

    // Broken: the database is unreachable, so are SMTP and NATS, and the
    // port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = run(belfry(dir.path()).args([
        "check-config",
        "--listen",
        &listen,
        "--database",
        &format!(
            "postgres://belfry:db-pa55word@127.0.0.1:{}/belfry",
            closed_port()
        ),
        "--smtp-url",
        &format!("smtp://mailer:smtp-pa55word@127.0.0.1:{}", closed_port()),
        "--nats",
        &format!("nats://127.0.0.1:{}", closed_port()),
    ]));
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for line in ["FAIL  database", "FAIL  listen", "FAIL  smtp", "FAIL  nats"] {
        assert!(report.contains(line), "{line}: {report}");
    }
    assert!(report.matches("fix: ").count() >= 4, "{report}");
    assert!(report.contains("database_url"), "{report}");
    assert!(
        !report.contains("pa55word"),
        "no password is shown: {report}"
    );
    drop(taken);

    // An invalid setting is named.
    let out = run(belfry(dir.path()).args(["check-config", "--listen", "nonsense"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL  settings"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("--listen nonsense"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn the_generated_admin_key_goes_to_the_key_file_and_not_to_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("admin-key");
    let path = file.to_str().unwrap();
    let server = serve(&data, &[("BELFRY_ADMIN_KEY_FILE", path)]);
    assert!(server.admin_key.is_none(), "not printed");
    let key = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(key.starts_with("bfy_sk_"), "{key}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (status, _) = http(
        reqwest::Method::GET,
        &format!("{}/v1/groups", server.url),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200, "the key in the file is the admin key");
    drop(server);
    // A restart generates nothing and leaves the file alone.
    let server = serve(&data, &[("BELFRY_ADMIN_KEY_FILE", path)]);
    assert!(server.admin_key.is_none());
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
}

/// With BELFRY_TEST_POSTGRES_URL and BELFRY_TEST_NATS_URL (the PostgreSQL run
/// of scripts/test, in CI always): check-config reaches both, and names a
/// database that does not exist.
#[test]
fn postgres_check_config_reaches_the_database_and_nats() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(pg), Some(nats)) = (var("BELFRY_TEST_POSTGRES_URL"), var("BELFRY_TEST_NATS_URL"))
    else {
        eprintln!("skipped: set BELFRY_TEST_POSTGRES_URL and BELFRY_TEST_NATS_URL to run it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let check = |database: &str| {
        run(belfry(dir.path()).args([
            "check-config",
            "--listen",
            "127.0.0.1:0",
            "--database",
            database,
            "--nats",
            &nats,
        ]))
    };
    let out = check(&pg);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("ok    database   PostgreSQL"), "{report}");
    assert!(report.contains("ok    nats"), "{report}");

    let missing = format!("{}/belfry_no_such_database", pg.rsplit_once('/').unwrap().0);
    let out = check(&missing);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("FAIL  database"), "{report}");
    assert!(report.contains("belfry_no_such_database"), "{report}");
}
