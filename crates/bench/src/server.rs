//! The server under test: started from a binary on a data directory, or an
//! existing one at a loopback URL. Also reads the server's CPU time and
//! memory from /proc when it is a local process.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The admin key the tool gives servers it starts.
pub const BENCH_ADMIN_KEY: &str = "bfy_sk_bench-admin-key-0123456789abcdefghijklmnopq";

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// A running Belfry on loopback (e.g. http://127.0.0.1:8080); repeat it
    /// for the nodes of a cluster (streams and sends are spread over them).
    /// Without it, the tool starts --binary on --data-dir.
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// The belfry binary to start (a release build for real figures).
    #[arg(long, default_value = "target/release/belfry")]
    pub binary: PathBuf,
    /// Data directory of the started server [default: a new temporary one].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The database of the started server (e.g. postgres://…) [default:
    /// SQLite in its data directory].
    #[arg(long)]
    pub database_url: Option<String>,
    /// Admin key of the server at --url.
    #[arg(long, env = "BELFRY_BENCH_ADMIN_KEY")]
    pub admin_key: Option<String>,
}

/// A server to measure.
pub struct Server {
    /// The first node.
    pub url: String,
    /// Every node (one unless several --url were given).
    pub urls: Vec<String>,
    pub admin_key: String,
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn check_loopback(url: &str) -> anyhow::Result<()> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ok = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback());
    if !ok {
        bail!("--url {url}: the benchmark only sends traffic to loopback (127.0.0.0/8, ::1)");
    }
    Ok(())
}

impl Target {
    /// The data directory a started server will use (created if needed).
    pub fn prepare_data_dir(&self) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
        match &self.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                Ok((d.clone(), None))
            }
            None => {
                let t = tempfile::tempdir()?;
                Ok((t.path().to_path_buf(), Some(t)))
            }
        }
    }

    /// Creates `users` users (`user-1` …) in a new SQLite database in `dir`
    /// with `belfry dev seed`, unless one is there already: setting up what
    /// a scenario does not measure.
    pub fn seed_users(&self, dir: &std::path::Path, users: usize) -> anyhow::Result<()> {
        let db = dir.join("belfry.db");
        if db.exists() {
            return Ok(());
        }
        let out = Command::new(&self.binary)
            .args(["dev", "seed", "--db"])
            .arg(&db)
            .args([
                "--users",
                &users.to_string(),
                "--direct",
                "0",
                "--broadcasts",
                "0",
            ])
            .env("BELFRY_LOG", "warn")
            .output()
            .context("belfry dev seed")?;
        if !out.status.success() {
            bail!("seeding failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Starts (or connects to) the server.
    pub fn start(
        &self,
        data: Option<(PathBuf, Option<tempfile::TempDir>)>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        if !self.urls.is_empty() {
            for url in &self.urls {
                check_loopback(url)?;
            }
            let admin_key = self
                .admin_key
                .clone()
                .context("--url needs --admin-key (or BELFRY_BENCH_ADMIN_KEY)")?;
            let urls: Vec<String> = self
                .urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect();
            return Ok(Server {
                url: urls[0].clone(),
                urls,
                admin_key,
                child: None,
                _temp: None,
            });
        }
        let (dir, temp) = match data {
            Some(d) => d,
            None => self.prepare_data_dir()?,
        };
        if !self.binary.exists() {
            bail!(
                "{} does not exist; build it with `cargo build --release` or pass --binary",
                self.binary.display()
            );
        }
        let mut cmd = Command::new(&self.binary);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
            .arg("--data-dir")
            .arg(&dir)
            .env("BELFRY_ADMIN_KEY", BENCH_ADMIN_KEY)
            .env("BELFRY_LOG", "warn,belfry=info")
            .env("NO_COLOR", "1")
            .env_remove("BELFRY_CONFIG")
            .env_remove("BELFRY_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = &self.database_url {
            cmd.env("BELFRY_DATABASE_URL", url);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let stderr = child.stderr.take().context("server stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.split("Belfry listening on ").nth(1) {
                        break rest.split_whitespace().next().unwrap_or("").to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    bail!("the server exited before listening");
                }
            }
        };
        // Keep draining the server's log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(Server {
            urls: vec![url.clone()],
            url,
            admin_key: BENCH_ADMIN_KEY.to_string(),
            child: Some(child),
            _temp: temp,
        })
    }
}

impl Server {
    /// The node the n-th client or request goes to.
    pub fn node(&self, n: usize) -> &str {
        &self.urls[n % self.urls.len()]
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .expect("HTTP client")
    }

    /// A request with the admin key; fails unless the status is 2xx.
    pub async fn admin(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn token(&self, client: &reqwest::Client, user: &str) -> anyhow::Result<String> {
        let v = self
            .admin(
                client,
                reqwest::Method::POST,
                &format!("/v1/users/{user}/tokens"),
                Some(serde_json::json!({"ttl_seconds": 86400})),
            )
            .await?;
        v["token"]
            .as_str()
            .map(String::from)
            .context("token in the response")
    }

    /// CPU time (user + system) the server process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(&format!("/proc/{}/stat", self.pid()?))
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// CPU time (user + system) of a process from its /proc stat file.
pub fn cpu_time_of(stat_path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / 100.0))
}

/// CPU time this benchmark process has used so far.
pub fn own_cpu_time() -> Duration {
    cpu_time_of("/proc/self/stat").unwrap_or_default()
}

/// Creates users `{prefix}-{first}` … `{prefix}-{last}` with no attributes,
/// `concurrency` requests at a time.
pub async fn create_users(
    server: &Server,
    client: &reqwest::Client,
    prefix: &str,
    first: usize,
    last: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let results: Vec<anyhow::Result<serde_json::Value>> = futures::stream::iter(first..=last)
        .map(|i| async move {
            server
                .admin(
                    client,
                    reqwest::Method::PUT,
                    &format!("/v1/users/{prefix}-{i}"),
                    Some(serde_json::json!({})),
                )
                .await
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .map(|_| ())
}

/// Creates users `{prefix}-{i}` (optionally in a group) and issues a token
/// for each, `concurrency` requests at a time. Returns the tokens in order.
pub async fn users_with_tokens(
    server: &Server,
    client: &reqwest::Client,
    prefix: &str,
    count: usize,
    group: Option<&str>,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let body = match group {
        Some(g) => serde_json::json!({"groups": [g]}),
        None => serde_json::json!({}),
    };
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(0..count)
        .map(|i| {
            let body = body.clone();
            async move {
                let id = format!("{prefix}-{i}");
                server
                    .admin(
                        client,
                        reqwest::Method::PUT,
                        &format!("/v1/users/{id}"),
                        Some(body),
                    )
                    .await?;
                server.token(client, &id).await
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("http://127.3.2.1:8080/x").is_ok());
        assert!(check_loopback("http://localhost:8080").is_ok());
        assert!(check_loopback("http://[::1]:8080").is_ok());
        assert!(check_loopback("http://10.0.0.1:8080").is_err());
        assert!(check_loopback("https://belfry.example.com").is_err());
    }
}
