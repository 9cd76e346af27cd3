//! `belfry rules export|import`: the rules and templates as files for
//! version control (works on the database directly, like `belfry keys`).
//! One pretty JSON file per rule (`rules/<id>.json`) and template
//! (`templates/<id>.json`), in the form `PUT /v1/rules/{id}` and
//! `PUT /v1/templates/{id}` take. Import checks every file as the API does
//! and applies all of them in one transaction, or nothing.

use crate::open_store;
use crate::settings::StorageArgs;
use anyhow::Context as _;
use belfry_core::{Clock as _, SystemClock};
use belfry_server::rulebook::{self, RuleFiles};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The exit status of an import refused for bad files (nothing changed).
pub const INVALID_FILES: i32 = 3;

#[derive(Debug, clap::Subcommand)]
pub enum RulesAction {
    /// Write every rule and template as a file: DIR/rules/<id>.json and
    /// DIR/templates/<id>.json (pretty JSON, fixed order: an unchanged set
    /// exports byte for byte the same). Files there of rules and templates
    /// that no longer exist are removed.
    Export {
        /// The directory to write into (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Read DIR/rules/*.json and DIR/templates/*.json, check every file as
    /// the API does (templates parse, rules name templates and categories
    /// that exist) and store them all in one transaction, or nothing: each
    /// bad file is reported with what is wrong, and the exit status is 3.
    /// Rules and templates no file names stay, unless --prune.
    Import {
        /// The directory to read.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Also delete stored rules and templates that no file names.
        #[arg(long)]
        prune: bool,
        /// Only check the files and say what would change.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

pub async fn run(action: RulesAction) -> anyhow::Result<()> {
    match action {
        RulesAction::Export { dir, storage } => {
            let store = open_store(&storage.resolve()?).await?;
            let files = rulebook::export(&store).await?;
            let (written, removed) = write_files(&dir, &files)?;
            println!(
                "exported {} rule(s) and {} template(s) to {} ({written} file(s) changed, {removed} removed)",
                files.rules.len(),
                files.templates.len(),
                dir.display()
            );
            Ok(())
        }
        RulesAction::Import {
            dir,
            prune,
            dry_run,
            storage,
        } => {
            let files = read_files(&dir)?;
            let store = open_store(&storage.resolve()?).await?;
            let plan = match rulebook::plan_import(&store, &files, prune).await? {
                Ok(plan) => plan,
                Err(problems) => {
                    for p in &problems {
                        for e in &p.errors {
                            eprintln!("{}: {e}", dir.join(&p.file).display());
                        }
                    }
                    eprintln!("{} file(s) are wrong: nothing was imported", problems.len());
                    std::process::exit(INVALID_FILES);
                }
            };
            let name = |kind: belfry_store::DocKind| format!("{}s", kind.as_str());
            for d in &plan.write {
                println!("write  {}/{}.json", name(d.kind), d.id);
            }
            for (kind, id) in &plan.delete {
                println!("delete {}/{id}", name(*kind));
            }
            let summary = format!(
                "{} written, {} deleted, {} unchanged",
                plan.write.len(),
                plan.delete.len(),
                plan.unchanged
            );
            if dry_run {
                println!("checked: every file is valid; would import: {summary}");
                return Ok(());
            }
            rulebook::apply_import(&store, plan, SystemClock.now()).await?;
            println!("imported: {summary}");
            Ok(())
        }
    }
}

const KINDS: [&str; 2] = ["rules", "templates"];

fn part<'a>(files: &'a RuleFiles, kind: &str) -> &'a BTreeMap<String, String> {
    if kind == "rules" {
        &files.rules
    } else {
        &files.templates
    }
}

/// Writes the files that differ and removes `*.json` no longer exported;
/// how many were written and removed.
fn write_files(dir: &Path, files: &RuleFiles) -> anyhow::Result<(usize, usize)> {
    let (mut written, mut removed) = (0, 0);
    for kind in KINDS {
        let sub = dir.join(kind);
        std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        let docs = part(files, kind);
        for (id, text) in docs {
            let path = sub.join(format!("{id}.json"));
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                written += 1;
            }
        }
        for entry in std::fs::read_dir(&sub)? {
            let path = entry?.path();
            let stale = path.extension().is_some_and(|e| e == "json")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|id| !docs.contains_key(id));
            if stale {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok((written, removed))
}

/// Reads DIR/rules/*.json and DIR/templates/*.json (at least one of the
/// two directories must exist).
fn read_files(dir: &Path) -> anyhow::Result<RuleFiles> {
    let mut out = RuleFiles::default();
    let mut found = false;
    for kind in KINDS {
        let sub = dir.join(kind);
        if !sub.is_dir() {
            continue;
        }
        found = true;
        let target = if kind == "rules" {
            &mut out.rules
        } else {
            &mut out.templates
        };
        for entry in
            std::fs::read_dir(&sub).with_context(|| format!("reading {}", sub.display()))?
        {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let id = path
                .file_stem()
                .and_then(|s| s.to_str())
                .with_context(|| format!("{}: the file name is not UTF-8", path.display()))?
                .to_string();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            target.insert(id, text);
        }
    }
    anyhow::ensure!(
        found,
        "{} has neither rules/ nor templates/ (write them with `belfry rules export --dir {}`)",
        dir.display(),
        dir.display()
    );
    Ok(out)
}
