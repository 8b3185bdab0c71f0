//! `iotchain dev` (single-validator devnet with simulated devices) and `iotchain node`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Args;
use iotchain_block::Genesis;
use iotchain_crypto::{KeyAlg, KeyFile};
use iotchain_node::{Node, NodeConfig};
use serde::Deserialize;

use crate::{client::Client, default_data_dir};

/// Chain id of devnets created by `iotchain dev`.
const DEV_CHAIN_ID: u64 = 1337;

/// The dev owner account's genesis balance: one million ether (10^24 wei).
pub(crate) const DEV_OWNER_BALANCE: alloy_primitives::U256 =
    alloy_primitives::U256::from_limbs([0x1bce_cced_a100_0000, 0xd3c2, 0, 0]);

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Data directory (created if missing; an existing devnet there is resumed).
    #[arg(long, default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// HTTP address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:8545")]
    http_addr: SocketAddr,
    /// Run the node alone, without simulated devices.
    #[arg(long)]
    no_sim: bool,
    /// Number of simulated devices (two thirds Ed25519, one third P-256).
    #[arg(long, default_value_t = 6)]
    devices: usize,
    /// Readings per second per simulated device.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Time between blocks, ms.
    #[arg(long, default_value_t = 200)]
    block_interval_ms: u64,
    /// Blocks of state history to keep: `eth_call`, `eth_getBalance`, `eth_getStorageAt`,
    /// `eth_getProof` and `GET /v1/devices/{address}?block=N` answer at the head and this many
    /// blocks below it (the default is an hour at the 200 ms block interval).
    #[arg(long, value_name = "N", default_value_t = iotchain_node::DEFAULT_HISTORY_BLOCKS, conflicts_with = "archive")]
    history_blocks: u64,
    /// Keep the state of every block (an archive node): see --history-blocks.
    #[arg(long)]
    archive: bool,
    /// About how many MiB of the state's trie nodes stay in memory; the rest are read from
    /// chain.redb when a block or a proof reaches them (0 keeps only the top levels).
    #[arg(long, value_name = "MIB", default_value_t = iotchain_node::DEFAULT_TRIE_CACHE_BYTES >> 20)]
    trie_cache_mb: usize,
    /// Bridge an MQTT broker: `mqtt://[user[:password]@]host[:port]` (`mqtts://` for TLS). The
    /// node subscribes to `iotchain/+/readings` and acknowledges on `iotchain/<device>/acks`.
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// MQTT protocol version: v4 (3.1.1) or v5.
    #[arg(long, default_value = "v4", requires = "mqtt")]
    mqtt_protocol: iotchain_mqtt::Protocol,
    /// MQTT client id (names the broker's persistent session for this node).
    #[arg(long, default_value = "iotchain-dev", requires = "mqtt")]
    mqtt_client_id: String,
    /// MQTT topic filter for readings (one `+` level: the device address).
    #[arg(long, default_value = "iotchain/+/readings", requires = "mqtt")]
    mqtt_topic: String,
    /// PEM file of the CA certificates that sign the broker's certificate (`mqtts://`; default:
    /// the system's roots), for a broker with a private CA.
    #[arg(long, value_name = "PEM", requires = "mqtt")]
    mqtt_ca_file: Option<PathBuf>,
    /// PEM file of this node's client certificate, for a broker that requires mutual TLS (AWS
    /// IoT Core and most production brokers); with --mqtt-client-key.
    #[arg(long, value_name = "PEM", requires_all = ["mqtt", "mqtt_client_key"])]
    mqtt_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, value_name = "PEM", requires_all = ["mqtt", "mqtt_client_cert"])]
    mqtt_client_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Node config file (TOML): data_dir, http_addr, genesis, validator_key, block_interval_ms,
    /// max_batch_readings, max_pending_items, db_cache_mb, history_blocks (state history kept;
    /// default 18000) or archive = true (all of it), trie_cache_mb (state trie kept in memory;
    /// default 64), peers (other nodes' HTTP URLs: forwarding
    /// and block sync), p2p_listen. A key that is not a genesis validator runs a follower.
    /// Relative paths are relative to the config file.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    data_dir: PathBuf,
    #[serde(default = "default_http")]
    http_addr: SocketAddr,
    genesis: PathBuf,
    validator_key: PathBuf,
    block_interval_ms: Option<u64>,
    max_batch_readings: Option<usize>,
    max_pending_items: Option<usize>,
    db_cache_mb: Option<usize>,
    /// Blocks of state history to keep (default 18000: an hour at 200 ms blocks).
    history_blocks: Option<u64>,
    /// Keep the state of every block.
    #[serde(default)]
    archive: bool,
    /// Most MiB of history one query at an older block may read (default 64).
    history_query_mb: Option<u64>,
    /// About how many MiB of state trie nodes stay in memory (default 64).
    trie_cache_mb: Option<usize>,
    /// Other nodes' HTTP base URLs: readings are forwarded to them, blocks synced from them.
    #[serde(default)]
    peers: Vec<String>,
    /// p2p listen address (default: this validator's address in the genesis).
    p2p_listen: Option<SocketAddr>,
    /// MQTT bridge (`[mqtt]` table).
    mqtt: Option<iotchain_mqtt::MqttConfig>,
    /// Keys (0x-hex) of the followers whose relays this node takes as relays (the genesis
    /// validators' always are).
    #[serde(default)]
    forwarders: Vec<alloy_primitives::B256>,
    /// Most HTTP connections at once (held below the descriptor limit; default 4096).
    max_http_connections: Option<usize>,
    /// Most HTTP connections from one IP address (default 512).
    max_http_connections_per_ip: Option<usize>,
    /// Longest a client may take to send its headers, and keep an idle connection (default
    /// 15000).
    http_header_timeout_ms: Option<u64>,
    /// Most gas one `eth_call` / `eth_estimateGas` execution may use (default 50,000,000).
    rpc_gas_cap: Option<u64>,
    /// Longest the EVM work of one JSON-RPC request or batch may take (default 5000).
    rpc_call_timeout_ms: Option<u64>,
    /// Calls executed at once (default: half the cores, at least 1).
    rpc_call_workers: Option<usize>,
    /// Gas one JSON-RPC request or batch may use over all its executions (default
    /// 500,000,000).
    rpc_request_gas: Option<u64>,
}

