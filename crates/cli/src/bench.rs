//! `iotchain bench`: end-to-end throughput and latency of one node over HTTP, on this machine.
//!
//! The node runs as a child process (`iotchain node`) on a fresh chain in a temporary
//! directory; the bench registers devices, pre-signs readings, then sends them in batches
//! from several concurrent clients (each owning a disjoint set of devices, so per-device
//! `seq` order holds) and waits for every batch to be final with `?wait_ms=` long polls.
//! Before starting the node it measures the machine's raw Ed25519 batch-verification rate,
//! so the end-to-end figure can be read as a ratio that means the same on any machine.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use iotchain_block::{DeviceOp, NewDevice, SignedTx};
use iotchain_crypto::{
    DevicePublicKey, DeviceSigner, KeyAlg, KeyFile, SignatureCheck, verify_signatures,
};

use crate::client::{Client, cbor_batch};

/// Which device algorithms to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchAlg {
    /// Ed25519 only.
    Ed25519,
    /// P-256 only.
    P256,
    /// Both, one after the other.
    Both,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Device algorithms to measure.
    #[arg(long, value_enum, default_value_t = BenchAlg::Both)]
    alg: BenchAlg,
    /// Ed25519 readings to send.
    #[arg(long, default_value_t = 300_000)]
    ed25519_readings: usize,
    /// P-256 readings to send.
    #[arg(long, default_value_t = 120_000)]
    p256_readings: usize,
    /// Devices per algorithm.
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Readings per HTTP batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Block interval of the node, ms.
    #[arg(long, default_value_t = 200)]
    block_interval_ms: u64,
    /// Keep the node's data directory here instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP port of the (first) benchmarked node; with several validators, node i serves
    /// HTTP on port+i and p2p on port+100+i.
    #[arg(long, default_value_t = 18545)]
    port: u16,
    /// Validators, each a process on this machine; clients spread their batches over them and
    /// every validator verifies every reading.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// Offer readings at this total rate (readings/s) instead of as fast as the nodes take
    /// them: latency is then measured below saturation, not in a queue.
    #[arg(long)]
    rate: Option<f64>,
    /// Send the readings through this MQTT broker (mqtt://host:port, e.g. a local Mosquitto)
    /// instead of HTTP: the node bridges the broker, the bench publishes batches (CBOR arrays)
    /// with QoS 1 and times each batch until its final ack arrives on the ack topic.
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// Also send this many Ethereum transfers (JSON-RPC `eth_sendRawTransaction` batches) while
    /// the first readings phase sends its readings, and report transfers/s and latency.
    #[arg(long, default_value_t = 0)]
    transfers: usize,
    /// Make the transfers ERC-20 `transfer` calls instead of plain value transfers.
    #[arg(long, requires = "transfers")]
    erc20: bool,
    /// Offer the transfers at this rate (transfers/s) instead of as fast as the node takes
    /// them.
    #[arg(long, requires = "transfers")]
    transfer_rate: Option<f64>,
    /// Accounts sending the transfers (each sends its share in nonce order).
    #[arg(long, default_value_t = 400)]
    senders: usize,
    /// Block gas limit of the benchmarked chain (21,000 gas per plain transfer). The default
    /// holds 2,000 plain transfers per 200 ms block at half the limit, where EIP-1559 keeps the
    /// base fee still: 10,000 transfers/s.
    #[arg(long, default_value_t = 84_000_000)]
    block_gas_limit: u64,
    /// Run the chain without stream accumulators (as a genesis written before them), to
    /// measure what keeping them costs: run once with and once without.
    #[arg(long)]
    no_accumulators: bool,
}

/// What the bench reads of a batch submission's reply (borrowed: no JSON tree is built for
/// the hundreds of results of each batch).
#[derive(serde::Deserialize)]
struct BatchReply<'a> {
    rejected: usize,
    #[serde(borrow)]
    results: Vec<ItemReply<'a>>,
}

#[derive(serde::Deserialize)]
struct ItemReply<'a> {
    #[serde(borrow)]
    id: Option<&'a str>,
}

