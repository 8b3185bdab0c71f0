//! `iotchain export`: a node's final chain into a database for analytics (the work is in
//! `iotchain-export`; this parses arguments and prints progress).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use iotchain_export::{Config, Event, Progress};

use crate::{
    DEFAULT_NODE,
    clock::{now_ms, stopwatch},
};

/// Export a node's final chain into a database.
#[derive(Debug, Subcommand)]
pub(crate) enum ExportCommand {
    /// Follow a node's final chain into PostgreSQL tables, exactly once and resumable.
    #[command(
        long_about = "Follow a node's final chain into PostgreSQL tables for analytics (blocks, readings, \
                      devices, owner and Ethereum transactions, receipts, logs; see docs/analytics.md).\n\n\
                      Exactly once: each batch of blocks is written in one PostgreSQL transaction with the \
                      export cursor, so the database always holds whole blocks up to the cursor: kill \
                      the exporter at any moment and start it again, it continues at the block after \
                      the cursor, with no row missing and none twice. Tables are created when missing; \
                      a database holding another chain's export is refused.\n\n\
                      It runs until stopped (Ctrl-C stops after the current transaction), or to a \
                      known point with --until-height or --once. While the node or the database is \
                      unreachable it retries with backoff (see --max-retries).",
        after_help = "Examples:\n  iotchain export postgres --node http://127.0.0.1:8545 --db postgres://iot@localhost/iotchain\n  \
                      IOTCHAIN_EXPORT_DB=postgres://iot:secret@db/iotchain iotchain export postgres --once\n\n\
                      Progress lines go to standard error: height, rows/s, readings/s, lag behind the head."
    )]
    Postgres(PostgresArgs),
}

/// Arguments of `iotchain export postgres`.
#[derive(Debug, Args)]
pub(crate) struct PostgresArgs {
    /// The node to follow (any node of the chain: a follower is fine).
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// PostgreSQL connection string, e.g. postgres://user:password@host:5432/database (or
    /// the key=value form). Without TLS.
    #[arg(long, env = "IOTCHAIN_EXPORT_DB")]
    db: String,
    /// First height to export into an empty database (default 1). A database that holds an
    /// export already resumes after its cursor; naming another height for it is an error.
    #[arg(long)]
    from_height: Option<u64>,
    /// Most blocks written per database transaction.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_blocks: u64,
    /// Exit (status 0) once this height is written.
    #[arg(long, conflicts_with = "once")]
    until_height: Option<u64>,
    /// Export what is final when it starts, then exit (status 0).
    #[arg(long)]
    once: bool,
    /// Give up (status 2) after this many failed attempts in a row to reach the node or the
    /// database; by default it retries for ever.
    #[arg(long)]
    max_retries: Option<u32>,
    /// Check the blocks' certificates against this genesis file's validators instead of
    /// those the node reports in /v1/status.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Least time between two progress lines, ms.
    #[arg(long, default_value_t = 2_000)]
    progress_ms: u64,
}

/// Runs an export subcommand.
pub(crate) async fn run(command: ExportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExportCommand::Postgres(a) => postgres(a).await,
    }
}

async fn postgres(a: PostgresArgs) -> anyhow::Result<ExitCode> {
    let validators = match &a.genesis {
        Some(path) => Some(
            iotchain_block::Genesis::read(path)
                .with_context(|| format!("reading the genesis file {}", path.display()))?
                .validator_keys(),
        ),
        None => None,
    };
    let config = Config {
        node: a.node.clone(),
        db: a.db.clone(),
        from_height: a.from_height,
        batch_blocks: a.batch_blocks,
        until_height: a.until_height,
        once: a.once,
        max_retries: a.max_retries,
        validators,
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        eprintln!("export: stopping after the current transaction");
        let _ = stop.send(true);
    });
    let mut meter = Meter::new(Duration::from_millis(a.progress_ms));
    let summary = iotchain_export::run(&config, shutdown, |e| meter.event(e)).await?;
    meter.flush();
    eprintln!(
        "export: {} at height {}",
        if summary.interrupted {
            "stopped"
        } else {
            "done"
        },
        summary.height
    );
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Progress lines: what was committed since the last line, as rates.
struct Meter {
    every: Duration,
    since: std::time::Instant,
    rows: u64,
    readings: u64,
    blocks: u64,
    last: Option<Progress>,
}

impl Meter {
    fn new(every: Duration) -> Self {
        Self {
            every,
            since: stopwatch(),
            rows: 0,
            readings: 0,
            blocks: 0,
            last: None,
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Started {
                from,
                head,
                resumed,
            } => {
                let how = if resumed { "resuming" } else { "starting" };
                eprintln!("export: {how} at height {from} (node head {head})");
                self.since = stopwatch();
            }
            Event::Retrying {
                error,
                attempt,
                delay,
            } => eprintln!(
                "export: {error}; retrying in {:.1} s (attempt {attempt})",
                delay.as_secs_f64()
            ),
            Event::Committed(p) => {
                self.rows += p.rows;
                self.readings += p.readings;
                self.blocks += p.blocks;
                self.last = Some(p);
                if self.since.elapsed() >= self.every {
                    self.flush();
                }
            }
        }
    }

    fn flush(&mut self) {
        let Some(p) = self.last.take() else { return };
        let secs = self.since.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "export: height {} | {} blocks, {} rows in {secs:.1} s: {:.0} rows/s, {:.0} readings/s | \
             lag {} blocks, {:.1} s behind block time | last transaction {} ms",
            p.height,
            self.blocks,
            self.rows,
            self.rows as f64 / secs,
            self.readings as f64 / secs,
            p.head.saturating_sub(p.height),
            now_ms().saturating_sub(p.block_time_ms) as f64 / 1000.0,
            p.write_time.as_millis(),
        );
        self.since = stopwatch();
        self.rows = 0;
        self.readings = 0;
        self.blocks = 0;
    }
}
