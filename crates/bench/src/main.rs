//! `belfry-bench`: measures a real Belfry like its users would, over HTTP
//! (and, for the real-time scenarios, SSE and WebSocket) only. It starts the
//! server itself from a binary and a data directory, or targets `--url`.
//! Every run is bounded in count and time and talks to loopback only.
#![forbid(unsafe_code)]

mod clients;
mod http1;
mod report;
mod scenarios;
mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "belfry-bench", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Print the results as JSON (on stdout) instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Inbox reads and broadcast acceptance on a pre-filled database:
    /// counts and first-page latency, and the time to accept a broadcast to everyone.
    Inbox(scenarios::inbox::Args),
    /// N notifications over keep-alive connections, single and batch: rate and latency.
    Ingest(scenarios::ingest::Args),
    /// Events through one rule and template against plain sends (3 users each).
    Events(scenarios::events::Args),
    /// K clients in one group hold streams; M broadcasts: time to every receipt.
    Fanout(scenarios::fanout::Args),
    /// A steady rate of notifications to users with open streams: send-to-receipt latency.
    Latency(scenarios::latency::Args),
    /// A steady load for a long time (sends to open streams, reads, stream
    /// churn, a client that never reads), reported per interval: latency,
    /// memory, database and WAL size.
    Soak(scenarios::soak::Args),
    /// K idle streams: server memory per connection, time to connect.
    Connections(scenarios::connections::Args),
    /// N emails through the workers to a local SMTP sink: emails per second.
    Email(scenarios::email::Args),
    /// The daily digest of N users at the same minute: digests per second,
    /// and send latency while they run.
    Digest(scenarios::digest::Args),
    /// N users with a push subscription each: web pushes per second to a
    /// local push-service stand-in, and a web-push broadcast to all of them.
    WebPush(scenarios::webpush::Args),
    /// The machine's ceiling for SQLite: batched inserts of the same rows.
    CeilingSqlite(scenarios::ceiling::SqliteArgs),
    /// The machine's ceiling for PostgreSQL: the same rows, single-row
    /// autocommit, multi-row inserts and COPY.
    CeilingPostgres(scenarios::ceiling::PostgresArgs),
    /// The machine's ceiling for fan-out: a minimal tokio WebSocket server.
    CeilingWs(scenarios::ceiling::WsArgs),
    /// (internal) the minimal WebSocket server of ceiling-ws.
    #[command(hide = true)]
    CeilingWsServer {
        #[arg(long, value_enum, default_value_t = scenarios::ceiling::FrameShape::Belfry)]
        frame: scenarios::ceiling::FrameShape,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        match cli.scenario {
            Scenario::Inbox(args) => scenarios::inbox::run(args).await,
            Scenario::Ingest(args) => scenarios::ingest::run(args).await,
            Scenario::Events(args) => scenarios::events::run(args).await,
            Scenario::Fanout(args) => scenarios::fanout::run(args).await,
            Scenario::Latency(args) => scenarios::latency::run(args).await,
            Scenario::Soak(args) => scenarios::soak::run(args).await,
            Scenario::Connections(args) => scenarios::connections::run(args).await,
            Scenario::Email(args) => scenarios::email::run(args).await,
            Scenario::Digest(args) => scenarios::digest::run(args).await,
            Scenario::WebPush(args) => scenarios::webpush::run(args).await,
            Scenario::CeilingSqlite(args) => scenarios::ceiling::sqlite(args).await,
            Scenario::CeilingPostgres(args) => scenarios::ceiling::postgres(args).await,
            Scenario::CeilingWs(args) => scenarios::ceiling::websocket(args).await,
            Scenario::CeilingWsServer { frame } => {
                scenarios::ceiling::websocket_server(frame).await?;
                std::process::exit(0);
            }
        }
    })?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
