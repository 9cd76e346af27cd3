//! Records the git commit the binary is built from, for `belfry --version`.
//!
//! `BELFRY_GIT_COMMIT` wins when set (builds from a source archive or in a
//! container without `.git`). Otherwise `git` is asked; when it is missing,
//! or the source is not a git checkout, the commit is "unknown" and the build
//! goes on. The script runs again only when HEAD moves, so an unchanged
//! checkout does not relink the binary on every build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Files whose change means HEAD points elsewhere (only those that exist:
/// a missing one would make cargo run this script on every build).
fn watch(path: Option<String>) {
    if let Some(p) = path.map(PathBuf::from).filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BELFRY_GIT_COMMIT");
    let commit = match std::env::var("BELFRY_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            let commit = git(&["rev-parse", "--short=12", "HEAD"]);
            if commit.is_some() {
                watch(git(&[
                    "rev-parse",
                    "--path-format=absolute",
                    "--git-path",
                    "HEAD",
                ]));
                watch(git(&[
                    "rev-parse",
                    "--path-format=absolute",
                    "--git-path",
                    "packed-refs",
                ]));
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch(git(&[
                        "rev-parse",
                        "--path-format=absolute",
                        "--git-path",
                        &branch,
                    ]));
                }
            }
            commit.unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=BELFRY_GIT_COMMIT={commit}");
}