/// The state history an `archive` flag and a block count ask for.
fn history(archive: bool, blocks: Option<u64>) -> iotchain_node::History {
    match (archive, blocks) {
        (true, _) => iotchain_node::History::Archive,
        (false, Some(n)) => iotchain_node::History::Blocks(n),
        (false, None) => iotchain_node::History::default(),
    }
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8545))
}

/// Files of a devnet data directory.
struct DevFiles {
    genesis: PathBuf,
    owner_key: PathBuf,
    validator_key: PathBuf,
}

impl DevFiles {
    fn new(dir: &Path) -> Self {
        Self {
            genesis: dir.join("genesis.json"),
            owner_key: dir.join("dev-owner.key"),
            validator_key: dir.join("validator.key"),
        }
    }
}

/// Creates the devnet's keys and genesis, or loads them if the directory holds a devnet.
fn devnet_setup(dir: &Path) -> anyhow::Result<(Genesis, KeyFile, KeyFile, bool)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = DevFiles::new(dir);
    if files.genesis.exists() {
        let genesis = Genesis::read(&files.genesis)?;
        let owner = KeyFile::read(&files.owner_key)?;
        let validator = KeyFile::read(&files.validator_key)?;
        return Ok((genesis, owner, validator, false));
    }
    let owner = KeyFile::generate(KeyAlg::Secp256k1);
    let validator = KeyFile::generate(KeyAlg::Ed25519);
    let mut genesis = Genesis::single_validator(
        DEV_CHAIN_ID,
        crate::send::now_ms(),
        validator.validator_key()?.public_key().into(),
        vec![owner.owner_key()?.address()],
    );
    // The owner key is also the devnet's funded Ethereum account (secp256k1, same address).
    genesis
        .alloc
        .insert(owner.owner_key()?.address(), DEV_OWNER_BALANCE);
    owner.write(&files.owner_key)?;
    validator.write(&files.validator_key)?;
    genesis.write(&files.genesis)?;
    Ok((genesis, owner, validator, true))
}