/// Results of one phase.
struct Phase {
    readings: usize,
    /// When the first batch was sent.
    started: Instant,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    rejected: usize,
    node_cpu: Option<f64>,
    bench_cpu: Option<f64>,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Finality long polls the bench keeps open at once (over all clients).
const MAX_FINALITY_POLLS: usize = 384;

/// Devices one owner transaction of the bench registers.
const REGISTER_BATCH: usize = 5_000;

/// `n` fresh device keys, generated on all cores.
async fn generate_signers(alg: KeyAlg, n: usize) -> anyhow::Result<Vec<DeviceSigner>> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let per = n.div_ceil(threads);
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let count = per.min(n.saturating_sub(t * per));
                    scope.spawn(move || {
                        (0..count)
                            .map(|_| DeviceSigner::generate(alg))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(n);
            for h in handles {
                all.extend(h.join().expect("key generation thread")?);
            }
            Ok(all)
        })
    })
    .await?
}

/// The machine's raw Ed25519 batch verification rate on all cores, per second.
fn raw_ed25519_rate() -> f64 {
    let signers: Vec<DeviceSigner> = (0..64u8)
        .map(|i| DeviceSigner::from_secret(KeyAlg::Ed25519, &[i + 1; 32]).expect("ed25519 key"))
        .collect();
    let keys: Vec<DevicePublicKey> = signers.iter().map(|s| s.public_key()).collect();
    let messages: Vec<Vec<u8>> = (0..40_000u32)
        .map(|i| [&i.to_be_bytes()[..], &[7u8; 120]].concat())
        .collect();
    let sigs: Vec<[u8; 64]> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| signers[i % 64].sign(m))
        .collect();
    let checks: Vec<SignatureCheck<'_>> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| SignatureCheck {
            key: &keys[i % 64],
            message: m,
            signature: &sigs[i],
        })
        .collect();
    let _ = verify_signatures(&checks[..2000]); // warm up
    // The median of five rounds: one noisy round moves neither end of the ratio much.
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let start = crate::clock::stopwatch();
            let verdicts = verify_signatures(&checks);
            assert!(verdicts.iter().all(|v| *v));
            checks.len() as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[2]
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) async fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    println!(
        "iotchain bench on {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let raw = tokio::task::spawn_blocking(raw_ed25519_rate).await?;
    println!("raw ed25519 batch verification: {raw:.0} verifies/s (all cores)");

    let tmp;
    let dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };
    let layout = crate::testnet::Layout {
        validators: a.validators.max(1),
        followers: 0,
        dir: dir.clone(),
        base_port: a.port,
        block_interval_ms: a.block_interval_ms,
    };
    crate::testnet::setup(&layout)?;
    if a.block_gas_limit != iotchain_block::ChainParams::default().block_gas_limit
        || a.no_accumulators
    {
        let path = dir.join("genesis.json");
        let mut genesis = iotchain_block::Genesis::read(&path)?;
        genesis.params.block_gas_limit = a.block_gas_limit;
        genesis.params.stream_accumulators = !a.no_accumulators;
        genesis.write(&path)?;
    }
    if let Some(url) = &a.mqtt {
        if layout.validators != 1 {
            bail!("--mqtt benchmarks one node: use --validators 1");
        }
        // A fresh session name per run: a previous run's queued messages are not replayed.
        let n = &crate::testnet::nodes(&layout)[0];
        let mut config = std::fs::read_to_string(n.config())?;
        config.push_str(&format!(
            "\n[mqtt]\nurl = \"{url}\"\nclient_id = \"iotchain-bench-{}-{}\"\n",
            std::process::id(),
            crate::send::now_ms()
        ));
        std::fs::write(n.config(), config)?;
        println!(
            "readings go through the MQTT broker at {}",
            iotchain_mqtt::redact_url(url)
        );
    }
    let owner = KeyFile::read(&dir.join("owner.key"))?;
    let mut children = Vec::new();
    let mut clients = Vec::new();
    for n in crate::testnet::nodes(&layout) {
        children.push(crate::testnet::spawn_node(&n)?);
        clients.push(Client::new(&n.url()));
    }
    // The node answering must be the one just started on this chain: a node left over from
    // an earlier run (killed without its children) would answer on the same port instead.
    let genesis = iotchain_block::Genesis::read(&dir.join("genesis.json"))?;
    let ours: Vec<String> = genesis
        .validators
        .iter()
        .map(|v| iotchain_block::hex0x(v.public_key))
        .collect();
    for c in &clients {
        let status = c
            .wait_ready(Duration::from_secs(20))
            .await
            .context("node did not start")?;
        if status["validators"] != serde_json::json!(ours) {
            bail!(
                "another chain's node answers on port {} (an earlier bench still running?): stop it, or pass --port",
                a.port
            );
        }
    }
    let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    println!(
        "{} validator process(es) up (logs under {})",
        pids.len(),
        dir.display()
    );

    let owner_key = owner.owner_key()?;
    let mut nonce = 0;
    let mut results = Vec::new();
    let phases: Vec<(KeyAlg, usize)> = match a.alg {
        BenchAlg::Ed25519 => vec![(KeyAlg::Ed25519, a.ed25519_readings)],
        BenchAlg::P256 => vec![(KeyAlg::P256, a.p256_readings)],
        BenchAlg::Both => vec![
            (KeyAlg::Ed25519, a.ed25519_readings),
            (KeyAlg::P256, a.p256_readings),
        ],
    };
    let started = Arc::new(crate::bench_eth::StartLine::default());
    let eth = (a.transfers > 0).then(|| {
        let clients = clients.clone();
        let secret = owner.secret();
        let b = crate::bench_eth::EthBench {
            total: a.transfers,
            senders: a.senders,
            clients: a.clients,
            erc20: a.erc20,
            rate: a.transfer_rate,
        };
        let started = started.clone();
        tokio::spawn(async move {
            let r = match secret {
                Ok(secret) => crate::bench_eth::run(&clients, &secret, &b, started.clone()).await,
                Err(e) => Err(e.into()),
            };
            // A failed setup must not leave the readings waiting for it.
            started.ready.notify_one();
            r
        })
    });
    let mut first_phase = None;
    for (i, (alg, total)) in phases.into_iter().enumerate() {
        // The transfers go with the first readings phase.
        let start = (i == 0 && eth.is_some()).then(|| started.clone());
        let phase = run_phase(
            &clients,
            &owner_key,
            &mut nonce,
            (alg, total),
            &a,
            &pids,
            start,
        )
        .await?;
        let rate = phase.readings as f64 / phase.seconds;
        first_phase.get_or_insert((phase.started, phase.seconds));
        println!(
            "{alg:>8}: {} readings final in {:.2} s = {rate:.0} readings/s; submit→final p50 {:.0} ms, p99 {:.0} ms; rejected {}",
            phase.readings, phase.seconds, phase.p50_ms, phase.p99_ms, phase.rejected
        );
        if let (Some(node), Some(bench)) = (phase.node_cpu, phase.bench_cpu) {
            println!(
                "{alg:>8}: CPU while sending: node {node:.2} s ({:.1} µs/reading), bench client {bench:.2} s, of {:.2} s × {} cores",
                node * 1e6 / phase.readings as f64,
                phase.seconds,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
        // The ratio to raw verification says something only when the nodes set the pace.
        if alg == KeyAlg::Ed25519 && a.rate.is_none() {
            if a.validators <= 1 {
                println!(
                    "{alg:>8}: end-to-end ÷ raw batch verification = {:.2} (goal ≥ 0.67)",
                    rate / raw
                );
            } else {
                // Every validator verifies every reading, on the same cores: the ceiling is
                // the raw rate shared among them.
                println!(
                    "{alg:>8}: end-to-end ÷ (raw batch verification ÷ {} validators) = {:.2}",
                    a.validators,
                    rate * a.validators as f64 / raw
                );
            }
        }
        results.push((alg, rate));
    }
    if let Some(eth) = eth {
        let p = eth.await??;
        println!(
            "     eth: {} {} final in {:.2} s = {:.0} transfers/s; submit→final p50 {:.0} ms, p99 {:.0} ms",
            p.transfers,
            if a.erc20 {
                "ERC-20 transfers"
            } else {
                "plain transfers"
            },
            p.seconds,
            p.transfers as f64 / p.seconds,
            p.p50_ms,
            p.p99_ms
        );
        if let Some((readings_started, readings_seconds)) = first_phase {
            let from = p
                .started
                .saturating_duration_since(readings_started)
                .as_secs_f64();
            let to = from + p.seconds;
            println!(
                "     eth: sent and final from {from:.2} s to {to:.2} s of the readings' {readings_seconds:.2} s{}",
                if to <= readings_seconds {
                    ": all while readings flowed"
                } else {
                    " (partly after the readings ended)"
                }
            );
        }
    }
    for (i, pid) in pids.iter().enumerate() {
        if let Some(kib) = peak_rss_kib(*pid) {
            println!("node {i} peak RSS: {:.1} MiB", kib as f64 / 1024.0);
        }
    }
    for mut c in children {
        let _ = c.kill().await;
        let _ = c.wait().await;
    }
    store_figures(&crate::testnet::nodes(&layout)[0].dir.join("data"));
    Ok(ExitCode::SUCCESS)
}

/// What node 0's store holds after the run: bytes on disk, and the state history's undos
/// (bytes per block), as an operator sizing `history_blocks` needs them.
fn store_figures(data: &std::path::Path) {
    let path = data.join("chain.redb");
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    match iotchain_storage::ChainStore::open(&path, 16 << 20)
        .and_then(|s| Ok((s.head()?, s.undo_totals()?)))
    {
        Ok((head, (blocks, bytes))) => println!(
            "store: chain.redb {:.1} MiB at height {}; state history {blocks} undos, {:.0} bytes per block on average",
            file as f64 / 1048576.0,
            head.unwrap_or(0),
            bytes as f64 / blocks.max(1) as f64
        ),
        Err(e) => println!("store: cannot read {}: {e}", path.display()),
    }
}

async fn run_phase(
    nodes: &[Client],
    owner: &iotchain_crypto::OwnerKey,
    nonce: &mut u64,
    (alg, total): (KeyAlg, usize),
    a: &BenchArgs,
    node_pids: &[u32],
    started: Option<Arc<crate::bench_eth::StartLine>>,
) -> anyhow::Result<Phase> {
    let client = &nodes[0];
    let cpu_all = || -> Option<f64> { node_pids.iter().map(|p| cpu_seconds(*p)).sum() };
    let chain_id = client.status().await?["chain_id"].as_u64().unwrap_or(0);
    let n = a.devices.max(1);
    println!("{alg:>8}: generating {n} device keys…");
    let signers = generate_signers(alg, n).await?;
    println!("{alg:>8}: registering {n} devices, {REGISTER_BATCH} per owner transaction…");
    let registering = crate::clock::stopwatch();
    let mut last = None;
    for chunk in signers.chunks(REGISTER_BATCH) {
        let op = DeviceOp::RegisterMany {
            devices: chunk
                .iter()
                .map(|s| NewDevice::new(s.public_key(), "bench"))
                .collect(),
        };
        last = Some(
            client
                .post_tx(&SignedTx::sign(owner, chain_id, *nonce, op)?)
                .await?,
        );
        *nonce += 1;
    }
    if let Some(h) = last
        && client
            .final_height(h, Duration::from_secs(600))
            .await?
            .is_none()
    {
        bail!("device registrations not final after 10 minutes");
    }
    let secs = registering.elapsed().as_secs_f64();
    println!(
        "{alg:>8}: {n} devices registered and final in {secs:.1} s = {:.0} devices/s",
        n as f64 / secs
    );
    println!("{alg:>8}: signing {total} readings…");
    let aad = client.reading_aad().await?;
    let signers = Arc::new(signers);
    let clients = a.clients.max(1);
    let batch = a.batch.max(1);
    // Client c owns devices d with d % clients == c; readings go round-robin over its devices.
    let per_client = total / clients;
    let signed: Vec<Vec<Vec<u8>>> = {
        let signers = signers.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..clients)
                    .map(|c| {
                        let signers = &signers;
                        let aad = &aad;
                        scope.spawn(move || {
                            let mine: Vec<&DeviceSigner> =
                                signers.iter().skip(c).step_by(clients).collect();
                            let data = [0xf9, 0x4d, 0x00]; // CBOR half-float 20.0
                            let ts = crate::send::now_ms();
                            (0..per_client)
                                .map(|i| {
                                    let d = mine[i % mine.len()];
                                    d.sign_reading(aad, (i / mine.len()) as u64, ts, None, &data)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("signing thread"))
                    .collect()
            })
        })
        .await?
    };
    if let Some(url) = &a.mqtt {
        println!(
            "{alg:>8}: publishing from {clients} topics in batches of {batch} via {}…",
            iotchain_mqtt::redact_url(url)
        );
        let me = std::process::id();
        // Wait for the transfers' setup before the clock, as the HTTP path does.
        if let Some(s) = &started {
            s.ready.notified().await;
            s.go.notify_one();
        }
        let cpu_before = (cpu_all(), cpu_seconds(me));
        let start = crate::clock::stopwatch();
        let (latencies, rejected) = crate::bench_mqtt::send(url, signed, batch, a.rate).await?;
        let seconds = start.elapsed().as_secs_f64();
        return Ok(Phase {
            readings: per_client * clients - rejected,
            started: start,
            seconds,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            rejected,
            node_cpu: cpu_all().zip(cpu_before.0).map(|(a, b)| a - b),
            bench_cpu: cpu_seconds(me).zip(cpu_before.1).map(|(a, b)| a - b),
        });
    }
    println!("{alg:>8}: sending from {clients} clients in batches of {batch}…");
    if let Some(s) = &started {
        s.ready.notified().await;
        s.go.notify_one();
    }
    let start = crate::clock::stopwatch();
    let me = std::process::id();
    let cpu_before = (cpu_all(), cpu_seconds(me));
    let mut tasks = Vec::new();
    // With a target rate, each client sends one batch every `clients × batch / rate` seconds.
    let pace = a
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64((clients * batch) as f64 / r));
    // Each batch's finality is awaited by a long poll, one connection each: at most this
    // many at once, below the node's 512 connections per client address (a run of more
    // batches than that once failed with `too_many_connections`).
    let polls = Arc::new(tokio::sync::Semaphore::new(MAX_FINALITY_POLLS));
    for (c, messages) in signed.into_iter().enumerate() {
        // Client c talks to one node (as a gateway does), spreading load over validators.
        let client = nodes[c % nodes.len()].clone();
        let polls = polls.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut waiters = Vec::new();
            let mut rejected = 0usize;
            let mut ticker = pace.map(|p| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + p.mul_f64(c as f64 / clients as f64),
                    p,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for chunk in messages.chunks(batch) {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let sent = crate::clock::stopwatch();
                let (status, body) = client
                    .post_bytes("/v1/readings", "application/cbor", cbor_batch(chunk))
                    .await?;
                if status >= 300 {
                    bail!(
                        "batch rejected ({status}): {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let reply: BatchReply<'_> = serde_json::from_slice(&body)?;
                rejected += reply.rejected;
                let Some(id) = reply
                    .results
                    .iter()
                    .rev()
                    .find_map(|r| r.id)
                    .map(String::from)
                else {
                    continue;
                };
                let c = client.clone();
                let permit = polls.clone().acquire_owned().await?;
                waiters.push(tokio::spawn(async move {
                    let s = c.get(&format!("/v1/readings/{id}?wait_ms=60000")).await?;
                    drop(permit);
                    if s["status"] != "final" {
                        bail!("reading {id} not final after 60 s");
                    }
                    Ok(sent.elapsed().as_secs_f64() * 1e3)
                }));
            }
            for w in waiters {
                latencies.push(w.await??);
            }
            Ok::<_, anyhow::Error>((latencies, rejected))
        }));
    }
    let mut latencies = Vec::new();
    let mut rejected = 0;
    for t in tasks {
        let (l, r) = t.await??;
        latencies.extend(l);
        rejected += r;
    }
    let seconds = start.elapsed().as_secs_f64();
    let node_cpu = cpu_all().zip(cpu_before.0).map(|(a, b)| a - b);
    let bench_cpu = cpu_seconds(me).zip(cpu_before.1).map(|(a, b)| a - b);
    latencies.sort_by(|x, y| x.total_cmp(y));
    Ok(Phase {
        readings: per_client * clients - rejected,
        started: start,
        seconds,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        rejected,
        node_cpu,
        bench_cpu,
    })
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "iotchain-bench-{}-{}",
            std::process::id(),
            crate::send::now_ms()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
