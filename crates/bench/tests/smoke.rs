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
