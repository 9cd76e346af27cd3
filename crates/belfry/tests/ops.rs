//! Operating Belfry from the shell with the real binary: `--version`,
//! `backup` and `restore` of a real SQLite database while the server runs.

mod common;
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
