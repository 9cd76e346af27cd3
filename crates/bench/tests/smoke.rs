//! The benchmark tool at tiny sizes, so that it cannot rot: it starts the
//! real (debug) belfry binary and must produce every row of its report.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The belfry binary built next to this tool by `cargo test --workspace`.
fn belfry_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_belfry-bench")).with_file_name("belfry");
    assert!(
        path.exists(),
        "{} is missing: run the workspace tests (scripts/test), which build it",
        path.display()
    );
    path
}

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_belfry-bench"))
        .args(args)
        .arg("--binary")
        .arg(belfry_binary())
        .arg("--json")
        .output()
        .expect("run belfry-bench");
    assert!(
        out.status.success(),
        "belfry-bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no row {name} in {report}"))
}

#[test]
fn inbox_scenario_at_tiny_size() {
    let r = bench(&[
        "inbox",
        "--users",
        "50",
        "--direct",
        "300",
        "--broadcasts",
        "10",
        "--samples",
        "20",
        "--accept",
        "5",
        "--sample-users",
        "10",
    ]);
    assert_eq!(r["scenario"], "inbox");
    for name in [
        "GET /v1/me/counts (typical",
        "GET /v1/me/notifications first page (typical",
        "GET /v1/me/counts (busiest",
        "POST /v1/notifications to all",
        "POST /v1/notifications to one user",
    ] {
        let row = row(&r, name);
        assert!(row["n"].as_u64().unwrap() >= 5, "{row}");
        assert!(row["p50_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["p99_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap());
    }
}

#[test]
fn refuses_non_loopback_targets() {
    let out = Command::new(env!("CARGO_BIN_EXE_belfry-bench"))
        .args([
            "inbox",
            "--url",
            "http://192.0.2.1:8080",
            "--admin-key",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn ingest_scenario_at_tiny_size_with_each_client() {
    for client in ["reqwest", "lean"] {
        let r = bench(&[
            "ingest",
            "--notifications",
            "60",
            "--concurrency",
            "4",
            "--batch",
            "20",
            "--client",
            client,
        ]);
        assert_eq!(r["parameters"]["client"], client);
        let rate = row(&r, "single: accepted per second")["value"]
            .as_f64()
            .unwrap();
        assert!(rate > 0.0, "{client}");
        assert!(
            row(&r, "batch: accepted per second")["value"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{client}"
        );
        assert_eq!(row(&r, "single: POST until 202")["n"], 60, "{client}");
    }
}

#[test]
fn fanout_scenario_over_websocket_and_sse() {
    for transport in ["ws", "sse"] {
        let r = bench(&[
            "fanout",
            "--clients",
            "20",
            "--broadcasts",
            "3",
            "--transport",
            transport,
        ]);
        let every = row(&r, "receipt after send, every client");
        assert_eq!(
            every["n"], 60,
            "{transport}: every client got every broadcast"
        );
        assert_eq!(row(&r, "last client's receipt")["n"], 3);
    }
}

#[test]
fn latency_scenario_at_tiny_size() {
    let r = bench(&["latency", "--users", "5", "--rate", "50", "--seconds", "1"]);
    assert_eq!(row(&r, "send to receipt on the stream")["n"], 50);
    assert_eq!(row(&r, "received")["value"], 50.0);
}

#[test]
fn connections_scenario_at_tiny_size() {
    let r = bench(&["connections", "--clients", "30"]);
    assert!(row(&r, "time to connect all")["value"].as_f64().unwrap() > 0.0);
    assert!(
        row(&r, "server RSS with all connected")["value"]
            .as_f64()
            .unwrap()
            > 1.0
    );
}

#[test]
fn email_scenario_at_tiny_size() {
    let r = bench(&["email", "--emails", "40", "--workers", "4"]);
    assert!(row(&r, "emails sent per second")["value"].as_f64().unwrap() > 0.0);
}

#[test]
fn web_push_scenario_at_tiny_size() {
    let r = bench(&["web-push", "--users", "30", "--workers", "4"]);
    assert!(
        row(&r, "web pushes sent per second")["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        row(&r, "broadcast: pushes per second")["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn ceiling_scenarios_at_tiny_size() {
    let out = Command::new(env!("CARGO_BIN_EXE_belfry-bench"))
        .args([
            "ceiling-sqlite",
            "--rows",
            "2000",
            "--batch",
            "500",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(row(&r, "batched inserts")["value"].as_f64().unwrap() > 0.0);
    let out = Command::new(env!("CARGO_BIN_EXE_belfry-bench"))
        .args(["ceiling-ws", "--clients", "20", "--frames", "3", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row(&r, "receipt after push")["n"], 60);
}

/// Runs when BELFRY_TEST_POSTGRES_URL is set (scripts/test and CI set it).
#[test]
fn postgres_ceiling_at_tiny_size() {
    let Some(url) = std::env::var("BELFRY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!("skipped: set BELFRY_TEST_POSTGRES_URL to run the PostgreSQL ceiling");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_belfry-bench"))
        .args(["ceiling-postgres", "--database-url", &url])
        .args([
            "--rows",
            "600",
            "--batch",
            "200",
            "--concurrency",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["single-row autocommit", "multi-row inserts", "COPY"] {
        assert!(row(&r, name)["value"].as_f64().unwrap() > 0.0, "{name}");
    }
}

#[test]
fn soak_scenario_at_tiny_size() {
    let r = bench(&[
        "soak",
        "--users",
        "5",
        "--rate",
        "50",
        "--reads",
        "20",
        "--churn",
        "120",
        "--seconds",
        "4",
        "--interval",
        "2",
        "--prefill",
        "1200",
    ]);
    assert_eq!(r["scenario"], "soak");
    // The prefill (three batches) went in before the timed run; the timed
    // sends below are counted without it.
    assert_eq!(r["parameters"]["prefill"], 1200, "{r}");
    let lines = r["lines"].as_array().expect("per-interval lines");
    // The header, its rule and one line per interval, with RSS and both
    // file sizes known (the tool started the server on SQLite).
    assert_eq!(lines.len(), 4, "{r}");
    for line in &lines[2..] {
        let cells: Vec<&str> = line.as_str().unwrap().split('|').map(str::trim).collect();
        assert!(cells[9].parse::<f64>().unwrap() > 0.0, "RSS in {line}");
        assert!(cells[10].parse::<f64>().unwrap() > 0.0, "DB size in {line}");
        assert!(cells[11].parse::<f64>().is_ok(), "WAL size in {line}");
    }
    let latency = row(&r, "send to receipt");
    assert_eq!(latency["n"].as_u64().unwrap(), 200, "{r}");
    assert!(row(&r, "inbox reads")["n"].as_u64().unwrap() > 10, "{r}");
    assert_eq!(row(&r, "errors")["value"].as_f64().unwrap(), 0.0, "{r}");
}