/// Runs `f` on a Commonware tokio runtime (one worker per core) whose storage, where
/// simplex keeps its journal, is `DATA_DIR/consensus`.
fn on_node_runtime<F, Fut>(data_dir: &Path, f: F) -> Fut::Output
where
    F: FnOnce(commonware_runtime::tokio::Context) -> Fut,
    Fut: std::future::Future,
{
    use commonware_runtime::Runner as _;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    // A panicking task (simplex's voter when its journal cannot be written, say) is caught and
    // logged: the task ends, its supervisor marks the node failed, and the node stops with
    // exit code 70 (not an abort with 101 halfway through a write).
    let config = commonware_runtime::tokio::Config::new()
        .with_catch_panics(true)
        .with_storage_directory(data_dir.join("consensus"))
        .with_worker_threads(threads)
        .with_tcp_nodelay(Some(true));
    commonware_runtime::tokio::Runner::new(config).start(f)
}

pub(crate) fn dev(a: DevArgs) -> anyhow::Result<ExitCode> {
    let dir = a.data_dir.clone();
    on_node_runtime(&dir, |context| run_dev(context, a))
}

async fn run_dev(
    context: commonware_runtime::tokio::Context,
    a: DevArgs,
) -> anyhow::Result<ExitCode> {
    let (genesis, owner, validator, fresh) = devnet_setup(&a.data_dir)?;
    let files = DevFiles::new(&a.data_dir);
    let mut config = NodeConfig::new(
        a.data_dir.clone(),
        genesis.clone(),
        validator.validator_key()?,
    );
    config.http_addr = a.http_addr;
    config.block_interval = Duration::from_millis(a.block_interval_ms.max(10));
    config.history = history(a.archive, Some(a.history_blocks));
    config.trie_cache_bytes = a.trie_cache_mb << 20;
    let (node, consensus) = start_with_consensus(context, config, None)
        .await
        .with_context(|| {
            format!(
                "cannot start on {} with the genesis in {}",
                a.data_dir.display(),
                files.genesis.display()
            )
        })?;
    let mqtt = a.mqtt.as_ref().map(|url| {
        let mut m = iotchain_mqtt::MqttConfig::new(url.clone());
        m.protocol = a.mqtt_protocol;
        m.client_id = Some(a.mqtt_client_id.clone());
        m.topic = a.mqtt_topic.clone();
        m.ca_file = a.mqtt_ca_file.clone();
        m.client_cert_file = a.mqtt_client_cert.clone();
        m.client_key_file = a.mqtt_client_key.clone();
        m
    });
    let bridge = start_bridge(&node, mqtt)?;
    let url = format!("http://{}", node.http_addr);
    println!(
        "iotchain devnet {} (chain id {})",
        if fresh { "created" } else { "resumed" },
        genesis.chain_id
    );
    println!("  data dir:    {}", a.data_dir.display());
    println!("  genesis:     {}", files.genesis.display());
    println!(
        "  owner key:   {} (owner {})",
        files.owner_key.display(),
        owner.address
    );
    println!(
        "  eth account: {} (secret in the owner key file)",
        owner.address
    );
    println!("  JSON-RPC:    {url}/ (chain id {})", genesis.chain_id);
    println!("  API:         {url}/v1/status");
    println!("  explorer:    {url}/explorer/");
    if let Some(m) = &a.mqtt {
        println!(
            "  MQTT:        {} (readings on {}, acks on iotchain/<device>/acks)",
            iotchain_mqtt::redact_url(m),
            a.mqtt_topic
        );
    }
    println!("  try:         iotchain device list --node {url}");
    println!("  stop:        Ctrl-C (everything acknowledged is kept)");

    let mut blocks = node.blocks.subscribe();
    let printer = tokio::spawn(async move {
        let mut last = crate::clock::stopwatch();
        while let Ok(b) = blocks.recv().await {
            let dt = last.elapsed().as_secs_f64().max(1e-3);
            last = crate::clock::stopwatch();
            println!(
                "block {:>6}  readings {:>5}  txs {:>3}  {:>9.1} readings/s  {}",
                b.height,
                b.readings,
                b.transactions,
                b.readings as f64 / dt,
                &b.hash.to_string()[..12]
            );
        }
    });
    let sim = if a.no_sim {
        None
    } else {
        let dir = a.data_dir.join("devices");
        // A fresh devnet gets the cold-chain example, driven by the first two thermometers.
        let coldchain = (fresh && a.devices >= 2)
            .then(|| owner.secret())
            .transpose()?;
        let chain_id = genesis.chain_id;
        let owner = owner.owner_key()?;
        let (n, rate) = (a.devices, a.rate);
        Some(tokio::spawn(async move {
            let coldchain = coldchain.map(|secret| (secret, chain_id));
            if let Err(e) = simulate(&url, &dir, &owner, n, rate, coldchain).await {
                eprintln!("simulated devices stopped: {e:#}");
            }
        }))
    };
    let failure = until_stopped(&node, &a.data_dir).await?;
    println!("stopping…");
    if let Some(b) = bridge {
        b.stop().await;
    }
    consensus.stop().await;
    if let Some(s) = sim {
        s.abort();
    }
    node.stop().await;
    printer.abort();
    Ok(exit_code(failure))
}

