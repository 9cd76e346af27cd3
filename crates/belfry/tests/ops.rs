//! Operating Belfry from the shell with the real binary: `--version`.

mod common;
use common::process::{BIN, run, stderr, stdout};

use std::process::Command;

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
