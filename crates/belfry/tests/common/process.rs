//! The real `belfry` binary in a process: started with a data directory of
//! its own, and its output read.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_belfry");

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The admin key printed on first start, if any.
    pub admin_key: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn belfry(data: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("BELFRY_ADMIN_KEY")
        .env_remove("BELFRY_LISTEN")
        .env_remove("BELFRY_CONFIG")
        .env_remove("BELFRY_DATABASE_URL")
        .env("BELFRY_DATA_DIR", data)
        .env("NO_COLOR", "1");
    cmd
}

/// Starts `belfry serve` on a free port and waits for its "listening" line.
pub fn serve(data: &Path, extra_env: &[(&str, &str)]) -> Server {
    let mut cmd = belfry(data);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("BELFRY_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    // Owned by a Server at once, so that it is killed whatever happens.
    let mut server = Server {
        child: cmd.spawn().expect("start belfry serve"),
        url: String::new(),
        admin_key: None,
    };
    let (tx, rx) = mpsc::channel::<String>();
    let out = server.child.stdout.take().unwrap();
    let err = server.child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("belfry serve announces where it listens");
        if let Some(k) = line.trim().strip_prefix("bfy_sk_") {
            server.admin_key = Some(format!("bfy_sk_{k}"));
        }
        if let Some(rest) = line.split("Belfry listening on ").nth(1) {
            server.url = rest.split_whitespace().next().unwrap().to_string();
            // stdout and stderr are read by two threads: the key, printed
            // before this line, may still be on its way.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
                if let Some(k) = line.trim().strip_prefix("bfy_sk_") {
                    server.admin_key = Some(format!("bfy_sk_{k}"));
                }
            }
            return server;
        }
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run belfry")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

pub async fn http(
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
