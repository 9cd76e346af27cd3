//! Operations from the shell: `belfry backup` and `belfry restore` of the
//! embedded SQLite database.

use crate::settings::{Database, StorageArgs};
use anyhow::bail;
use belfry_store::sqlite::backup::{self, BackupOptions, Copied};
use std::path::PathBuf;

/// Arguments of `belfry backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The file to write (must not exist). Written as FILE.partial first and
    /// renamed when complete and checked.
    pub file: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Arguments of `belfry restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup to restore (a file written by `belfry backup`).
    pub file: PathBuf,
    /// Replace the database if the data directory already holds one.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

const POSTGRES: &str = "belfry backup and restore copy the embedded SQLite database; \
     for PostgreSQL use pg_dump and pg_restore (docs/deployment.md, \"Backups\")";

fn sqlite_path(storage: &StorageArgs) -> anyhow::Result<PathBuf> {
    match storage.resolve()?.database {
        Database::Sqlite(path) => Ok(path),
        Database::Postgres(_) => bail!(POSTGRES),
    }
}

fn describe(c: &Copied) -> String {
    format!(
        "{:.1} MiB, schema version {}, notifications up to seq {}, in {:.2} s",
        c.bytes() as f64 / (1024.0 * 1024.0),
        c.schema_version,
        c.last_seq,
        c.elapsed.as_secs_f64()
    )
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let source = sqlite_path(&args.storage)?;
    let dest = args.file.clone();
    let shown = (source.display().to_string(), dest.display().to_string());
    let copied = tokio::task::spawn_blocking(move || {
        let mut last_report = std::time::Instant::now();
        backup::backup(&source, &dest, &BackupOptions::default(), |done, all| {
            if last_report.elapsed().as_secs() >= 2 {
                last_report = std::time::Instant::now();
                eprintln!("copied {done} of {all} pages");
            }
        })
    })
    .await??;
    println!(
        "backed up {} to {} ({})",
        shown.0,
        shown.1,
        describe(&copied)
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let target = sqlite_path(&args.storage)?;
    let file = args.file.clone();
    let shown = (file.display().to_string(), target.display().to_string());
    let force = args.force;
    let copied =
        tokio::task::spawn_blocking(move || backup::restore(&file, &target, force)).await??;
    println!(
        "restored {} into {} ({}); start Belfry to apply any newer migrations",
        shown.0,
        shown.1,
        describe(&copied)
    );
    Ok(())
}