/// Registers `n` simulated devices (reusing their keys across restarts) and has each send
/// `rate` temperature readings per second (a CBOR float in °C on the `temperature` stream),
/// batched per tick. With `coldchain` (the owner's secret and the chain id), first deploys
/// the cold-chain example on the first two devices.
async fn simulate(
    url: &str,
    dir: &Path,
    owner: &iotchain_crypto::OwnerKey,
    n: usize,
    rate: f64,
    coldchain: Option<([u8; 32], u64)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let client = Client::new(url);
    let aad = client.reading_aad().await?;
    let mut devices = Vec::new();
    for i in 0..n {
        let alg = if i % 3 == 2 {
            KeyAlg::P256
        } else {
            KeyAlg::Ed25519
        };
        let path = dir.join(format!("sensor-{i}.key"));
        let key = if path.exists() {
            KeyFile::read(&path)?
        } else {
            let k = KeyFile::generate(alg);
            k.write(&path)?;
            k
        };
        let signer = key.device_signer()?;
        let next_seq = match client
            .get(&format!("/v1/devices/{}", signer.address()))
            .await
        {
            Ok(info) => info["pending_last_seq"].as_u64().map_or(0, |s| s + 1),
            Err(_) => {
                let op = iotchain_block::DeviceOp::Register {
                    public_key: signer.public_key(),
                    model: format!("sim-thermometer-{}", alg),
                    firmware_hash: alloy_primitives::Bytes::from(vec![0x5a; 32]),
                    labels: vec![("site".into(), format!("dock {}", i + 1))],
                };
                client
                    .submit_op(owner, op)
                    .await
                    .context("registering a simulated device")?;
                println!("registered simulated device {} ({alg})", signer.address());
                0
            }
        };
        devices.push((signer, next_seq));
    }
    if devices.is_empty() {
        return Ok(());
    }
    if let (Some((secret, chain_id)), [first, second, ..]) = (coldchain, devices.as_slice()) {
        let shipments = [
            ("shipment 1 (vaccines)", first.0.address(), 8.0, 20, 1),
            ("shipment 2 (fish)", second.0.address(), 5.0, 120, 2),
        ];
        let deployed = crate::coldchain::deploy(url, &secret, chain_id, &shipments)
            .await
            .context("deploying the cold-chain example")?;
        let url = url.to_string();
        tokio::spawn(async move {
            if let Err(e) = crate::coldchain::watch(&url, deployed).await {
                eprintln!("cold-chain watcher stopped: {e:#}");
            }
        });
    }
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut tick = tokio::time::interval(period);
    let mut t = 0f64;
    loop {
        tick.tick().await;
        t += period.as_secs_f64();
        let messages: Vec<Vec<u8>> = devices
            .iter_mut()
            .enumerate()
            .map(|(i, (signer, seq))| {
                let temp = 4.0 + 1.5 * (t / 30.0 + i as f64).sin();
                let data = crate::send::json_to_cbor(&format!("{temp:.2}")).expect("a number");
                let m = signer.sign_reading(
                    &aad,
                    *seq,
                    crate::send::now_ms(),
                    Some(crate::coldchain::STREAM),
                    &data,
                );
                *seq += 1;
                m
            })
            .collect();
        let (status, body) = client
            .post_batch(crate::client::cbor_batch(&messages))
            .await?;
        if status >= 300 {
            bail!("node rejected simulated readings ({status}): {body}");
        }
    }
}

