//! Helpers shared by the test binaries that run the real `belfry` process:
//! a real SMTP server process, reading a metric, waiting for a condition.
#![allow(dead_code)]

pub mod process;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real SMTP server process (aiosmtpd, tests/smtp/smtp_sink.py) that
/// writes each accepted message as JSON into a directory.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// `mode`: accept, tempfail:N, reject or stall.
    pub fn start(mode: &str) -> Sink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/smtp/smtp_sink.py");
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path())
            .args(["--mode", mode])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the SMTP test server (scripts/test installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .trim_start_matches("LISTENING ")
            .parse()
            .expect("the SMTP test server says its port");
        Sink { child, port, dir }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The first recipient of every message received, sorted.
    pub fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
                v["rcpt_tos"][0].as_str().unwrap().to_string()
            })
            .collect();
        out.sort();
        out
    }

    pub fn count(&self) -> usize {
        self.recipients().len()
    }
}

/// A value of the server's /metrics (0 when absent).
pub async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to 30 s) until `check` holds.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
