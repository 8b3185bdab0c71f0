//! The iotchain command: devnet, node, keys, devices, readings, proofs and benchmarks.

mod bench;
mod bench_eth;
mod bench_mqtt;
mod client;
mod clock;
mod coldchain;
mod device;
mod device_import;
mod devnet;
mod export;
mod keys;
mod readings;
mod send;
mod testnet;
mod verify;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// jemalloc, as reth runs: the node's many threads allocate and free state copies block after
/// block, and glibc's per-thread arenas kept about 2.5 times the live heap resident
/// (heaptrack: 536 MiB live at a 1,391 MiB peak RSS with 50,000 devices).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// iotchain: a blockchain for IoT fleets shared by organisations that do not fully trust
/// each other. Devices sign readings; validators commit them under BFT finality; anyone can
/// check a reading's proof offline.
#[derive(Debug, Parser)]
#[command(
    name = "iotchain",
    version,
    propagate_version = true,
    after_help = "Quick start:\n  iotchain dev                                   # devnet on http://127.0.0.1:8545 with simulated devices\n  iotchain keys new --alg ed25519 --out s.key    # a device key\n  iotchain device register --owner-key iotchain-data/dev-owner.key --device-key s.key\n  iotchain send --device-key s.key --data '{\"temp_c\": 4.2}' --wait\n  iotchain readings <DEVICE> --stream default    # its readings back, one JSON line each\n  iotchain proof <ID> --out p.json && iotchain verify p.json --genesis iotchain-data/genesis.json\n\nDocs: docs/formats.md, docs/api.md, docs/operating.md, docs/analytics.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single-validator devnet with simulated devices (the quickest way to see iotchain work).
    Dev(devnet::DevArgs),
    /// Run a node (validator or follower) from a config file.
    Node(devnet::NodeArgs),
    /// Write (and with --run, start) a local multi-validator testnet on 127.0.0.1.
    Testnet(testnet::TestnetArgs),
    /// Create key files.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Register, rotate, revoke and inspect devices.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Sign readings with a device key and send them to a node.
    Send(send::SendArgs),
    /// Read a device's final readings back (every page, one JSON line each), by stream and by
    /// seq, device-time or block-time range.
    Readings(readings::ReadingsArgs),
    /// Fetch a reading's proof bundle from a node.
    Proof(verify::ProofArgs),
    /// Check a proof offline against a genesis file: a reading's proof bundle, or a range
    /// answer with its complete-range proof (`iotchain readings … --proof --out FILE`).
    Verify(verify::VerifyArgs),
    /// Measure end-to-end throughput and latency of one node on this machine.
    Bench(bench::BenchArgs),
    /// Export a node's final chain into a database for analytics (docs/analytics.md).
    #[command(subcommand)]
    Export(export::ExportCommand),
}

/// Exit code for a proof that does not verify (distinct from usage and runtime errors).
pub(crate) const EXIT_INVALID: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,iotchain=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        // A node runs on one Commonware runtime (consensus, the engine, the API).
        Command::Dev(a) => devnet::dev(a),
        Command::Node(a) => devnet::node(a),
        command => client_command(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a command that talks to nodes (or starts them as processes) on a plain tokio runtime.
fn client_command(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        match command {
            Command::Dev(_) | Command::Node(_) => unreachable!("run on the node's runtime"),
            Command::Testnet(a) => testnet::run(a).await,
            Command::Keys(c) => keys::run(c),
            Command::Device(c) => device::run(c).await,
            Command::Send(a) => send::run(a).await,
            Command::Readings(a) => readings::run(a).await,
            Command::Proof(a) => verify::fetch(a).await,
            Command::Verify(a) => verify::verify(a),
            Command::Bench(a) => bench::run(a).await,
            Command::Export(c) => export::run(c).await,
        }
    })
}

/// Default node URL for client commands.
pub(crate) const DEFAULT_NODE: &str = "http://127.0.0.1:8545";

/// Writes one line to standard output; `false` once the reader is gone (`| head`), so a
/// listing stops quietly instead of panicking as `println!` does on a closed pipe.
pub(crate) fn out_line(line: std::fmt::Arguments<'_>) -> bool {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}") {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            false
        }
    }
}

/// Default data directory.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("./iotchain-data")
}