pub(crate) fn node(a: NodeArgs) -> anyhow::Result<ExitCode> {
    let (config, file, is_validator, validator_public) = node_config(&a)?;
    let dir = config.data_dir.clone();
    on_node_runtime(&dir, move |context| {
        run_node(context, config, file, is_validator, validator_public)
    })
}

/// Reads a node's config file (relative paths are relative to it).
fn node_config(a: &NodeArgs) -> anyhow::Result<(NodeConfig, NodeFile, bool, [u8; 32])> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let file: NodeFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a node config", a.config.display()))?;
    let base = a.config.parent().unwrap_or(Path::new("."));
    let resolve = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let genesis = Genesis::read(&resolve(&file.genesis))?;
    let key = KeyFile::read(&resolve(&file.validator_key))?.validator_key()?;
    let validator_public = key.public_key();
    let is_validator = genesis.validator_keys().contains(&key.public_key().into());
    if !is_validator && file.peers.is_empty() {
        bail!(
            "the key is not a validator of this genesis, and without `peers` to follow this node \
             would never see a block: add peers = [\"http://host:port\", ...] to follow the chain"
        );
    }
    let mut config = NodeConfig::new(resolve(&file.data_dir), genesis, key);
    config.peers = file.peers.clone();
    config.forwarders = file.forwarders.clone();
    config.http_addr = file.http_addr;
    if let Some(ms) = file.block_interval_ms {
        config.block_interval = Duration::from_millis(ms.max(10));
    }
    if let Some(n) = file.max_batch_readings {
        config.max_batch_readings = n;
    }
    if let Some(n) = file.max_pending_items {
        config.max_pending_items = n;
    }
    if let Some(mb) = file.db_cache_mb {
        config.db_cache_bytes = mb.max(1) * 1024 * 1024;
    }
    if file.archive && file.history_blocks.is_some() {
        bail!(
            "{}: `archive = true` keeps all state history; drop `history_blocks`",
            a.config.display()
        );
    }
    config.history = history(file.archive, file.history_blocks);
    if let Some(mb) = file.history_query_mb {
        config.history_query_bytes = mb.max(1) << 20;
    }
    if let Some(mb) = file.trie_cache_mb {
        config.trie_cache_bytes = mb << 20;
    }
    if let Some(n) = file.max_http_connections {
        config.http.max_connections = n.max(1);
    }
    if let Some(n) = file.max_http_connections_per_ip {
        config.http.max_connections_per_ip = n.max(1);
    }
    if let Some(ms) = file.http_header_timeout_ms {
        config.http.header_timeout = Duration::from_millis(ms.max(100));
    }
    if let Some(gas) = file.rpc_gas_cap {
        config.calls.gas_cap = gas.max(21_000);
    }
    if let Some(ms) = file.rpc_call_timeout_ms {
        config.calls.timeout = Duration::from_millis(ms.max(1));
    }
    if let Some(n) = file.rpc_call_workers {
        config.calls.workers = n.max(1);
    }
    if let Some(gas) = file.rpc_request_gas {
        config.calls.request_gas = gas.max(21_000);
    }
    let mut file = file;
    file.mqtt = file.mqtt.take().map(|mut m| {
        m.ca_file = m.ca_file.as_ref().map(&resolve);
        m.client_cert_file = m.client_cert_file.as_ref().map(&resolve);
        m.client_key_file = m.client_key_file.as_ref().map(&resolve);
        // One session per node on a shared broker: name it after the validator key.
        m.client_id
            .get_or_insert_with(|| format!("iotchain-{}", &hex::encode(validator_public)[..16]));
        m
    });
    Ok((config, file, is_validator, validator_public))
}

async fn run_node(
    context: commonware_runtime::tokio::Context,
    config: NodeConfig,
    file: NodeFile,
    is_validator: bool,
    _validator_public: [u8; 32],
) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir.clone();
    let (node, consensus) = start_with_consensus(context, config, file.p2p_listen)
        .await
        .with_context(|| {
            format!(
                "cannot start on {} with the genesis in {}",
                data_dir.display(),
                file.genesis.display()
            )
        })?;
    let bridge = start_bridge(&node, file.mqtt.clone())?;
    println!(
        "iotchain {} serving http://{}",
        if is_validator {
            "validator"
        } else {
            "follower"
        },
        node.http_addr
    );
    let mut blocks = node.blocks.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(b) = blocks.recv().await {
            tracing::info!(
                height = b.height,
                readings = b.readings,
                txs = b.transactions,
                "block final"
            );
        }
    });
    let failure = until_stopped(&node, &data_dir).await?;
    if let Some(b) = bridge {
        b.stop().await;
    }
    consensus.stop().await;
    node.stop().await;
    printer.abort();
    Ok(exit_code(failure))
}

/// Waits for Ctrl-C or SIGTERM, or for a critical task of the node to stop (returned).
///
/// When a task stops, the data directory is probed with a small write: a task that failed
/// writing (the consensus journal's error, for one, does not say why) then has its cause said,
/// e.g. `No space left on device`, so that the operator knows what to fix before the restart.
async fn until_stopped(
    node: &Node,
    data_dir: &Path,
) -> anyhow::Result<Option<iotchain_api::Failure>> {
    tokio::select! {
        r = shutdown_signal() => r.map(|()| None),
        f = node.failed() => {
            eprintln!(
                "error: {} stopped ({}): {}; stopping the node so that its supervisor restarts it",
                f.task, f.code, f.message
            );
            if let Err(e) = probe_writes(data_dir) {
                eprintln!(
                    "error: the data directory {} refuses writes: {e}; free space (or fix the \
                     disk) before the node restarts",
                    data_dir.display()
                );
            }
            Ok(Some(f))
        }
    }
}

/// Writes, syncs and removes a 64 KiB file in `dir`: the error says why the disk refuses writes.
fn probe_writes(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(".write-probe");
    let result = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&[0u8; 64 * 1024])?;
        f.sync_all()
    });
    // Removing it frees what it took, whether or not the write went through.
    let _ = std::fs::remove_file(&path);
    result
}

/// 0 after a requested stop; 70 (EX_SOFTWARE) after a critical task stopped, so that systemd
/// (`Restart=on-failure`) or another supervisor restarts the node.
fn exit_code(failure: Option<iotchain_api::Failure>) -> ExitCode {
    match failure {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::from(70),
    }
}

/// Starts the MQTT bridge if configured (a broker that is down is retried in the background).
fn start_bridge(
    node: &Node,
    config: Option<iotchain_mqtt::MqttConfig>,
) -> anyhow::Result<Option<iotchain_mqtt::Bridge>> {
    config
        .map(|c| {
            iotchain_mqtt::Bridge::start(node.engine.clone(), c, &node.metrics)
                .context("mqtt bridge")
        })
        .transpose()
}

/// Starts the node with blocks proposed and finalized by simplex (its journal under
/// `DATA_DIR/consensus`).
async fn start_with_consensus(
    context: commonware_runtime::tokio::Context,
    mut config: NodeConfig,
    p2p_listen: Option<SocketAddr>,
) -> anyhow::Result<(Node, iotchain_consensus::Consensus)> {
    use commonware_runtime::Supervisor as _;
    config.produce_blocks = false;
    let mut consensus = iotchain_consensus::ConsensusConfig::new();
    consensus.block_interval = config.block_interval;
    consensus.p2p_listen = p2p_listen;
    consensus.sync_peers = config.peers.clone();
    let key = config.validator_key.clone();
    let node = Node::start(context.child("node"), config).await?;
    let consensus = iotchain_consensus::start(
        context.child("consensus"),
        node.engine.clone(),
        key,
        consensus,
    )
    .context("starting consensus")?;
    Ok((node, consensus))
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM (what service managers send).
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
